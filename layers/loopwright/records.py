"""Building and keeping the agent's record of an iteration (issue 9, point 3), for both engines.

The in-process engine (:class:`loopwright.engine.iteration_record.IterationRecorder`, which adds
the live output while the agent works) and the Step Functions steps
(:func:`loopwright.cloud.steps.iterate_step` and :func:`~loopwright.cloud.steps.evaluate_step`)
build a record the same way, at the same points of an iteration:

1. :func:`start_record` before the agent runs: iteration ``state.iteration + 1`` and the prompt
   it is given;
2. :func:`finish_record` after the iteration's state write: the agent's output, usage, exit
   code, duration, commit and the diff stat of the commit (when the workspace can tell);
3. :meth:`RecordKeeper.add_evaluation` after the evaluation: each condition's result.

:class:`RecordKeeper` reads and writes the records of one store and never raises: a store error
is logged (a warning) and the caller goes on; a store without records (``NotImplementedError``)
is noted once, at debug level, and not asked again. A record is stored under its loop and
iteration, replacing the one there (:meth:`~loopwright.ports.LoopStore.save_iteration_record`),
so writing the same record twice (a retried step) leaves one record.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from loopwright.exceptions import LoopFrameworkError, WorkspaceError
from loopwright.models import IterationResult, LoopState
from loopwright.models.records import AgentOutput, DiffStat, IterationRecord, OutputBuffer
from loopwright.ports import LoopStore, Workspace
from loopwright.sessions import handoff_summary
from loopwright.steps.iterate import build_agent_request
from loopwright.steps.prompt import render_prompt

logger = logging.getLogger(__name__)


def start_record(state: LoopState, state_dir: Path) -> IterationRecord:
    """The record of iteration ``state.iteration + 1`` (the agent still working), with the
    prompt it is given (a line saying why when the prompt cannot be rendered)."""
    try:
        # a pending handoff's summary, as the iterate step hands it (loopwright.sessions)
        prompt = render_prompt(build_agent_request(state, state_dir, handoff=handoff_summary(state)))
    except (ValueError, OSError) as exc:  # the request is built again by the iterate step
        prompt = f"(the prompt could not be rendered: {exc})"
    return IterationRecord(loop_id=state.loop_id, iteration=state.iteration + 1, prompt=prompt)


def commit_diff_stat(workspace: Workspace, loop_id: str, commit: str | None) -> DiffStat | None:
    """What ``commit`` changed (:meth:`Workspace.diff_stat`); None without a commit, when the
    workspace cannot tell, or when it fails (logged as a warning)."""
    if commit is None:
        return None
    try:
        return workspace.diff_stat(loop_id, commit)
    except (WorkspaceError, LoopFrameworkError) as exc:
        logger.warning("loopwright: no diff stat of commit %s of loop %r: %s", commit, loop_id, exc)
        return None


def finish_record(
    record: IterationRecord | None,
    state: LoopState,
    result: IterationResult,
    output: AgentOutput,
    workspace: Workspace,
) -> IterationRecord:
    """``record`` (a bare one when it is None or of another iteration) completed with the
    agent's ``result``, its ``output`` (else the output the result carries) and the diff stat of
    its commit."""
    if record is None or record.iteration != result.iteration:
        record = IterationRecord(loop_id=state.loop_id, iteration=result.iteration)
    return record.finish_agent(result, output, commit_diff_stat(workspace, state.loop_id, result.commit))


class OutputCollector:
    """An output callback (:data:`~loopwright.ports.OutputCallback`) that keeps what the agent
    writes, bounded (:class:`OutputBuffer`); the sandbox may call it from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = OutputBuffer()

    def __call__(self, stream: str, text: str) -> None:
        with self._lock:
            self._buffer.add(text)

    def snapshot(self) -> AgentOutput:
        """The output so far."""
        with self._lock:
            return self._buffer.snapshot()


class RecordKeeper:
    """Reads and writes the records of ``store``, never raising (see the module docstring)."""

    def __init__(self, store: LoopStore) -> None:
        self.store = store
        self.unsupported = False

    def read(self, loop_id: str, iteration: int) -> IterationRecord | None:
        """The stored record of ``iteration`` of ``loop_id``; None when there is none or it cannot
        be read."""
        if self.unsupported:
            return None
        try:
            return self.store.get_iteration_record(loop_id, iteration)
        except NotImplementedError:
            self._note_unsupported()
        except LoopFrameworkError as exc:
            logger.warning("loopwright: the record of iteration %d of loop %r: %s", iteration, loop_id, exc)
        return None

    def save(self, record: IterationRecord) -> None:
        """Store ``record``, replacing the stored one of its iteration."""
        if self.unsupported:
            return
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

    def add_evaluation(
        self, state: LoopState, known: IterationRecord | None = None
    ) -> IterationRecord | None:
        """Add the evaluation of iteration ``state.evaluated_iteration`` (``state.exit_conditions``)
        to its record, ``known`` when it is that iteration's, else the stored one, and store it;
        the record, or None when there is none (iteration 0, a baseline, has none)."""
        number = state.evaluated_iteration
        if number < 1:
            return None
        record = known if known is not None and known.iteration == number else None
        if record is None:
            record = self.read(state.loop_id, number)
            if record is None:
                return None
        record = record.with_conditions(state.exit_conditions)
        self.save(record)
        return record

    def _note_unsupported(self) -> None:
        self.unsupported = True
        logger.debug("loopwright: %s keeps no iteration records", type(self.store).__name__)
