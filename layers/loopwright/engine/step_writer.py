"""Writing a step of the in-process engine: its state, events and checkpoint in one transaction.

A step's events are collected while it runs and written with the state at its end. A checkpoint
the step takes is held by :class:`DeferredCheckpoints` until that same write when the store can
take both at once (:class:`~loopwright.ports.AtomicCheckpointStore`, the SQLite store): a crash
can then never leave a checkpoint without the state and the events of its iteration, or the
reverse (issue 11). Other stores get the checkpoint first, then the state.
"""

from __future__ import annotations

from loopwright.models import Checkpoint
from loopwright.ports import CheckpointStore


class DeferredCheckpoints(CheckpointStore):
    """A :class:`CheckpointStore` that keeps the newest checkpoint saved through it until
    :meth:`take`; reads go to ``target``. A second checkpoint before a take writes the first."""

    def __init__(self, target: CheckpointStore) -> None:
        self.target = target
        self._pending: tuple[Checkpoint, int] | None = None

    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        """Hold ``checkpoint`` (and its retention) for the step's state write."""
        if self._pending is not None:
            self.target.save(*self._pending)
        self._pending = (checkpoint, retention)

    def list_checkpoints(self, loop_id: str) -> list[Checkpoint | str]:
        """The target's checkpoints (a held one is not listed until it is written)."""
        return self.target.list_checkpoints(loop_id)

    def take(self) -> tuple[Checkpoint, int] | None:
        """The held checkpoint and its retention, or None; nothing is held afterwards."""
        pending, self._pending = self._pending, None
        return pending

    def put_back(self, pending: tuple[Checkpoint, int] | None) -> None:
        """Hold ``pending`` again (its write failed)."""
        if pending is not None and self._pending is None:
            self._pending = pending
