"""No orphans: what a loop starts dies with the run that started it (issue 11, finding 1).

Real processes throughout: a loop run through the CLI and killed with ``kill -9``, the per-loop
process ledger ending what a previous run left alive (and never a reused pid), and
:func:`owning_loop` telling a loop's processes from the user's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local import supervisor
from loopwright.adapters.local.processes import (
    MARKER_ENV,
    ProcessLedger,
    ProcessRecord,
    owning_loop,
)
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import utcnow
from tests.integration.helpers import cli_popen, files_loop_config, make_repo
from tests.integration.test_sandbox import is_alive, wait_gone

# The agent: in iteration 1 it starts a grandchild in its own session that writes a heartbeat
# file every 50 ms (and records its pid), then works for a long time.
AGENT = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys, time
    beat, pids = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    code = (
        "import pathlib, sys, time\\n"
        "while True:\\n"
        "    pathlib.Path(sys.argv[1]).write_text(str(time.time_ns())); time.sleep(0.05)\\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(beat)], start_new_session=True)
    pids.write_text(f"{os.getpid()} {child.pid}")
    time.sleep(120)
    """
)


def marked_processes(value_part: str) -> list[int]:
    """Pids of the processes whose environment holds a marker containing ``value_part``."""
    found = []
    for stat in supervisor.all_stats():
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{stat.pid}/environ").read_bytes().split(b"\0")
            marked = any(
                e.startswith(f"{MARKER_ENV}=".encode()) and value_part.encode() in e for e in environ
            )
            if marked and is_alive(stat.pid):
                found.append(stat.pid)
    return found


@pytest.mark.slow
def test_kill_9_of_loopwright_ends_the_agent_and_its_setsid_grandchild(tmp_path: Path) -> None:
    # Given a loop run by the CLI whose agent started a grandchild in its own session
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent, beat, pids = tmp_path / "agent.py", tmp_path / "heartbeat", tmp_path / "pids"
    agent.write_text(AGENT)
    config = files_loop_config(
        tmp_path / "loop.toml",
        files=1,
        agent_argv=[sys.executable, str(agent), str(beat), str(pids)],
        max_iterations=3,
    )
    run = cli_popen(
        "run",
        "-w",
        str(workspace),
        "-c",
        str(config),
        "--loop-id",
        "orphans",
        "--quiet",
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (beat.exists() and pids.exists() and pids.read_text()):
            assert time.monotonic() < deadline, "the agent never started its grandchild"
            assert run.poll() is None, "the loop ended early"
            time.sleep(0.05)
        agent_pid, grandchild_pid = map(int, pids.read_text().split())

        # When loopwright alone is killed with SIGKILL (not its process group)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)

        # Then within a few seconds the heartbeat stops and nothing of the loop is left
        assert wait_gone(grandchild_pid, seconds=5), "the setsid grandchild outlived loopwright"
        assert wait_gone(agent_pid, seconds=1), "the agent outlived loopwright"
        last = beat.read_text()
        time.sleep(0.3)
        assert beat.read_text() == last, "the heartbeat goes on"
        assert marked_processes(":orphans:") == []
    finally:
        if run.poll() is None:
            run.kill()


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of them is killed afterwards."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def sleeper(
    spawned: list[subprocess.Popen[bytes]], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A process sleeping in its own session (as a command the sandbox started)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    spawned.append(process)
    return process


def record_of(process: subprocess.Popen[bytes], token: str, *, start: int | None = None) -> ProcessRecord:
    stat = supervisor.proc_stat(process.pid)
    assert stat is not None
    return ProcessRecord(
        token=token,
        supervisor_pid=process.pid,
        supervisor_start=stat.start_ticks if start is None else start,
        pid=process.pid,
        start=stat.start_ticks if start is None else start,
        command="sleeper",
        started_at=utcnow(),
    )


def test_end_leftovers_ends_what_a_previous_run_left_and_never_a_reused_pid(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # Given a loop's ledger recording a command that is still alive ...
    state_dir = tmp_path / ".loopwright"
    ledger = ProcessLedger(state_dir, "loop-a")
    left = sleeper(spawned)
    ledger.add(record_of(left, "left"))
    # ... a record whose pid now belongs to another process (same pid, other start time) ...
    reused = sleeper(spawned)
    stat = supervisor.proc_stat(reused.pid)
    assert stat is not None
    ledger.add(record_of(reused, "reused", start=stat.start_ticks - 100))
    # ... a process that carries the loop's marker but was never recorded (its supervisor died
    # before it was written), and one carrying another loop's marker
    marked = sleeper(spawned, {MARKER_ENV: ledger.marker("unrecorded")})
    other = sleeper(spawned, {MARKER_ENV: ProcessLedger(state_dir, "loop-b").marker("x")})

    # When the loop starts again
    ended = ledger.end_leftovers(grace_seconds=1.0)

    # Then the recorded and the marked processes are ended, and nothing else
    assert sorted(p.pid for p in ended) == sorted([left.pid, marked.pid])
    assert all("time.sleep(60)" in p.command for p in ended)
    assert wait_gone(left.pid) and wait_gone(marked.pid)
    assert is_alive(reused.pid), "a reused pid was ended"
    assert is_alive(other.pid), "another loop's process was ended"
    # And the records of what is gone are forgotten; the reused pid's record too (its process is)
    assert [r.token for r in ledger.records()] == []
    assert ledger.end_leftovers(grace_seconds=0.1) == []


def test_end_leftovers_kills_a_term_ignoring_process_after_the_grace(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    ledger = ProcessLedger(tmp_path / ".loopwright", "loop-a")
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            "print('ready', flush=True); time.sleep(60)",
        ],
        env={**os.environ, MARKER_ENV: ledger.marker("t")},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    spawned.append(stubborn)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    start = time.monotonic()
    ended = ledger.end_leftovers(grace_seconds=0.3)
    assert [p.pid for p in ended] == [stubborn.pid]
    assert time.monotonic() - start < 3
    assert wait_gone(stubborn.pid)


def test_owning_loop_finds_a_loops_processes_and_their_descendants(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    state_dir = tmp_path / ".loopwright"
    ledger = ProcessLedger(state_dir, "loop-a")
    # A command carrying the loop's marker, and a child of it that cleared its environment
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time;"
            " time.sleep(60)'], env={}); print(c.pid, flush=True); time.sleep(60)",
        ],
        env={**os.environ, MARKER_ENV: ledger.marker("m")},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    spawned.append(parent)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    # A recorded command whose environment carries no marker at all (found by the ledger)
    recorded = sleeper(spawned, {MARKER_ENV: ""})
    ProcessLedger(state_dir, "loop-r").add(record_of(recorded, "r"))
    # A process of a loop of another state folder
    foreign = sleeper(spawned, {MARKER_ENV: ProcessLedger(tmp_path / "other", "loop-a").marker("f")})

    assert owning_loop(state_dir, parent.pid) == "loop-a"
    assert owning_loop(state_dir, child) == "loop-a"  # by its ancestry
    assert owning_loop(state_dir, recorded.pid) == "loop-r"
    assert owning_loop(state_dir, foreign.pid) is None
    assert owning_loop(state_dir) is None  # the test itself belongs to no loop
    assert owning_loop(state_dir, 2**22 + 12345) is None  # no such process


def test_a_bound_sandbox_records_its_commands_while_they_run(tmp_path: Path) -> None:
    # Given a sandbox bound to a loop
    state_dir = tmp_path / ".loopwright"
    ledger = ProcessLedger(state_dir, "loop-a")
    sandbox = SubprocessSandbox()
    sandbox.attach(ledger)
    code = (
        "import json, os, pathlib, sys; folder = pathlib.Path(sys.argv[1]);"
        "print(json.dumps({'marker': os.environ['LOOPWRIGHT_PROCESS_MARKER'], 'pid': os.getpid(),"
        " 'records': [json.loads(p.read_text()) for p in folder.glob('*.json')]}))"
    )

    # When a command runs
    result = sandbox.run(["python", "-c", code, str(ledger.folder)], cwd=tmp_path, timeout_seconds=20)

    # Then while it ran it was recorded (its pid, process group and supervisor) and marked ...
    seen = json.loads(result.stdout)
    assert ledger.owns_marker(seen["marker"])
    [record] = seen["records"]
    assert record["pid"] == seen["pid"]
    assert record["token"] == seen["marker"].rsplit(":", 1)[1]
    assert record["command"].startswith("python -c")
    # ... and once it ended its record is gone
    assert ledger.records() == []


def test_the_supervisor_reports_what_it_could_not_end(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # Given a supervisor that may not signal the command's leftover (as for another user's process)
    status_read, status_write = os.pipe()
    harness = textwrap.dedent(
        f"""
        import os, runpy, signal, sys
        real_kill = os.kill
        def kill(pid, sig):
            if sig in (signal.SIGTERM, signal.SIGKILL) and pid != int(open({str(tmp_path / "pid")!r}).read()):
                raise PermissionError(1, "Operation not permitted")
            real_kill(pid, sig)
        os.kill = kill
        sys.argv = [{supervisor.__file__!r}, *sys.argv[1:]]
        runpy.run_path({supervisor.__file__!r}, run_name="__main__")
        """
    )
    command = (
        "import os, subprocess, sys;"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(tmp_path / 'left')!r}, 'w').write(str(c.pid));"
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()))"
    )
    process = subprocess.Popen(
        [
            *(sys.executable, "-c", harness, str(status_write), str(os.getpid()), "0.1", "0.1", "0.3"),
            *(sys.executable, "--", sys.executable, "-c", command),
        ],
        pass_fds=(status_write,),
        start_new_session=True,
    )
    spawned.append(process)
    os.close(status_write)

    # When the command exits and the supervisor tries to end what it left
    process.wait(timeout=20)
    with os.fdopen(status_read, "rb") as status:
        lines = status.read().decode().splitlines()
    leftover = int((tmp_path / "left").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(leftover, signal.SIGKILL)

    # Then it reports the command's exit and, honestly, the process it could not end
    assert lines[0].startswith("started ")
    assert lines[1] == "exited 0"
    assert lines[2].startswith(f"left {leftover} ")
    assert "time.sleep(60)" in lines[2]
    assert lines[-1] == "done"


def test_a_sandbox_serves_one_loop_at_a_time(tmp_path: Path) -> None:
    state_dir = tmp_path / ".loopwright"
    sandbox = SubprocessSandbox()
    sandbox.attach(ProcessLedger(state_dir, "loop-a"))
    sandbox.attach(ProcessLedger(state_dir, "loop-a"))  # the same loop again (a resume): fine
    # Another loop while attached: refused, never silently rebound under a running loop
    with pytest.raises(LoopFrameworkError, match="already serves loop 'loop-a'"):
        sandbox.attach(ProcessLedger(state_dir, "loop-b"))
    assert sandbox.ledger is not None and sandbox.ledger.loop_id == "loop-a"
    other = sandbox.fresh()  # what concurrently running loops use instead
    other.attach(ProcessLedger(state_dir, "loop-b"))
    assert other.ledger is not None and other.ledger.loop_id == "loop-b"
    sandbox.detach()
    sandbox.attach(ProcessLedger(state_dir, "loop-b"))
    assert sandbox.ledger is not None and sandbox.ledger.loop_id == "loop-b"
    marker = sandbox.run(
        ["python", "-c", "import os; print(os.environ['LOOPWRIGHT_PROCESS_MARKER'])"],
        cwd=tmp_path,
        timeout_seconds=20,
    )
    assert ProcessLedger(state_dir, "loop-b").owns_marker(marker.stdout.strip())
