"""``loopwright run`` before iteration 1, as a user runs it: a missing program is one line, exit 2,
and nothing written; an already-green repository completes without running the agent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.integration.helpers import cli, git, make_repo


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws", {"README.md": "x\n"})


def _nothing_written(workspace: Path) -> None:
    assert not (workspace / ".loopwright").exists()
    assert git(workspace, "branch", "--list", "loopwright/*") == ""
    assert git(workspace, "worktree", "list").count("\n") == 0  # only the main checkout


def test_a_missing_condition_tool_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    # Given a repository and a condition whose tool is not installed
    workspace = _repo(tmp_path)
    # When a loop is started
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--goal",
        "g",
        "--condition",
        "CUSTOM=no-such-checker-xyz --all",
        "--agent-command",
        "true",
    )
    # Then it is refused in one line naming the tool, the condition and the fix
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "loopwright: error: command not found: no-such-checker-xyz (exit condition 'custom'): install "
        "it in the project's environment or change its command"
    ]
    # And no store, no worktree, no branch exist
    _nothing_written(workspace)


def test_a_missing_agent_script_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    workspace = _repo(tmp_path)
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--goal",
        "g",
        "--condition",
        f"CUSTOM={sys.executable} -c pass",
        "--agent-command",
        "./agent.sh",
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "command not found: ./agent.sh (the agent): no executable file ./agent.sh in" in done.stderr
    _nothing_written(workspace)


def test_an_already_green_repository_completes_without_running_the_agent(tmp_path: Path) -> None:
    # Given a repository whose condition already holds and an agent that leaves a marker
    workspace = _repo(tmp_path)
    marker = tmp_path / "agent-ran"
    agent = f"{sys.executable} -c \"import pathlib; pathlib.Path(r'{marker}').write_text('x')\""
    # When a loop is started
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--goal",
        "g",
        "--condition",
        f"CUSTOM={sys.executable} -c pass",
        "--agent-command",
        agent,
        "--json",
    )
    # Then it completed at its baseline: 0 iterations, and the agent never ran
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["iterations"]) == ("CONDITIONS_MET", 0)
    assert not marker.exists()


def test_a_tool_installed_only_in_the_projects_venv_passes_preflight(tmp_path: Path) -> None:
    # Given a repository whose checker is installed only in its own .venv (not on PATH)
    import venv

    workspace = _repo(tmp_path)
    venv.EnvBuilder(with_pip=False).create(workspace / ".venv")
    checker = workspace / ".venv" / "bin" / "project-only-checker"
    checker.write_text("#!/bin/sh\nexit 0\n")
    checker.chmod(0o755)
    # When a loop is started with that checker as its condition
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--goal",
        "g",
        "--condition",
        "CUSTOM=project-only-checker",
        "--agent-command",
        "true",
        "--json",
    )
    # Then preflight finds it in the project's environment, and the green baseline completes
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["iterations"] == 0
