"""The local sandbox's idle timeout: a command with no output and no file change under its
working directory for ``idle_timeout_seconds`` is ended like on a timeout and reported idle."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loopwright.adapters.local.sandbox import SubprocessSandbox
from tests.integration.test_sandbox import is_alive

# Prints once, starts a child that sleeps (its pid in child.pid), then sleeps itself.
PRINTS_ONCE = textwrap.dedent(
    """
    import pathlib, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pathlib.Path("child.pid").write_text(str(child.pid))
    print("thinking...", flush=True)
    time.sleep(60)
    """
)
# Says it started, then works for 3 s in steps of 0.25 s: prints, or silently writes a file
# (argv[1]: "print" or a path).
BUSY = textwrap.dedent(
    """
    import pathlib, sys, time
    print("started", flush=True)
    for step in range(12):
        time.sleep(0.25)
        if sys.argv[1] == "print":
            print(step, flush=True)
        else:
            path = pathlib.Path(sys.argv[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(step))
    print("done", flush=True)
    """
)


@pytest.fixture
def sandbox() -> SubprocessSandbox:
    return SubprocessSandbox(kill_grace_seconds=0.3)


def test_a_silent_command_is_ended_after_its_idle_timeout(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    result = sandbox.run(
        ["python", "-c", PRINTS_ONCE], cwd=tmp_path, timeout_seconds=30, idle_timeout_seconds=1
    )

    assert result.idle is True and result.timed_out is False
    assert result.exit_code is None and result.error is None
    assert "thinking..." in result.stdout
    assert 1.0 <= result.duration_seconds < 6
    assert result.left_running == []
    # its whole process tree was ended, as on a timeout
    assert not is_alive(int((tmp_path / "child.pid").read_text()))


@pytest.mark.parametrize("activity", ["print", "work/notes.txt", "deep/er/and/deeper.txt"])
def test_a_command_that_prints_or_writes_files_is_not_idle(
    sandbox: SubprocessSandbox, tmp_path: Path, activity: str
) -> None:
    result = sandbox.run(
        ["python", "-c", BUSY, activity], cwd=tmp_path, timeout_seconds=30, idle_timeout_seconds=1.5
    )

    assert (result.exit_code, result.idle, result.timed_out) == (0, False, False)
    assert result.stdout.strip().endswith("done")


def test_writing_only_in_a_skipped_folder_is_not_activity(sandbox: SubprocessSandbox, tmp_path: Path) -> None:
    result = sandbox.run(
        ["python", "-c", BUSY, "node_modules/pkg/x.js"],
        cwd=tmp_path,
        timeout_seconds=30,
        idle_timeout_seconds=1.5,
    )

    assert result.idle is True and result.exit_code is None


@pytest.mark.parametrize("idle", [None, 0, 5])
def test_no_idle_timeout_or_one_not_below_the_timeout_leaves_the_timeout(
    sandbox: SubprocessSandbox, tmp_path: Path, idle: float | None
) -> None:
    result = sandbox.run(
        ["python", "-c", "import time; time.sleep(30)"],
        cwd=tmp_path,
        timeout_seconds=1.5,
        idle_timeout_seconds=idle,
    )

    assert (result.timed_out, result.idle, result.exit_code) == (True, False, None)


def test_a_command_that_exits_before_its_idle_timeout_keeps_its_exit_code(
    sandbox: SubprocessSandbox, tmp_path: Path
) -> None:
    result = sandbox.run(
        ["python", "-c", "raise SystemExit(4)"], cwd=tmp_path, timeout_seconds=30, idle_timeout_seconds=5
    )

    assert (result.exit_code, result.idle, result.timed_out) == (4, False, False)
