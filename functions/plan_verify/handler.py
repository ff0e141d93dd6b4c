"""Lambda of PlanDispatch's Verify: gate:all on a VERIFYING plan, VERIFIED or FAILED
(loopwright.cloud.plan_verify_steps.verify)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.plan_runtime import run_plan_step
from loopwright.cloud.plan_verify_steps import VerifyInput, verify


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=VerifyInput)
def handler(event: VerifyInput, context: LambdaContext) -> dict[str, Any]:
    """VerifyInput -> VerifyOutput (JSON), see loopwright.cloud.plan_verify_steps."""
    return run_plan_step(verify, event, "PlansVerified")
