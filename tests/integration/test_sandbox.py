"""The local subprocess sandbox: no shell, process-tree kill on timeout, bounded output."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from loopwright.adapters.local.project_env import InterpreterSource, ProjectEnvironment
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.conditions import evaluate_condition
from loopwright.models import ExitConditionConfig, ExitConditionStatusValue, ExitConditionType

GRANDCHILD_SCRIPT = """
import subprocess, sys, time
pid_dir = sys.argv[1]
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
)
with open(pid_dir + "/pids.tmp", "w") as f:
    f.write(f"{child.pid}\\n")
import os
os.replace(pid_dir + "/pids.tmp", pid_dir + "/pids")
print("started", flush=True)
time.sleep(60)
"""


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def sandbox() -> SubprocessSandbox:
    return SubprocessSandbox()


def test_runs_a_command_and_reports_output(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    result = sandbox.run(
        [
            "python",
            "-c",
            "import os,sys; print(os.getcwd()); sys.exit(print('err', file=sys.stderr) or 3)",
        ],
        cwd=tmp_path,
        timeout_seconds=10,
    )
    assert result.exit_code == 3
    assert Path(result.stdout.strip()).resolve() == tmp_path.resolve()
    assert result.stderr.strip() == "err"
    assert not result.timed_out
    assert not result.truncated
    assert result.error is None
    assert result.started_at is not None
    assert 0 < result.duration_seconds < 10
    assert result.command[0] == "python"


def test_environment(sandbox: SubprocessSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given loopwright's venv activated and a policy folder configured in loopwright's environment
    own_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([own_bin, "/usr/bin", "/bin"]))
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    monkeypatch.setenv("LOOPWRIGHT_POLICY_DIR", str(tmp_path))
    code = "import json, os, sys; print(json.dumps({'executable': sys.executable, 'env': dict(os.environ)}))"

    # When a command runs, even one asking for the policy folder itself
    result = sandbox.run(
        ["python3", "-c", code],
        cwd=tmp_path,
        timeout_seconds=10,
        env={"LW_TEST": "x y", "LOOPWRIGHT_POLICY_DIR": str(tmp_path)},
    )

    # Then it runs with the user's python3 (first on PATH once loopwright's venv is taken out),
    # and nothing leads it back to loopwright
    seen = json.loads(result.stdout)
    env = seen["env"]
    assert seen["executable"] == "/usr/bin/python3"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["LW_TEST"] == "x y"
    assert env["PATH"].split(os.pathsep) == ["/usr/bin", "/bin"]  # nothing prepended, own bin removed
    assert "LOOPWRIGHT_POLICY_DIR" not in env
    assert "VIRTUAL_ENV" not in env
    assert env["LOOPWRIGHT_PROCESS_MARKER"].startswith("-:-:")  # unbound: no loop


def test_another_virtual_env_is_kept(
    sandbox: SubprocessSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "project-venv"))
    code = "import os; print(os.environ.get('VIRTUAL_ENV'))"
    result = sandbox.run(["python", "-c", code], cwd=tmp_path, timeout_seconds=10)
    assert result.stdout.strip() == str(tmp_path / "project-venv")


def test_tools_next_to_loopwright_are_not_found_nor_loopwright(
    sandbox: SubprocessSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a PATH without loopwright's venv, where pytest and loopwright are installed
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "pytest").is_file()
    assert (bin_dir / "loopwright").is_file()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")

    # When a condition's tool is named without a path, it is not taken from loopwright's venv
    tool = sandbox.run(["pytest", "--version"], cwd=tmp_path, timeout_seconds=30)
    assert tool.exit_code is None
    assert tool.error is not None
    assert tool.error.startswith("command not found: pytest (not on the user's PATH")
    # ... and PATH stays the user's
    path = sandbox.run(
        ["sh", "-c", 'echo "$PATH"; command -v loopwright || echo none'], cwd=tmp_path, timeout_seconds=10
    )
    assert path.stdout.split() == ["/usr/bin:/bin", "none"]

    # Then loopwright itself is never found there, not even when loopwright's venv is the
    # project's (its bin first on PATH): the agent cannot run it as the user
    project = SubprocessSandbox(
        environment=ProjectEnvironment(
            python=sys.executable, source=InterpreterSource.CONFIG, found_by="test", venv=sys.prefix
        )
    )
    assert project.run(["pytest", "--version"], cwd=tmp_path, timeout_seconds=30).exit_code == 0
    refused = project.run(
        ["loopwright", "limits", "x", "--max-iterations", "999"], cwd=tmp_path, timeout_seconds=10
    )
    assert refused.exit_code is None
    assert refused.error is not None
    assert refused.error.startswith("command not found: loopwright")


def test_missing_executable_and_directory(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    result = sandbox.run(["no-such-tool-xyz", "--flag"], cwd=tmp_path, timeout_seconds=5)
    assert result.exit_code is None
    assert result.error is not None
    assert result.error.startswith("command not found: no-such-tool-xyz")
    assert not result.timed_out
    gone = sandbox.run(["true"], cwd=tmp_path / "missing", timeout_seconds=5)
    assert gone.exit_code is None
    assert gone.error is not None
    assert "does not exist" in gone.error
    assert sandbox.run([], cwd=tmp_path, timeout_seconds=5).error == "empty command"


def test_shell_metacharacters_are_not_interpreted(tmp_path: Path) -> None:
    cfg = ExitConditionConfig(
        type=ExitConditionType.CUSTOM, command='echo "$(touch PWNED)" ; touch PWNED2 `touch PWNED3`'
    )
    status = evaluate_condition(cfg, SubprocessSandbox(), tmp_path, iteration=1)
    assert status.status is ExitConditionStatusValue.MET  # echo ran and printed the text
    assert status.stdout.strip() == "$(touch PWNED) ; touch PWNED2 `touch PWNED3`"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_is_bounded_keeping_the_tail(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('a' * 3_000_000 + 'END'); sys.stderr.write('small')"
    result = sandbox.run(["python", "-c", code], cwd=tmp_path, timeout_seconds=10, max_output_bytes=4096)
    assert result.exit_code == 0
    assert result.truncated
    assert result.stdout.endswith("a" * 100 + "END")
    assert "truncated" in result.stdout.splitlines()[0]
    assert len(result.stdout) < 4096 + 200
    assert result.stderr == "small"


def test_invalid_utf8_is_replaced(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end')"
    result = sandbox.run(["python", "-c", code], cwd=tmp_path, timeout_seconds=10)
    assert result.stdout == "ok \ufffd\ufffd end"


@pytest.mark.slow
def test_timeout_kills_the_whole_process_tree(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    start = time.monotonic()
    result = sandbox.run(
        ["python", "-c", GRANDCHILD_SCRIPT, str(tmp_path)], cwd=tmp_path, timeout_seconds=1.5
    )
    elapsed = time.monotonic() - start
    assert result.timed_out
    assert result.exit_code is None
    assert "started" in result.stdout
    assert elapsed < 1.5 + 2.5, elapsed  # timeout + grace + drain, not the 60 s sleep
    grandchild = int((tmp_path / "pids").read_text())
    assert wait_gone(grandchild), f"grandchild {grandchild} still running"


def test_term_ignoring_tree_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "c = subprocess.Popen([sys.executable, '-c', 'import signal, time;"
        " signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']);"
        "open('pid', 'w').write(str(c.pid)); print('go', flush=True); time.sleep(60)"
    )
    result = SubprocessSandbox(kill_grace_seconds=0.2).run(
        ["python", "-c", code], cwd=tmp_path, timeout_seconds=0.8
    )
    assert result.timed_out
    assert wait_gone(int((tmp_path / "pid").read_text()))


def test_leftover_holding_stdout_does_not_hang(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    code = (
        "import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', 'import time;"
        " time.sleep(60)']); open('pid', 'w').write(str(c.pid)); print('parent done')"
    )
    start = time.monotonic()
    result = sandbox.run(["python", "-c", code], cwd=tmp_path, timeout_seconds=20)
    assert time.monotonic() - start < 5
    assert result.exit_code == 0
    assert not result.timed_out
    assert result.stdout.strip() == "parent done"
    assert wait_gone(int((tmp_path / "pid").read_text()))


def test_not_executable(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = sandbox.run(["./script.sh"], cwd=tmp_path, timeout_seconds=5)
    assert result.exit_code is None
    assert result.error is not None
    assert result.error.startswith("permission denied")
    script.chmod(0o755)
    assert sandbox.run(["./script.sh"], cwd=tmp_path, timeout_seconds=5).stdout == "hi\n"


# Starts a grandchild in its own session (escaping the process group) that writes a heartbeat file
# every 50 ms; records its pid in ./escapee; then sleeps argv[1] seconds.
ESCAPING_SCRIPT = """
import subprocess, sys, time
beat = "import pathlib, time\\nwhile True:\\n    pathlib.Path('heartbeat').write_text('x'); time.sleep(0.05)"
child = subprocess.Popen([sys.executable, "-c", beat], start_new_session=True)
open("escapee", "w").write(str(child.pid))
print("started", flush=True)
time.sleep(float(sys.argv[1]))
"""


@pytest.mark.parametrize(("sleep", "timeout"), [(0.1, 20), (60, 1.5)], ids=["exits", "times-out"])
def test_a_setsid_escapee_is_ended_too(tmp_path: Path, sleep: float, timeout: float) -> None:
    # Given a command whose grandchild left its process group (setsid) and keeps running
    script = tmp_path / "escape.py"
    script.write_text(ESCAPING_SCRIPT)

    # When the command exits (or times out)
    result = SubprocessSandbox(kill_grace_seconds=0.3).run(
        ["python", str(script), str(sleep)], cwd=tmp_path, timeout_seconds=timeout
    )

    # Then the escapee is gone too, and the result says nothing was left running
    assert "started" in result.stdout
    assert result.timed_out is (sleep > timeout)
    assert result.left_running == []
    assert wait_gone(int((tmp_path / "escapee").read_text()), seconds=1.0)


def test_a_command_that_kills_its_supervisor_leaves_nothing(tmp_path: Path) -> None:
    # Given a command that starts a setsid grandchild, then kills its own supervisor with SIGKILL
    script = tmp_path / "escape.py"
    script.write_text(
        ESCAPING_SCRIPT.replace(
            "time.sleep(float", "import os, signal; os.kill(os.getppid(), signal.SIGKILL); time.sleep(float"
        )
    )

    # When it runs
    result = SubprocessSandbox(kill_grace_seconds=0.3).run(
        ["python", str(script), "60"], cwd=tmp_path, timeout_seconds=20
    )

    # Then the sandbox notices, ends the command and its escapee (by its group and marker), and
    # does not pretend to know the command's exit status
    assert result.exit_code is None
    assert result.error is not None
    assert "supervisor" in result.error
    assert "killed" in result.error
    assert result.duration_seconds < 10
    assert wait_gone(int((tmp_path / "escapee").read_text()), seconds=1.0)
