"""Lambda of PlanDispatch's Next: the next wave of ready tasks, or none
(loopwright.cloud.plan_steps.next_wave)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.plan_runtime import run_plan_step
from loopwright.cloud.plan_steps import DispatchState, next_wave


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=DispatchState)
def handler(event: DispatchState, context: LambdaContext) -> dict[str, Any]:
    """DispatchState -> DispatchState (JSON), see loopwright.cloud.plan_steps."""
    return run_plan_step(next_wave, event, "PlanWaves")
