"""Lambda of the state machine's Iterate state: one call into loopwright.cloud.steps.iterate_step."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.idempotency import idempotent_step
from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.runtime import run_step
from loopwright.cloud.steps import iterate_step
from loopwright.models import StepInput


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@idempotent_step("iterate")
@event_parser(model=StepInput)
def handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    """StepInput -> StepOutput (JSON), see loopwright.models.workflow; pending while the agent
    works in the background (loopwright.cloud.deferral)."""
    return run_step(iterate_step, event, needs_agent=True, pending_step="iterate")
