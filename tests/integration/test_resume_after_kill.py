"""kill -9 in the middle of an iteration, then `loopwright resume`: no completed iteration runs again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.models import IterationEventType
from tests.integration.helpers import cli, cli_json, cli_popen, files_loop_config, git, make_repo

# Appends "<iteration>" to a log outside the worktree; sleeps in iteration 3 the first time.
AGENT = textwrap.dedent(
    """
    import os, pathlib, sys, time
    n = int(os.environ["LOOPWRIGHT_ITERATION"])
    log, marker = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    with log.open("a") as f:
        f.write(f"{n}\\n")
    pathlib.Path("work").mkdir(exist_ok=True)
    pathlib.Path(f"work/{n}.txt").write_text("done")
    if n == 3 and not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(120)
    """
)


@pytest.mark.slow
def test_kill_9_mid_iteration_then_resume_repeats_no_completed_iteration(tmp_path: Path) -> None:
    # Given a loop that needs 5 iterations, whose agent hangs in iteration 3
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent, log, marker = tmp_path / "agent.py", tmp_path / "agent.log", tmp_path / "sleeping"
    agent.write_text(AGENT)
    config = files_loop_config(
        tmp_path / "loop.toml",
        files=5,
        agent_argv=[sys.executable, str(agent), str(log), str(marker)],
        max_iterations=10,
    )
    run = cli_popen(
        "run",
        "-w",
        str(workspace),
        "-c",
        str(config),
        "--loop-id",
        "kill-test",
        "--quiet",
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the agent never reached iteration 3"
        assert run.poll() is None, "the loop ended before iteration 3"
        time.sleep(0.05)

    # When the loop's process (and the hung agent) are killed with SIGKILL
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    agent_pid = int(marker.read_text() or "0")
    if agent_pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent_pid, signal.SIGKILL)  # the agent runs in its own process group
    status = cli_json("status", "kill-test", "-w", str(workspace))
    assert status["shown_phase"].startswith("INTERRUPTED")

    # And the loop is resumed
    done = cli("resume", "kill-test", "-w", str(workspace), "--json")

    # Then it completes, and no completed iteration ran again
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # (a command agent has no sessions: each iteration's call is an agent session of its own)
    assert (result["outcome"], result["iterations"], result["sessions_used"]) == (
        "CONDITIONS_MET",
        5,
        5,
    )
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    assert store.get_state("kill-test").sessions_used == 2  # engine runs: the first and the resume
    completed = [
        e.iteration for e in store.list_events("kill-test", types=[IterationEventType.ITERATION_COMPLETED])
    ]
    assert completed == [1, 2, 3, 4, 5]
    started = [
        e.iteration for e in store.list_events("kill-test", types=[IterationEventType.ITERATION_STARTED])
    ]
    assert started == [1, 2, 3, 3, 4, 5]  # only the killed iteration 3 started twice
    assert log.read_text().split() == ["1", "2", "3", "3", "4", "5"]
    commits = git(workspace, "log", "--format=%s", "loopwright/kill-test").splitlines()
    assert [c for c in commits if c.startswith("loopwright: iteration")] == [
        f"loopwright: iteration {n}" for n in (5, 4, 3, 2, 1)
    ]
    assert store.list_events("kill-test", types=[IterationEventType.CHECKPOINT_RECOVERED])
