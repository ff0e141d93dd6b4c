"""Starting a loop in AWS (``POST /loops``, EventBridge) and parking one for a human.

:func:`start_loop` validates the config, stores the new loop with its LOOP_STARTED event and
starts the first execution of the state machine, named ``<loop_id>-g0`` so a retried request
cannot start it twice (Step Functions refuses a second execution with the same name). Its input
asks for the baseline (``baseline``: the exit conditions evaluated once before the agent runs).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from loopwright import workflow
from loopwright.cloud.steps import CloudPorts, EventCollector
from loopwright.config_loader import format_validation_error
from loopwright.exceptions import ConfigError
from loopwright.models import (
    LoopConfig,
    LoopPhase,
    LoopState,
    StartLoopRequest,
    StepInput,
    new_id,
)

#: Starts an execution: (execution name, input JSON) -> execution ARN.
ExecutionStarter = Callable[[str, str], str]


def execution_name(loop_id: str, generation: int) -> str:
    """``<loop_id>-g<generation>``: the name of a loop's execution (at most 80 characters)."""
    return f"{loop_id}-g{generation}"[:80]


def start_loop(
    request: StartLoopRequest,
    ports: CloudPorts,
    start_execution: ExecutionStarter,
    *,
    check_agent: Callable[[LoopConfig], None] | None = None,
) -> StepInput:
    """Create the loop and start its first execution; returns the execution's input.

    ``check_agent`` refuses an agent the adapters cannot run (the handler passes
    :func:`loopwright.cloud.runtime.check_agent_for_adapters` for its adapters), so a python agent
    sent to AWS is a 400 here, not a failed iteration later.

    Raises :class:`ConfigError` (one line, naming the field) for an invalid config; nothing is
    stored then.
    """
    try:
        config = LoopConfig.model_validate(request.config)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "config")) from exc
    if check_agent is not None:
        check_agent(config)
    loop_id = request.loop_id or new_id("loop")
    state = LoopState(
        loop_id=loop_id, project=config.project, config=config, workspace=request.repository or ""
    )
    state = ports.store.create_loop(state)
    record = EventCollector(state)
    workflow.start_session(state, record)
    ports.store.save_state(state, record.events)
    event = StepInput(loop_id=loop_id, baseline=workflow.baseline_due(state))
    start_execution(execution_name(loop_id, 0), event.model_dump_json())
    return event


def await_human(event: StepInput, ports: CloudPorts) -> None:
    """Keep the execution's task token on the loop, which waits (AWAITING_RESPONSE) until an
    operator approves it (the token is then sent back with SendTaskSuccess)."""
    state = ports.store.get_state(event.loop_id)
    state.task_token = event.task_token
    state.phase = LoopPhase.AWAITING_RESPONSE
    ports.store.save_state(state)
