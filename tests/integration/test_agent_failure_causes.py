"""Failure causes told apart (issue 15.3): each cause, produced by a fake agent CLI (or a work
function, for idleness), is recorded as its own event and gets its outcome through the whole
local loop: pause for a human, retry after a backoff without counting an iteration, or count
towards ``max_consecutive_failures``, at which Cedar stops the loop with the cause in the reason."""

from __future__ import annotations

import json
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
from loopwright.steps.failures import BASE_BACKOFF_SECONDS
from tests.agent_cli_fakes import install_fake_cli
from tests.integration.helpers import cli, cli_json, make_repo

EV = IterationEventType


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on the PATH of this process (and so of what the sandbox runs)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def _config(agent: dict[str, Any] | None, **limits: Any) -> LoopConfig:
    check = "import pathlib,sys; sys.exit(0 if pathlib.Path('work/done.txt').exists() else 1)"
    return LoopConfig.model_validate(
        {
            "goal": "write work/done.txt",
            "exit_conditions": [{"type": "CUSTOM", "name": "done", "command": ["python", "-c", check]}],
            **({"agent": agent} if agent else {}),
            **limits,
        }
    )


def _cli_loop(
    tmp_path: Path, kind: str, *, timeout: float = 60, idle: float | None = None, **limits: Any
) -> LoopFramework:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    agent: dict[str, Any] = {"kind": kind, "timeout_seconds": timeout}
    if idle is not None:
        agent["idle_timeout_seconds"] = idle
    config = _config(agent, **limits)
    sandbox = SubprocessSandbox()
    agent = build_agent(config, sandbox)
    assert agent is not None
    return LoopFramework(config, workspace=repo, loop_id=f"cause-{kind}", sandbox=sandbox, agent=agent)


def test_an_authentication_error_pauses_the_loop_for_a_human(tmp_path: Path, bin_dir: Path) -> None:
    install_fake_cli(bin_dir, "claude", "auth-error")
    loop = _cli_loop(tmp_path, "claude-code", max_iterations=5)

    result = loop.run()

    state = loop.get_state()
    assert result.outcome is None and state.phase is LoopPhase.PAUSED
    assert state.resume_at is None  # retrying cannot help: a human resumes it
    assert state.iteration == 1 and state.consecutive_failures == 0
    assert state.last_failure_cause is AgentFailureCause.AUTHENTICATION
    [event] = loop.store.list_events(loop.loop_id, types=[EV.AGENT_AUTH_FAILED])
    assert event.data["cause"] == "AUTHENTICATION" and "Invalid API key" in event.message
    assert "could not authenticate" in (state.outcome_reason or "")


@pytest.mark.parametrize(
    ("cli", "kind", "scenario", "cause", "event"),
    [
        ("codex", "codex", "rate-limit", AgentFailureCause.RATE_LIMIT, EV.AGENT_RATE_LIMITED),
        ("claude", "claude-code", "overloaded", AgentFailureCause.PROVIDER_OUTAGE, EV.AGENT_PROVIDER_OUTAGE),
    ],
)
def test_a_rate_limit_or_an_outage_is_retried_after_a_backoff_and_not_counted(
    tmp_path: Path,
    bin_dir: Path,
    cli: str,
    kind: str,
    scenario: str,
    cause: AgentFailureCause,
    event: IterationEventType,
) -> None:
    install_fake_cli(bin_dir, cli, scenario)
    loop = _cli_loop(tmp_path, kind, max_iterations=1)
    before = datetime.now(UTC)

    result = loop.run()

    state = loop.get_state()
    assert result.outcome is None and state.phase is LoopPhase.PAUSED
    assert state.resume_at is not None
    assert before + timedelta(seconds=BASE_BACKOFF_SECONDS - 1) <= state.resume_at
    assert state.resume_at <= datetime.now(UTC) + timedelta(seconds=BASE_BACKOFF_SECONDS + 1)
    assert (state.last_failure_cause, state.consecutive_failures, state.uncounted_iterations) == (cause, 1, 1)
    [recorded] = loop.store.list_events(loop.loop_id, types=[event])
    assert recorded.data["retry_at"] == state.resume_at.isoformat() and "not counted" in recorded.message
    assert "not counted as an iteration" in (state.outcome_reason or "")

    # The retry is not counted: with max_iterations 1, Cedar still allows one more iteration
    install_fake_cli(bin_dir, cli, "ok", edit="work/done.txt")
    resumed = LoopFramework.open(loop.loop_id, workspace=tmp_path / "repo").run()
    assert resumed.outcome is LoopOutcome.CONDITIONS_MET
    after = LoopFramework.open(loop.loop_id, workspace=tmp_path / "repo").get_state()
    assert (after.iteration, after.consecutive_failures, after.last_failure_cause) == (2, 0, None)


def test_a_crashing_agent_is_stopped_at_max_consecutive_failures_with_the_cause(
    tmp_path: Path, bin_dir: Path
) -> None:
    install_fake_cli(bin_dir, "gemini", "error-exit")
    loop = _cli_loop(tmp_path, "gemini", max_iterations=10, max_consecutive_failures=2)

    result = loop.run()

    assert result.outcome is LoopOutcome.AGENT_FAILING
    state = loop.get_state()
    assert state.iteration == 2 and state.consecutive_failures == 2
    assert len(loop.store.list_events(loop.loop_id, types=[EV.AGENT_CRASHED])) == 2
    reason = state.outcome_reason or ""
    assert "consecutive-failures" in reason and "failed 2 iterations in a row" in reason
    assert "last cause: CRASH" in reason


def test_a_hung_agent_times_out_and_counts_as_a_failure(tmp_path: Path, bin_dir: Path) -> None:
    install_fake_cli(bin_dir, "claude", "hang", sleep=30)
    loop = _cli_loop(tmp_path, "claude-code", timeout=1, max_consecutive_failures=1)

    result = loop.run()

    assert result.outcome is LoopOutcome.AGENT_FAILING
    [event] = loop.store.list_events(loop.loop_id, types=[EV.AGENT_TIMED_OUT])
    assert event.data["cause"] == "TIMEOUT" and event.data["consecutive_failures"] == 1
    assert "last cause: TIMEOUT" in (loop.get_state().outcome_reason or "")


def test_a_silent_agent_is_ended_as_idle_and_stopped_at_max_consecutive_failures(
    tmp_path: Path, bin_dir: Path
) -> None:
    install_fake_cli(bin_dir, "claude", "hang", sleep=30)  # prints nothing, changes nothing
    loop = _cli_loop(
        tmp_path, "claude-code", timeout=60, idle=1, max_iterations=10, max_consecutive_failures=2
    )

    result = loop.run()

    assert result.outcome is LoopOutcome.AGENT_FAILING
    state = loop.get_state()
    assert state.iteration == 2 and state.last_failure_cause is AgentFailureCause.IDLE
    idle = loop.store.list_events(loop.loop_id, types=[EV.AGENT_IDLE])
    assert [e.data["consecutive_failures"] for e in idle] == [1, 2]
    assert all(e.data["cause"] == "IDLE" for e in idle)
    assert not loop.store.list_events(loop.loop_id, types=[EV.AGENT_TIMED_OUT, EV.AGENT_CRASHED])
    [failed, *_] = loop.store.list_events(loop.loop_id, types=[EV.AGENT_FAILED])
    assert "agent idle for 1 s" in failed.message
    reason = state.outcome_reason or ""
    assert "failed 2 iterations in a row" in reason and "last cause: IDLE" in reason


# Prints once, then thinks silently for a minute: ended after its idle timeout.
SILENT_AGENT = "import time; print('thinking...', flush=True); time.sleep(60)"


def test_the_cli_stops_a_silent_command_agent_naming_the_idle_cause(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    agent = tmp_path / "agent.py"
    agent.write_text(SILENT_AGENT)
    (repo / "loopwright.toml").write_text(
        'goal = "g"\nmax_iterations = 10\nmax_consecutive_failures = 2\n'
        '[[exit_conditions]]\ntype = "CUSTOM"\nname = "never"\n'
        'command = ["python", "-c", "raise SystemExit(1)"]\n'
        f'[agent]\nkind = "command"\ncommand = ["python", "{agent}"]\nidle_timeout_seconds = 1\n'
    )

    done = cli("run", "-w", str(repo), "--quiet", "--json")

    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "AGENT_FAILING" and result["iterations"] == 2
    assert "last cause: IDLE" in result["stop_reason"]
    events = cli_json("events", result["loop_id"], "-w", str(repo), "--type", "AGENT_IDLE")
    assert [e["data"]["consecutive_failures"] for e in events] == [1, 2]


@pytest.mark.parametrize("value", ["-1", "-0.5", '"soon"'])
def test_the_cli_refuses_a_bad_idle_timeout_naming_the_field(tmp_path: Path, value: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    (repo / "loopwright.toml").write_text(
        'goal = "g"\n[[exit_conditions]]\ntype = "ALL_TESTS_PASS"\n'
        f'[agent]\nkind = "claude-code"\nidle_timeout_seconds = {value}\n'
    )

    done = cli("run", "-w", str(repo))

    assert done.returncode == 2
    assert "idle_timeout_seconds" in done.stderr and "Traceback" not in done.stderr
    assert not (repo / ".loopwright").exists()


def test_an_idle_agent_and_a_working_one_reset_the_count(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    causes = [AgentFailureCause.IDLE, AgentFailureCause.IDLE, None, AgentFailureCause.IDLE]

    def agent(request: AgentRequest) -> AgentResult:
        cause = causes[request.iteration - 1]
        if cause is None:
            return AgentResult(summary="worked, not done yet")
        return AgentResult(failed=True, failure_cause=cause, summary="no output for 600 s")

    loop = LoopFramework(
        _config(None, max_iterations=4, max_consecutive_failures=3), workspace=repo, loop_id="idle"
    )

    result = loop.run(work_function=agent)

    assert result.outcome is LoopOutcome.ITERATION_LIMIT  # 2 idle, 1 worked (reset), 1 idle: never 3
    idle = loop.store.list_events(loop.loop_id, types=[EV.AGENT_IDLE])
    assert [e.data["consecutive_failures"] for e in idle] == [1, 2, 1]
    assert loop.get_state().consecutive_failures == 1


def test_a_loop_ended_by_failures_counts_afresh_when_a_human_resumes_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})

    def crash(request: AgentRequest) -> AgentResult:
        return AgentResult(failed=True, summary="segfault")

    config = _config(None, max_iterations=10, max_consecutive_failures=1)
    first = LoopFramework(config, workspace=repo, loop_id="again").run(work_function=crash)
    assert first.outcome is LoopOutcome.AGENT_FAILING

    def fix(request: AgentRequest) -> AgentResult:
        done = Path(request.worktree) / "work" / "done.txt"
        done.parent.mkdir(exist_ok=True)
        done.write_text("done\n")
        return AgentResult(summary="fixed")

    resumed = LoopFramework.open("again", workspace=repo).run(work_function=fix)
    assert resumed.outcome is LoopOutcome.CONDITIONS_MET


def test_the_cli_stops_a_crashing_agent_with_exit_code_3_naming_the_cause(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    (repo / "loopwright.toml").write_text(
        'goal = "g"\nmax_iterations = 10\nmax_consecutive_failures = 2\n'
        '[[exit_conditions]]\ntype = "CUSTOM"\nname = "never"\n'
        'command = ["python", "-c", "raise SystemExit(1)"]\n'
        '[agent]\nkind = "command"\ncommand = ["python", "-c", "raise SystemExit(7)"]\n'
    )

    done = cli("run", "-w", str(repo), "--quiet", "--json")

    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "AGENT_FAILING" and result["iterations"] == 2
    events = cli_json("events", result["loop_id"], "-w", str(repo), "--type", "AGENT_CRASHED")
    assert [e["data"]["consecutive_failures"] for e in events] == [1, 2]


def test_the_cli_refuses_a_bad_max_consecutive_failures_naming_the_field(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    (repo / "loopwright.toml").write_text(
        'goal = "g"\nmax_consecutive_failures = 0\n[[exit_conditions]]\ntype = "ALL_TESTS_PASS"\n'
        '[agent]\nkind = "command"\ncommand = ["true"]\n'
    )

    done = cli("run", "-w", str(repo))

    assert done.returncode == 2
    assert "max_consecutive_failures" in done.stderr and "Traceback" not in done.stderr
    assert not (repo / ".loopwright" / "worktrees").exists()


# Iteration 1 is rate limited (retry after 1 s); iteration 2 does the work.
RATE_LIMITED_AGENT = (
    "import json, os, pathlib\n"
    "if os.environ['LOOPWRIGHT_ITERATION'] == '1':\n"
    "    report = {'failure_cause': 'RATE_LIMIT', 'retry_after_seconds': 1, 'summary': '429'}\n"
    "    pathlib.Path(os.environ['LOOPWRIGHT_REPORT_FILE']).write_text(json.dumps(report))\n"
    "    raise SystemExit(1)\n"
    "pathlib.Path('done.txt').write_text('done')\n"
)


def test_the_cli_waits_out_a_rate_limit_and_the_retry_is_not_counted(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    agent = tmp_path / "agent.py"
    agent.write_text(RATE_LIMITED_AGENT)
    args = ["run", "-w", str(repo), "--goal", "g", "--condition", "CUSTOM=test -f done.txt"]
    args += ["--agent-command", f"python {agent}", "--max-iterations", "1", "--loop-id", "rl", "--quiet"]

    done = cli(*args)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "rate limit (a retry, not counted as an iteration): loop rl is paused until" in done.stdout
    result = json.loads((repo / ".loopwright" / "last-result.json").read_text())
    assert (result["outcome"], result["iterations"]) == ("CONDITIONS_MET", 2)  # max_iterations 1
