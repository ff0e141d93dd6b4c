"""Issue 15, part 2: a completed loop's signed evidence bundle verifies, and fails after one byte
of it, or of the branch's pinned files, is changed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.helpers import cli, cli_json, git, make_repo

pytestmark = pytest.mark.slow  # real loops and the CLI as a subprocess

CHECK = "import pathlib, sys\nsys.exit(0 if pathlib.Path('work/1.txt').exists() else 1)\n"
AGENT = (
    "import pathlib\npathlib.Path('work').mkdir(exist_ok=True)\n"
    "pathlib.Path('work/1.txt').write_text('done')\n"
)


@pytest.fixture()
def completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A loop that met its condition (``check.py``) in 1 iteration; returns (workspace, evidence)."""
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "user-state"))
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n", "check.py": CHECK})
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    config = tmp_path / "loop.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            goal = "write work/1.txt"
            max_iterations = 3
            [[exit_conditions]]
            type = "CUSTOM"
            name = "files"
            command = ["python", "check.py"]
            [agent]
            kind = "command"
            command = {json.dumps([sys.executable, str(agent)])}
            """
        )
    )
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "ev1", "--quiet")
    assert done.returncode == 0, done.stderr
    written = workspace / ".loopwright" / "evidence" / "ev1.json"
    # The loop wrote its evidence itself when it completed, and recorded where and its hash
    [event] = cli_json("events", "ev1", "-w", str(workspace), "--type", "EVIDENCE_RECORDED")
    assert event["data"] == {
        "location": str(written),
        "sha256": hashlib.sha256(written.read_bytes()).hexdigest(),
    }
    checkout = workspace / ".loopwright" / "worktrees" / "ev1"
    assert cli("evidence", "verify", str(written), "--checkout", str(checkout)).returncode == 0
    exported = cli("evidence", "export", "ev1", "-w", str(workspace))
    assert exported.returncode == 0, exported.stderr
    evidence = Path(exported.stdout.strip())
    assert evidence == workspace / ".loopwright" / "evidence" / "ev1.json"
    return workspace, evidence


def test_the_bundle_holds_the_loops_goal_commits_conditions_and_pinned_files(
    completed: tuple[Path, Path],
) -> None:
    workspace, evidence = completed
    bundle = json.loads(evidence.read_bytes())["bundle"]
    assert bundle["goal"] == "write work/1.txt"
    assert bundle["outcome"] == "CONDITIONS_MET"
    assert bundle["branch"] == "loopwright/ev1"
    assert [i["iteration"] for i in bundle["iterations"]] == [1]
    assert (
        bundle["iterations"][0]["commit"]
        == bundle["head_commit"]
        == git(workspace, "rev-parse", "loopwright/ev1")
    )
    [condition] = bundle["conditions"]
    assert (condition["name"], condition["exit_code"], condition["status"]) == ("files", 0, "MET")
    assert set(bundle["pinned_files_end"]) == {"check.py"} == set(bundle["pinned_files_start"])
    assert bundle["policy_set_sha256"] is not None and len(bundle["policy_set_sha256"]) == 64


def test_a_completed_loops_evidence_verifies_in_a_checkout_of_its_branch(
    completed: tuple[Path, Path],
) -> None:
    workspace, evidence = completed
    checkout = workspace / ".loopwright" / "worktrees" / "ev1"
    done = cli("evidence", "verify", str(evidence), "--checkout", str(checkout), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert (result["signature"], result["verified"], result["problems"]) == ("valid", True, [])


def test_evidence_with_any_one_byte_changed_fails_verification(completed: tuple[Path, Path]) -> None:
    _, evidence = completed
    data = evidence.read_bytes()
    changed = evidence.with_name("changed.json")
    for position in (0, len(data) // 3, len(data) // 2, len(data) - 2, len(data) - 1):
        changed.write_bytes(data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :])
        done = cli("evidence", "verify", str(changed), "--checkout", str(evidence.parent), "--no-rerun")
        assert done.returncode == 1, (position, done.stdout)
        assert "verification failed" in done.stderr


def test_a_bad_checkout_or_output_is_one_line_and_exit_2(
    completed: tuple[Path, Path], tmp_path: Path
) -> None:
    workspace, evidence = completed
    no_folder = cli("evidence", "verify", str(evidence), "--checkout", str(tmp_path / "nope"))
    assert (no_folder.returncode, no_folder.stderr.count("\n")) == (2, 1)
    assert "--checkout:" in no_folder.stderr and "is not a folder" in no_folder.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    no_write = cli("evidence", "export", "ev1", "-w", str(workspace), "-o", str(blocked / "e.json"))
    assert (no_write.returncode, no_write.stderr.count("\n")) == (2, 1)
    assert "--output: cannot write" in no_write.stderr


def test_a_changed_pinned_file_on_the_branch_fails_verification(completed: tuple[Path, Path]) -> None:
    workspace, evidence = completed
    checkout = workspace / ".loopwright" / "worktrees" / "ev1"
    check = checkout / "check.py"
    check.write_bytes(check.read_bytes().replace(b"1.txt", b"2.txt"))  # the check now fails
    done = cli("evidence", "verify", str(evidence), "--checkout", str(checkout))
    assert done.returncode == 1
    assert "FAIL pinned file check.py: changed" in done.stdout
    assert "FAIL condition files: now NOT_MET (exit code 1), the bundle says MET (exit code 0)" in done.stdout


def test_another_key_is_refused(
    completed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, evidence = completed
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "someone-else"))
    pem = tmp_path / "other.pem"
    pem.write_text(cli("evidence", "public-key").stdout)
    done = cli("evidence", "verify", str(evidence), "--public-key", str(pem), "--no-rerun")
    assert done.returncode == 1
    assert "not by the trusted key" in done.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "user-state"))
    missing = cli("evidence", "verify", str(tmp_path / "nope.json"))
    assert (missing.returncode, missing.stderr.count("\n")) == (2, 1)
    assert "FILE: cannot read" in missing.stderr
    (tmp_path / "e.json").write_text("{}\n")
    no_key = cli("evidence", "verify", str(tmp_path / "e.json"))
    assert no_key.returncode == 2
    assert "pass --public-key" in no_key.stderr
    not_pem = tmp_path / "k.pem"
    not_pem.write_text("hello")
    bad_key = cli("evidence", "verify", str(tmp_path / "e.json"), "--public-key", str(not_pem))
    assert bad_key.returncode == 2
    assert "--public-key:" in bad_key.stderr and "Traceback" not in bad_key.stderr


def test_a_loop_that_did_not_complete_has_no_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "user-state"))
    workspace = make_repo(tmp_path / "ws", {"check.py": "import sys\nsys.exit(1)\n"})
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--goal",
        "g",
        "--condition",
        "CUSTOM=python check.py",
        "--agent-command",
        "true",
        "--max-iterations",
        "1",
        "--loop-id",
        "ev2",
        "--quiet",
    )
    assert done.returncode == 3, done.stderr
    exported = cli("evidence", "export", "ev2", "-w", str(workspace))
    assert exported.returncode == 2
    assert "has not completed" in exported.stderr
    assert not (workspace / ".loopwright" / "evidence").exists()


def _one_iteration_loop(tmp_path: Path, *extra: str) -> tuple[Path, int]:
    workspace = make_repo(tmp_path / "ws", {"check.py": CHECK})
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    done = cli(
        "run", "-w", str(workspace), "--goal", "g", "--condition", "CUSTOM=python check.py",
        "--agent-command", f"{sys.executable} {agent}", "--loop-id", "ev3", "--quiet", *extra,
    )  # fmt: skip
    return workspace, done.returncode


def test_a_loop_without_a_branch_writes_no_evidence_and_reports_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "user-state"))
    workspace, code = _one_iteration_loop(tmp_path, "--no-git-isolation")
    assert code == 0
    assert not (workspace / ".loopwright" / "evidence").exists()
    types = [e["type"] for e in cli_json("events", "ev3", "-w", str(workspace))]
    assert "LOOP_COMPLETED" in types
    assert "ERROR" not in types and "EVIDENCE_RECORDED" not in types


def test_evidence_that_cannot_be_signed_leaves_the_outcome_and_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a state folder that is a file: the key cannot be made
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "not-a-folder"))
    workspace, code = _one_iteration_loop(tmp_path)
    assert code == 0  # the loop still met its conditions
    [error] = cli_json("events", "ev3", "-w", str(workspace), "--type", "ERROR")
    assert error["message"].startswith("evidence not written:")
    assert "loopwright evidence export ev3" in error["message"]
    assert not (workspace / ".loopwright" / "evidence" / "ev3.json").exists()


CHECK_IMPORTS = 'import project_only, pathlib; assert pathlib.Path("work/1.txt").exists()'


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")
def test_verify_runs_the_conditions_with_the_projects_own_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a project whose check imports a module only its own .venv has
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "user-state"))
    workspace = make_repo(tmp_path / "ws", {".gitignore": ".venv/\n", "README.md": "x\n"})
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(workspace / ".venv")], check=True)
    [site] = (workspace / ".venv" / "lib").glob("python*/site-packages")
    (site / "project_only.py").write_text("VALUE = 1\n")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    done = cli(
        "run", "-w", str(workspace), "--goal", "g", "--loop-id", "ev4", "--quiet",
        "--condition", f"CUSTOM=python -c '{CHECK_IMPORTS}'",
        "--agent-command", f"{sys.executable} {agent}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # When a reviewer checks out the branch's head in their clone (where the .venv is) and verifies
    [event] = cli_json("events", "ev4", "-w", str(workspace), "--type", "EVIDENCE_RECORDED")
    head = json.loads(Path(event["data"]["location"]).read_text())["bundle"]["head_commit"]
    git(workspace, "checkout", "-q", head)
    verified = cli("evidence", "verify", event["data"]["location"], "--checkout", str(workspace), "--json")
    # Then the condition ran with the project's interpreter, as in the loop, and holds
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["problems"] == []
    # And without that interpreter it is a difference, not a crash
    (site / "project_only.py").unlink()
    failed = cli("evidence", "verify", event["data"]["location"], "--checkout", str(workspace), "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["problems"] == [
        "condition custom: now NOT_MET (exit code 1), the bundle says MET (exit code 0)"
    ]
