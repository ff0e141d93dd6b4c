"""In-memory fakes of the ports, for fast unit tests of the steps and the engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import (
    AuthorizationRequest,
    Checkpoint,
    CommandResult,
    ControlRequest,
    IterationEvent,
    IterationEventType,
    LoopState,
    PolicyDecision,
)
from loopwright.models.records import IterationRecord, IterationSummary
from loopwright.ports import CheckpointStore, LoopStore, OutputCallback, PolicyEngine, Sandbox, Workspace


class MemoryStore(LoopStore, CheckpointStore):
    """LoopStore and CheckpointStore in dicts; checkpoints stored as JSON text like a real store."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.events: list[IterationEvent] = []
        self.controls: dict[str, ControlRequest] = {}
        self.checkpoint_rows: dict[str, list[tuple[str, str]]] = {}
        self.records: dict[tuple[str, int], str] = {}  # (loop id, iteration) -> record JSON
        self.record_writes = 0

    def create_loop(self, state: LoopState) -> LoopState:
        if state.loop_id in self.states:
            raise LoopFrameworkError(f"loop {state.loop_id} exists")
        stored = state.model_copy(update={"version": 1})
        self.states[state.loop_id] = stored.model_dump_json()
        return stored

    def save_state(self, state: LoopState, events: Sequence[IterationEvent] = ()) -> LoopState:
        current = self.get_state(state.loop_id)
        if current.version != state.version:
            raise LoopFrameworkError(f"version conflict: {current.version} != {state.version}")
        stored = state.model_copy(update={"version": state.version + 1})
        self.states[state.loop_id] = stored.model_dump_json()
        self.events.extend(events)
        return stored

    def get_state(self, loop_id: str) -> LoopState:
        if loop_id not in self.states:
            raise LoopNotFoundError(loop_id)
        return LoopState.model_validate_json(self.states[loop_id])

    def list_loops(self, project: str | None = None, limit: int = 100) -> list[LoopState]:
        states = [LoopState.model_validate_json(s) for s in self.states.values()]
        return [s for s in states if project is None or s.project == project][:limit]

    def append_events(self, events: Sequence[IterationEvent]) -> None:
        self.events.extend(events)

    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[IterationEvent]:
        found = [e for e in self.events if e.loop_id == loop_id and (types is None or e.type in types)]
        if newest_first:
            found.reverse()
        return found[:limit] if limit else found

    def add_control(self, request: ControlRequest) -> None:
        self.get_state(request.loop_id)
        self.controls[request.control_id] = request

    def pending_controls(self, loop_id: str) -> list[ControlRequest]:
        return [c for c in self.controls.values() if c.loop_id == loop_id]

    def clear_controls(self, loop_id: str, control_ids: Sequence[str]) -> None:
        for control_id in control_ids:
            self.controls.pop(control_id, None)

    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        rows = self.checkpoint_rows.setdefault(checkpoint.loop_id, [])
        rows.insert(0, (checkpoint.checkpoint_id, checkpoint.model_dump_json()))
        del rows[retention:]

    def list_checkpoints(self, loop_id: str) -> list[Checkpoint | str]:
        out: list[Checkpoint | str] = []
        for checkpoint_id, payload in self.checkpoint_rows.get(loop_id, []):
            try:
                out.append(Checkpoint.model_validate_json(payload))
            except ValueError:
                out.append(checkpoint_id)
        return out

    def save_iteration_record(self, record: IterationRecord) -> None:
        self.record_writes += 1
        self.records[(record.loop_id, record.iteration)] = record.model_dump_json()

    def get_iteration_record(self, loop_id: str, iteration: int) -> IterationRecord | None:
        payload = self.records.get((loop_id, iteration))
        return None if payload is None else IterationRecord.model_validate_json(payload)

    def list_iteration_records(self, loop_id: str) -> list[IterationSummary]:
        found = sorted((n, p) for (lid, n), p in self.records.items() if lid == loop_id)
        return [IterationRecord.model_validate_json(p).summarize() for _, p in found]

    def types(self, loop_id: str) -> list[IterationEventType]:
        return [e.type for e in self.list_events(loop_id)]


class ScriptedSandbox(Sandbox):
    """Answers each command with ``responder(command, call_number)`` (exit code, stdout).

    Every program is found (preflight), except those named in ``missing``."""

    def __init__(
        self, responder: Callable[[Sequence[str], int], tuple[int, str]], *, missing: Sequence[str] = ()
    ) -> None:
        self.responder = responder
        self.calls: list[list[str]] = []
        self.missing = set(missing)

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        return None if name in self.missing else f"/scripted/{name}"

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> CommandResult:
        self.calls.append(list(command))
        code, out = self.responder(command, len(self.calls))
        return CommandResult(command=list(command), exit_code=code, stdout=out)


class FakeWorkspace(Workspace):
    """A workspace whose commits are counters: commit N is 'c<N>'."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commits = 0
        self.resets: list[str] = []

    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        return self.root, f"loopwright/{loop_id}", "c0"

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        self.commits += 1
        return f"c{self.commits}", ["file.py"]

    def reset(self, loop_id: str, commit: str) -> None:
        self.resets.append(commit)

    def head(self, loop_id: str) -> str | None:
        return f"c{self.commits}"


class AllowAll(PolicyEngine):
    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        return PolicyDecision(allowed=request.action.endswith('"ContinueIteration"'))
