"""The agent's record of each iteration, kept by the in-process engine (issue 9, point 3).

:class:`IterationRecorder` is called at three points of an iteration (see
:mod:`loopwright.engine.drive`): :meth:`~IterationRecorder.begin` before the agent runs (the
prompt), :meth:`~IterationRecorder.agent_done` after the iteration's state write (output, usage,
exit code, duration, commit and its diff stat) and :meth:`~IterationRecorder.evaluated` after the
evaluation (each condition's result). While the agent works, its output goes through
:meth:`~IterationRecorder.observer`, which keeps it bounded (:class:`OutputBuffer`) and, for an
agent in another process, rewrites the record every :data:`FLUSH_SECONDS` so ``loopwright logs
--follow`` shows it as it comes.

The record itself is built by :mod:`loopwright.records`, which the Step Functions steps use too;
this module adds the live output. Writing a record never breaks a loop: a store error is logged (a
warning) and the loop goes on; a store without records (``NotImplementedError``) is noted once, at
debug level (:class:`~loopwright.records.RecordKeeper`). An agent that runs in loopwright's own
process (a Python function, often microseconds) gets no write before it runs and no periodic
write, so a fast loop pays two small writes per iteration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from loopwright.models import IterationResult, LoopState
from loopwright.models.records import IterationRecord, OutputBuffer
from loopwright.ports import LoopStore, OutputCallback, Workspace
from loopwright.records import RecordKeeper, finish_record, start_record

#: Seconds between two writes of a working agent's output to its record (``logs --follow``).
FLUSH_SECONDS = 2.0


class IterationRecorder:
    """Keeps the record of the running iteration and writes it to ``store``, never raising.

    Args:
        store: where records go (:meth:`LoopStore.save_iteration_record`).
        flush_seconds: seconds between writes of the output while the agent works.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        store: LoopStore,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._keeper = RecordKeeper(store)
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()  # the record and the buffer
        self._write_lock = threading.Lock()  # one write at a time
        self._record: IterationRecord | None = None
        self._buffer = OutputBuffer()
        self._live = False
        self._last_flush = 0.0

    # ----------------------------------------------------------------------------- the three points
    def begin(self, state: LoopState, state_dir: Path, *, live: bool) -> None:
        """Start the record of iteration ``state.iteration + 1`` with the prompt the agent is
        given; with ``live`` (an agent in another process) write it now and its output every
        :attr:`flush_seconds` while it works."""
        record = start_record(state, state_dir)
        with self._lock:
            self._record = record
            self._buffer = OutputBuffer()
            self._live = live
            self._last_flush = self._clock()
        if live:
            self._write(record)

    def observer(self, downstream: OutputCallback | None) -> OutputCallback:
        """An output callback that keeps the agent's output in the record, then passes it on to
        ``downstream`` (the caller's, such as the CLI's live tail)."""

        def observe(stream: str, text: str) -> None:
            self._add(text)
            if downstream is not None:
                downstream(stream, text)

        return observe

    def agent_done(self, state: LoopState, result: IterationResult, workspace: Workspace) -> None:
        """Complete the record with the agent's result and the diff stat of its commit, and
        write it (after the iteration's state write)."""
        with self._lock:
            record, output = self._record, self._buffer.snapshot()
            self._live = False  # no flush of the working agent's output from now on
        done = finish_record(record, state, result, output, workspace)
        with self._lock:
            self._record = done
        self._write(done)

    def evaluated(self, state: LoopState) -> None:
        """Add the evaluation of iteration ``state.evaluated_iteration`` to its record (read
        back from the store after a resume) and write it. Iteration 0 (a baseline) has none."""
        with self._lock:
            known = self._record
        with self._write_lock:
            record = self._keeper.add_evaluation(state, known)
        if record is not None:
            with self._lock:
                self._record = record

    # ----------------------------------------------------------------------------- internals
    def _add(self, text: str) -> None:
        flush = None
        with self._lock:
            self._buffer.add(text)
            if (
                self._live
                and self._record is not None
                and self._clock() - self._last_flush >= self.flush_seconds
            ):
                self._last_flush = self._clock()
                flush = self._record.model_copy(update={"output": self._buffer.snapshot()})
        if flush is not None:
            self._write(flush, live=True)

    def _write(self, record: IterationRecord, *, live: bool = False) -> None:
        with self._write_lock:  # a late flush never overwrites the agent's final record
            with self._lock:
                if live and not self._live:
                    return
            self._keeper.save(record)
