"""Lambda of the state machine's Evaluate and Baseline states: one call into
loopwright.cloud.steps.evaluation_step (the baseline when the execution's input asks for it)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.idempotency import idempotent_step
from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.runtime import run_step
from loopwright.cloud.steps import evaluation_step
from loopwright.models import StepInput


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@idempotent_step("evaluate")
@event_parser(model=StepInput)
def handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    """StepInput -> StepOutput (JSON), see loopwright.models.workflow; pending while the checks
    run in the background (loopwright.cloud.deferral)."""
    return run_step(
        evaluation_step,
        event,
        needs_workspace=True,
        pending_step="baseline" if event.baseline else "evaluate",
    )
