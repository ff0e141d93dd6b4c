"""The agent's record of each iteration, kept by the in-process engine (issue 9, point 3).

:class:`IterationRecorder` is called at three points of an iteration (see
:mod:`loopwright.engine.drive`): :meth:`~IterationRecorder.begin` before the agent runs (the
prompt), :meth:`~IterationRecorder.agent_done` after the iteration's state write (output, usage,
exit code, duration, commit and its diff stat) and :meth:`~IterationRecorder.evaluated` after the
evaluation (each condition's result). While the agent works, its output goes through
:meth:`~IterationRecorder.observer`, which keeps it bounded (:class:`OutputBuffer`) and, for an
agent in another process, rewrites the record every :data:`FLUSH_SECONDS` so ``loopwright logs
--follow`` shows it as it comes.

Writing a record never breaks a loop: a store error is logged (a warning) and the loop goes on;
a store without records (``NotImplementedError``) is noted once, at debug level. An agent that
runs in loopwright's own process (a Python function, often microseconds) gets no write before
it runs and no periodic write, so a fast loop pays two small writes per iteration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from loopwright.exceptions import LoopFrameworkError, WorkspaceError
from loopwright.models import IterationResult, LoopState
from loopwright.models.records import DiffStat, IterationRecord, OutputBuffer
from loopwright.ports import LoopStore, OutputCallback, Workspace
from loopwright.steps.iterate import build_agent_request
from loopwright.steps.prompt import render_prompt

logger = logging.getLogger(__name__)

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
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()  # the record and the buffer
        self._write_lock = threading.Lock()  # one write at a time
        self._record: IterationRecord | None = None
        self._buffer = OutputBuffer()
        self._live = False
        self._last_flush = 0.0
        self._unsupported = False

    # ----------------------------------------------------------------------------- the three points
    def begin(self, state: LoopState, state_dir: Path, *, live: bool) -> None:
        """Start the record of iteration ``state.iteration + 1`` with the prompt the agent is
        given; with ``live`` (an agent in another process) write it now and its output every
        :attr:`flush_seconds` while it works."""
        try:
            prompt = render_prompt(build_agent_request(state, state_dir))
        except (ValueError, OSError) as exc:  # the request is built again by the iterate step
            prompt = f"(the prompt could not be rendered: {exc})"
        with self._lock:
            self._record = IterationRecord(
                loop_id=state.loop_id, iteration=state.iteration + 1, prompt=prompt
            )
            self._buffer = OutputBuffer()
            self._live = live
            self._last_flush = self._clock()
        if live:
            self._write(self._record)

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
        diff_stat = self._diff_stat(workspace, state.loop_id, result.commit)
        with self._lock:
            record = self._record
            if record is None or record.iteration != result.iteration:
                record = IterationRecord(loop_id=state.loop_id, iteration=result.iteration)
            self._record = record.finish_agent(result, self._buffer.snapshot(), diff_stat)
            self._live = False
            done = self._record
        self._write(done)

    def evaluated(self, state: LoopState) -> None:
        """Add the evaluation of iteration ``state.evaluated_iteration`` to its record (read
        back from the store after a resume) and write it. Iteration 0 (a baseline) has none."""
        number = state.evaluated_iteration
        if number < 1:
            return
        with self._lock:
            record = self._record if self._record and self._record.iteration == number else None
        if record is None:
            record = self._read(state.loop_id, number)
            if record is None:
                return
        record = record.with_conditions(state.exit_conditions)
        with self._lock:
            self._record = record
        self._write(record)

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

    def _diff_stat(self, workspace: Workspace, loop_id: str, commit: str | None) -> DiffStat | None:
        if commit is None:
            return None
        try:
            return workspace.diff_stat(loop_id, commit)
        except (WorkspaceError, LoopFrameworkError) as exc:
            logger.warning("loopwright: no diff stat of commit %s of loop %r: %s", commit, loop_id, exc)
            return None

    def _read(self, loop_id: str, iteration: int) -> IterationRecord | None:
        if self._unsupported:
            return None
        try:
            return self.store.get_iteration_record(loop_id, iteration)
        except NotImplementedError:
            self._note_unsupported()
        except LoopFrameworkError as exc:
            logger.warning("loopwright: the record of iteration %d of loop %r: %s", iteration, loop_id, exc)
        return None

    def _write(self, record: IterationRecord, *, live: bool = False) -> None:
        if self._unsupported:
            return
        with self._write_lock:  # a late flush never overwrites the agent's final record
            with self._lock:
                if live and not self._live:
                    return
            self._save(record)

    def _save(self, record: IterationRecord) -> None:
        try:
            self.store.save_iteration_record(record)
        except NotImplementedError:
            self._note_unsupported()
        except LoopFrameworkError as exc:
            logger.warning(
                "loopwright: the record of iteration %d of loop %r was not stored: %s",
                record.iteration,
                record.loop_id,
                exc,
            )

    def _note_unsupported(self) -> None:
        self._unsupported = True
        logger.debug("loopwright: %s keeps no iteration records", type(self.store).__name__)
