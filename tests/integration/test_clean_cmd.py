"""``loopwright clean``: the worktrees (and branches) of ended loops go; running and paused ones stay.

The loops are real: real worktrees and branches made by :class:`GitWorktreeWorkspace`, records in
the workspace's SQLite store, and a running loop's lock held by this process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from loopwright.adapters.local.git_workspace import GitWorktreeWorkspace
from loopwright.cli.app import app
from loopwright.engine.local import open_store, state_dir_for
from loopwright.engine.lock import LoopLock
from loopwright.models import (
    ExitConditionConfig,
    ExitConditionType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)
from tests.integration.helpers import git, make_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

CONFIG = LoopConfig(
    goal="g", exit_conditions=[ExitConditionConfig(type=ExitConditionType.CUSTOM, command=["true"])]
)
#: loop id -> (phase, outcome) of its record; "orphan-1" has a worktree and no record.
LOOPS = {
    "done-1": (LoopPhase.COMPLETED, LoopOutcome.CONDITIONS_MET),
    "stopped-1": (LoopPhase.COMPLETED, LoopOutcome.STOPPED),
    "paused-1": (LoopPhase.PAUSED, None),
    "crashed-1": (LoopPhase.ITERATING, None),  # no process holds its lock
    "running-1": (LoopPhase.ITERATING, None),
}


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    root = make_repo(tmp_path / "project", {"app.py": "VALUE = 1\n"})
    state_dir = state_dir_for(root)
    worktrees = GitWorktreeWorkspace(root, state_dir)
    store = open_store(state_dir)
    for loop_id, (phase, outcome) in LOOPS.items():
        path, branch, base = worktrees.prepare(loop_id)
        (path / "work.txt").write_text(loop_id)
        worktrees.commit(loop_id, f"work of {loop_id}")
        store.create_loop(
            LoopState(
                loop_id=loop_id,
                config=CONFIG,
                phase=phase,
                outcome=outcome,
                workspace=str(root),
                worktree=str(path),
                branch=branch,
                base_commit=base,
            )
        )
    worktrees.prepare("orphan-1")
    running = LoopLock(state_dir, "running-1")
    running.acquire()
    yield root
    running.release()


def _clean(root: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["clean", "-w", str(root), *args])


def _worktrees(root: Path) -> set[str]:
    folder = state_dir_for(root) / "worktrees"
    return {p.name for p in folder.iterdir()}


def _branches(root: Path) -> set[str]:
    listed = git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads/loopwright/")
    return {line.removeprefix("loopwright/") for line in listed.splitlines()}


def _registered(root: Path) -> set[str]:
    """Loop ids of the worktrees git knows (``git worktree list``)."""
    listed = git(root, "worktree", "list", "--porcelain")
    return {Path(line.split(" ", 1)[1]).name for line in listed.splitlines() if "/worktrees/" in line}


EVERY = {*LOOPS, "orphan-1"}


def test_clean_removes_the_worktrees_of_ended_loops_only(workspace: Path) -> None:
    result = _clean(workspace)

    assert result.exit_code == 0, result.output
    kept = {"paused-1", "crashed-1", "running-1"}
    assert _worktrees(workspace) == kept
    assert _registered(workspace) == kept
    assert _branches(workspace) == EVERY  # branches only with --branches
    lines = result.stdout.splitlines()
    assert (
        f"done-1 (COMPLETED CONDITIONS_MET): removed worktree {state_dir_for(workspace)}/worktrees/done-1"
        in lines
    )
    assert "orphan-1 (no record): removed worktree" in result.stdout
    assert any(line.startswith("running-1 (running): kept: process ") for line in lines)
    resumable = "it can be resumed (`loopwright resume paused-1`); --include-paused cleans it"
    assert f"paused-1 (PAUSED): kept: {resumable}" in lines
    assert "crashed-1 (INTERRUPTED (was ITERATING)): kept: it can be resumed" in result.stdout
    assert lines[-1] == "3 of 6 loop(s) cleaned"
    # the user's checkout is untouched, and the loops' records stay
    assert git(workspace, "status", "--porcelain") == ""
    assert open_store(state_dir_for(workspace)).get_state("done-1").outcome is LoopOutcome.CONDITIONS_MET


def test_dry_run_lists_and_changes_nothing(workspace: Path) -> None:
    result = _clean(workspace, "--dry-run", "--branches")

    assert result.exit_code == 0, result.output
    assert _worktrees(workspace) == EVERY
    assert _branches(workspace) == EVERY
    assert "stopped-1 (COMPLETED STOPPED): would remove worktree " in result.stdout
    assert ", branch loopwright/stopped-1" in result.stdout
    assert result.stdout.splitlines()[-1] == "3 of 6 loop(s) would be cleaned (dry run: nothing changed)"


def test_branches_and_include_paused_remove_all_but_the_running_loop(workspace: Path) -> None:
    result = _clean(workspace, "--branches", "--include-paused", "--json")

    assert result.exit_code == 0, result.output
    assert _worktrees(workspace) == {"running-1"}
    assert _branches(workspace) == {"running-1"}
    by_id = {item["loop_id"]: item for item in json.loads(result.stdout)}
    assert by_id["running-1"]["action"] == "kept"
    assert by_id["paused-1"]["action"] == "removed"
    assert by_id["paused-1"]["removed"] == [
        f"worktree {state_dir_for(workspace)}/worktrees/paused-1",
        "branch loopwright/paused-1",
    ]


def test_a_branch_left_after_its_worktree_is_cleaned_with_branches(workspace: Path) -> None:
    _clean(workspace)

    result = _clean(workspace, "--branches")

    assert result.exit_code == 0, result.output
    assert "done-1 (COMPLETED CONDITIONS_MET): removed branch loopwright/done-1" in result.stdout
    assert _branches(workspace) == {"paused-1", "crashed-1", "running-1"}


def test_a_cleaned_loop_gets_its_worktree_back_from_its_branch(workspace: Path) -> None:
    head = git(workspace, "rev-parse", "loopwright/stopped-1")
    _clean(workspace)

    path, _, _ = GitWorktreeWorkspace(workspace, state_dir_for(workspace)).prepare("stopped-1")

    assert (path / "work.txt").read_text() == "stopped-1"
    assert git(path, "rev-parse", "HEAD") == head


def test_a_branch_the_user_has_checked_out_is_kept_and_reported(workspace: Path) -> None:
    # Given an ended loop whose worktree is gone and whose branch the user is reviewing
    _clean(workspace)
    git(workspace, "checkout", "-q", "loopwright/done-1")

    result = _clean(workspace, "--branches")

    assert result.exit_code == 1
    assert "done-1 (COMPLETED CONDITIONS_MET): failed: " in result.stdout
    assert "loopwright/done-1" in result.stdout
    assert "done-1" in _branches(workspace)
    assert "stopped-1" not in _branches(workspace)  # the others are still cleaned


def test_a_worktree_whose_git_file_was_deleted_is_removed_all_the_same(workspace: Path) -> None:
    (state_dir_for(workspace) / "worktrees" / "done-1" / ".git").unlink()

    result = _clean(workspace)

    assert result.exit_code == 0, result.output
    assert "done-1" not in _worktrees(workspace)
    assert "done-1" not in _registered(workspace)


def test_a_workspace_without_loops_has_nothing_to_clean(tmp_path: Path) -> None:
    result = _clean(tmp_path)

    assert result.exit_code == 0
    assert result.stdout == f"nothing to clean: {tmp_path} has no loopwright state\n"
