"""A user's loop sees what the user sees (issue 9, point 5): an untracked agent script and an
uncommitted test reach the loop; ``--from-head`` leaves them out; secrets never reach a commit.

The CLI runs as a subprocess on a real repository, as a user would run it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from loopwright.adapters.local.git_workspace import SNAPSHOT_MESSAGE
from tests.integration.helpers import cli, cli_json, git, make_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

# The agent the user has not committed: fixes calc.py and, carelessly, writes a .env.
AGENT_SCRIPT = """#!/bin/sh
printf 'def add(a, b):\\n    return a + b\\n' > calc.py
printf 'API_KEY=sk-live-123\\n' > .env
"""
# The test the user has not committed either: fails until add() adds.
CHECK = "from calc import add\n\nassert add(2, 3) == 5, 'add(2, 3) is not 5'\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``calc.py`` committed (buggy); ``agent.sh`` and ``check_calc.py`` untracked; the loop's
    config outside the repository."""
    root = make_repo(tmp_path / "project", {"calc.py": "def add(a, b):\n    return a - b\n"})
    (root / "agent.sh").write_text(AGENT_SCRIPT)
    (root / "agent.sh").chmod(0o755)
    (root / "check_calc.py").write_text(CHECK)
    (tmp_path / "loop.toml").write_text(
        "\n".join(
            [
                'goal = "make add() add"',
                "max_iterations = 2",
                "[[exit_conditions]]",
                'type = "CUSTOM"',
                'name = "check"',
                f'command = [{json.dumps(sys.executable)}, "check_calc.py"]',
                "[agent]",
                'kind = "command"',
                'command = ["./agent.sh"]',
            ]
        )
        + "\n"
    )
    return root


@pytest.mark.slow
def test_untracked_agent_and_uncommitted_test_are_seen_by_the_loop(tmp_path: Path, project: Path) -> None:
    before = (git(project, "rev-parse", "HEAD"), git(project, "status", "--porcelain"))

    done = cli("run", "-w", str(project), "-c", str(tmp_path / "loop.toml"), "--loop-id", "calc")

    # The untracked agent ran and the uncommitted check judged its work
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CONDITIONS_MET" in done.stdout
    # One line said where the loop started (printed, and recorded)
    assert "WORKSPACE_SNAPSHOT" in done.stdout
    assert "2 untracked: agent.sh, check_calc.py" in done.stdout
    events = cli_json("events", "calc", "-w", str(project), "--type", "WORKSPACE_SNAPSHOT")
    assert len(events) == 1
    assert sorted(events[0]["data"]["untracked"]) == ["agent.sh", "check_calc.py"]
    status = cli_json("status", "calc", "-w", str(project))
    base = status["base_commit"]
    assert git(project, "log", "-1", "--format=%s", base) == SNAPSHOT_MESSAGE
    # The branch's diff from its base is the agent's work only, without the .env it wrote
    assert git(project, "diff", "--name-only", base, "loopwright/calc") == "calc.py"
    completed = cli_json("events", "calc", "-w", str(project), "--type", "AGENT_COMPLETED")
    assert completed[0]["data"]["withheld_files"] == [".env"]
    assert "not committed, they look like secrets: .env" in completed[0]["message"]
    # The user's checkout is as it was
    assert (git(project, "rev-parse", "HEAD"), git(project, "status", "--porcelain")) == before


@pytest.mark.slow
def test_from_head_leaves_uncommitted_files_out(tmp_path: Path, project: Path) -> None:
    done = cli(
        "run", "-w", str(project), "-c", str(tmp_path / "loop.toml"), "--loop-id", "calc", "--from-head"
    )

    # The agent script is not in the worktree: every iteration's agent fails to start
    assert done.returncode != 0, done.stdout + done.stderr
    assert "WORKSPACE_SNAPSHOT" not in done.stdout
    status = cli_json("status", "calc", "-w", str(project))
    assert status["base_commit"] == git(project, "rev-parse", "HEAD")
    worktree = Path(status["worktree"])
    assert not (worktree / "agent.sh").exists() and not (worktree / "check_calc.py").exists()
    assert cli_json("events", "calc", "-w", str(project), "--type", "WORKSPACE_SNAPSHOT") == []
