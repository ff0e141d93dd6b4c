"""The supervisor: a tiny process between loopwright and every command a loop starts.

:class:`~loopwright.adapters.local.sandbox.SubprocessSandbox` starts it as
``<sys.executable> -I -S -c <import this module, call main> STATUS_FD PARENT_PID GRACE DRAIN
KILL_WAIT PROGRAM -- ARGV...``
(standard library only, no ``site``; imported, not run as a script, so its byte code is cached:
about 10 ms of start-up over a bare ``python -I -S``). It:

1. makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): a process of the command
   whose parent dies (``setsid`` escapees, double-forked daemons) is reparented to the supervisor,
   not to init, so it stays findable as a descendant;
2. asks for ``SIGTERM`` when its parent thread dies (``prctl(PR_SET_PDEATHSIG)``), then checks
   that ``getppid()`` is still ``PARENT_PID`` (loopwright may have died before the ``prctl``);
   the sandbox waits for the supervisor in the thread that started it, so that thread outlives it;
3. starts ``PROGRAM`` (an absolute path) with ``ARGV`` in a new session (so its own process group),
   with the default signal dispositions and an empty signal mask, and reports
   ``started <pid> <start ticks>`` (or ``failed <errno> <message>``) on ``STATUS_FD``;
4. waits, with ``SIGTERM``/``SIGINT``/``SIGHUP`` blocked and taken by ``sigwaitinfo``, for the
   command to exit (``exited <returncode>``, negative for a signal) or for one of those signals
   (``stopped <signal>``: loopwright's timeout, or its death);
5. ends every descendant still alive: after the command exited normally it gives them ``DRAIN``
   seconds to exit on their own; then ``SIGTERM`` (and ``SIGCONT``), ``GRACE`` seconds, then
   ``SIGKILL`` repeated until none is left or ``KILL_WAIT`` seconds passed, reaping them all;
6. reports each process it could not end (``left <pid> <command line>``; for example one that
   became another user) and ``done``, and exits 0.

What it cannot guarantee: a process that kills the supervisor itself with ``SIGKILL`` (it runs
as the same user) is reparented to init, outside any subreaper; the sandbox and the loop's
:class:`~loopwright.adapters.local.processes.ProcessLedger` then find what is left by its
process group and the loop's marker variable. Under bubblewrap the command runs in its own PID
namespace and cannot see the supervisor at all.

The functions reading ``/proc`` are shared with :mod:`loopwright.adapters.local.processes`; keep
this module free of anything outside the standard library (it runs with ``-I -S``), and of
imports that cost start-up time (``typing``, ``signal``, ``contextlib``, ``json``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import time
from collections.abc import Iterable

# Start-up matters (every command pays it): the C module ``_signal`` has what is used here without
# ``signal``'s enums (about 5 ms); mypy reads ``signal``'s stubs for it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

#: ``prctl`` options (``<linux/prctl.h>``).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Seconds between two looks at the descendants while ending them.
POLL_SECONDS = 0.02
#: Signals that make the supervisor end the command (timeout, loopwright's death, a terminal).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_WAITED = STOP_SIGNALS | {signal.SIGCHLD}
#: Longest command line reported for a process left alive, characters.
MAX_COMMAND_CHARS = 200


class ProcStat:
    """Fields of ``/proc/<pid>/stat``: state letter, parent pid, process group, session, start
    time (clock ticks after boot: with the pid, it identifies a process even after pid reuse).

    A plain class, not a ``NamedTuple``: importing ``typing`` would add about 8 ms to every
    supervisor's start-up.
    """

    __slots__ = ("pgrp", "pid", "ppid", "session", "start_ticks", "state")

    def __init__(self, pid: int, state: str, ppid: int, pgrp: int, session: int, start_ticks: int) -> None:
        self.pid = pid
        self.state = state
        self.ppid = ppid
        self.pgrp = pgrp
        self.session = session
        self.start_ticks = start_ticks


def proc_stat(pid: int, proc: str = "/proc") -> ProcStat | None:
    """The stat of ``pid``, or None when it does not exist (or ``/proc`` cannot be read)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    # stime cutime cstime priority nice threads itrealvalue starttime ...": comm may hold spaces
    # and parentheses, so split after its last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def all_stats(proc: str = "/proc") -> list[ProcStat]:
    """The stat of every process visible in ``proc``."""
    stats = []
    for name in os.listdir(proc):
        if name.isdigit():
            stat = proc_stat(int(name), proc)
            if stat is not None:
                stats.append(stat)
    return stats


def descendants(root: int, stats: Iterable[ProcStat] | None = None) -> list[ProcStat]:
    """Living (not zombie) descendants of ``root``, parents before children."""
    children: dict[int, list[ProcStat]] = {}
    for stat in all_stats() if stats is None else stats:
        children.setdefault(stat.ppid, []).append(stat)
    found: list[ProcStat] = []
    queue = [root]
    while queue:
        for stat in children.get(queue.pop(), []):
            queue.append(stat.pid)
            if stat.state not in "ZX":
                found.append(stat)
    return found


def command_line(pid: int) -> str:
    """``pid``'s command line, arguments separated by spaces, at most MAX_COMMAND_CHARS; its
    ``comm`` in brackets when the command line is empty or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(4 * MAX_COMMAND_CHARS)
        text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
        if not text:
            with open(f"/proc/{pid}/comm", "rb") as handle:
                text = "[" + handle.read().decode("utf-8", "replace").strip() + "]"
    except OSError:
        return "?"
    text = " ".join(text.split())
    return text if len(text) <= MAX_COMMAND_CHARS else text[: MAX_COMMAND_CHARS - 3] + "..."


class _Supervisor:
    def __init__(self, status_fd: int, grace: float, drain: float, kill_wait: float) -> None:
        self.status_fd = status_fd
        self.grace = grace
        self.drain = drain
        self.kill_wait = kill_wait
        self.me = os.getpid()
        self.command_status: int | None = None
        self.command_pid = 0

    def report(self, line: str) -> None:
        """Write one status line; loopwright may be gone (broken pipe), which is not an error."""
        try:  # noqa: SIM105 - contextlib would add to every command's start-up
            os.write(self.status_fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass

    def wait_signal(self, seconds: float | None) -> int | None:
        """The next of the waited signals (SIGCHLD reaped at once), None after ``seconds``."""
        info = (
            signal.sigwaitinfo(_WAITED)
            if seconds is None
            else signal.sigtimedwait(_WAITED, max(0.0, seconds))
        )
        if info is None:
            return None
        if info.si_signo == signal.SIGCHLD:
            self.reap()
        return info.si_signo

    def reap(self) -> bool:
        """Reap every exited child; True while some child remains."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.command_pid:
                self.command_status = os.waitstatus_to_exitcode(status)

    def supervise(self) -> int | None:
        """Wait for the command; its return code, or None when a stop signal came first."""
        while self.command_status is None:
            signo = self.wait_signal(None)
            if signo in STOP_SIGNALS:
                self.report(f"stopped {signo}")
                return None
        self.report(f"exited {self.command_status}")
        return self.command_status

    def end_tree(self, drain: float) -> list[ProcStat]:
        """End every descendant (see the module's step 5); the ones that could not be ended."""
        deadline = time.monotonic() + drain
        while self.reap():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.wait_signal(remaining) in STOP_SIGNALS:
                break
        if not self.reap():
            return []
        self._signal_rounds(signal.SIGTERM, self.grace)
        return self._signal_rounds(signal.SIGKILL, self.kill_wait)

    def _signal_rounds(self, sig: int, seconds: float) -> list[ProcStat]:
        deadline = time.monotonic() + seconds
        signalled: set[tuple[int, int]] = set()
        while True:
            self.reap()
            alive = descendants(self.me)
            if not alive:
                return []
            for stat in alive:
                key = (stat.pid, stat.start_ticks)
                if sig == signal.SIGKILL or key not in signalled:
                    signalled.add(key)
                    for each in (sig, signal.SIGCONT):
                        try:  # noqa: SIM105 - as in report()
                            os.kill(stat.pid, each)
                        except OSError:  # gone, or not ours to signal (another user): reported if it stays
                            pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return alive
            self.wait_signal(min(POLL_SECONDS, remaining))


def _prctl(option: int, value: int) -> None:
    """Call ``prctl(option, value)``. Raises OSError when it fails, or ENOSYS off Linux."""
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if prctl is None:
        raise OSError(errno.ENOSYS, "the supervisor needs Linux (prctl)")
    if prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def main(argv: list[str]) -> int:
    """Run the supervisor (see the module docstring for ``argv``); always returns 0 once the
    status pipe is open (what happened is on the pipe), 2 for bad arguments."""
    try:
        split = argv.index("--")
        status_fd, parent = int(argv[0]), int(argv[1])
        grace, drain, kill_wait = float(argv[2]), float(argv[3]), float(argv[4])
        program, command = argv[5], argv[split + 1 :]
    except (ValueError, IndexError):
        print(
            "usage: supervisor.py STATUS_FD PARENT_PID GRACE DRAIN KILL_WAIT PROGRAM -- ARGV...",
            file=sys.stderr,
        )
        return 2
    supervisor = _Supervisor(status_fd, grace, drain, kill_wait)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError as exc:
        supervisor.report(f"failed {exc.errno or 0} cannot supervise the command: {exc.strerror or exc}")
        return 0
    if os.getppid() != parent:  # loopwright died before the prctl: start nothing
        supervisor.report("stopped 0")
        return 0
    os.set_inheritable(status_fd, False)
    try:
        supervisor.command_pid = os.posix_spawn(
            program,
            command,
            os.environ,
            setsid=True,
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *STOP_SIGNALS),
        )
    except OSError as exc:
        supervisor.report(f"failed {exc.errno} {exc.strerror}")
        return 0
    stat = proc_stat(supervisor.command_pid)
    supervisor.report(f"started {supervisor.command_pid} {stat.start_ticks if stat else 0}")
    exited = supervisor.supervise()
    for left in supervisor.end_tree(supervisor.drain if exited is not None else 0.0):
        supervisor.report(f"left {left.pid} {command_line(left.pid)}")
    supervisor.report("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
