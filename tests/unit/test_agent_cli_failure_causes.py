"""The agent CLI backends map their CLIs' errors onto failure causes (issue 15.3): each recorded
scenario of tests/agent_cli_fakes.py gives its cause, and the error-text classifier tells an
authentication error, a rate limit and a provider outage apart from a crash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopwright.adapters.local.agents.aider import AiderOutputParser
from loopwright.adapters.local.agents.base import OutputParser, build_result
from loopwright.adapters.local.agents.claude_code import ClaudeStreamParser
from loopwright.adapters.local.agents.codex import CodexJsonParser
from loopwright.adapters.local.agents.gemini import GeminiParser
from loopwright.adapters.local.agents.limits import error_cause, retry_after_seconds
from loopwright.adapters.local.command_agent import CommandAgent
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.models import AgentFailureCause, AgentRequest, AgentResult, CommandAgentConfig, CommandResult
from loopwright.steps.failures import failure_cause
from tests.agent_cli_fakes import SCENARIOS

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
C = AgentFailureCause
PARSERS: dict[str, Callable[[], OutputParser]] = {
    "claude": lambda: ClaudeStreamParser(now=lambda: NOW),
    "codex": lambda: CodexJsonParser(now=lambda: NOW),
    "gemini": lambda: GeminiParser("stream-json", now=lambda: NOW),
    "aider": lambda: AiderOutputParser(now=lambda: NOW),
}


def _result(cli: str, scenario: str, *, timed_out: bool = False) -> AgentResult:
    stdout, stderr, code = SCENARIOS[cli][scenario]
    parser = PARSERS[cli]()
    for line in stdout:
        parser.feed("stdout", line)
    for line in stderr:
        parser.feed("stderr", line)
    outcome = CommandResult(
        command=[cli],
        exit_code=None if timed_out else code,
        stdout="\n".join(stdout),
        stderr="\n".join(stderr),
        timed_out=timed_out,
    )
    return build_result(
        cli, outcome, parser.finish(outcome.exit_code), None, None, timeout_seconds=60, model=None, now=NOW
    )


@pytest.mark.parametrize(
    ("cli", "scenario", "cause"),
    [
        ("claude", "ok", None),
        ("claude", "usage-limit", C.USAGE_LIMIT),
        ("claude", "auth-error", C.AUTHENTICATION),
        ("claude", "overloaded", C.PROVIDER_OUTAGE),
        ("claude", "error-exit", C.CRASH),
        ("claude", "malformed", C.CRASH),
        ("codex", "usage-limit", C.USAGE_LIMIT),
        ("codex", "rate-limit", C.RATE_LIMIT),
        ("codex", "error-exit", C.CRASH),
        ("gemini", "usage-limit", C.USAGE_LIMIT),  # RESOURCE_EXHAUSTED names a quota
        ("gemini", "error-exit", C.CRASH),  # "Please set an Auth method": a setup error, not a 401
        ("aider", "usage-limit", C.RATE_LIMIT),  # litellm's RateLimitError
        ("aider", "ok", None),
    ],
)
def test_each_recorded_scenario_gives_its_cause(cli: str, scenario: str, cause: C | None) -> None:
    result = _result(cli, scenario)
    assert result.failure_cause is cause


def test_a_cli_past_its_timeout_is_a_timeout() -> None:
    result = _result("claude", "hang", timed_out=True)
    assert result.failure_cause is C.TIMEOUT and result.failed


def test_a_cli_ended_as_idle_is_idle_not_a_crash() -> None:
    outcome = CommandResult(command=["codex"], exit_code=None, idle=True, left_running=["pid 9: x"])
    parsed = CodexJsonParser(now=lambda: NOW).finish(None)
    result = build_result(
        "codex", outcome, parsed, None, None, timeout_seconds=60, idle_timeout_seconds=30, model=None, now=NOW
    )
    assert result.failure_cause is C.IDLE and result.failed
    assert result.summary == (
        "codex: agent idle for 30 s (no output, no file change in the worktree); 1 of its processes "
        "could not be ended: pid 9: x"
    )


def test_a_rate_limit_with_a_delay_is_retried_when_the_cli_said() -> None:
    outcome = CommandResult(command=["codex"], exit_code=1)
    parser = CodexJsonParser(now=lambda: NOW)
    parser.feed("stdout", '{"type": "error", "message": "429 Too Many Requests; try again in 45 seconds"}')
    result = build_result(
        "codex", outcome, parser.finish(1), None, None, timeout_seconds=60, model=None, now=NOW
    )
    assert result.failure_cause is C.RATE_LIMIT
    assert result.retry_after_seconds == 45
    assert result.usage_limit_resets_at == NOW + timedelta(seconds=45)


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            '{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
            "AUTHENTICATION",
        ),
        ("Error: 401 Unauthorized", "AUTHENTICATION"),
        ("Incorrect API key provided: sk-...", "AUTHENTICATION"),
        ("API key not valid. Please pass a valid API key. [API_KEY_INVALID]", "AUTHENTICATION"),
        ("Not logged in. Run codex login", "AUTHENTICATION"),
        ("OAuth token has expired. Please obtain a new token", "AUTHENTICATION"),
        ("HTTP 429 Too Many Requests", "RATE_LIMIT"),
        ('{"type":"rate_limit_error"}', "RATE_LIMIT"),
        ("API Error: 529 Overloaded", "PROVIDER_OUTAGE"),
        ("503 Service Unavailable", "PROVIDER_OUTAGE"),
        ("Internal server error", "PROVIDER_OUTAGE"),
        ("connect ECONNREFUSED 127.0.0.1:443", "PROVIDER_OUTAGE"),
        ("error: unknown option '--bogus'", None),
        ("Traceback (most recent call last): KeyError: 'x'", None),
        ("", None),
    ],
)
def test_error_text_is_classified(message: str, cause: str | None) -> None:
    assert error_cause(message) == cause
    if cause is not None:
        assert C(cause)  # every answer is a cause's value


def test_retry_after_reads_seconds_and_milliseconds() -> None:
    assert retry_after_seconds("Please retry in 27.5s") == 27.5
    assert retry_after_seconds('"retryDelay": "1500ms"') == 1.5
    assert retry_after_seconds("try later") is None


def _request(tmp_path: Path) -> AgentRequest:
    return AgentRequest(
        loop_id="loop-a",
        iteration=1,
        goal="g",
        worktree=str(tmp_path),
        state_dir=str(tmp_path / ".state"),
        max_iterations=3,
        tokens_used=0,
    )


def test_a_command_agent_reports_its_cause_and_delay_in_report_json(tmp_path: Path) -> None:
    write = (
        "import json,os; json.dump({'failure_cause': 'PROVIDER_OUTAGE', 'retry_after_seconds': 12}, "
        "open(os.environ['LOOPWRIGHT_REPORT_FILE'], 'w')); raise SystemExit(1)"
    )
    agent = CommandAgent(CommandAgentConfig(command=["python", "-c", write]), SubprocessSandbox())
    result = agent.run(_request(tmp_path))
    assert (result.failure_cause, result.retry_after_seconds, result.failed) == (C.PROVIDER_OUTAGE, 12, True)


def test_a_command_agent_past_its_timeout_is_a_timeout_and_a_bad_cause_is_a_failure(tmp_path: Path) -> None:
    slow = CommandAgent(
        CommandAgentConfig(command=["python", "-c", "import time; time.sleep(30)"], timeout_seconds=1),
        SubprocessSandbox(),
    )
    assert slow.run(_request(tmp_path)).failure_cause is C.TIMEOUT
    bad = (
        "import json,os; "
        "json.dump({'failure_cause': 'BORED'}, open(os.environ['LOOPWRIGHT_REPORT_FILE'], 'w'))"
    )
    result = CommandAgent(CommandAgentConfig(command=["python", "-c", bad]), SubprocessSandbox()).run(
        _request(tmp_path)
    )
    # an unreadable report fails the iteration naming the field; the core reads it as a CRASH
    assert result.failed and result.failure_cause is None and "failure_cause" in result.summary
    assert failure_cause(result) is C.CRASH
