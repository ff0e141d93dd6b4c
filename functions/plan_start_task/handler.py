"""Lambda of PlanDispatch's StartTask (in the Map): the task RUNNING and its loop's first
execution started (loopwright.cloud.plan_steps.start_task)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.plan_runtime import run_plan_step
from loopwright.cloud.plan_steps import TaskItem, start_task


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=TaskItem)
def handler(event: TaskItem, context: LambdaContext) -> dict[str, Any]:
    """TaskItem -> TaskItem (JSON), see loopwright.cloud.plan_steps."""
    return run_plan_step(start_task, event, "PlanTasksStarted")
