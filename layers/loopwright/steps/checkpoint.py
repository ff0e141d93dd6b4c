"""The checkpoint step: snapshot the loop, and recover the newest valid snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field

from loopwright.exceptions import CheckpointNotFoundError, CheckpointRecoveryError
from loopwright.models import Checkpoint, LoopState
from loopwright.ports import CheckpointStore


def checkpoint_due(state: LoopState) -> bool:
    """True when ``state.iteration`` is a multiple of ``config.checkpoint_interval``."""
    return state.iteration > 0 and state.iteration % state.config.checkpoint_interval == 0


def checkpoint(state: LoopState, checkpoints: CheckpointStore, commit: str | None) -> Checkpoint:
    """Store a checkpoint of ``state`` at git ``commit`` and prune to ``checkpoint_retention``."""
    ckpt = Checkpoint.from_loop_state(state, commit)
    checkpoints.save(ckpt, retention=state.config.checkpoint_retention)
    return ckpt


@dataclass(frozen=True)
class Recovery:
    """The checkpoint to resume from and the corrupt ones that were skipped (newest first)."""

    checkpoint: Checkpoint
    corrupt: list[str] = field(default_factory=list)


def recover(loop_id: str, checkpoints: CheckpointStore, checkpoint_id: str | None = None) -> Recovery:
    """The newest checkpoint of ``loop_id`` whose checksum is valid (or the one named).

    Corrupt checkpoints (unparsable, or checksum mismatch) are skipped and listed.
    Raises :class:`CheckpointRecoveryError` when none is usable, naming the corrupt ones
    (:class:`CheckpointNotFoundError` when the one named is not stored at all).
    """
    corrupt: list[str] = []
    entries = checkpoints.list_checkpoints(loop_id)
    for entry in entries:
        if isinstance(entry, str):
            corrupt.append(entry)
            continue
        if checkpoint_id is not None and entry.checkpoint_id != checkpoint_id:
            continue
        if entry.is_valid() and entry.loop_id == loop_id:
            return Recovery(entry, corrupt)
        corrupt.append(entry.checkpoint_id)
        if checkpoint_id is not None:
            break
    if checkpoint_id is not None and checkpoint_id not in corrupt:
        raise CheckpointNotFoundError(
            f"loop {loop_id!r} has no checkpoint {checkpoint_id!r}; "
            "list them with `loopwright events LOOP_ID --type CHECKPOINT_SAVED`"
        )
    detail = f" ({len(corrupt)} corrupt: {', '.join(corrupt)})" if corrupt else ""
    raise CheckpointRecoveryError(f"loop {loop_id!r} has no valid checkpoint to resume from{detail}")
