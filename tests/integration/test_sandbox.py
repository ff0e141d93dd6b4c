"""The local subprocess sandbox: no shell, process-tree kill on timeout, bounded output."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

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


def test_environment(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    code = (
        "import os, sys; print(sys.executable); print(os.environ['PYTHONDONTWRITEBYTECODE']);"
        "print(os.environ['LW_TEST']); print(os.environ['PATH'].split(os.pathsep)[0])"
    )
    result = sandbox.run(["python3", "-c", code], cwd=tmp_path, timeout_seconds=10, env={"LW_TEST": "x y"})
    executable, dont_write, value, first_path = result.stdout.splitlines()
    assert executable == sys.executable
    assert dont_write == "1"
    assert value == "x y"
    assert first_path == str(Path(sys.executable).parent)


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
