"""``loopwright run`` waits out the agent's usage limit and continues, as a user runs it: the loop
pauses with ``resume_at``, the command waits until then and runs it again; ``--no-wait`` exits
with the loop PAUSED; a human's stop while it waits ends the wait at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.helpers import cli, cli_popen, make_repo

# Iteration 1 hits a usage limit that resets RESET seconds from now; iteration 2 does the work.
AGENT = textwrap.dedent(
    """
    import datetime, json, os, pathlib, sys
    reset = float(sys.argv[1])
    if os.environ["LOOPWRIGHT_ITERATION"] == "1":
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=reset)
        report = {"usage_limit_resets_at": at.isoformat(), "summary": "usage limit reached"}
        pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"]).write_text(json.dumps(report))
    else:
        pathlib.Path("done.txt").write_text("done\\n")
    """
)


def _start(tmp_path: Path, reset_seconds: float, *extra: str) -> list[str]:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    return [
        "run",
        "-w",
        str(workspace),
        "--goal",
        "write done.txt",
        "--condition",
        "CUSTOM=test -f done.txt",
        "--agent-command",
        f"{sys.executable} {agent} {reset_seconds}",
        "--loop-id",
        "limited",
        "--json",
        *extra,
    ]


def test_the_run_waits_until_the_usage_limit_resets_and_continues(tmp_path: Path) -> None:
    # Given an agent whose first iteration hits a usage limit that resets in 2 s
    started = time.monotonic()
    # When the loop runs (waiting is the default)
    done = cli(*_start(tmp_path, 2.0))
    # Then the command waited for the reset and the loop met its condition in iteration 2
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["iterations"]) == ("CONDITIONS_MET", 2)
    assert time.monotonic() - started >= 2.0
    events = cli("events", "limited", "-w", str(tmp_path / "ws"), "--json")
    types = [e["type"] for e in json.loads(events.stdout)]
    assert types.index("LOOP_PAUSED") < types.index("LOOP_RESUMED") < types.index("LOOP_COMPLETED")


def test_no_wait_exits_at_once_with_the_loop_paused(tmp_path: Path) -> None:
    # Given a usage limit that resets in an hour
    started = time.monotonic()
    done = cli(*_start(tmp_path, 3600.0), "--no-wait")
    # Then the command does not wait: exit code 6, phase PAUSED with its resume time
    assert done.returncode == 6, done.stderr
    assert time.monotonic() - started < 60
    status = json.loads(cli("status", "limited", "-w", str(tmp_path / "ws"), "--json").stdout)
    assert status["phase"] == "PAUSED" and status["resume_at"] is not None


@pytest.mark.slow
def test_a_stop_while_it_waits_ends_the_wait(tmp_path: Path) -> None:
    # Given a run waiting out a usage limit that resets in an hour
    process = cli_popen(*_start(tmp_path, 3600.0), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workspace = str(tmp_path / "ws")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = cli("status", "limited", "-w", workspace, "--json")
            if shown.returncode == 0 and json.loads(shown.stdout)["phase"] == "PAUSED":
                break
            time.sleep(0.2)
        else:
            pytest.fail("the loop never paused")
        # When a human stops the loop
        assert cli("stop", "limited", "-w", workspace).returncode == 0
        # Then the waiting command ends within seconds, reporting the stop (exit code 4)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 4, err
    assert json.loads(out)["outcome"] == "STOPPED"
