"""Each agent CLI backend drives a full local loop with a fake CLI named like the real one (issue 9,
point 1): tokens and dollars are accounted, a usage limit pauses the loop until it lifts, and
malformed output is an agent failure with a clear message.

The fakes (tests/agent_cli_fakes.py) are real executables on the PATH the test process has; the
loop runs them through the real SubprocessSandbox in a real git worktree.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.engine import LoopFramework
from loopwright.engine.local import build_agent
from loopwright.models import (
    AgentFailureCause,
    AgentRequest,
    AgentResult,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
)
from loopwright.ports import Agent, OutputCallback, StopCheck
from tests.agent_cli_fakes import install_fake_cli, recorded_calls
from tests.integration.helpers import make_repo

EV = IterationEventType
DONE = "work/done.txt"

#: kind -> (fake CLI name, tokens_used, cost_usd, model, session id) of the "ok" recording.
BACKENDS: dict[str, tuple[str, int, float | None, str | None, str | None]] = {
    "claude-code": (
        "claude",
        19722,
        0.0123,
        "claude-sonnet-4-5-20250929",
        "8f1e2c4a-5b6d-4e7f-9a0b-1c2d3e4f5a6b",
    ),
    "codex": ("codex", 24885, None, "gpt-5-codex", "0199a213-81c0-7800-8aa1-bbab2a035a53"),
    "gemini": ("gemini", 24719, None, "gemini-2.5-pro", "c4f1"),
    "aider": ("aider", 6020, 0.0091, "anthropic/claude-sonnet-4-20250514", None),
}


class Recording(Agent):
    """Passes every call to ``inner`` and keeps its results."""

    def __init__(self, inner: Agent) -> None:
        self.inner = inner
        self.results: list[AgentResult] = []

    def required_programs(self) -> list[str]:
        return self.inner.required_programs()

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        result = self.inner.run(request, should_stop=should_stop, on_output=on_output)
        self.results.append(result)
        return result


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on the PATH of this process (and so of what the sandbox runs)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def _loop(tmp_path: Path, kind: str, *, max_iterations: int = 3) -> tuple[LoopFramework, Recording, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    record = tmp_path / "calls.jsonl"
    check = f"import pathlib,sys; sys.exit(0 if pathlib.Path({DONE!r}).exists() else 1)"
    agent: dict[str, Any] = {"kind": kind, "env": {"FAKE_CLI_RECORD": str(record)}, "timeout_seconds": 60}
    if kind == "codex":
        agent["model"] = "gpt-5-codex"  # codex exec --json names no model: the configured one is kept
    config = LoopConfig.model_validate(
        {
            "goal": "write work/done.txt",
            "max_iterations": max_iterations,
            "exit_conditions": [{"type": "CUSTOM", "name": "done", "command": ["python", "-c", check]}],
            "agent": agent,
        }
    )
    sandbox = SubprocessSandbox()
    built = build_agent(config, sandbox)
    assert built is not None
    recording = Recording(built)
    loop = LoopFramework(config, workspace=repo, loop_id=f"cli-{kind}", sandbox=sandbox, agent=recording)
    return loop, recording, record


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_a_backend_converges_with_its_tokens_and_cost_accounted(
    tmp_path: Path, bin_dir: Path, kind: str
) -> None:
    # Given the fake CLI, which fixes the repository and prints its real-format usage
    name, tokens, cost, model, session = BACKENDS[kind]
    fake = install_fake_cli(bin_dir, name, "ok", edit=DONE)
    loop, recording, record = _loop(tmp_path, kind)
    assert SubprocessSandbox().find_program(name, cwd=tmp_path) == str(fake)  # preflight finds it

    # When the loop runs
    result = loop.run()

    # Then it converges after one iteration, with the CLI's own figures accounted
    assert result.outcome is LoopOutcome.CONDITIONS_MET, loop.store.list_events(loop.loop_id)
    state = loop.get_state()
    assert state.tokens_used == tokens
    [completed] = loop.store.list_events(loop.loop_id, types=[EV.AGENT_COMPLETED])
    assert completed.data["tokens_used"] == tokens
    [agent_result] = recording.results
    assert (agent_result.cost_usd, agent_result.model, agent_result.session_id) == (cost, model, session)
    assert agent_result.input_tokens + agent_result.output_tokens == tokens and not agent_result.failed
    assert agent_result.summary and "{" not in agent_result.summary[:1]

    # And the CLI was given the prompt (on stdin, or as aider's message file) and the report path
    [call] = recorded_calls(record)
    prompt_file = Path(call["report_file"]).parent / "prompt.md"
    if kind == "aider":
        assert str(prompt_file) in call["argv"] and call["stdin"] == ""
    else:
        assert call["stdin"] == prompt_file.read_text() and "write work/done.txt" in call["stdin"]
    assert Path(call["cwd"]) == Path(state.worktree)


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_a_usage_limit_pauses_the_loop_until_it_lifts(tmp_path: Path, bin_dir: Path, kind: str) -> None:
    # Given the fake CLI answering with its usage-limit (or rate-limit) message
    name = BACKENDS[kind][0]
    install_fake_cli(bin_dir, name, "usage-limit")
    loop, recording, _ = _loop(tmp_path, kind)
    before = datetime.now(UTC)

    # When the loop runs
    result = loop.run()

    # Then it pauses (no outcome) until the reset the CLI gave, or the default hour
    state = loop.get_state()
    assert result.outcome is None and state.phase is LoopPhase.PAUSED
    expected = {
        "claude-code": datetime(2030, 1, 1, tzinfo=UTC),  # "usage limit reached|1893456000"
        "gemini": None,  # "retry in 30s"
    }.get(kind)
    assert state.resume_at is not None
    if expected is not None:
        assert state.resume_at == expected
    elif kind == "gemini":
        assert before + timedelta(seconds=29) <= state.resume_at <= datetime.now(UTC) + timedelta(seconds=31)
    elif kind == "aider":  # litellm's RateLimitError is a rate limit: retried after a 30 s backoff
        assert before + timedelta(seconds=29) <= state.resume_at <= datetime.now(UTC) + timedelta(seconds=31)
        assert state.last_failure_cause is AgentFailureCause.RATE_LIMIT and state.uncounted_iterations == 1
    else:  # no time given: the documented default
        assert before + timedelta(minutes=59) <= state.resume_at <= datetime.now(UTC) + timedelta(hours=1)
        assert "gave no reset time" in recording.results[0].summary
    [paused] = loop.store.list_events(loop.loop_id, types=[EV.LOOP_PAUSED])
    assert paused.data["resume_at"] == state.resume_at.isoformat()


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_malformed_output_is_an_agent_failure_with_a_clear_message(
    tmp_path: Path, bin_dir: Path, kind: str
) -> None:
    # Given the fake CLI cut short: no final result / turn end / usage report
    name = BACKENDS[kind][0]
    install_fake_cli(bin_dir, name, "malformed")
    loop, recording, _ = _loop(tmp_path, kind, max_iterations=1)

    # When the loop runs its one iteration
    result = loop.run()

    # Then the iteration is an agent failure naming the CLI and what was missing
    assert result.outcome is LoopOutcome.ITERATION_LIMIT
    [failed] = loop.store.list_events(loop.loop_id, types=[EV.AGENT_FAILED])
    assert failed.message.startswith(f"{kind}: no ")
    assert recording.results[0].failed and recording.results[0].output  # the raw tail is kept
