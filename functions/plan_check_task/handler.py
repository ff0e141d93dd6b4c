"""Lambda of PlanDispatch's CheckTask (in the Map): the task's loop ended, or the next wait
(loopwright.cloud.plan_steps.check_task)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.plan_runtime import run_plan_step
from loopwright.cloud.plan_steps import TaskItem, check_task


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=TaskItem)
def handler(event: TaskItem, context: LambdaContext) -> dict[str, Any]:
    """TaskItem -> TaskItem (JSON), see loopwright.cloud.plan_steps."""
    return run_plan_step(check_task, event, "PlanTaskPolls")
