"""Lambda of the await-human state (a task token task): park the loop for an operator."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.runtime import RuntimeSettings, ports
from loopwright.cloud.start import await_human
from loopwright.models import StepInput


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=StepInput)
def handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    """StepInput with ``task_token`` -> the same input (the execution waits for the token)."""
    await_human(event, ports(RuntimeSettings.from_environ()))
    metrics.add_metric(name="LoopsAwaitingResponse", unit="Count", value=1)
    return event.model_dump(mode="json")
