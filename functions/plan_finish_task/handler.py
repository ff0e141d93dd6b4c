"""Lambda of PlanDispatch's FinishTask (in the Map): the task COMPLETED or ERROR from its
loop's result or a caught error (loopwright.cloud.plan_steps.finish_task)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.plan_runtime import run_plan_step
from loopwright.cloud.plan_steps import TaskItem, finish_task


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=TaskItem)
def handler(event: TaskItem, context: LambdaContext) -> dict[str, Any]:
    """TaskItem -> TaskItem (JSON), see loopwright.cloud.plan_steps."""
    return run_plan_step(finish_task, event, "PlanTasksFinished")
