"""What a running loop's queued controls ask of it at a step boundary (:func:`apply_controls`),
shared by both engines through :mod:`loopwright.workflow`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from loopwright.models import ControlAction, ControlRequest, IterationEventType, LoopState

if TYPE_CHECKING:  # the workflow imports this module: only the types are needed here
    from loopwright.ports import LoopStore
    from loopwright.workflow import Recorder


class Halt(NamedTuple):
    """What queued controls ask of the loop at a step boundary (see :func:`apply_controls`)."""

    stop_reason: str | None
    pause_reason: str | None
    applied: list[str]  # control ids applied now (RAISE_LIMIT); the caller clears them once saved


def apply_controls(state: LoopState, controls: Sequence[ControlRequest], record: Recorder) -> Halt:
    """Apply a running loop's queued controls (:class:`loopwright.controls.ControlService` queued
    them after Cedar allowed them): RAISE_LIMIT changes ``state.config`` now (CONTROL_APPLIED);
    the first STOP or PAUSE is returned for the decide step and stays queued until the next
    session starts (``LoopStore.clear_stop``), so a crash before the loop ends keeps it."""
    stop = pause = None
    applied: list[str] = []
    for control in controls:
        if control.action is ControlAction.RAISE_LIMIT and control.limits is not None:
            changes = control.limits.model_dump(exclude_none=True)
            state.config = state.config.model_copy(update=changes)
            record(
                IterationEventType.CONTROL_APPLIED,
                f"limits changed by {control.principal}: "
                + ", ".join(f"{name}={value}" for name, value in changes.items()),
                control=control.action.value,
                principal=control.principal,
                **changes,
            )
            applied.append(control.control_id)
        elif control.action is ControlAction.STOP and stop is None:
            stop = control.reason or f"by {control.principal}"
        elif control.action is ControlAction.PAUSE and pause is None:
            pause = control.reason or f"by {control.principal}"
    return Halt(stop, pause, applied)


def stop_now_requested(store: LoopStore, loop_id: str) -> bool:
    """True when a ``stop --now`` (a STOP with ``now``) is queued for the loop: what the
    sandbox asks while the agent or a condition runs, to end it at once (issue 10 point 8)."""
    return any(
        control.action is ControlAction.STOP and control.now for control in store.pending_controls(loop_id)
    )
