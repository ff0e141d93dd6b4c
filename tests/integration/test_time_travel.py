"""Time travel and the evaluation cache (issue 10.6, 10.7), driven through the CLI on a real git
repository: rollback then resume, fork, bad input, and a cached evaluation."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from loopwright.engine.lock import LoopLock
from tests.integration.helpers import cli, cli_json, git, make_repo

# An agent that writes one file per iteration: work/<loop id>-<iteration>.txt.
FILE_AGENT = textwrap.dedent(
    """
    import os, pathlib
    n, loop = os.environ["LOOPWRIGHT_ITERATION"], os.environ["LOOPWRIGHT_LOOP_ID"]
    work = pathlib.Path("work")
    work.mkdir(exist_ok=True)
    (work / (loop + "-" + n + ".txt")).write_text(n + "\\n")
    """
)
# An agent that writes the same file every iteration: after the first, the tree does not change.
SAME_AGENT = textwrap.dedent(
    """
    import pathlib
    pathlib.Path("work").mkdir(exist_ok=True)
    pathlib.Path("work/same.txt").write_text("same\\n")
    """
)


def _config(tmp_path: Path, agent_text: str, *, files: int, max_iterations: int, cache: bool = True) -> Path:
    """A loop whose CUSTOM condition holds once work/ has ``files`` files; each run of the
    condition appends a line to ``<tmp_path>/runs.log`` (outside the worktree)."""
    agent = tmp_path / "agent.py"
    agent.write_text(agent_text)
    runs = tmp_path / "runs.log"
    check = (
        "import pathlib,sys; "
        f"open({str(runs)!r}, 'a').write('run\\n'); "
        f"sys.exit(0 if len(list(pathlib.Path('work').glob('*.txt'))) >= {files} else 1)"
    )
    path = tmp_path / "loop.toml"
    path.write_text(
        "\n".join(
            [
                'goal = "write files"',
                f"max_iterations = {max_iterations}",
                f"evaluation_cache = {'true' if cache else 'false'}",
                "[[exit_conditions]]",
                'type = "CUSTOM"',
                'name = "files"',
                f"command = [{json.dumps(sys.executable)}, '-c', {json.dumps(check)}]",
                "[agent]",
                'kind = "command"',
                f"command = [{json.dumps(sys.executable)}, {json.dumps(str(agent))}]",
            ]
        )
        + "\n"
    )
    return path


def _runs(tmp_path: Path) -> int:
    path = tmp_path / "runs.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _events(workspace: Path, loop_id: str, kind: str) -> list[dict[str, object]]:
    return list(cli_json("events", loop_id, "-w", str(workspace), "--type", kind))


def _snapshot(workspace: Path) -> tuple[int, str]:
    """(events stored, refs) of the workspace: what a refused command must leave as it was."""
    with sqlite3.connect(workspace / ".loopwright" / "loopwright.db") as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    return count, git(workspace, "for-each-ref")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws", {"README.md": "files\n"})


@pytest.fixture
def limited(tmp_path: Path, workspace: Path) -> Path:
    """A loop 'parent' that wrote 2 of the 3 files it needs and hit its iteration limit."""
    config = _config(tmp_path, FILE_AGENT, files=3, max_iterations=2)
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "parent", "-q")
    assert done.returncode == 3, done.stdout + done.stderr
    return workspace


@pytest.mark.slow
def test_rollback_then_resume_moves_the_branch_back_keeps_the_later_commits_and_continues(
    tmp_path: Path, limited: Path
) -> None:
    workspace = limited
    branch = "loopwright/parent"
    first, second = git(workspace, "rev-list", "--max-count=2", branch).splitlines()[::-1]

    done = cli("rollback", "parent", "--to", "1", "-w", str(workspace))

    assert done.returncode == 0, done.stderr
    assert "rollback applied for parent" in done.stdout
    assert git(workspace, "rev-parse", branch) == first
    aside = git(workspace, "rev-parse", "refs/loopwright/parent/set-aside/rollback-1")
    assert aside == second  # the discarded commit stays reachable
    status = cli_json("status", "parent", "-w", str(workspace))
    assert (status["iteration"], status["phase"], status["outcome"]) == (1, "PAUSED", None)
    [rolled] = _events(workspace, "parent", "LOOP_ROLLED_BACK")
    assert rolled["data"]["to_iteration"] == 1  # type: ignore[index]
    assert rolled["data"]["set_aside_ref"] == "refs/loopwright/parent/set-aside/rollback-1"  # type: ignore[index]

    # raise the limit, then resume: iterations 2 and 3 run again on top of iteration 1
    assert cli("limits", "parent", "--max-iterations", "5", "-w", str(workspace)).returncode == 0
    resumed = cli("resume", "parent", "-w", str(workspace), "-q")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    log = git(workspace, "log", "--format=%s", branch).splitlines()
    assert log[:3] == ["loopwright: iteration 3", "loopwright: iteration 2", "loopwright: iteration 1"]
    assert git(workspace, "merge-base", "--is-ancestor", first, branch) == ""
    assert git(workspace, "rev-parse", "refs/loopwright/parent/set-aside/rollback-1") == second
    assert cli_json("status", "parent", "-w", str(workspace))["outcome"] == "CONDITIONS_MET"
    # iteration 2 again left the tree the first iteration 2 left: its evaluation was reused
    evaluations = _events(workspace, "parent", "EXIT_CONDITIONS_EVALUATED")
    again = [e for e in evaluations if e["iteration"] == 2][-1]
    assert again["data"]["cached"] is True  # type: ignore[index]


@pytest.mark.slow
def test_fork_starts_a_new_loop_on_its_own_branch_from_the_checkpoint(tmp_path: Path, limited: Path) -> None:
    workspace = limited
    first = git(workspace, "rev-list", "--max-count=2", "loopwright/parent").splitlines()[-1]
    parent_head = git(workspace, "rev-parse", "loopwright/parent")

    done = cli(
        "fork",
        "parent",
        "--from",
        "1",
        "--loop-id",
        "child",
        "--goal",
        "three files",
        "-w",
        str(workspace),
        "--json",
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["outcome"] == "CONDITIONS_MET"  # stdout is the child's result only
    assert "loop child starts from iteration 1 on branch loopwright/child" in done.stderr
    assert git(workspace, "rev-parse", "loopwright/parent") == parent_head  # the parent is untouched
    assert git(workspace, "merge-base", "--is-ancestor", first, "loopwright/child") == ""
    child_log = git(workspace, "log", "--format=%s", f"{first}..loopwright/child").splitlines()
    assert child_log == ["loopwright: iteration 2", "loopwright: iteration 1"]
    child = cli_json("status", "child", "-w", str(workspace))
    assert (child["parent_loop_id"], child["forked_from_iteration"], child["outcome"]) == (
        "parent",
        1,
        "CONDITIONS_MET",
    )
    assert cli_json("status", "parent", "-w", str(workspace))["children"] == ["child"]
    assert "forks: child" in cli("status", "parent", "-w", str(workspace)).stdout
    assert "forked from parent at iteration 1" in cli("status", "child", "-w", str(workspace)).stdout
    [on_parent] = _events(workspace, "parent", "LOOP_FORKED")
    [on_child] = _events(workspace, "child", "LOOP_FORKED")
    assert on_parent["data"]["child_loop_id"] == "child"  # type: ignore[index]
    assert on_child["data"]["parent_loop_id"] == "parent"  # type: ignore[index]
    started = _events(workspace, "child", "LOOP_STARTED")
    assert len(started) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["rollback", "parent", "--to", "7"],
            "has no valid checkpoint of iteration 7 (checkpoints of iterations: 1, 2)",
        ),
        (["fork", "parent", "--from", "9"], "has no valid checkpoint of iteration 9"),
        (["fork", "nope", "--from", "1"], "no loop 'nope'"),
        (["rollback", "nope", "--to", "1"], "no loop 'nope'"),
        (["fork", "parent", "--from", "1", "--loop-id", "parent"], "loop 'parent' exists already"),
        (["fork", "parent", "--from", "1", "--loop-id", "bad id"], "--loop-id: String should match pattern"),
        (["rollback", "parent", "--to", "-1"], "Invalid value for '--to'"),
    ],
)
def test_bad_time_travel_is_one_line_exit_2_and_writes_nothing(
    limited: Path, args: list[str], message: str
) -> None:
    before = _snapshot(limited)

    done = cli(*args, "-w", str(limited))

    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    if not message.startswith("Invalid value"):  # Typer's own usage error spans a box
        assert len(done.stderr.strip().splitlines()) == 1
    assert _snapshot(limited) == before


@pytest.mark.slow
def test_a_running_loop_is_not_rolled_back(limited: Path) -> None:
    before = _snapshot(limited)
    lock = LoopLock(limited / ".loopwright", "parent")
    lock.acquire()  # this process runs the loop, as far as anyone can tell
    try:
        done = cli("rollback", "parent", "--to", "1", "-w", str(limited))
    finally:
        lock.release()

    assert done.returncode == 2
    assert "loop 'parent' is running; pause or stop it before rolling it back" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _snapshot(limited) == before


@pytest.mark.slow
@pytest.mark.parametrize(("cache", "runs"), [(True, 2), (False, 4)])
def test_an_unchanged_tree_reuses_the_evaluation_without_running_the_condition(
    tmp_path: Path, workspace: Path, cache: bool, runs: int
) -> None:
    config = _config(tmp_path, SAME_AGENT, files=9, max_iterations=3, cache=cache)

    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "same", "-q")

    assert done.returncode == 3, done.stdout + done.stderr  # the iteration limit
    # baseline (empty tree) and iteration 1 ran it; iterations 2 and 3 left iteration 1's tree
    assert _runs(tmp_path) == runs
    evaluations = _events(workspace, "same", "EXIT_CONDITIONS_EVALUATED")
    assert [e["iteration"] for e in evaluations] == [0, 1, 2, 3]
    cached = [e["data"].get("cached") for e in evaluations]  # type: ignore[union-attr]
    assert cached == ([None, None, True, True] if cache else [None] * 4)
    if cache:
        tree = git(workspace, "rev-parse", "loopwright/same^{tree}")
        assert {e["data"]["tree"] for e in evaluations[1:]} == {tree}  # type: ignore[index]
        assert "(cached: files from iteration 1" in str(evaluations[2]["message"])
