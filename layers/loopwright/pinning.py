"""Pinned checks in the loop (issue 15.1): the transitions that pin a loop's checks, hold an
iteration that changed them, and settle the hold once a human answered.

:mod:`loopwright.steps.pins` says what is pinned and asks Cedar; the functions here apply that to
a :class:`~loopwright.models.LoopState` and the loop's :class:`~loopwright.ports.Workspace`, and
record the events, like :mod:`loopwright.workflow`:

1. :func:`record_pins` (a new loop's first session): CHECKS_PINNED lists the pins.
2. :func:`guard_pins` (after the iteration's commit, before its evaluation): the pinned files the
   iteration changed go to Cedar (``ChangePinnedFile``). Allowed: PINNED_CHANGE_ALLOWED and the
   loop goes on. Denied (by default ``pinned-checks``): the iteration is not evaluated; its commit
   is kept on ``refs/loopwright/<loop_id>/set-aside/pinned-iteration-<n>``, the branch moves
   back, PINNED_CHANGE_REVERTED is recorded and the loop waits for a human (AWAIT_HUMAN).
3. :func:`settle_hold` (the next session's start, after ``loopwright approve``): an accepted change
   (``--accept-pinned-change``) moves the branch to the kept commit, so the pin moves
   (PINNED_CHANGE_ACCEPTED) and the iteration is evaluated; otherwise it stays reverted
   (PINNED_CHANGE_REJECTED) and the agent's next prompt says so.
"""

from __future__ import annotations

from loopwright.models import Decision, IterationEventType, IterationResult, LoopState, NextAction
from loopwright.models.pins import PinnedChangeHold
from loopwright.ports import PolicyEngine, Workspace
from loopwright.steps.pins import authorize_pinned_changes, find_pinned_changes, pin_rules
from loopwright.workflow import Recorder

_EV = IterationEventType


def record_pins(state: LoopState, record: Recorder) -> None:
    """Record CHECKS_PINNED: what the loop's checks depend on (``pins``: one line each); the
    message says when they are not enforced (``git_isolation`` off: iterations are not committed).
    Both engines record it when a loop starts (the in-process one, and the Step Functions one in
    ``loopwright.cloud.start`` / ``loopwright.cloud.steps.start_step``)."""
    pins = pin_rules(state.config).describe()
    if not state.config.git_isolation:
        why = " (not enforced: git_isolation is off, iterations are not committed)"
    else:
        why = ""
    record(
        _EV.CHECKS_PINNED,
        f"{len(pins)} pins on the checks' files{why}",
        iteration=0,
        pins=pins,
        allow_test_changes=state.config.allow_test_changes or None,
        commit=state.head_commit,
    )


def guard_pins(
    state: LoopState,
    result: IterationResult,
    previous_head: str | None,
    workspace: Workspace,
    policy: PolicyEngine,
    record: Recorder,
) -> Decision | None:
    """Check the iteration's commit against the pins (see the module docstring).

    ``previous_head`` is the branch's commit before the iteration. Returns None when the loop
    goes on to evaluate the iteration, else the AWAIT_HUMAN decision (``state.pinned_hold`` is
    set, ``state.head_commit`` is ``previous_head`` again). Raises
    :class:`~loopwright.exceptions.WorkspaceError` when the branch cannot be moved back.
    """
    if result.commit is None or not result.changed_files or previous_head is None:
        return None
    loop_id, commit = state.loop_id, result.commit
    changes = find_pinned_changes(
        state.config,
        result.changed_files,
        before=lambda path: workspace.file_text(loop_id, previous_head, path),
        after=lambda path: workspace.file_text(loop_id, commit, path),
    )
    if not changes:
        return None
    verdict = authorize_pinned_changes(state, changes, policy)
    paths = [c.path for c in changes]
    if not verdict.denied:
        record(
            _EV.PINNED_CHANGE_ALLOWED,
            f"iteration {result.iteration} changed pinned files, allowed by "
            f"{', '.join(repr(p) for p in verdict.policy_ids)}: {', '.join(paths[:20])}",
            paths=paths,
            policy_ids=verdict.policy_ids,
            commit=commit,
        )
        return None
    saved = workspace.set_aside(loop_id, previous_head, f"pinned-iteration-{result.iteration}")
    workspace.reset(loop_id, previous_head)
    state.head_commit = previous_head
    hold = PinnedChangeHold(
        iteration=result.iteration,
        commit=commit,
        ref=saved.ref if saved else None,
        reverted_to=previous_head,
        changes=verdict.denied,
        denied_by=verdict.policy_ids,
    )
    state.pinned_hold = hold
    record(
        _EV.PINNED_CHANGE_REVERTED,
        f"{hold.describe()}; reverted, not evaluated (policy "
        f"{', '.join(repr(p) for p in verdict.policy_ids)})",
        paths=[c.path for c in verdict.denied],
        kinds=sorted({c.kind for c in verdict.denied}),
        ref=hold.ref,
        commit=commit,
        reverted_to=previous_head,
        policy_ids=verdict.policy_ids,
    )
    return hold_decision(state)


def hold_decision(state: LoopState) -> Decision:
    """The AWAIT_HUMAN decision of the iteration ``state.pinned_hold`` holds (its reason says
    how to accept or refuse the change). Raises ValueError when nothing is held."""
    hold = state.pinned_hold
    if hold is None:
        raise ValueError(f"loop {state.loop_id!r} holds no change to pinned files")
    loop_id = state.loop_id
    return Decision(
        action=NextAction.AWAIT_HUMAN,
        reason=(
            f"{hold.describe()}, which the checks depend on; it was reverted. "
            f"`loopwright approve {loop_id} --accept-pinned-change` accepts it (the pin moves), "
            f"`loopwright approve {loop_id}` leaves it reverted"
        ),
    )


def settle_hold(state: LoopState, workspace: Workspace, record: Recorder) -> None:
    """Apply a human's answer to ``state.pinned_hold`` (none: nothing happens) and clear it.

    Accepted (``accepted_by``): the branch moves to the kept commit, ``state.head_commit`` too
    (PINNED_CHANGE_ACCEPTED). Not accepted, or a session started without an answer: the change
    stays reverted (PINNED_CHANGE_REJECTED) and ``state.human_response`` tells the agent.
    Raises :class:`~loopwright.exceptions.WorkspaceError` when the branch cannot be moved.
    """
    hold = state.pinned_hold
    if hold is None:
        return
    paths = [c.path for c in hold.changes]
    if hold.answered and hold.accepted_by:
        workspace.reset(state.loop_id, hold.commit)
        state.head_commit = hold.commit
        record(
            _EV.PINNED_CHANGE_ACCEPTED,
            f"{hold.describe()}; accepted by {hold.accepted_by}: the pin moved to {hold.commit[:12]}",
            paths=paths,
            commit=hold.commit,
            principal=hold.accepted_by,
        )
    else:
        note = (
            f"Your change to files the checks depend on ({', '.join(paths[:20])}) was reverted "
            "and a human did not accept it: do not change them; change the code instead."
        )
        state.human_response = f"{state.human_response}\n\n{note}" if state.human_response else note
        record(
            _EV.PINNED_CHANGE_REJECTED,
            f"{hold.describe()}; "
            + ("not accepted: it stays reverted" if hold.answered else "no answer: it stays reverted"),
            paths=paths,
            commit=hold.commit,
        )
    state.pinned_hold = None
