"""CodeInterpreterSandbox with a fake command client (moto has no Code Interpreter; botocore's
Stubber cannot return an event stream) and the SDK's CodeInterpreter under a Stubber."""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from bedrock_agentcore.tools.code_interpreter_client import CodeInterpreter
from botocore.stub import Stubber

from loopwright.adapters.aws import code_interpreter_sandbox as sandbox_module
from loopwright.adapters.aws._errors import retry_config
from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox, shell_line
from loopwright.exceptions import LoopFrameworkError
from tests.integration.aws_moto import REGION, fake_credentials


class FakeCommands:
    """Records executeCommand calls and answers with canned stream events."""

    def __init__(self, *streams: list[dict[str, Any]]) -> None:
        self.streams = list(streams)
        self.calls: list[dict[str, Any]] = []

    def invoke_code_interpreter(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"sessionId": kwargs["sessionId"], "stream": iter(self.streams.pop(0))}


def result(stdout: str = "", stderr: str = "", exit_code: int = 0, seconds: float = 0.1) -> dict[str, Any]:
    return {
        "result": {
            "content": [{"type": "text", "text": stdout}],
            "structuredContent": {
                "stdout": stdout,
                "stderr": stderr,
                "exitCode": exit_code,
                "executionTime": seconds,
            },
            "isError": exit_code != 0,
        }
    }


@pytest.fixture
def interpreter(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CodeInterpreter, Stubber]]:
    fake_credentials(monkeypatch)
    sdk = CodeInterpreter(REGION)
    with Stubber(sdk.data_plane_client) as stubber:
        yield sdk, stubber
        stubber.assert_no_pending_responses()


def start_response(stubber: Stubber, session_id: str = "sess-1") -> None:
    stubber.add_response(
        "start_code_interpreter_session",
        {
            "codeInterpreterIdentifier": "aws.codeinterpreter.v1",
            "sessionId": session_id,
            "createdAt": datetime.now(UTC),
        },
    )


def test_success_starts_one_session_and_quotes_every_argument(
    interpreter: tuple[CodeInterpreter, Stubber],
) -> None:
    sdk, stubber = interpreter
    start_response(stubber)
    stubber.add_response(
        "stop_code_interpreter_session",
        {
            "codeInterpreterIdentifier": "aws.codeinterpreter.v1",
            "sessionId": "sess-1",
            "lastUpdatedAt": datetime.now(UTC),
        },
    )
    commands = FakeCommands([result("3 passed\n")], [result("again\n")])
    with CodeInterpreterSandbox(REGION, interpreter=sdk, command_client=commands) as sandbox:
        done = sandbox.run(
            ["pytest", "-k", "a; rm -rf / $(x)"],
            cwd=Path("/work/repo dir"),
            timeout_seconds=30,
            env={"CI": "1"},
        )
        sandbox.run(["true"], cwd=Path("/work"), timeout_seconds=5)
        assert sandbox.session_id == "sess-1"
    assert (done.exit_code, done.stdout, done.timed_out, done.error) == (0, "3 passed\n", False, None)
    assert done.command == ["pytest", "-k", "a; rm -rf / $(x)"]
    line = commands.calls[0]["arguments"]["command"]
    assert commands.calls[0]["name"] == "executeCommand"
    assert commands.calls[0]["sessionId"] == commands.calls[1]["sessionId"] == "sess-1"
    # The shell splits the line back into exactly the argv given: nothing is interpreted
    assert shlex.split(line) == [
        "cd", "/work/repo dir", "&&", "env", "CI=1", "timeout", "-k", "1", "30",
        "pytest", "-k", "a; rm -rf / $(x)",
    ]  # fmt: skip
    assert sandbox.session_id is None  # stopped on close


def test_non_zero_exit_and_output_bound(interpreter: tuple[CodeInterpreter, Stubber]) -> None:
    sdk, _ = interpreter
    commands = FakeCommands([result("x" * 100 + "END", "boom", exit_code=2)])
    sandbox = CodeInterpreterSandbox(REGION, session_id="loop-sess", interpreter=sdk, command_client=commands)
    done = sandbox.run(["ruff", "check"], cwd=Path("/w"), timeout_seconds=10, max_output_bytes=10)
    assert (done.exit_code, done.timed_out, done.truncated, done.stderr) == (2, False, True, "boom")
    assert done.stdout.startswith("[... 93 bytes truncated, last 10 kept ...]") and done.stdout.endswith(
        "xxxxxxxEND"
    )
    assert commands.calls[0]["sessionId"] == "loop-sess"  # given session, none started


def test_timeout_is_reported_not_raised(
    interpreter: tuple[CodeInterpreter, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk, _ = interpreter
    # A clock of the sandbox module only, 2.5 s per reading (the command ran past its 2 s)
    clock = itertools.count(100.0, 2.5)
    monkeypatch.setattr(sandbox_module, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    commands = FakeCommands([result("partial", exit_code=124)])
    sandbox = CodeInterpreterSandbox(REGION, session_id="s", interpreter=sdk, command_client=commands)
    done = sandbox.run(["sleep", "60"], cwd=Path("/w"), timeout_seconds=2)
    assert (done.timed_out, done.exit_code, done.stdout) == (True, None, "partial")
    too_long = sandbox.run(["sleep", "1"], cwd=Path("/w"), timeout_seconds=10_000)
    assert too_long.exit_code is None and "maximum" in (too_long.error or "")
    assert len(commands.calls) == 1


def test_throttling_raises_a_domain_error_without_retry(
    interpreter: tuple[CodeInterpreter, Stubber],
) -> None:
    sdk, _ = interpreter
    client = boto3.client("bedrock-agentcore", region_name=REGION, config=retry_config(1))
    sandbox = CodeInterpreterSandbox(REGION, session_id="s", interpreter=sdk, command_client=client)
    with Stubber(client) as stubber:
        stubber.add_client_error("invoke_code_interpreter", "ThrottlingException", "slow down", 429)
        with pytest.raises(LoopFrameworkError, match=r"ThrottlingException.*throttled") as info:
            sandbox.run(["true"], cwd=Path("/w"), timeout_seconds=5)
        assert info.value.__cause__ is not None
    streamed = FakeCommands([{"throttlingException": {"message": "Rate exceeded"}}])
    sandbox = CodeInterpreterSandbox(REGION, session_id="s", interpreter=sdk, command_client=streamed)
    with pytest.raises(LoopFrameworkError, match=r"ThrottlingException: Rate exceeded.*throttled"):
        sandbox.run(["true"], cwd=Path("/w"), timeout_seconds=5)


def test_the_default_command_client_never_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_credentials(monkeypatch)
    sandbox = CodeInterpreterSandbox(REGION, max_timeout_seconds=120)
    config = sandbox._commands.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.read_timeout == 150
    assert sandbox._interpreter.data_plane_client.meta.config.retries["total_max_attempts"] == 5
    assert shell_line(["a b"], cwd=Path("/x"), timeout_seconds=1.5) == "cd /x && timeout -k 1 1.5 'a b'"
