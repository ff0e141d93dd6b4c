"""Hard limits on real loops (issue 10 point 8): the deadline ends a sleeping agent, `stop --now`
ends it from another process, paused time does not count, a streamed token budget ends a CLI
agent that keeps spending; bad input is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.models import IterationEventType, LoopOutcome
from tests.integration.helpers import cli, cli_json, cli_popen, git, make_repo

CHECK = "import pathlib,sys; sys.exit(0 if pathlib.Path('done.txt').exists() else 1)"

# Writes partial.txt, says it started (for the test to wait on), then sleeps far past any limit.
SLEEPING_AGENT = textwrap.dedent(
    """
    import os, pathlib, sys, time
    pathlib.Path("partial.txt").write_text("half done\\n")
    pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
    print("working", flush=True)
    time.sleep(120)
    """
)


def _config(tmp_path: Path, agent_argv: list[str], extra: str = "", agent_extra: str = "") -> Path:
    path = tmp_path / "loop.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "finish"
            max_iterations = 5
            {extra}
            [[exit_conditions]]
            type = "CUSTOM"
            name = "done"
            command = ["python", "-c", {json.dumps(CHECK)}]
            [agent]
            kind = "command"
            command = {json.dumps(agent_argv)}
            {agent_extra}
            """
        )
    )
    return path


def _sleeping(tmp_path: Path) -> tuple[list[str], Path]:
    agent = tmp_path / "agent.py"
    agent.write_text(SLEEPING_AGENT)
    started = tmp_path / "agent-started"
    return [sys.executable, str(agent), str(started)], started


def _store(workspace: Path) -> SqliteStore:
    return SqliteStore(workspace / ".loopwright" / "loopwright.db")


def _ended_event(workspace: Path, loop_id: str) -> dict[str, object]:
    [event] = _store(workspace).list_events(loop_id, types=[IterationEventType.AGENT_ENDED_AT_LIMIT])
    return {"message": event.message, **event.data}


@pytest.mark.slow
def test_the_deadline_ends_a_sleeping_agent_keeps_its_work_on_a_ref_and_ends_the_loop(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    argv, _ = _sleeping(tmp_path)
    config = _config(tmp_path, argv, extra="max_duration_seconds = 3")
    began = time.monotonic()
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "dl", "--json", "-q", timeout=90)
    took = time.monotonic() - began
    assert done.returncode == 3, done.stderr  # a policy ended it
    assert took < 30  # not the agent's 120 s
    result = json.loads(done.stdout)
    assert result["outcome"] == "TIME_LIMIT" and result["iterations"] == 1
    assert "time-limit" in result["stop_reason"]
    event = _ended_event(workspace, "dl")
    assert event["limit"] == "DEADLINE" and "deadline" in str(event["message"])
    ref = str(event["ref"])
    assert ref.startswith("refs/loopwright/dl/set-aside/deadline-iteration-1")
    assert git(workspace, "show", f"{ref}:partial.txt") == "half done"
    branch_files = git(workspace, "ls-tree", "--name-only", "loopwright/dl")
    assert "partial.txt" not in branch_files.split()  # not evaluated: the branch went back
    state = _store(workspace).get_state("dl")
    assert state.head_commit == git(workspace, "rev-parse", "loopwright/dl")
    assert state.consecutive_failures == 0 and state.last_failure_cause is None  # not a crash


@pytest.mark.slow
def test_stop_now_from_another_process_ends_a_sleeping_agent_within_seconds(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    argv, started = _sleeping(tmp_path)
    config = _config(tmp_path, argv)
    run = cli_popen(
        "run",
        "-w",
        str(workspace),
        "-c",
        str(config),
        "--loop-id",
        "now",
        "--json",
        "-q",
        stdout=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline and run.poll() is None, "the agent never started"
            time.sleep(0.05)
        stopped = cli("stop", "now", "-w", str(workspace), "--now", "--reason", "on call")
        asked = time.monotonic()
        assert stopped.returncode == 0, stopped.stderr
        assert "ended now" in stopped.stdout
        out, _ = run.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 4  # a human stopped it
    assert took < 5, took
    result = json.loads(out)
    assert result["outcome"] == "STOPPED" and "on call" in result["stop_reason"]
    event = _ended_event(workspace, "now")
    assert event["limit"] == "STOP_NOW"
    assert git(workspace, "show", f"{event['ref']}:partial.txt") == "half done"
    agent_pid = int(started.read_text())
    assert not Path(f"/proc/{agent_pid}").exists()  # the agent's process is gone


@pytest.mark.slow
def test_stop_now_ends_a_running_exit_condition_and_a_resume_evaluates_again(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    started = tmp_path / "check-started"
    slow_check = f"import pathlib,time; pathlib.Path({str(started)!r}).write_text('1'); time.sleep(120)"
    path = tmp_path / "loop.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "finish"
            [[exit_conditions]]
            type = "CUSTOM"
            name = "slow"
            command = ["python", "-c", {json.dumps(slow_check)}]
            timeout_seconds = 300
            [agent]
            kind = "command"
            command = ["true"]
            """
        )
    )
    run = cli_popen(
        "run", "-w", str(workspace), "-c", str(path), "--loop-id", "cond", "-q", stdout=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline and run.poll() is None, "the condition never started"
            time.sleep(0.05)
        assert cli("stop", "cond", "-w", str(workspace), "--now").returncode == 0
        asked = time.monotonic()
        run.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 4 and took < 5, took
    state = _store(workspace).get_state("cond")
    assert state.outcome is LoopOutcome.STOPPED and state.iteration == 0
    assert all(c.evaluated_at is None for c in state.exit_conditions)  # thrown away: evaluated again


# Iteration 1 asks a human; iteration 2 (after the answer) finishes.
ASKING_AGENT = textwrap.dedent(
    """
    import json, os, pathlib
    if os.environ["LOOPWRIGHT_ITERATION"] == "1":
        pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"]).write_text(json.dumps({"needs_human": "ok?"}))
    else:
        pathlib.Path("done.txt").write_text("done")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("count_paused", "outcome"), [(False, "CONDITIONS_MET"), (True, "TIME_LIMIT")])
def test_time_waiting_for_a_human_counts_only_when_configured(
    tmp_path: Path, count_paused: bool, outcome: str
) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent = tmp_path / "agent.py"
    agent.write_text(ASKING_AGENT)
    extra = f"max_duration_seconds = 6\ncount_paused_time = {'true' if count_paused else 'false'}"
    config = _config(tmp_path, [sys.executable, str(agent)], extra=extra)
    first = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "wait", "--json", "-q")
    assert first.returncode == 5, first.stderr  # waits for a human
    time.sleep(7)  # longer than the whole time limit
    waited = cli_json("status", "wait", "-w", str(workspace))
    assert (waited["elapsed_seconds"] >= 6) is count_paused
    done = cli("approve", "wait", "-w", str(workspace), "--json", "-q")
    assert json.loads(done.stdout)["outcome"] == outcome, done.stderr
    state = _store(workspace).get_state("wait")
    assert state.active_since is None and state.active_seconds < 6
    assert state.outcome is LoopOutcome(outcome)


# A Claude Code stand-in that never finishes: an assistant message with 100 + 100 tokens every
# 50 ms (each message once per content block, as Claude Code repeats them), for 60 s.
STREAMING_CLAUDE = textwrap.dedent(
    """
    #!{python}
    import json, sys, time
    init = {{"type": "system", "subtype": "init", "model": "claude-sonnet-4-5", "session_id": "s"}}
    print(json.dumps(init), flush=True)
    for n in range(1200):
        message = {{"id": f"msg_{{n}}", "model": "claude-sonnet-4-5",
                   "content": [{{"type": "text", "text": f"step {{n}}"}}],
                   "usage": {{"input_tokens": 100, "output_tokens": 100}}}}
        for _ in range(2):
            print(json.dumps({{"type": "assistant", "message": message, "session_id": "s"}}), flush=True)
        time.sleep(0.05)
    """
).lstrip()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("budget", "outcome", "limit"),
    [
        ("token_budget = 1000", "TOKEN_BUDGET_EXHAUSTED", "TOKEN_BUDGET"),
        # $0.0018 a message (100 input at $3/M, 100 output at $15/M): crossed at the 6th.
        ("cost_budget_usd = 0.01", "COST_BUDGET_EXHAUSTED", "COST_BUDGET"),
    ],
)
def test_a_streamed_budget_ends_a_cli_agent_that_keeps_spending(
    tmp_path: Path, budget: str, outcome: str, limit: str
) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text(STREAMING_CLAUDE.format(python=sys.executable))
    fake.chmod(0o755)
    path = tmp_path / "loop.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "finish"
            max_iterations = 5
            {budget}
            [[exit_conditions]]
            type = "CUSTOM"
            name = "done"
            command = ["python", "-c", {json.dumps(CHECK)}]
            [agent]
            kind = "claude-code"
            executable = {json.dumps(str(fake))}
            """
        )
    )
    began = time.monotonic()
    done = cli("run", "-w", str(workspace), "-c", str(path), "--loop-id", "spend", "--json", "-q", timeout=90)
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - began < 30  # not the fake's 60 s
    result = json.loads(done.stdout)
    assert result["outcome"] == outcome and result["iterations"] == 1
    # Ended within a poll or two of crossing (200 tokens per 50 ms), not after a whole run's 240,000.
    assert 1000 <= result["total_tokens"] <= 4000
    assert 0.0018 * 5 <= result["total_cost_usd"] <= 0.0018 * 20
    event = _ended_event(workspace, "spend")
    assert event["limit"] == limit and event["tokens_used"] == result["total_tokens"]
    [completed] = _store(workspace).list_events("spend", types=[IterationEventType.AGENT_COMPLETED])
    assert completed.data["tokens_used"] == result["total_tokens"]
    assert completed.data["input_tokens"] + completed.data["output_tokens"] == result["total_tokens"]
    assert completed.data["cost_basis"] == "priced"  # the tokens streamed so far, priced by model


def test_bad_input_is_refused_without_writing(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    config = _config(tmp_path, ["true"], extra='count_paused_time = "yes"')
    bad = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "bad")
    assert bad.returncode == 2 and "count_paused_time" in bad.stderr
    assert not (workspace / ".loopwright" / "loopwright.db").exists()
    unknown = cli("stop", "nope", "-w", str(workspace), "--now")
    assert unknown.returncode == 2
