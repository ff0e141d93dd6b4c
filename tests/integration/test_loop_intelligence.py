"""Progress memory, stuck detection and regression handling end to end (issue 10, points 1, 4
and 5), through the CLI on a real repository with scripted command agents: an agent that stops
changing anything is paused by ``stuck-no-progress`` after ``max_stuck_iterations``; one that
goes A, B, A is paused by ``stuck-oscillation``; under ``on_regression = "revert"`` an iteration
that breaks a passing condition is reverted (kept on a ref) and the next prompt says what it
broke; the progress notes survive iterations and a resume; bad settings are refused."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import cli, cli_json, git, make_repo

EXIT_OK, EXIT_BAD_INPUT, EXIT_POLICY, EXIT_PAUSED = 0, 2, 3, 6

#: The agent: counts its runs in argv[1], keeps a copy of each prompt (prompt-<n>.md next to the
#: counter), appends a line to its progress notes, and does what MODE (argv[2]) says:
#: "idle" changes nothing; "oscillate" writes A, B, A... to state.txt; "regress" creates
#: broken.txt in its first run and done.txt in its second.
AGENT = textwrap.dedent(
    """
    import json, os, pathlib, shutil, sys
    count = pathlib.Path(sys.argv[1])
    n = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(n))
    shutil.copy(os.environ["LOOPWRIGHT_PROMPT_FILE"], count.parent / f"prompt-{n}.md")
    notes = pathlib.Path(os.environ["LOOPWRIGHT_NOTES_FILE"])
    with notes.open("a") as handle:
        handle.write(f"run {n}: tried {sys.argv[2]}\\n")
    mode = sys.argv[2]
    if mode == "oscillate":
        pathlib.Path("state.txt").write_text("AB"[(n - 1) % 2] + "\\n")
    elif mode == "regress" and n == 1:
        pathlib.Path("broken.txt").write_text("oops\\n")
    elif mode == "regress":
        pathlib.Path("done.txt").write_text("done\\n")
    report = {"summary": f"run {n} ({mode})"}
    pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"]).write_text(json.dumps(report))
    """
)


def _workspace(tmp_path: Path, mode: str, **extra: Any) -> tuple[Path, Path]:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    lines = [
        'goal = "create done.txt"',
        "max_iterations = 10",
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
        "[[exit_conditions]]",
        'type = "CUSTOM"',
        'name = "done"',
        'command = ["test", "-f", "done.txt"]',
        'parser = "exit_code"',
        "[[exit_conditions]]",
        'type = "CUSTOM"',
        'name = "not-broken"',
        'command = ["sh", "-c", "! test -f broken.txt"]',
        'parser = "exit_code"',
        "[agent]",
        'kind = "command"',
        f"command = {json.dumps([sys.executable, str(agent), str(tmp_path / 'count'), mode])}",
    ]
    config = tmp_path / "loop.toml"
    config.write_text("\n".join(lines) + "\n")
    return make_repo(tmp_path / "ws", {"README.md": "demo\n"}), config


def _events(repo: Path, loop_id: str, *types: str) -> list[dict[str, Any]]:
    args = [arg for t in types for arg in ("--type", t)]
    events: list[dict[str, Any]] = cli_json("events", loop_id, "-w", str(repo), *args)
    return events


def _run(repo: Path, config: Path, loop_id: str) -> Any:
    return cli("run", "-w", str(repo), "-c", str(config), "--loop-id", loop_id, "--quiet")


def test_an_agent_that_changes_nothing_is_paused_by_stuck_no_progress(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "idle", max_stuck_iterations=2)
    done = _run(repo, config, "stuck-1")
    assert done.returncode == EXIT_PAUSED, done.stdout + done.stderr
    assert (tmp_path / "count").read_text() == "2"  # the configured count, not max_iterations
    [denied] = _events(repo, "stuck-1", "POLICY_DENIED")
    assert denied["data"]["policy_ids"] == "stuck-no-progress"
    assert "2 iterations in a row without a change" in denied["message"]
    status = cli_json("status", "stuck-1", "-w", str(repo))
    assert status["phase"] == "PAUSED"
    assert "paused for a human" in (status.get("outcome_reason") or "")
    assert status["progress"]["iterations_without_change"] == 2
    # (an exit-code check reports no failure lines, so its repeats are not counted as such)
    assert status["progress_summary"] == (
        "failing 1 -> 1 -> 1 (best 1, at iteration 2) · 2 iterations without change (pauses at 2)"
    )
    # and the text status says it in words: the trend, the facts and why it is stuck
    shown = cli("status", "stuck-1", "-w", str(repo)).stdout
    assert "progress: failing 1 -> 1 -> 1" in shown and "stuck: " in shown
    # The history and the notes reached the second prompt.
    second = (tmp_path / "prompt-2.md").read_text()
    assert "## Progress so far" in second
    assert "- iteration 1: run 1 (idle) · no file change" in second
    assert "failing required conditions: 1 -> 1" in second
    assert "run 1: tried idle" in second

    # A human resumes it: the counters start over, the agent is told why it was paused, and the
    # notes kept in the loop's state are still there.
    done = cli("resume", "stuck-1", "-w", str(repo), "--quiet")
    assert done.returncode == EXIT_PAUSED, done.stdout + done.stderr
    assert (tmp_path / "count").read_text() == "4"
    third = (tmp_path / "prompt-3.md").read_text()
    assert "paused because it made no progress" in third
    assert "run 2: tried idle" in third


def test_an_oscillating_agent_is_paused_by_stuck_oscillation(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "oscillate", max_stuck_iterations=5)
    done = _run(repo, config, "osc-1")
    assert done.returncode == EXIT_PAUSED, done.stdout + done.stderr
    assert (tmp_path / "count").read_text() == "3"  # A, B, A
    [denied] = _events(repo, "osc-1", "POLICY_DENIED")
    assert denied["data"]["policy_ids"] == "stuck-oscillation"
    assert "tree seen before: yes" in denied["message"]


def test_stuck_detection_turned_off_lets_the_loop_run_to_its_limit(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "idle", max_stuck_iterations=False)
    config.write_text(config.read_text().replace("max_iterations = 10", "max_iterations = 4"))
    done = _run(repo, config, "off-1")
    assert done.returncode == EXIT_POLICY, done.stdout + done.stderr
    assert (tmp_path / "count").read_text() == "4"
    assert _events(repo, "off-1", "POLICY_DENIED")[0]["data"]["policy_ids"] == "iteration-limit"


def test_a_regressing_iteration_is_reverted_under_revert(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "regress", on_regression="revert")
    done = _run(repo, config, "reg-1")
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    [reverted] = _events(repo, "reg-1", "ITERATION_REVERTED")
    assert reverted["iteration"] == 1
    assert reverted["data"]["broke"] == ["not-broken"]
    assert (reverted["data"]["failing_count"], reverted["data"]["best_failing_count"]) == (2, 1)
    ref = reverted["data"]["ref"]
    assert ref == "refs/loopwright/reg-1/set-aside/regression-iteration-1"
    assert git(repo, "rev-parse", ref).strip() == reverted["data"]["commit"]
    files = git(repo, "ls-tree", "-r", "--name-only", "loopwright/reg-1").split()
    assert "done.txt" in files and "broken.txt" not in files
    second = (tmp_path / "prompt-2.md").read_text()
    assert "## Your last iteration was reverted" in second
    assert "It broke: not-broken" in second
    assert "- iteration 1 [reverted]" in second
    result = json.loads((repo / ".loopwright" / "last-result.json").read_text())
    assert (result["outcome"], result["iterations"]) == ("CONDITIONS_MET", 2)


def test_a_regressing_iteration_is_kept_by_default(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "regress")
    done = _run(repo, config, "reg-2")
    # broken.txt stays: the loop never completes; the agent then changes nothing and is paused.
    assert done.returncode == EXIT_PAUSED, done.stdout + done.stderr
    assert _events(repo, "reg-2", "ITERATION_REVERTED") == []
    files = git(repo, "ls-tree", "-r", "--name-only", "loopwright/reg-2").split()
    assert "broken.txt" in files


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("on_regression", "undo"),
        ("max_stuck_iterations", 0),
        ("max_stuck_iterations", True),
        ("progress_history_iterations", 21),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(tmp_path: Path, field: str, value: object) -> None:
    repo, config = _workspace(tmp_path, "idle", **{field: value})
    done = _run(repo, config, "bad-1")
    assert done.returncode == EXIT_BAD_INPUT
    assert field in done.stdout + done.stderr
    assert not (tmp_path / "count").exists()
    assert not (repo / ".loopwright" / "last-result.json").exists()
