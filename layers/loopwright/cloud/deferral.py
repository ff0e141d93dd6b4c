"""Steps whose agent and checks run in the background: the pending output, the replay, the
waits (issue 12.5; the mechanism: :mod:`loopwright.deferred`).

A step run with :func:`run_deferred` and ports that hold a
:class:`~loopwright.deferred.DeferringSandbox` (AWS: over the Code Interpreter's background
tasks) either completes as it always did, or, while a command it started still runs, returns a
*pending* :class:`~loopwright.models.StepOutput` without writing anything: ``pending`` true, the
started tasks (``commands``), ``polls`` counted up (part of the step's idempotency key, so each
poll is a new invocation while a retry of one is not), the run's ``deferral_token``, the step
that is pending (``pending_step``), the input's ``baseline`` kept, and ``wait_seconds``
(:func:`~loopwright.deferred.next_wait`, from what the loop's last run of that command took:
``LoopState.agent_seconds``, each condition's last ``duration_seconds``). The state machine waits
that long and invokes the same step with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from loopwright.cloud.steps import CloudPorts
from loopwright.deferred import CommandPending, DeferringSandbox, next_wait, replaying
from loopwright.models import LoopState, StepInput, StepOutput

#: A step function of :mod:`loopwright.cloud.steps`.
StepFunction = Callable[[StepInput, CloudPorts], StepOutput]
#: The steps that run commands in the background.
PendingStep = Literal["baseline", "iterate", "evaluate"]


def expected_seconds(state: LoopState, key: str) -> float | None:
    """How long the command under ``key`` took last time (seconds), if the loop knows: the agent
    (``agent#0``) from ``state.agent_seconds``, a condition (``condition:<name>#0``) from its last
    status; None otherwise (its first run, or another command)."""
    base, _, number = key.rpartition("#")
    if number != "0":
        return None
    if base == "agent":
        return state.agent_seconds
    if base.startswith("condition:"):
        name = base.removeprefix("condition:")
        for status in state.exit_conditions:
            if status.name == name and status.duration_seconds > 0:
                return status.duration_seconds
    return None


def pending_output(
    event: StepInput,
    state: LoopState,
    deferring: DeferringSandbox,
    pending: CommandPending,
    step: PendingStep,
) -> StepOutput:
    """The pending output of ``step`` for ``event`` (see the module docstring)."""
    commands = deferring.running()
    task = commands[pending.key]
    wait = next_wait(
        deferring.elapsed(task),
        expected_seconds(state, pending.key),
        minimum=deferring.min_wait_seconds,
        maximum=deferring.max_wait_seconds,
    )
    return StepOutput.model_validate(
        {
            **event.model_dump(),
            "iteration": state.iteration,
            "pending": True,
            "commands": commands,
            "polls": event.polls + 1,
            "deferral_token": deferring.token,
            "pending_step": step,
            "wait_seconds": wait,
        }
    )


def run_deferred(step: StepFunction, event: StepInput, ports: CloudPorts, name: PendingStep) -> StepOutput:
    """Run ``step`` (called ``name``) for ``event``; its pending output while a command it started
    still runs (nothing written), else its output (the tasks it never reached are cancelled).
    Without ``ports.deferring``, ``step`` as it is."""
    deferring = ports.deferring
    if deferring is None:
        return step(event, ports)
    try:
        with replaying(deferring.first_started_at()):
            output = step(event, ports)
    except CommandPending as pending:
        return pending_output(event, ports.store.get_state(event.loop_id), deferring, pending, name)
    deferring.step_done()
    return output
