"""Resuming a loop in the in-process engine: which state it continues from, and what of the
worktree is kept before it is reset (issue 11: nothing lost, nothing run twice).

A loop paused cleanly (AWAITING_RESPONSE, PAUSED) continues from its stored state; its worktree is
reopened, which repairs what an agent changed in the worktree's git set-up. Any other resumed
loop may have died mid-step: its state and worktree are restored from its newest valid checkpoint
(corrupt ones are reported and skipped). Before the worktree is reset, its uncommitted changes
(the partial work of the interrupted iteration) and the branch's commits after the checkpoint are
kept on refs and recorded (WORK_SALVAGED, COMMITS_SET_ASIDE), so a reset never loses work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

from loopwright.engine.host import EngineHost
from loopwright.exceptions import CheckpointRecoveryError, LoopFrameworkError
from loopwright.models import Checkpoint, IterationEventType, LoopPhase, LoopState
from loopwright.ports import CheckpointStore, Workspace
from loopwright.steps.checkpoint import recover
from loopwright.steps.restore import keep_work, record_corrupt, record_recovered, restored_state
from loopwright.workflow import Recorder

_EV = IterationEventType


class Restored(NamedTuple):
    """The state a resumed loop continues from, the checkpoint it came from, and how many newer
    corrupt checkpoints were skipped."""

    state: LoopState
    checkpoint: Checkpoint
    skipped_corrupt: int


def restore_loop(
    stored: LoopState,
    *,
    checkpoints: CheckpointStore,
    workspace: Callable[[], Workspace],
    record: Recorder,
    resume_from: str | Checkpoint | None,
    recorded: Callable[[str], bool] = lambda ref: False,
) -> Restored | None:
    """Prepare the worktree of a resumed loop and say what state it continues from.

    Args:
        stored: the loop's stored state.
        checkpoints: where its checkpoints are.
        workspace: gives the loop's workspace (built only when needed).
        record: records CHECKPOINT_CORRUPT, WORK_SALVAGED and COMMITS_SET_ASIDE.
        recorded: whether a WORK_SALVAGED event names a ref already (see :func:`keep_work`).
        resume_from: a checkpoint, its id, ``"latest"`` or None (newest valid one; a paused
            loop then continues from its stored state).

    Returns None when the loop continues from ``stored``, else the restored state.
    Raises :class:`CheckpointRecoveryError` when no valid checkpoint exists (or the one named is
    corrupt or unknown), except for a loop that died in iteration 1 before any checkpoint: that
    one starts over from its base commit.
    """
    if stored.phase in (LoopPhase.AWAITING_RESPONSE, LoopPhase.PAUSED) and resume_from is None:
        workspace().prepare(stored.loop_id)
        return None
    if isinstance(resume_from, Checkpoint):
        if not resume_from.is_valid():
            raise CheckpointRecoveryError(f"checkpoint {resume_from.checkpoint_id} is corrupt")
        ckpt, corrupt = resume_from, []
    else:
        wanted = None if resume_from in (None, "latest") else resume_from
        try:
            recovery = recover(stored.loop_id, checkpoints, wanted)
        except CheckpointRecoveryError:
            if wanted is None and stored.iteration == 0:
                # Died during iteration 1, before any checkpoint: start over from the base.
                if stored.base_commit:
                    workspace().prepare(stored.loop_id)
                    keep_work(stored, workspace(), record, stored.base_commit, recorded=recorded)
                    workspace().reset(stored.loop_id, stored.base_commit)
                return None
            raise
        ckpt, corrupt = recovery.checkpoint, recovery.corrupt
    record_corrupt(record, corrupt, ckpt)
    state = restored_state(stored, ckpt)
    if ckpt.commit:
        workspace().prepare(stored.loop_id)
        keep_work(stored, workspace(), record, ckpt.commit, recorded=recorded)
        workspace().reset(stored.loop_id, ckpt.commit)
    return Restored(state, ckpt, len(corrupt))


def interrupt(
    state: LoopState,
    workspace: Workspace | None,
    record: Recorder,
    reason: str,
    *,
    save: Callable[[LoopState], None],
    recorded: Callable[[str], bool] = lambda ref: False,
) -> None:
    """A run interrupted (Ctrl-C, SIGTERM, SIGHUP): keep the work of an agent interrupted
    mid-iteration on a salvage ref (its processes are gone: the sandbox ended them as the
    interrupt unwound), then store the loop INTERRUPTED with ``reason`` (best effort: a failed
    write leaves the stored state, which a resume restores from its checkpoint anyway)."""
    if state.phase is LoopPhase.ITERATING and workspace is not None:
        with contextlib.suppress(LoopFrameworkError):
            keep_work(state, workspace, record, None, recorded=recorded)
    state.phase = LoopPhase.INTERRUPTED
    state.is_active = False
    state.close_active_time()
    state.outcome_reason = reason
    with contextlib.suppress(LoopFrameworkError):
        save(state)


class Restoring(EngineHost):
    """How :class:`~loopwright.engine.framework.LoopFramework` continues from a checkpoint and
    leaves an interrupted run; the host class provides the ports and the event recorder."""

    _state: LoopState | None
    _workspace_adapter: Workspace | None

    def _restore(self, resume_from: str | Checkpoint | None) -> None:
        """Continue from a checkpoint (see :func:`loopwright.engine.restore.restore_loop`)."""
        restored = restore_loop(
            self.get_state(),
            checkpoints=self.checkpoints,
            workspace=self._workspace,
            record=self.emit_event,
            resume_from=resume_from,
            recorded=self._salvage_recorded,
        )
        if restored is not None:
            self._state = restored.state
            record_recovered(self.emit_event, restored.checkpoint, restored.skipped_corrupt)

    def _salvage_recorded(self, ref: str) -> bool:
        return self._writer.recorded(self.loop_id, IterationEventType.WORK_SALVAGED, ref=ref)

    def _interrupt(self, reason: str) -> None:
        if self._state is not None:
            interrupt(
                self._state,
                self._workspace_adapter,
                self.emit_event,
                reason,
                save=self._writer.save,
                recorded=self._salvage_recorded,
            )
