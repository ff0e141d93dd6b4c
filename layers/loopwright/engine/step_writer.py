"""Writing a step of the in-process engine: its state, events and checkpoint in one transaction.

A step's events are collected while it runs and written with the state at its end. A checkpoint
the step takes is held by :class:`DeferredCheckpoints` until that same write when the store can
take both at once (:class:`~loopwright.ports.AtomicCheckpointStore`, the SQLite store): a crash
can then never leave a checkpoint without the state and the events of its iteration, or the
reverse (issue 11). Other stores get the checkpoint first, then the state.

An iteration whose agent is fast is written once: the decide step's result waits for the next
iteration's write, and the start of the iteration is written with its end
(:class:`DelayedStartWrite`). Crash safety does not depend on those two writes: a resumed loop
continues from its newest checkpoint, re-evaluating an iteration whose evaluation was not stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import cast

from loopwright.exceptions import LoopFrameworkError
from loopwright.models import Checkpoint, IterationEvent, IterationEventType, LoopState, utcnow
from loopwright.ports import AtomicCheckpointStore, CheckpointStore, LoopStore

logger = logging.getLogger(__name__)


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


#: Seconds an agent works before the start of its iteration is written on its own (at most about
#: twice this: the writer looks every this many seconds). A faster agent's start is written with the
#: rest of its iteration, in one transaction.
START_WRITE_DELAY_SECONDS = 0.05


class StartWriter:
    """Writes the start of an iteration (the state as the agent got it, and the events recorded
    since the last write) from a background thread once the agent has worked for ``delay``
    seconds, so an operator sees a slow agent's iteration begin, while a fast agent's iteration
    costs one transaction instead of two.

    One thread per run, started at the first :meth:`arm` and ended by :meth:`close`; it looks
    every ``delay`` seconds, so the engine thread never waits for it (a thread per iteration, or
    a wake-up per arm, would make the engine wait for the interpreter lock). ``snapshot`` is a
    shallow copy of the state taken before the agent starts: nothing changes the state while the
    agent works, and the engine replaces (never mutates) its fields afterwards, so the writer
    never reads what the engine writes. :meth:`settle` (engine thread) disarms it, waiting for a
    write in progress, and says whether the write happened.
    """

    def __init__(self, store: LoopStore, *, delay: float = START_WRITE_DELAY_SECONDS) -> None:
        self._store = store
        self._delay = delay
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._armed: tuple[LoopState, list[IterationEvent], float] | None = None
        self._written: tuple[int, int] | None = None

    def arm(self, snapshot: LoopState, events: Sequence[IterationEvent]) -> None:
        """Write ``snapshot`` and ``events`` unless :meth:`settle` comes within the delay."""
        with self._lock:
            self._armed = (snapshot, list(events), time.monotonic() + self._delay)
            self._written = None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="loopwright-start-writer", daemon=True)
            self._thread.start()

    def settle(self) -> tuple[int, int] | None:
        """Disarm; ``(new stored version, events written)`` when the start was written, else
        None (the engine's next write then carries it)."""
        with self._lock:
            self._armed = None
            written, self._written = self._written, None
            return written

    def close(self) -> None:
        """End the thread (idempotent)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._closed.wait(self._delay):
            with self._lock:
                if self._armed is None or time.monotonic() < self._armed[2]:
                    continue
                snapshot, events, _ = self._armed
                self._armed = None
                try:
                    self._written = (self._store.save_state(snapshot, events).version, len(events))
                except LoopFrameworkError as exc:  # the engine's next write carries the same data
                    logger.warning("loopwright: the start of an iteration could not be written: %s", exc)


class StepWriter:
    """How the in-process engine writes one loop's steps (see the module docstring).

    Args:
        store: the loop store.
        checkpoints: the checkpoint store; when it is ``store`` and ``store`` is an
            :class:`AtomicCheckpointStore`, a step's checkpoint goes into its state write.

    ``pending`` holds the events recorded since the last write; :attr:`checkpoints` is where the
    steps save checkpoints.
    """

    def __init__(self, store: LoopStore, checkpoints: CheckpointStore) -> None:
        self.store = store
        self.pending: list[IterationEvent] = []
        atomic = cast(object, checkpoints) is store and isinstance(store, AtomicCheckpointStore)
        self._atomic: AtomicCheckpointStore | None = store if atomic else None  # type: ignore[assignment]
        self._deferred = DeferredCheckpoints(checkpoints) if atomic else None
        self.checkpoints: CheckpointStore = self._deferred if self._deferred is not None else checkpoints
        self._start = StartWriter(store)

    def flush_events(self) -> None:
        """Write the pending events on their own (outside a run, or when a run ends by an error)."""
        if self.pending:
            self.store.append_events(self.pending)
            self.pending = []

    def save(self, state: LoopState) -> None:
        """Write ``state`` with the pending events (and a held checkpoint) in one transaction;
        ``state.version`` moves (one state object lives for a whole run: observers hold it).
        On a failed write the events and checkpoint stay pending. Raises what the store raises."""
        state.updated_at = utcnow()
        events, self.pending = self.pending, []
        held = self._deferred.take() if self._deferred is not None else None
        try:
            if held is not None and self._atomic is not None:
                state.version = self._atomic.save_state_with_checkpoint(state, events, *held).version
            else:
                state.version = self.store.save_state(state, events).version
        except LoopFrameworkError:
            self.pending = events + self.pending
            if self._deferred is not None:
                self._deferred.put_back(held)
            raise

    def write_start_later(self, state: LoopState) -> None:
        """Write ``state`` as it is now, with the pending events, if the agent that starts now
        works for a while (:class:`StartWriter`); :meth:`settle` when it is done."""
        self._start.arm(state.model_copy(update={"updated_at": utcnow()}), self.pending)

    def settle(self, state: LoopState) -> None:
        """Account for a start write made meanwhile: the stored version moved, and the events it
        wrote (the oldest pending ones) are no longer pending."""
        written = self._start.settle()
        if written is not None:
            state.version, count = written
            del self.pending[:count]

    def recorded(self, loop_id: str, event_type: IterationEventType, **data: object) -> bool:
        """True when an event of ``event_type`` whose data holds ``data`` is stored or pending."""
        stored = self.store.list_events(loop_id, types=[event_type])
        return any(
            e.type is event_type and all(e.data.get(k) == v for k, v in data.items())
            for e in [*stored, *self.pending]
        )

    def close(self) -> None:
        """End the start writer's thread (at the end of a run)."""
        self._start.close()
