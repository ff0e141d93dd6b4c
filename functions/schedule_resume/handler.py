"""Lambda of the state machine's ScheduleResume state (Decide said PAUSE until a usage limit
resets): one call into loopwright.cloud.schedule.schedule_resume."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.idempotency import idempotent_step
from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.schedule import ResumeScheduleSettings, schedule_resume
from loopwright.models import StepOutput


@functools.cache
def _scheduler() -> Any:
    return boto3.client("scheduler")


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@idempotent_step("schedule_resume")
@event_parser(model=StepOutput)
def handler(event: StepOutput, context: LambdaContext) -> dict[str, Any]:
    """Decide's StepOutput (PAUSE, ``resume_at``) -> the same with ``schedule_name``."""
    name = schedule_resume(event, ResumeScheduleSettings.from_environ(), _scheduler())
    logger.info("resume scheduled", extra={"loop_id": event.loop_id, "schedule": name})
    metrics.add_metric(name="LoopsPausedUntilReset", unit=MetricUnit.Count, value=1)
    return {**event.model_dump(mode="json"), "schedule_name": name}
