"""Pinned checks end to end (issue 15.1), through the CLI on a real repository: an agent that
makes the tests pass by editing them (or pyproject.toml's pytest section) is reverted and the loop
waits for a human; accepting the change completes the loop, refusing it keeps it reverted and the
agent fixes the code; ``allow_test_changes`` lets the change through."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import cli, cli_json, git, make_repo

EXIT_OK, EXIT_BAD_INPUT, EXIT_AWAITING = 0, 2, 5

#: The agent: its first iteration cheats (MODE: "test" edits the test, "pyproject" points pytest
#: at a test of its own through pyproject.toml's pytest section); later ones fix the code.
AGENT = textwrap.dedent(
    """
    import json, os, pathlib, sys
    count = pathlib.Path(sys.argv[1])
    n = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(n))
    if n == 1 and sys.argv[2] == "test":
        pathlib.Path("test_calc.py").write_text("def test_add():\\n    assert True\\n")
    elif n == 1:
        text = pathlib.Path("pyproject.toml").read_text() + 'python_files = ["check_*.py"]\\n'
        pathlib.Path("pyproject.toml").write_text(text)
        pathlib.Path("check_calc.py").write_text("def test_ok():\\n    pass\\n")
    else:
        pathlib.Path("calc.py").write_text("def add(a, b):\\n    return a + b\\n")
    pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"]).write_text(json.dumps({"summary": f"try {n}"}))
    """
)

PYPROJECT = '[project]\nname = "calc"\nversion = "1"\n\n[tool.pytest.ini_options]\naddopts = "-q"\n'


def _workspace(tmp_path: Path, mode: str, **extra: Any) -> tuple[Path, Path]:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    lines = [
        'goal = "make the tests pass"',
        "max_iterations = 4",
        f"python = {json.dumps(sys.executable)}",
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
        "[[exit_conditions]]",
        'type = "ALL_TESTS_PASS"',
        "[agent]",
        'kind = "command"',
        f"command = {json.dumps([sys.executable, str(agent), str(tmp_path / 'count'), mode])}",
    ]
    config = tmp_path / "loop.toml"
    config.write_text("\n".join(lines) + "\n")
    repo = make_repo(
        tmp_path / "ws",
        {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
            "pyproject.toml": PYPROJECT,
        },
    )
    return repo, config


def _events(repo: Path, loop_id: str, *types: str) -> list[dict[str, Any]]:
    args = [arg for t in types for arg in ("--type", t)]
    events: list[dict[str, Any]] = cli_json("events", loop_id, "-w", str(repo), *args)
    return events


def _run(repo: Path, config: Path, loop_id: str) -> Any:
    return cli("run", "-w", str(repo), "-c", str(config), "--loop-id", loop_id, "--quiet")


@pytest.mark.parametrize("mode", ["test", "pyproject"])
def test_a_cheat_is_reverted_and_the_loop_completes_once_accepted(tmp_path: Path, mode: str) -> None:
    repo, config = _workspace(tmp_path, mode)
    done = _run(repo, config, "pin-1")
    assert done.returncode == EXIT_AWAITING, done.stdout + done.stderr
    [reverted] = _events(repo, "pin-1", "PINNED_CHANGE_REVERTED")
    changed = "test_calc.py" if mode == "test" else "pyproject.toml"
    assert reverted["data"]["paths"] == [changed]
    assert reverted["data"]["policy_ids"] == ["pinned-checks"]
    ref = reverted["data"]["ref"]
    assert ref == "refs/loopwright/pin-1/set-aside/pinned-iteration-1"
    # Not evaluated: only the baseline was.
    assert len(_events(repo, "pin-1", "EXIT_CONDITIONS_EVALUATED")) == 1
    # The branch is back where it was; the cheat is kept on the ref.
    assert git(repo, "rev-parse", "loopwright/pin-1").strip() == reverted["data"]["reverted_to"]
    assert git(repo, "rev-parse", ref).strip() == reverted["data"]["commit"]
    assert "a - b" in git(repo, "show", "loopwright/pin-1:calc.py")
    status = cli_json("status", "pin-1", "-w", str(repo))
    assert status["phase"] == "AWAITING_RESPONSE"
    assert "--accept-pinned-change" in status["human_request"]

    done = cli("approve", "pin-1", "-w", str(repo), "--accept-pinned-change", "--quiet")
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    [accepted] = _events(repo, "pin-1", "PINNED_CHANGE_ACCEPTED")
    assert accepted["data"]["commit"] == reverted["data"]["commit"]
    assert git(repo, "rev-parse", "loopwright/pin-1").strip() == reverted["data"]["commit"]
    result = json.loads((repo / ".loopwright" / "last-result.json").read_text())
    assert (result["outcome"], result["iterations"]) == ("CONDITIONS_MET", 1)
    assert (tmp_path / "count").read_text() == "1"  # accepted: the agent was not asked again


def test_a_refused_change_stays_reverted_and_the_agent_fixes_the_code(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "test")
    assert _run(repo, config, "pin-2").returncode == EXIT_AWAITING
    done = cli("approve", "pin-2", "-w", str(repo), "--response", "fix calc.py", "--quiet")
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    [rejected] = _events(repo, "pin-2", "PINNED_CHANGE_REJECTED")
    assert "not accepted" in rejected["message"]
    result = json.loads((repo / ".loopwright" / "last-result.json").read_text())
    assert (result["outcome"], result["iterations"]) == ("CONDITIONS_MET", 2)
    assert "assert add(2, 3) == 5" in git(repo, "show", "loopwright/pin-2:test_calc.py")
    prompt = cli_json("show", "pin-2", "-w", str(repo), "--iteration", "2")
    assert "was reverted" in json.dumps(prompt)


def test_allow_test_changes_lets_the_edit_through(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "test", allow_test_changes=True)
    done = _run(repo, config, "pin-3")
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    [allowed] = _events(repo, "pin-3", "PINNED_CHANGE_ALLOWED")
    assert allowed["data"]["paths"] == ["test_calc.py"]
    assert allowed["data"]["policy_ids"] == ["pinned-change-allowed-by-config"]
    assert _events(repo, "pin-3", "PINNED_CHANGE_REVERTED") == []
    [pinned] = _events(repo, "pin-3", "CHECKS_PINNED")
    assert "tests: test_*.py" in pinned["data"]["pins"]


def test_a_bad_pin_setting_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "test", protected_paths=["../secrets"])
    done = _run(repo, config, "pin-4")
    assert done.returncode == EXIT_BAD_INPUT
    assert "protected_paths.0" in done.stderr and "without '..'" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli("status", "-w", str(repo)).stdout.startswith("no loops")
    assert not (tmp_path / "count").exists()


def test_the_run_flags_set_the_pins(tmp_path: Path) -> None:
    repo, config = _workspace(tmp_path, "test")
    done = cli("run", "-w", str(repo), "-c", str(config), "--loop-id", "pin-6", "--protected-path", "/etc")
    assert done.returncode == EXIT_BAD_INPUT
    assert "protected_paths.0" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "count").exists()
    done = cli(
        "run",
        "-w",
        str(repo),
        "-c",
        str(config),
        "--loop-id",
        "pin-7",
        "--quiet",
        "--allow-test-changes",
        "--protected-path",
        "docs/",
    )
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    [pinned] = _events(repo, "pin-7", "CHECKS_PINNED")
    assert "protected: docs/" in pinned["data"]["pins"]
    assert pinned["data"]["allow_test_changes"] is True
    assert len(_events(repo, "pin-7", "PINNED_CHANGE_ALLOWED")) == 1
