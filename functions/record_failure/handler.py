"""Lambda of the state machine's RecordFailure state (every task's Catch): the loop ends FAILED."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from loopwright.cloud.idempotency import idempotent_step
from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.runtime import RuntimeSettings, ports
from loopwright.cloud.steps import record_failure_step
from loopwright.models import StepInput


class FailureInput(StepInput):
    """The failed state's input with the Catch's error under ``error`` ({"Error", "Cause"})."""

    error: dict[str, Any] = Field(default_factory=dict)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@idempotent_step("record_failure")
@event_parser(model=FailureInput)
def handler(event: FailureInput, context: LambdaContext) -> dict[str, Any]:
    """FailureInput -> StepOutput (JSON) with outcome FAILED."""
    step_ports = ports(RuntimeSettings.from_environ())
    metrics.add_metric(name="LoopsFailed", unit=MetricUnit.Count, value=1)
    return record_failure_step(event, event.error, step_ports).model_dump(mode="json")
