"""Where a resumed AWS loop continues from: its stored state (DynamoDB) or an AgentCore Memory
checkpoint, decided as the in-process engine decides (:func:`loopwright.engine.restore.restore_loop`)
with the same core (:func:`loopwright.steps.checkpoint.recover`,
:func:`loopwright.steps.restore.restored_state`):

- a checkpoint named by the resume (``ControlRequest.checkpoint_id``): that one, checksum verified;
  unknown: :class:`~loopwright.exceptions.CheckpointNotFoundError`, corrupt:
  :class:`~loopwright.exceptions.CheckpointRecoveryError` (nothing is written);
- else a loop paused cleanly (PAUSED, AWAITING_RESPONSE) continues from its stored state;
- else (stopped, failed, limit-ended) the newest valid checkpoint, corrupt newer ones skipped
  (CHECKPOINT_CORRUPT). When it is the stored state's own iteration and commit, the loop continues
  from the stored state, as before; otherwise from the checkpoint (CHECKPOINT_RECOVERED), and the
  first step of the new execution moves the session's clone back to the checkpoint's commit
  (:func:`loopwright.cloud.runtime_aws.rewind_workspace`, later commits set aside).

Unlike the in-process engine, a loop with no usable checkpoint is not refused: Memory events
expire (``event_expiry_days``) and the stored state is in DynamoDB, so it continues from the stored
state, with an ERROR event when checkpoints exist but none is valid or Memory cannot be read.
"""

from __future__ import annotations

from typing import NamedTuple

from loopwright.exceptions import CheckpointRecoveryError, LoopFrameworkError
from loopwright.models import Checkpoint, IterationEventType, LoopPhase, LoopState
from loopwright.ports import CheckpointStore
from loopwright.steps.checkpoint import recover
from loopwright.steps.restore import record_corrupt, record_recovered, restored_state
from loopwright.workflow import Recorder

#: Fields of the stored state that belong to the AWS run, not to the loop's progress: a restored
#: state keeps them (the generation names the next execution; the session holds the clone).
_RUN_FIELDS = ("generation", "sandbox_session_id", "worktree", "branch", "project", "workspace")


class ResumePoint(NamedTuple):
    """What a resume continues from: ``state`` None is the stored state."""

    state: LoopState | None = None
    checkpoint: Checkpoint | None = None
    corrupt: list[str] = []
    problem: str | None = None  # why no checkpoint could be used (recorded as ERROR)

    def record(self, record: Recorder) -> None:
        """Record the restore (CHECKPOINT_CORRUPT, CHECKPOINT_RECOVERED) or the problem (ERROR)."""
        record_corrupt(record, self.corrupt, self.checkpoint if self.state is not None else None)
        if self.state is not None and self.checkpoint is not None:
            record_recovered(record, self.checkpoint, len(self.corrupt))
        if self.problem:
            record(IterationEventType.ERROR, self.problem[:1000])


def resume_point(stored: LoopState, checkpoints: CheckpointStore, checkpoint_id: str | None) -> ResumePoint:
    """Where ``stored``'s loop continues (see the module docstring); nothing is written.

    Raises :class:`~loopwright.exceptions.CheckpointRecoveryError` (and its
    :class:`~loopwright.exceptions.CheckpointNotFoundError`) for a named checkpoint that is
    corrupt or unknown, and :class:`~loopwright.exceptions.LoopFrameworkError` when Memory cannot
    be read for a named one.
    """
    if checkpoint_id is None and stored.phase in (LoopPhase.PAUSED, LoopPhase.AWAITING_RESPONSE):
        return ResumePoint()
    try:
        recovery = recover(stored.loop_id, checkpoints, checkpoint_id)
    except CheckpointRecoveryError as exc:
        if checkpoint_id is not None:
            raise
        if not checkpoints.list_checkpoints(stored.loop_id):
            return ResumePoint()  # none taken yet (or all expired): the stored state, as before
        return ResumePoint(problem=f"{exc}; continuing from the stored state")
    except LoopFrameworkError as exc:
        if checkpoint_id is not None:
            raise
        return ResumePoint(problem=f"checkpoints could not be read ({exc}); continuing from the stored state")
    ckpt = recovery.checkpoint
    same = ckpt.iteration == stored.iteration and ckpt.commit == stored.head_commit
    if checkpoint_id is None and same:
        return ResumePoint(corrupt=recovery.corrupt)
    state = restored_state(stored, ckpt)
    for name in _RUN_FIELDS:
        setattr(state, name, getattr(stored, name))
    state.base_commit = stored.base_commit or state.base_commit
    state.task_token = None
    return ResumePoint(state, ckpt, recovery.corrupt)
