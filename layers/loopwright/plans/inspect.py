"""Inspection packets (seed 003 "Inspect"): what a planner needs to know about a loop."""

from __future__ import annotations

from collections.abc import Sequence

from loopwright.models import IterationEvent, LoopState
from loopwright.models.plans import MAX_PACKET_EVENTS, MAX_PACKET_FILES, InspectionPacket
from loopwright.plans.errors import PlanValidationError


def build_packet(
    state: LoopState, recent_events: Sequence[IterationEvent], changed_files: Sequence[str]
) -> InspectionPacket:
    """A packet of the loop ``state``: its goal, config, outcome, failing conditions (their
    parsed failures, without raw output), its last :data:`MAX_PACKET_EVENTS` events (of
    ``recent_events``, oldest first) and up to :data:`MAX_PACKET_FILES` ``changed_files``.

    Raises :class:`PlanValidationError` (field ``loop_id``) for a loop that has not ended: a
    running loop's failures are not final (wait for it, or stop it first).
    """
    if state.outcome is None:
        raise PlanValidationError(
            "loop_id",
            f"loop {state.loop_id} has not ended (phase {state.phase.value}); inspect it once it ends "
            "(or stop it first)",
        )
    failing = [c.model_copy(update={"stdout": "", "stderr": ""}) for c in state.failing_conditions]
    return InspectionPacket(
        project=state.project,
        loop_id=state.loop_id,
        workspace=state.workspace,
        goal=state.config.goal,
        loop_config=state.config,
        outcome=state.outcome,
        outcome_reason=state.outcome_reason,
        iterations=state.iteration,
        failing_conditions=failing,
        recent_events=list(recent_events)[-MAX_PACKET_EVENTS:],
        changed_files=list(changed_files)[:MAX_PACKET_FILES],
        branch=state.branch,
        base_commit=state.base_commit,
        head_commit=state.head_commit,
    )
