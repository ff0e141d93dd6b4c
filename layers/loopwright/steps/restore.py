"""What a resumed loop takes from a checkpoint, and how the restore is recorded: shared by the
in-process engine (:mod:`loopwright.engine.restore`) and the AWS resume
(:mod:`loopwright.cloud.resume`), so both continue from the same state.

A checkpoint gives the loop's progress (iteration, usage, conditions, head commit); what a human
or the engine changed since it was taken (limits, the policy set, the write version, sessions and
recovered errors) stays as stored. Before a workspace moves back to a checkpoint's commit,
:func:`keep_work` keeps what it would lose on refs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loopwright.models import Checkpoint, IterationEventType, LoopState
from loopwright.ports import Workspace

if TYPE_CHECKING:  # the workflow imports the steps: only the type is needed here
    from loopwright.workflow import Recorder

_EV = IterationEventType


def restored_state(stored: LoopState, ckpt: Checkpoint) -> LoopState:
    """The state a loop continues from when restored from ``ckpt`` (a valid checkpoint), with the
    fields of ``stored`` that must survive the restore."""
    state = ckpt.to_loop_state()
    state.config = stored.config  # limits a human changed after the checkpoint still apply
    state.version = stored.version  # the stored write this one follows (optimistic concurrency)
    state.sessions_used = stored.sessions_used
    state.agent_sessions = stored.agent_sessions  # sessions started count against max_sessions
    state.errors_recovered = stored.errors_recovered
    # The time limit counts the time the loop really ran (hard limits, issue 10.8), like sessions:
    # the stored state's, its session closed at its last write (the checkpoint's would count the
    # time since that session's start again, paused or not, at the next start_session).
    state.active_seconds, state.active_since = stored.active_seconds, stored.active_since
    if state.active_since is not None:
        state.active_seconds += max(0.0, (stored.updated_at - state.active_since).total_seconds())
        state.active_since = None
    state.policy_files = stored.policy_files  # the policy set the loop runs under (checked)
    if stored.iteration == ckpt.iteration and stored.evaluated_iteration == ckpt.iteration:
        # The stored state evaluated the same agent work after the checkpoint was taken.
        state.exit_conditions = stored.exit_conditions
        state.evaluated_iteration = stored.evaluated_iteration
        state.features_done = stored.features_done  # marked done by that evaluation
        state.progress = stored.progress.model_copy(deep=True)  # that evaluation's facts
    # The agent's notes and a stuck pause survive any restore (issue 10).
    state.progress.notes = stored.progress.notes
    state.progress.stuck_reason = stored.progress.stuck_reason
    return state


def record_corrupt(record: Recorder, corrupt: list[str], used: Checkpoint | None) -> None:
    """One CHECKPOINT_CORRUPT event per skipped checkpoint id in ``corrupt`` (newest first),
    naming the checkpoint ``used`` instead (None: the loop continues from its stored state)."""
    instead = (
        f"using {used.checkpoint_id} of iteration {used.iteration}"
        if used is not None
        else "continuing from the stored state"
    )
    for checkpoint_id in corrupt:
        record(
            _EV.CHECKPOINT_CORRUPT,
            f"checkpoint {checkpoint_id} is corrupt (checksum mismatch); {instead}",
            checkpoint_id=checkpoint_id,
        )


def record_recovered(record: Recorder, ckpt: Checkpoint, skipped_corrupt: int) -> None:
    """CHECKPOINT_RECOVERED: the loop continues from ``ckpt``."""
    record(
        _EV.CHECKPOINT_RECOVERED,
        f"restored checkpoint {ckpt.checkpoint_id} of iteration {ckpt.iteration}",
        checkpoint_id=ckpt.checkpoint_id,
        commit=ckpt.commit,
        skipped_corrupt=skipped_corrupt,
    )


def keep_work(
    state: LoopState,
    workspace: Workspace,
    record: Recorder,
    target: str | None,
    *,
    recorded: Callable[[str], bool] = lambda ref: False,
) -> None:
    """Before the worktree of ``state``'s loop is reset to ``target``: keep its uncommitted
    changes (the partial work of iteration ``state.iteration + 1``, interrupted) and the branch's
    commits after ``target`` on refs, and record where (WORK_SALVAGED, COMMITS_SET_ASIDE).
    ``target`` None keeps only the uncommitted changes. ``recorded(ref)`` tells whether a
    WORK_SALVAGED event already names ``ref``: changes an earlier attempt kept are recorded once,
    even when that attempt died between keeping and recording them."""
    interrupted = state.iteration + 1
    saved = workspace.salvage(state.loop_id, str(interrupted))
    if saved is not None and not (saved.earlier and recorded(saved.ref)):
        record(
            _EV.WORK_SALVAGED,
            f"uncommitted changes of interrupted iteration {interrupted} ({len(saved.files)} "
            f"file(s)) kept on {saved.ref}",
            iteration=interrupted,
            ref=saved.ref,
            commit=saved.commit,
            files=saved.files[:100],
        )
    if target is None:
        return
    aside = workspace.set_aside(state.loop_id, target, f"session-{state.sessions_used + 1}")
    if aside is not None:
        record(
            _EV.COMMITS_SET_ASIDE,
            f"{len(aside.commits)} commit(s) after {target[:12]} are not in the state being "
            f"restored; the branch moves back and they stay reachable on {aside.ref}",
            ref=aside.ref,
            commit=aside.commit,
            commits=aside.commits,
        )
