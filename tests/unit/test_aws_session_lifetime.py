"""Code Interpreter sessions that end before the loop does (issue 12, point 3): an ended session
is detected and replaced, the loop's clone restored in the new one, and a session is stopped
when the loop ends, or parks with its branch pushed.

The sessions are played by tests/unit/aws_session_fake.SessionService: each has its own folder,
an ended one answers every call with a ResourceNotFoundException naming it and its status is
TERMINATED (GetCodeInterpreterSession's statuses are READY | TERMINATED)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox, CodeInterpreterSessions
from loopwright.cloud.steps import CloudPorts, evaluate_step, record_failure_step
from loopwright.exceptions import LoopFrameworkError, SandboxSessionEndedError
from loopwright.models import (
    ControlAction,
    ControlRequest,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopState,
    NextAction,
    StepInput,
)
from tests.fakes import MemoryStore
from tests.unit.aws_loop_driver import Driver, play_code_interpreter
from tests.unit.aws_session_fake import SessionService, git, make_remote

_EV = IterationEventType
#: The agent counts its iterations in n.txt; the check passes once it reads 3.
COUNT = (
    "import pathlib; p = pathlib.Path('n.txt'); "
    "p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))"
)
CHECK = (
    "import pathlib, sys; p = pathlib.Path('n.txt'); "
    "sys.exit(0 if p.exists() and int(p.read_text()) >= 3 else 1)"
)


def loop_config(remote: Path, *, push: bool) -> LoopConfig:
    return LoopConfig.model_validate(
        {
            "goal": "count to 3",
            "agent": {"kind": "command", "command": [sys.executable, "-c", COUNT], "timeout_seconds": 60},
            "exit_conditions": [
                {
                    "type": "CUSTOM",
                    "name": "three",
                    "command": [sys.executable, "-c", CHECK],
                    "parser": "exit_code",
                }
            ],
            "repository": {"url": f"file://{remote}", "push": push},
            "max_iterations": 10,
            "max_stuck_iterations": None,  # the silent check fails alike while the count grows
        }
    )


class ExpiringDriver(Driver):
    """Ends sessions where a test says: ``between[(step, iteration)]`` ends the loop's session
    before that task (the next task finds it TERMINATED), ``during[(step, iteration)] = n`` lets
    the session answer n more calls in that task, then ends it (the task fails mid-way)."""

    def __init__(self, store: MemoryStore, service: SessionService) -> None:
        super().__init__(store, service)
        self.service = service
        self.between: set[tuple[str, int]] = set()
        self.during: dict[tuple[str, int], int] = {}

    def task(self, step: Any, event: StepInput, build: str = "") -> Any:
        key = (step.__name__, self.store.get_state(event.loop_id).iteration)
        session = self.store.get_state(event.loop_id).sandbox_session_id
        if session is not None and key in self.between:
            self.between.discard(key)
            self.service.expire(session)
        if session is not None and key in self.during:
            self.service.expire_after[session] = self.during.pop(key)
        return super().task(step, event, build)


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SessionService:
    played = SessionService(tmp_path / "sessions")
    play_code_interpreter(monkeypatch, played)
    return played


def test_a_loop_whose_session_ends_twice_is_restored_from_its_pushed_branch_and_completes(
    tmp_path: Path, service: SessionService
) -> None:
    # Given a loop on AWS whose branch is pushed after every commit
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    store = MemoryStore()
    store.create_loop(LoopState(loop_id="l1", config=loop_config(remote, push=True)))
    driver = ExpiringDriver(store, service)
    # When its session times out between iteration 1's iterate and evaluate, and the next one
    # ends in the middle of iteration 2's agent run
    driver.between.add(("evaluate_step", 1))
    driver.during[("iterate_step", 1)] = 4  # iteration 2's iterate (the state counts 1 until it commits)
    out = driver.run("l1")
    # Then the loop completes as if nothing happened: the count went on from the pushed branch
    assert (out.action, out.outcome) == (NextAction.COMPLETE, LoopOutcome.CONDITIONS_MET)
    state = store.get_state("l1")
    assert state.iteration == 3
    assert git("show", "loopwright/l1:n.txt", cwd=remote).strip() == "3"
    assert state.head_commit == git("rev-parse", "loopwright/l1", cwd=remote).strip()
    # Each ended session was replaced by a new one, recorded with both ids
    replaced = [e for e in store.events if e.type is _EV.SESSION_REPLACED]
    assert [(e.data["ended_session"], e.data["session"]) for e in replaced] == [
        ("sess1", "sess2"),
        ("sess2", "sess3"),
    ]
    # The session that ended mid-task failed that attempt with the service's answer; the retry
    # ran in the new session
    assert len(driver.failures) == 1 and driver.failures[0].startswith("SandboxSessionEndedError")
    assert "Code Interpreter session 'sess2' has ended" in driver.failures[0]
    # Nothing was lost, so no ERROR; the last session was stopped when the loop completed
    assert not [e for e in store.events if e.type is _EV.ERROR]
    assert service.stopped == ["sess3"] and state.sandbox_session_id is None
    assert store.types("l1")[-2:] == [_EV.LOOP_COMPLETED, _EV.SESSION_STOPPED]
    assert set(service.status.values()) == {"TERMINATED"}  # no session left running


def test_without_push_a_replaced_session_restarts_from_the_ref_and_says_what_was_lost(
    tmp_path: Path, service: SessionService
) -> None:
    # Given a loop whose work lives only in its session (repository.push off)
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    seed = git("rev-parse", "main", cwd=remote).strip()
    store = MemoryStore()
    store.create_loop(LoopState(loop_id="l1", config=loop_config(remote, push=False)))
    driver = ExpiringDriver(store, service)
    # When its session times out after iteration 1 committed
    driver.between.add(("evaluate_step", 1))
    out = driver.run("l1")
    # Then an ERROR names the lost commit and why, and the loop goes on from the ref
    errors = [e for e in store.events if e.type is _EV.ERROR]
    assert len(errors) == 1
    assert "is lost" in errors[0].message and "repository.push is off" in errors[0].message
    assert errors[0].data["restored_commit"] == seed and errors[0].data["lost_commit"] != seed
    # The count restarted: 3 more iterations after the loss
    assert (out.outcome, store.get_state("l1").iteration) == (LoopOutcome.CONDITIONS_MET, 4)
    assert service.stopped == ["sess2"]


def test_a_call_in_an_ended_session_raises_session_ended_and_a_live_one_keeps_its_error(
    tmp_path: Path,
) -> None:
    service = SessionService(tmp_path / "sessions")
    sessions = CodeInterpreterSessions("us-east-1", client=service)
    sandbox = CodeInterpreterSandbox(
        "us-east-1", interpreter=service, command_client=service, sessions=sessions
    )
    assert sandbox.run(["true"], cwd=Path("."), timeout_seconds=10).exit_code == 0
    session_id = sandbox.session_id
    assert session_id is not None and sessions.is_ready(session_id)
    service.expire(session_id)
    with pytest.raises(SandboxSessionEndedError, match="has ended") as ended:
        sandbox.run(["true"], cwd=Path("."), timeout_seconds=10)
    assert ended.value.session_id == session_id
    assert sessions.status(session_id) == "TERMINATED" and sessions.status("unknown") is None
    sessions.stop(session_id)  # an ended session: nothing to do, no error
    assert service.stopped == []


class _Sessions:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.stopped: list[str] = []

    def stop(self, session_id: str) -> None:
        if self.fail:
            raise LoopFrameworkError("stopping Code Interpreter session failed (ThrottlingException)")
        self.stopped.append(session_id)


def _parked_loop(push: bool) -> tuple[MemoryStore, LoopState]:
    config = LoopConfig.model_validate(
        {
            "goal": "g",
            "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "true", "parser": "exit_code"}],
            "repository": {"url": "https://git.example.com/o/r.git", "push": push},
        }
    )
    store = MemoryStore()
    store.create_loop(LoopState(loop_id="l1", config=config, sandbox_session_id="sess1"))
    return store, store.get_state("l1")


@pytest.mark.parametrize(("push", "stopped"), [(True, ["sess1"]), (False, [])])
def test_a_pause_stops_the_session_only_when_the_branch_is_pushed(push: bool, stopped: list[str]) -> None:
    store, _ = _parked_loop(push)
    store.add_control(ControlRequest(loop_id="l1", action=ControlAction.PAUSE, principal='User::"alice"'))
    sessions = _Sessions()
    out = evaluate_step(StepInput(loop_id="l1"), CloudPorts(store=store, sessions=sessions))  # type: ignore[arg-type]
    assert out.action is NextAction.PAUSE
    assert sessions.stopped == stopped
    state = store.get_state("l1")
    assert state.sandbox_session_id == (None if push else "sess1")  # kept: its clone holds the work
    assert (_EV.SESSION_STOPPED in store.types("l1")) is push


def test_a_failed_stop_never_fails_the_step_that_ends_the_loop() -> None:
    store, _ = _parked_loop(push=False)
    ports = CloudPorts(store=store, sessions=_Sessions(fail=True))  # type: ignore[arg-type]
    out = record_failure_step(StepInput(loop_id="l1"), {"Error": "States.Timeout"}, ports)
    assert out.outcome is LoopOutcome.FAILED
    errors = [e.message for e in store.events if e.type is _EV.ERROR]
    assert any("could not stop sandbox session 'sess1'" in m and "ends by itself" in m for m in errors)
    assert store.get_state("l1").sandbox_session_id == "sess1"  # a later look finds it ended
