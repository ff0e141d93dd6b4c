"""Lambda of PlanDispatch's Begin: DRAFT -> RUNNING and the first wave of ready tasks
(loopwright.cloud.plan_steps.begin)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.plan_runtime import run_plan_step
from loopwright.cloud.plan_steps import DispatchInput, begin


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=DispatchInput)
def handler(event: DispatchInput, context: LambdaContext) -> dict[str, Any]:
    """DispatchInput -> DispatchState (JSON), see loopwright.cloud.plan_steps."""
    return run_plan_step(begin, event, "PlanDispatchBegun")
