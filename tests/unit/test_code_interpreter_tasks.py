"""Background commands in a Code Interpreter session (loopwright.adapters.aws.code_interpreter_tasks),
against a session played on this machine (tests/unit/aws_session_fake.py): startCommandExecution,
getTask, stopTask, and the service's errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox, CodeInterpreterSessions
from loopwright.adapters.aws.code_interpreter_tasks import CodeInterpreterTasks
from loopwright.exceptions import LoopFrameworkError, SandboxSessionEndedError
from loopwright.models import CommandResult
from tests.unit.aws_session_fake import REGION, SessionService


@pytest.fixture
def service(tmp_path: Path) -> SessionService:
    return SessionService(tmp_path / "sessions")


def _tasks(service: SessionService, **kwargs: Any) -> CodeInterpreterTasks:
    sandbox = CodeInterpreterSandbox(
        REGION,
        interpreter=service,
        command_client=service,
        sessions=CodeInterpreterSessions(REGION, client=service),
        **kwargs,
    )
    return CodeInterpreterTasks(sandbox)


def _wait(tasks: CodeInterpreterTasks, task_id: str, **kwargs: Any) -> CommandResult:
    deadline = time.monotonic() + 20
    while (result := tasks.poll(task_id, **kwargs)) is None:
        assert time.monotonic() < deadline, "the task never ended"
        time.sleep(0.05)
    return result


def test_a_started_command_runs_in_the_background_and_is_polled_to_its_result(
    service: SessionService,
) -> None:
    tasks = _tasks(service)
    task_id = tasks.start(
        ["sh", "-c", 'sleep 0.3; echo "out $GREETING"; echo err >&2; exit 3'],
        cwd=Path("."),
        timeout_seconds=30,
        env={"GREETING": "a b;c"},
    )
    assert tasks.poll(task_id) is None  # still working: the caller did not wait
    result = _wait(tasks, task_id)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out a b;c\n", "err\n")
    assert not result.timed_out and result.error is None
    (line,) = service.commands()
    assert "timeout -k 1 30 sh -c" in line  # the blocking sandbox's line: same time limit


def test_output_is_bounded_as_the_blocking_sandbox_bounds_it(service: SessionService) -> None:
    tasks = _tasks(service)
    task_id = tasks.start(["sh", "-c", "printf '%0500d' 0"], cwd=Path("."), timeout_seconds=30)
    result = _wait(tasks, task_id, max_output_bytes=100)
    assert result.truncated and result.stdout.startswith("[... 400 bytes truncated, last 100 kept ...]")


def test_a_cancelled_task_ends_and_is_reported_timed_out(service: SessionService) -> None:
    tasks = _tasks(service)
    task_id = tasks.start(["sleep", "30"], cwd=Path("."), timeout_seconds=60)
    tasks.cancel(task_id)
    result = _wait(tasks, task_id)
    assert result.timed_out and result.exit_code is None


def test_a_task_killed_by_its_time_limit_is_timed_out(service: SessionService) -> None:
    tasks = _tasks(service)
    task_id = tasks.start(["sleep", "30"], cwd=Path("."), timeout_seconds=0.2)
    result = _wait(tasks, task_id)
    assert result.timed_out and result.exit_code is None


def test_bad_starts_are_refused_before_the_service_is_called(service: SessionService) -> None:
    tasks = CodeInterpreterTasks(_tasks(service).sandbox, max_timeout_seconds=60)
    with pytest.raises(LoopFrameworkError, match="empty command"):
        tasks.start([], cwd=Path("."), timeout_seconds=1)
    with pytest.raises(LoopFrameworkError, match="longest a background task may run, 60"):
        tasks.start(["true"], cwd=Path("."), timeout_seconds=61)
    assert service.calls() == []


def test_an_answer_without_a_task_id_is_an_error(service: SessionService) -> None:
    class NoId(SessionService):
        def invoke_code_interpreter(self, **kwargs: Any) -> dict[str, Any]:
            return {"stream": iter([{"result": {"structuredContent": {"taskStatus": "submitted"}}}])}

    with pytest.raises(LoopFrameworkError, match="gave no task id"):
        _tasks(NoId(service.root)).start(["true"], cwd=Path("."), timeout_seconds=5)


def test_an_exception_event_in_the_stream_is_a_service_error(service: SessionService) -> None:
    class Throttled(SessionService):
        def invoke_code_interpreter(self, **kwargs: Any) -> dict[str, Any]:
            return {"stream": iter([{"throttlingException": {"message": "slow down"}}])}

    broken = Throttled(service.root)
    tasks = _tasks(broken)
    with pytest.raises(LoopFrameworkError, match="slow down"):
        tasks.start(["true"], cwd=Path("."), timeout_seconds=5)


def test_a_task_of_an_ended_session_says_the_session_ended(service: SessionService) -> None:
    tasks = _tasks(service)
    task_id = tasks.start(["sleep", "30"], cwd=Path("."), timeout_seconds=60)
    session_id = tasks.sandbox.session_id
    assert session_id is not None
    service.expire(session_id)  # its timeout: the task and the files go with it
    with pytest.raises(SandboxSessionEndedError):
        tasks.poll(task_id)
