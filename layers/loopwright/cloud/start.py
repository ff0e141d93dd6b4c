"""Starting a loop in AWS (``POST /loops``, EventBridge) and parking one for a human.

:func:`start_loop` validates the config, stores the new loop with its LOOP_STARTED event and
starts the first execution of the state machine, named ``<loop_id>-g0`` so a retried request
cannot start it twice (Step Functions refuses a second execution with the same name). Its input
asks for the baseline (``baseline``: the exit conditions evaluated once before the agent runs).

**A start that fails after the loop is stored** (``StartExecution`` throttled, the state machine
unreachable) is compensated: the loop is marked INTERRUPTED, not active, with an ERROR event naming
the execution and the failure, and :class:`LoopNotStartedError` is raised. A retry with the same
loop id (and the same config) starts it again (:func:`restartable`): a new session (LOOP_RESUMED)
and the same execution name and input. Step Functions treats a StartExecution with the name and
input of an open execution as the same request (it returns that execution and starts no other), so
a start whose response was lost but whose execution runs is not started twice; a closed execution
of that name is ``ExecutionAlreadyExists``, and the loop is marked again.

**A loop with a ``schedule``** (issue 12.8, :mod:`loopwright.cloud.continuation`) gets its recurring
schedule once the loop is stored and before its execution starts (``create_schedule``). A schedule
that cannot be created fails the start the same way: the loop is INTERRUPTED with an ERROR event
naming the schedule and the failure, nothing runs, and :class:`LoopNotStartedError` is raised
(``POST /loops`` answers 503 with the loop id; an event is retried by Lambda). The same request
creates it again (an existing schedule of that name counts as created).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from loopwright import pinning, workflow
from loopwright.cloud.steps import CloudPorts, EventCollector
from loopwright.config_loader import format_validation_error
from loopwright.exceptions import ConfigError, LoopFrameworkError, LoopNotFoundError
from loopwright.models import (
    IterationEventType,
    LoopConfig,
    LoopPhase,
    LoopState,
    StartLoopRequest,
    StepInput,
    new_id,
)

#: Starts an execution: (execution name, input JSON) -> execution ARN.
ExecutionStarter = Callable[[str, str], str]
#: Creates a loop's recurring schedule: (loop id, config) -> its name, None without ``schedule``
#: (:func:`loopwright.cloud.continuation.create_loop_schedule` with the stack's settings).
ScheduleCreator = Callable[[str, LoopConfig], "str | None"]
#: Phases of a stored loop whose first execution never ran: INTERRUPTED (compensated, below) and
#: INITIALIZING (stored, but the function ended before it opened the session).
NOT_STARTED_PHASES = frozenset({LoopPhase.INTERRUPTED, LoopPhase.INITIALIZING})


class LoopNotStartedError(LoopFrameworkError):
    """The loop is stored but its execution did not start; the loop is INTERRUPTED (retry the same
    request: same loop id, same config)."""

    def __init__(self, loop_id: str, message: str) -> None:
        super().__init__(message)
        self.loop_id = loop_id


def execution_name(loop_id: str, generation: int) -> str:
    """``<loop_id>-g<generation>``: the name of a loop's execution (at most 80 characters)."""
    return f"{loop_id}-g{generation}"[:80]


def restartable(state: LoopState, config: LoopConfig) -> bool:
    """True when ``state`` is a loop whose first execution never ran (a start that failed, or
    stopped between storing the loop and opening its session) and ``config`` is its config: not
    active, INTERRUPTED or INITIALIZING, no outcome, no iteration done, generation 0."""
    return (
        not state.is_active
        and state.phase in NOT_STARTED_PHASES
        and state.outcome is None
        and state.iteration == 0
        and state.generation == 0
        and state.config == config
    )


def _stored(request: StartLoopRequest, state: LoopState, ports: CloudPorts) -> LoopState:
    """``state`` stored as a new loop, or the stored loop of that id when :func:`restartable`.
    Raises :class:`LoopFrameworkError` when a loop of that id exists and is not restartable."""
    try:
        return ports.store.create_loop(state)
    except LoopFrameworkError as exists:
        if request.loop_id is None:
            raise
        try:
            stored = ports.store.get_state(state.loop_id)
        except LoopNotFoundError:
            raise exists from None
        if not restartable(stored, state.config):
            raise LoopFrameworkError(
                f"loop {state.loop_id} exists ({stored.phase.value}); only a loop whose first execution "
                "did not start may be started again, with the same config"
            ) from exists
        return stored


def _mark_not_started(
    state: LoopState, ports: CloudPorts, name: str, exc: Exception, *, what: str = "execution"
) -> None:
    """The compensation of a failed StartExecution (or CreateSchedule): INTERRUPTED, not active,
    an ERROR event."""
    state.phase, state.is_active = LoopPhase.INTERRUPTED, False
    record = EventCollector(state)
    verb = "did not start" if what == "execution" else "was not created"
    record(IterationEventType.ERROR, f"start: {what} {name} {verb}: {exc}"[:1000])
    ports.store.save_state(state, record.events)


def start_loop(
    request: StartLoopRequest,
    ports: CloudPorts,
    start_execution: ExecutionStarter,
    *,
    check_agent: Callable[[LoopConfig], None] | None = None,
    create_schedule: ScheduleCreator | None = None,
) -> StepInput:
    """Create the loop and start its first execution; returns the execution's input.

    ``check_agent`` refuses an agent the adapters cannot run (the handler passes
    :func:`loopwright.cloud.runtime.check_agent_for_adapters` for its adapters), so a python agent
    sent to AWS is a 400 here, not a failed iteration later.

    Raises :class:`ConfigError` (one line, naming the field) for an invalid config; nothing is
    stored then. Raises :class:`LoopFrameworkError` when the loop exists and is not
    :func:`restartable`, and :class:`LoopNotStartedError` when the execution did not start or
    ``create_schedule`` failed for a config with ``schedule`` (the loop is INTERRUPTED with an
    ERROR event; the same request starts it again).
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
    state = _stored(request, state, ports)
    record = EventCollector(state)
    workflow.start_session(state, record)
    if state.sessions_used == 1:  # the same events as the in-process engine
        pinning.record_pins(state, record)
    state = ports.store.save_state(state, record.events)
    event = StepInput(loop_id=loop_id, baseline=workflow.baseline_due(state))
    name = execution_name(loop_id, 0)
    if create_schedule is not None and config.schedule is not None:
        try:
            create_schedule(loop_id, config)
        except Exception as exc:  # any failure: compensate, then re-raise as LoopNotStartedError
            _mark_not_started(state, ports, f"schedule {config.schedule}", exc, what="recurring")
            raise LoopNotStartedError(
                loop_id,
                f"loop {loop_id}: its schedule {config.schedule} was not created ({exc}); "
                "retry with the same loop_id",
            ) from exc
    try:
        start_execution(name, event.model_dump_json())
    except Exception as exc:  # any failure: compensate, then re-raise as LoopNotStartedError
        _mark_not_started(state, ports, name, exc)
        raise LoopNotStartedError(
            loop_id, f"loop {loop_id}: execution {name} did not start ({exc}); retry with the same loop_id"
        ) from exc
    return event


def await_human(event: StepInput, ports: CloudPorts) -> None:
    """Keep the execution's task token on the loop, which waits (AWAITING_RESPONSE) until an
    operator approves it (the token is then sent back with SendTaskSuccess)."""
    state = ports.store.get_state(event.loop_id)
    state.task_token = event.task_token
    state.phase = LoopPhase.AWAITING_RESPONSE
    ports.store.save_state(state)
