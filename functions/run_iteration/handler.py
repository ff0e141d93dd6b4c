"""Lambda of the compact state machine's RunIteration state: one call into
loopwright.cloud.steps_compact.run_iteration_step (authorize ... decide in one invocation)."""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.idempotency import idempotent_step
from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.runtime import RuntimeSettings, run_step, with_loop_agent
from loopwright.cloud.steps import CloudPorts
from loopwright.cloud.steps_compact import run_iteration_step
from loopwright.models import StepInput


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@idempotent_step("run_iteration")
@event_parser(model=StepInput)
def handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    """StepInput -> the decide step's StepOutput (JSON), see loopwright.models.workflow."""
    settings = RuntimeSettings.from_environ()

    def work_ports(base: CloudPorts) -> CloudPorts:
        # the agent, its workspace and sandbox, and the tasks earlier invocations started
        return with_loop_agent(base, event.loop_id, settings, event=event)

    return run_step(partial(run_iteration_step, work_ports=work_ports), event)
