"""The command line, driven as a user drives it: a real workspace, real git, real checks."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.helpers import cli, cli_json, git, make_repo

# An agent that fixes one thing per iteration: first the failing test, then the lint finding.
AGENT = textwrap.dedent(
    """
    import json, os, pathlib
    n = int(os.environ["LOOPWRIGHT_ITERATION"])
    failures = json.loads(pathlib.Path(os.environ["LOOPWRIGHT_FAILURES_FILE"]).read_text())
    if n == 1:
        pathlib.Path("calc.py").write_text("import os\\n\\n\\ndef add(a, b):\\n    return a + b\\n")
        summary = "fixed add"
    else:
        pathlib.Path("calc.py").write_text("def add(a, b):\\n    return a + b\\n")
        summary = "removed unused import; saw " + ",".join(failures["failing_conditions"])
    pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"]).write_text(
        json.dumps({"tokens_used": 1000, "summary": summary}))
    """
)


def _config(tmp_path: Path, agent: Path, **extra: object) -> Path:
    lines = [
        'goal = "make calc correct and lint clean"',
        "max_iterations = 5",
        f"python = {json.dumps(sys.executable)}",  # the project's tools (ruff) are loopwright's
        "[[exit_conditions]]",
        'type = "ALL_TESTS_PASS"',
        "[[exit_conditions]]",
        'type = "LINTING_CLEAN"',
        'command = "ruff check --no-cache --isolated --output-format json ."',
        "[agent]",
        'kind = "command"',
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(agent))}]",
    ]
    lines[1:1] = [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    path = tmp_path / "loop.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "ws",
        {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        },
    )


@pytest.mark.slow
def test_run_converges_on_its_own_branch_and_status_events_show_it(tmp_path: Path, workspace: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    config = _config(tmp_path, agent)
    user_head = git(workspace, "rev-parse", "HEAD")

    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "calc-1")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "CONDITIONS_MET" in done.stdout
    result = json.loads((workspace / ".loopwright" / "last-result.json").read_text())
    assert (result["outcome"], result["iterations"], result["total_tokens"]) == (
        "CONDITIONS_MET",
        2,
        2000,
    )
    # the user's checkout is untouched; the work is on the loop's branch
    assert git(workspace, "rev-parse", "HEAD") == user_head
    assert git(workspace, "branch", "--show-current") == "main"
    assert git(workspace, "status", "--porcelain") == ""
    assert "return a - b" in (workspace / "calc.py").read_text()
    log = git(workspace, "log", "--format=%s", "loopwright/calc-1")
    assert log.splitlines()[:2] == ["loopwright: iteration 2", "loopwright: iteration 1"]
    # the failures of iteration 1's evaluation reached the agent in iteration 2
    events = cli_json("events", "calc-1", "-w", str(workspace), "--type", "AGENT_COMPLETED")
    assert "saw linting_clean" in events[-1]["message"]
    status = cli_json("status", "calc-1", "-w", str(workspace))
    assert status["outcome"] == "CONDITIONS_MET"
    assert {c["name"]: c["status"] for c in status["exit_conditions"]} == {
        "all_tests_pass": "MET",
        "linting_clean": "MET",
    }
    listing = cli_json("status", "-w", str(workspace))
    assert [s["loop_id"] for s in listing] == ["calc-1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-iterations", "0"], "max_iterations: Input should be greater than or equal to 1"),
        (["--condition", "TESTS"], "exit_conditions.1.type: Input should be 'ALL_TESTS_PASS'"),
        (["--condition", "CUSTOM"], "needs a 'command'"),
        (["--agent-function", "nosuchmodule_xyz:run"], "cannot import module 'nosuchmodule_xyz'"),
        (["--token-budget", "-5"], "token_budget: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, workspace: Path, args: list[str], message: str
) -> None:
    base = ["run", "-w", str(workspace), "--goal", "g", "--condition", "LINTING_CLEAN"]
    if not any(a.startswith("--agent") for a in args):
        base += ["--agent-command", "true"]
    done = cli(*base, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert not (workspace / ".loopwright").exists()


def test_queries_on_an_unknown_loop_fail_cleanly_without_writing(workspace: Path) -> None:
    for args in (["status", "nope"], ["events", "nope"], ["resume", "nope"], ["stop", "nope"]):
        done = cli(*args, "-w", str(workspace))
        assert done.returncode == 2, args
        assert "no loop 'nope'" in done.stderr
    assert cli("status", "-w", str(workspace)).stdout.startswith("no loops")
    assert not (workspace / ".loopwright").exists()


def test_shell_metacharacters_in_a_config_value_are_not_executed(tmp_path: Path, workspace: Path) -> None:
    marker = tmp_path / "PWNED"
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--goal",
        "g",
        "--max-iterations",
        "1",
        "--condition",
        f"CUSTOM=echo $(touch {marker}); touch {marker}",
        "--agent-command",
        f"echo `touch {marker}` && touch {marker}",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # echo printed the metacharacters as literal text; no shell ran them
    assert "$(touch" in result["exit_conditions"][0]["stdout"]
    assert not marker.exists()


@pytest.mark.slow
def test_run_with_the_stepfunctions_engine_executes_the_synthesized_state_machine(workspace: Path) -> None:
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--engine",
        "stepfunctions",
        "--goal",
        "write a file",
        "--condition",
        "CUSTOM=test -f done.txt",
        "--agent-command",
        "touch done.txt",
        "--json",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["iterations"]) == ("CONDITIONS_MET", 1)
    assert git(workspace, "branch", "--show-current") == "main"
