"""Which processes belong to a loop, and ending the ones a previous run left alive.

Every command a loop starts (the agent, each exit condition) runs under a supervisor
(:mod:`loopwright.adapters.local.supervisor`) that ends the command's whole process tree when
the command ends, times out, or loopwright dies (even by ``kill -9``). Two things remain for
this module, for what a supervisor cannot do (a supervisor killed with ``SIGKILL``, or
loopwright killed while a supervisor is still ending its tree):

* the **ledger**, :class:`ProcessLedger`: one JSON file per running command in
  ``<state_dir>/loops/<loop_id>/processes/<token>.json`` (:class:`ProcessRecord`: the
  supervisor's pid and start time, the command's pid, which is also its process group and
  session id, and start time), written when the command starts and removed when nothing of
  it is left. Start times are kernel clock ticks after boot (``/proc/<pid>/stat``), so a
  reused pid is never mistaken for the recorded process;
* the **marker**: every command gets ``LOOPWRIGHT_PROCESS_MARKER=<state key>:<loop_id>:<token>``
  in its environment (``<state key>``: 16 hex digits of the SHA-256 of the state folder's
  path), which its descendants inherit unless they clear it.

:meth:`ProcessLedger.end_leftovers` (called by the engine when a loop starts or resumes,
after it holds the loop's lock, before the worktree is touched) ends the recorded supervisors
and process groups still alive, every process carrying the loop's marker, and their
descendants. :func:`owning_loop` tells whether a process (a ``loopwright`` control run from
inside an agent) belongs to a loop of a state folder.

Limits: a process that both left its process group (``setsid``) and cleared the marker from its
environment, and whose supervisor was killed, is found by neither; and an agent runs as the
user, so without bubblewrap (``isolation = "bubblewrap"``) it can edit the ledger. Under
bubblewrap the ledger folder is read-only for the agent and the supervisor is out of its sight.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, ValidationError

from loopwright.adapters.local.safe_files import (
    open_folder,
    read_file_at,
    remove_at,
    write_file_at,
)
from loopwright.adapters.local.supervisor import ProcStat, all_stats, command_line, descendants, proc_stat
from loopwright.models import utcnow

#: Environment variable carrying ``<state key>:<loop_id>:<token>`` into every command of a loop.
MARKER_ENV = "LOOPWRIGHT_PROCESS_MARKER"
#: State key and loop id of the marker of a sandbox bound to no loop.
UNBOUND = "-"
#: Folder, in the loop's files folder, holding the ledger.
LEDGER_DIR_NAME = "processes"
#: Seconds :func:`end_processes` waits after ``SIGKILL`` for the processes to disappear.
KILL_WAIT_SECONDS = 2.0
#: Largest ledger record read, bytes.
_MAX_RECORD_BYTES = 64 * 1024


class EndedProcess(BaseModel):
    """A process loopwright ended: its pid and command line (at most 200 characters)."""

    model_config = ConfigDict(frozen=True)

    pid: int
    command: str


class ProcessRecord(BaseModel):
    """One running command of a loop, as stored in its ledger.

    ``pid`` is the command's pid, process group id and session id (it starts in a new session);
    ``start`` and ``supervisor_start`` are start times in clock ticks after boot.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    supervisor_pid: int
    supervisor_start: int
    pid: int
    start: int
    command: str
    started_at: datetime


def state_key(state_dir: Path) -> str:
    """16 hex digits identifying ``state_dir`` (its resolved path) in markers."""
    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]


def make_marker(key: str, loop_id: str, token: str) -> str:
    """The :data:`MARKER_ENV` value of one command."""
    return f"{key}:{loop_id}:{token}"


def parse_marker(value: str | None) -> tuple[str, str, str] | None:
    """``(state key, loop_id, token)`` of a marker value, None when it is not one."""
    if not value:
        return None
    parts = value.split(":")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with (this process: ``os.environ``); empty when unreadable."""
    if pid == os.getpid():
        return dict(os.environ)
    try:
        return psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return {}


def _ancestry(pid: int) -> list[int]:
    """``pid`` and its ancestors, nearest first (empty when ``pid`` does not exist)."""
    try:
        process = psutil.Process(pid)
        return [pid, *(parent.pid for parent in process.parents())]
    except psutil.Error:
        return []


class ProcessLedger:
    """The processes of one loop of a state folder (see the module docstring).

    Args:
        state_dir: loopwright's state folder (``<workspace>/.loopwright``).
        loop_id: the loop.

    The ledger is written by :class:`~loopwright.adapters.local.sandbox.SubprocessSandbox`
    once attached to it (``sandbox.attach(ledger)``).
    """

    def __init__(self, state_dir: Path, loop_id: str) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.loop_id = loop_id
        self.key = state_key(self.state_dir)
        self.loop_dir = self.state_dir / "loops" / loop_id
        self.folder = self.loop_dir / LEDGER_DIR_NAME

    # ----------------------------------------------------------------------------- records
    def marker(self, token: str) -> str:
        """The :data:`MARKER_ENV` value of the command ``token`` of this loop."""
        return make_marker(self.key, self.loop_id, token)

    def owns_marker(self, value: str | None) -> bool:
        """True when ``value`` is the marker of a command of this loop."""
        parsed = parse_marker(value)
        return parsed is not None and parsed[:2] == (self.key, self.loop_id)

    def ensure_folder(self) -> Path:
        """Create the ledger folder (a planted link or file in its place is replaced)."""
        with open_folder(self.folder, trusted=self.state_dir):
            return self.folder

    def add(self, record: ProcessRecord) -> None:
        """Store ``record`` (``<token>.json``)."""
        with open_folder(self.folder, trusted=self.state_dir) as fd:
            write_file_at(fd, f"{record.token}.json", record.model_dump_json().encode())

    def remove(self, token: str) -> None:
        """Forget the record of command ``token`` (nothing if there is none)."""
        try:
            with open_folder(self.folder, trusted=self.state_dir, create=False) as fd:
                remove_at(fd, f"{token}.json")
        except OSError:  # no ledger folder (or a link planted in its place): nothing recorded
            pass

    def records(self) -> list[ProcessRecord]:
        """The stored records; unreadable or invalid files are skipped."""
        found: list[ProcessRecord] = []
        try:
            with open_folder(self.folder, trusted=self.state_dir, create=False) as fd:
                for name in sorted(os.listdir(fd)):
                    if not name.endswith(".json") or name.startswith("."):
                        continue
                    try:
                        found.append(
                            ProcessRecord.model_validate_json(read_file_at(fd, name, _MAX_RECORD_BYTES))
                        )
                    except (OSError, ValidationError):
                        continue
        except OSError:  # no ledger folder (or a link planted in its place): nothing recorded
            return []
        return found

    # ----------------------------------------------------------------------------- leftovers
    def end_leftovers(self, *, grace_seconds: float = 2.0) -> list[EndedProcess]:
        """End every process a previous run of this loop left alive: recorded supervisors and
        process groups still alive (a reused pid, told apart by its start time, is never
        touched), every process whose environment carries this loop's marker, and their
        descendants; never this process or its ancestors. ``SIGTERM`` (with ``SIGCONT``), then
        ``SIGKILL`` after ``grace_seconds`` (seconds) for those still alive.

        Returns the processes ended. Records whose processes are all gone are removed; a record
        with a process that could not be ended (another user's) is kept for the next call.
        """
        stats = all_stats()
        by_pid = {stat.pid: stat for stat in stats}
        records = self.records()
        targets: dict[int, int] = {}  # pid -> start ticks
        for record in records:
            for stat in _recorded_processes(record, by_pid, stats):
                targets[stat.pid] = stat.start_ticks
        for process in psutil.process_iter(["environ"]):
            environ = process.info.get("environ") or {}
            marked = by_pid.get(process.pid)
            if marked is not None and self.owns_marker(environ.get(MARKER_ENV)):
                targets[marked.pid] = marked.start_ticks
        for pid in list(targets):
            for stat in descendants(pid, stats):
                targets[stat.pid] = stat.start_ticks
        for pid in _ancestry(os.getpid()):
            targets.pop(pid, None)
        ended, _ = end_processes(targets, grace_seconds=grace_seconds)
        remaining = all_stats()
        remaining_by_pid = {stat.pid: stat for stat in remaining}
        for record in records:
            if not _recorded_processes(record, remaining_by_pid, remaining):
                self.remove(record.token)
        return ended


def _recorded_processes(
    record: ProcessRecord, by_pid: dict[int, ProcStat], stats: list[ProcStat]
) -> list[ProcStat]:
    """The living processes of ``record``: its supervisor and the members of its command's
    process group, unless their pids were reused (start times differ)."""
    found = []
    supervisor = by_pid.get(record.supervisor_pid)
    if supervisor is not None and supervisor.start_ticks == record.supervisor_start:
        found.append(supervisor)
    leader = by_pid.get(record.pid)
    if leader is not None and leader.start_ticks != record.start:
        return [s for s in found if s.state not in "ZX"]  # the group id now names another group
    found += [s for s in stats if s.pgrp == record.pid and s.start_ticks >= record.start]
    return [s for s in found if s.state not in "ZX"]


def end_processes(
    targets: dict[int, int], *, grace_seconds: float
) -> tuple[list[EndedProcess], list[EndedProcess]]:
    """End the processes ``{pid: start ticks}`` (a pid whose start time differs is skipped):
    ``SIGTERM`` and ``SIGCONT``, up to ``grace_seconds`` (seconds) to exit, then ``SIGKILL``
    and up to :data:`KILL_WAIT_SECONDS`. Returns (ended, still alive)."""
    processes: list[psutil.Process] = []
    commands: dict[int, str] = {}
    for pid, ticks in targets.items():
        try:
            process = psutil.Process(pid)
        except psutil.Error:
            continue
        stat = proc_stat(pid)
        if stat is None or stat.start_ticks != ticks:
            continue  # gone, or the pid was reused since it was found
        commands[pid] = command_line(pid)
        processes.append(process)
    if not processes:
        return [], []
    for process in processes:
        _signal(process, signal.SIGTERM)
        _signal(process, signal.SIGCONT)
    alive = _wait_gone(processes, grace_seconds)
    for process in alive:
        _signal(process, signal.SIGKILL)
    alive = _wait_gone(alive, KILL_WAIT_SECONDS if alive else 0)
    alive_pids = {process.pid for process in alive}
    ended = [EndedProcess(pid=p.pid, command=commands[p.pid]) for p in processes if p.pid not in alive_pids]
    left = [EndedProcess(pid=p.pid, command=commands[p.pid]) for p in alive]
    return ended, left


def _wait_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Wait up to ``seconds`` for ``processes`` to end; those still alive. A zombie has ended:
    a leftover's parent (init, a subreaper, or whoever started it) reaps it when it will."""
    deadline = time.monotonic() + seconds
    alive = [p for p in processes if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _running(p)]
    return alive


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(process: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):  # gone, reused (psutil checks), or another user's
        process.send_signal(sig)


def running_records(state_dir: Path) -> list[tuple[str, ProcessRecord]]:
    """(loop id, record) of every command the loops of ``state_dir`` are running now, by their
    ledgers (one folder listing per loop that has files)."""
    root = Path(state_dir).resolve()
    records: list[tuple[str, ProcessRecord]] = []
    loops = root / "loops"
    if loops.is_dir():
        for folder in sorted(loops.iterdir()):
            if folder.is_dir() and not folder.is_symlink():
                records += [(folder.name, r) for r in ProcessLedger(root, folder.name).records()]
    return records


def owning_loop(state_dir: Path, pid: int | None = None) -> str | None:
    """The id of the loop of ``state_dir`` whose processes include ``pid`` (default: this
    process) or one of its ancestors, or None when it belongs to no loop of that folder.

    A process belongs to a loop when its environment carries a marker of that loop, when it is
    a recorded supervisor or command (same pid and start time), or when it is in a recorded
    command's process group. Best effort by nature (see the module docstring): an agent that
    killed its supervisor, left its group and cleared its environment is not recognised.
    """
    root = Path(state_dir).resolve()
    key = state_key(root)
    chain = _ancestry(os.getpid() if pid is None else pid)
    if not chain:
        return None
    records = running_records(root)
    for member in chain:
        parsed = parse_marker(_environ(member).get(MARKER_ENV))
        if parsed is not None and parsed[0] == key:
            return parsed[1]
        member_stat = proc_stat(member)
        if member_stat is None:
            continue
        for loop_id, record in records:
            if (member, member_stat.start_ticks) in {
                (record.supervisor_pid, record.supervisor_start),
                (record.pid, record.start),
            }:
                return loop_id
            if member_stat.pgrp == record.pid and member_stat.start_ticks >= record.start:
                leader = proc_stat(record.pid)
                if leader is None or leader.start_ticks == record.start:
                    return loop_id
    return None


def new_record(
    *, token: str, supervisor_pid: int, pid: int, start: int, command: str
) -> ProcessRecord | None:
    """A record for a command just started, None when its supervisor is already gone."""
    supervisor = proc_stat(supervisor_pid)
    if supervisor is None:
        return None
    return ProcessRecord(
        token=token,
        supervisor_pid=supervisor_pid,
        supervisor_start=supervisor.start_ticks,
        pid=pid,
        start=start,
        command=command,
        started_at=utcnow(),
    )
