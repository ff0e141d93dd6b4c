"""Local sandbox: runs one command as a subprocess, never through a shell, leaving nothing behind.

Every command runs under a supervisor (:mod:`loopwright.adapters.local.supervisor`), started with
``<sys.executable> -I -S`` in its own session. The supervisor is a child
subreaper that starts the command in a new session and, when the command exits, times out,
or loopwright dies (``PR_SET_PDEATHSIG``, so also on ``kill -9``), ends the command's whole
process tree: its process group, ``setsid`` escapees and double-forked daemons alike (they
are reparented to the supervisor, not to init). Processes left when the command exits get
:data:`DRAIN_SECONDS` to end on their own; then everything gets ``SIGTERM``, and ``SIGKILL``
after ``kill_grace_seconds``. What could not be ended (a process that became another user)
is reported in :attr:`CommandResult.left_running`; nothing is reported as ended that was not.
The supervisor adds about 25 ms of start-up per command (``bench/bench_supervisor.py``).
A command given an ``idle_timeout_seconds`` that prints nothing and changes no file under its
working directory for that long is ended the same way as on a timeout
(:mod:`loopwright.adapters.local.idle`; :attr:`CommandResult.idle`).

No orphans, and its limits: everything a command starts dies with the run that started it,
including when loopwright is killed with ``SIGKILL``; a process that kills its own supervisor
with ``SIGKILL`` (it runs as the same user) escapes that, and is ended when the sandbox sees
its supervisor die (its process group and the processes carrying its marker) or, at the
latest, by :meth:`ProcessLedger.end_leftovers` when the loop starts or resumes. Under
bubblewrap the command cannot see its supervisor (own PID namespace) and ``bwrap
--die-with-parent`` ends the namespace if the supervisor goes.

The supervisor must outlive nothing but the thread that started it: ``PR_SET_PDEATHSIG`` fires
when that *thread* ends, and :meth:`SubprocessSandbox.run` returns only once the supervisor has
exited. No subreaper runs in loopwright's own process (it would have to reap with
``waitpid(-1)``, stealing the exit status of other threads' children: conditions run
concurrently, and the dashboard runs several loops in one process).

Environment and program lookup: see :mod:`loopwright.adapters.local.environment` (the user's
environment, never loopwright's venv; no ``LOOPWRIGHT_POLICY_DIR``; ``python`` is the project's
interpreter, given by the :class:`~loopwright.adapters.local.project_env.ProjectEnvironment` the
sandbox is bound to, whose venv ``bin`` goes first on ``PATH``).

Bound to a loop (``attach``), every command is recorded in the loop's
:class:`~loopwright.adapters.local.processes.ProcessLedger` while it runs and carries the
loop's marker; with a :class:`~loopwright.adapters.local.isolation.BubblewrapIsolation` it runs
under ``bwrap``; with a project environment, in that environment (and the loop's ``env``).

stdout and stderr are read in two threads, each keeping only the last ``max_output_bytes``
(the end of a tool's output holds its summary), so a chatty command cannot exhaust memory and
a process holding a pipe open cannot hang the caller.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, cast

from loopwright.adapters.local import supervisor
from loopwright.adapters.local.environment import (
    PYTHON_ALIASES,
    ProgramNotFoundError,
    build_environment,
    resolve_program,
)
from loopwright.adapters.local.idle import IdleWatch, latest
from loopwright.adapters.local.isolation import BubblewrapIsolation
from loopwright.adapters.local.processes import (
    MARKER_ENV,
    UNBOUND,
    ProcessLedger,
    make_marker,
    new_record,
)
from loopwright.adapters.local.project_env import ProjectEnvironment
from loopwright.adapters.local.sandbox_pipes import SupervisorStatus, TailReader, feed_stdin, join_all
from loopwright.adapters.local.sandbox_sweep import sweep
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import CommandResult, utcnow
from loopwright.ports import OutputCallback, Sandbox, StopCheck

__all__ = ["DRAIN_SECONDS", "KILL_GRACE_SECONDS", "PYTHON_ALIASES", "SubprocessSandbox", "build_environment"]

#: Seconds between SIGTERM and SIGKILL when a command's processes are ended.
KILL_GRACE_SECONDS = 1.0
#: Seconds the processes a command leaves behind get to end on their own once it has exited,
#: and the output readers get to reach end-of-file once the supervisor has exited.
DRAIN_SECONDS = 0.5
#: Seconds the supervisor keeps sending SIGKILL before it reports what it could not end.
KILL_WAIT_SECONDS = 2.0
#: Seconds loopwright waits for a supervisor beyond its own deadlines before it kills it.
SUPERVISOR_MARGIN_SECONDS = 3.0
#: Seconds between two calls of a command's ``should_stop`` (how soon ``stop --now`` or a crossed
#: budget ends it).
STOP_POLL_SECONDS = 0.2
#: Bytes read from a pipe at a time.
_CHUNK_BYTES = 64 * 1024
#: ``python -c`` code that imports the supervisor from its folder (so its byte code is cached) and
#: runs it; the folder goes last on ``sys.path``, after the standard library.
_SUPERVISOR_LAUNCH = (
    f"import sys; sys.path.append({str(Path(supervisor.__file__).parent)!r}); "
    "import supervisor; sys.exit(supervisor.main(sys.argv[1:]))"
)
_INCOMPLETE_MARKER = "[loopwright: output incomplete: a process outside the group kept a pipe open]"


class SubprocessSandbox(Sandbox):
    """Runs commands under a supervisor (``shell=False``, own session, no orphans).

    ``command[0]`` equal to ``python`` or ``python3`` is replaced by the project's interpreter
    (without a project environment: the first ``python3``/``python`` on the user's ``PATH``);
    the :class:`CommandResult` keeps the command as given. The environment is built by
    :func:`~loopwright.adapters.local.environment.build_environment`. stdin is ``/dev/null``
    unless ``run`` is given input.

    Args:
        kill_grace_seconds: seconds between SIGTERM and SIGKILL when processes are ended.
        ledger: bind the sandbox to a loop at once (same as :meth:`attach`).
        isolation: run every command under bubblewrap (same as :meth:`attach`).
        environment: the project's environment (same as :meth:`attach`).
    """

    def __init__(
        self,
        kill_grace_seconds: float = KILL_GRACE_SECONDS,
        *,
        ledger: ProcessLedger | None = None,
        isolation: BubblewrapIsolation | None = None,
        environment: ProjectEnvironment | None = None,
    ) -> None:
        self._grace = kill_grace_seconds
        self._binding = threading.Lock()
        self._ledger = ledger
        self._isolation = isolation
        self._environment = environment
        self._stop_check: StopCheck | None = None

    def watch_stop(self, check: StopCheck | None) -> None:
        """Ask ``check`` (about every :data:`STOP_POLL_SECONDS`) while any command runs, and end
        the command when it answers True (``stop --now``: the engine gives a check of the loop's
        queued controls); ``None`` stops asking. :meth:`detach` forgets it too."""
        with self._binding:
            self._stop_check = check

    def attach(
        self,
        ledger: ProcessLedger,
        *,
        isolation: BubblewrapIsolation | None = None,
        environment: ProjectEnvironment | None = None,
    ) -> None:
        """Bind this sandbox to one loop: from now on every command it runs is recorded in
        ``ledger`` while it runs and carries the loop's marker (``LOOPWRIGHT_PROCESS_MARKER``),
        with ``isolation`` runs under bubblewrap (``None``: not, even if it did before), and
        with ``environment`` runs in the project's environment (``None``: the user's).

        The engine calls it when a run starts, before the first command, and :meth:`detach`
        when it ends. A sandbox serves one loop at a time: attaching it to another loop while
        it is attached raises :class:`~loopwright.exceptions.LoopFrameworkError` (loops that run
        concurrently need a sandbox each; sharing one would run a loop's commands with another
        loop's ledger and isolation). Attaching again to the same loop replaces the isolation.
        """
        with self._binding:
            bound = self._ledger
            if bound is not None and (bound.state_dir, bound.loop_id) != (ledger.state_dir, ledger.loop_id):
                raise LoopFrameworkError(
                    f"this sandbox already serves loop {bound.loop_id!r}; give loop {ledger.loop_id!r} "
                    "its own SubprocessSandbox (or detach() this one when its loop's run ends)"
                )
            ledger.ensure_folder()
            self._ledger = ledger
            self._isolation = isolation
            self._environment = environment

    def fresh(self) -> SubprocessSandbox:
        """A new sandbox with this one's settings, bound to no loop (one per concurrently
        running loop: the plan dispatcher runs several)."""
        return SubprocessSandbox(self._grace)

    def detach(self) -> None:
        """Unbind the sandbox from its loop (commands are no longer recorded nor isolated)."""
        with self._binding:
            self._ledger = None
            self._isolation = None
            self._environment = None
            self._stop_check = None

    @property
    def ledger(self) -> ProcessLedger | None:
        """The ledger this sandbox is bound to, if any."""
        return self._ledger

    @property
    def isolation(self) -> BubblewrapIsolation | None:
        """The bubblewrap isolation in force, if any."""
        return self._isolation

    @property
    def environment(self) -> ProjectEnvironment | None:
        """The project's environment in force, if any."""
        return self._environment

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        """The program :meth:`run` would execute for ``argv[0] == name`` in ``cwd`` (same
        environment and lookup rules), or None when it is not found or not executable."""
        project = self._environment
        try:
            program, _ = resolve_program(
                name, cwd=Path(cwd), path=build_environment(None, project).get("PATH"), project=project
            )
        except ProgramNotFoundError:
            return None
        return program

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: StopCheck | None = None,
    ) -> CommandResult:
        """Run ``command`` in ``cwd`` for at most ``timeout_seconds`` (wall clock), with
        ``stdin`` as its input (else empty) and ``on_output`` shown each output chunk.

        ``should_stop`` (and the check given to :meth:`watch_stop`) is asked about every
        :data:`STOP_POLL_SECONDS` while the command runs; once it answers True the command is
        ended like on a timeout and the result has ``stopped=True`` and ``exit_code=None`` (a
        check that raises counts as False).

        With ``idle_timeout_seconds`` (seconds; None, 0 or not below ``timeout_seconds``: no
        effect) the command is ended like on a timeout once it has printed nothing and changed
        no file under ``cwd`` for that long (:mod:`loopwright.adapters.local.idle`); the result
        then has ``idle=True`` and ``exit_code=None``.

        Returns ``exit_code`` (negative: killed by that signal), ``timed_out=True`` with
        ``exit_code=None`` on timeout, and ``error`` with ``exit_code=None`` when the command
        could not start (empty command, missing executable or ``cwd``, no permission) or its
        supervisor was killed. stdout/stderr each keep their last ``max_output_bytes`` bytes
        (``truncated`` tells). ``left_running`` lists the processes that could not be ended.
        """
        given = list(command)
        started_at = utcnow()
        start = time.monotonic()

        def failed(reason: str) -> CommandResult:
            return CommandResult(
                command=given,
                exit_code=None,
                error=reason,
                started_at=started_at,
                duration_seconds=time.monotonic() - start,
            )

        if not given:
            return failed("empty command")
        if not Path(cwd).is_dir():
            return failed(f"working directory does not exist: {cwd}")
        token = secrets.token_hex(8)
        with self._binding:
            ledger, isolation, project = self._ledger, self._isolation, self._environment
            checks = [check for check in (should_stop, self._stop_check) if check is not None]
        environment = build_environment(env, project)
        environment[MARKER_ENV] = (
            ledger.marker(token) if ledger is not None else make_marker(UNBOUND, UNBOUND, token)
        )
        try:
            program, argv0 = resolve_program(
                given[0], cwd=Path(cwd), path=environment.get("PATH"), project=project
            )
        except ProgramNotFoundError as exc:
            return failed(str(exc))
        argv = [argv0, *given[1:]]
        if isolation is not None:
            needed = project.folders() if project is not None else ()
            argv = isolation.wrap(program, argv, cwd=Path(cwd), env=environment, needed=needed)
            program = argv[0]
        readers: list[TailReader] = []
        watch = None
        if idle_timeout_seconds is not None and 0 < idle_timeout_seconds < timeout_seconds:
            watch = IdleWatch(
                Path(cwd), idle_timeout_seconds, lambda: latest([reader.last_output for reader in readers])
            )
        status_read, status_write = os.pipe()
        try:
            process = subprocess.Popen(  # nosec B603 - argv list, never a shell
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _SUPERVISOR_LAUNCH,
                    str(status_write),
                    str(os.getpid()),
                    f"{self._grace:g}",
                    f"{DRAIN_SECONDS:g}",
                    f"{KILL_WAIT_SECONDS:g}",
                    program,
                    "--",
                    *argv,
                ],
                cwd=cwd,
                env=environment,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                shell=False,
                start_new_session=True,
                pass_fds=(status_write,),
            )
        except OSError as exc:
            os.close(status_read)
            return failed(f"cannot start the command's supervisor ({sys.executable}): {exc.strerror or exc}")
        finally:
            os.close(status_write)
        if stdin is not None:
            feed_stdin(cast(IO[bytes], process.stdin), stdin)
        status = SupervisorStatus(status_read)
        pipes = (cast(IO[bytes], process.stdout), cast(IO[bytes], process.stderr))
        readers.extend(
            TailReader(pipe, max_output_bytes, name=name, on_output=on_output)
            for name, pipe in zip(("stdout", "stderr"), pipes, strict=True)
        )
        for reader in readers:
            reader.start()
        ended: str | None = None
        left: list[str] = []
        try:
            ended = self._supervise(
                process, status, ledger, given, token, start + timeout_seconds, watch, checks
            )
            left = list(status.left)
            if status.failed is None and not status.done:
                # The supervisor itself was killed: end what can still be found of the command.
                left += sweep(token, status.started, grace_seconds=self._grace)
        finally:
            if process.poll() is None:  # interrupted (e.g. KeyboardInterrupt): leave nothing
                self._stop_supervisor(process, status)
            os.close(status_read)
            if ledger is not None and status.done and not status.left and not left:
                ledger.remove(token)
        timed_out, idle, stopped = ended == "timeout", ended == "idle", ended == "stopped"
        error = None
        if status.failed is not None:
            error = _start_error(given[0], status.failed, status.failed_message)
        elif ended is not None:
            pass
        elif status.started is None:
            error = f"cannot start {given[0]}: its supervisor exited with status {process.returncode}"
        elif not status.done:
            error = (
                f"the command's supervisor (pid {process.pid}) was killed (exit status "
                f"{process.returncode}), so the command's exit status is unknown"
            )
        complete = join_all(readers, DRAIN_SECONDS) or join_all(readers, self._grace)
        if complete:
            for pipe in pipes:
                pipe.close()
        stdout, stderr = (reader.text() for reader in readers)
        if not complete:
            stderr += f"\n{_INCOMPLETE_MARKER}"
        return CommandResult(
            command=given,
            exit_code=None if ended or error else status.exit_code,
            stdout=stdout,
            stderr=stderr,
            duration_seconds=time.monotonic() - start,
            timed_out=timed_out,
            idle=idle,
            stopped=stopped,
            truncated=any(reader.dropped for reader in readers),
            error=error,
            started_at=started_at,
            left_running=left,
        )

    def _supervise(
        self,
        process: subprocess.Popen[bytes],
        status: SupervisorStatus,
        ledger: ProcessLedger | None,
        given: list[str],
        token: str,
        deadline: float,
        watch: IdleWatch | None = None,
        checks: Sequence[StopCheck] = (),
    ) -> str | None:
        """Record the command once started, wait for its supervisor (stopping it at
        ``deadline``, a ``time.monotonic()`` value, once ``watch`` finds it idle or one of
        ``checks`` answers True) and read its report; ``"timeout"``, ``"idle"`` or
        ``"stopped"`` when it was stopped so, else None."""
        status.read(max(0.0, deadline - time.monotonic()), until_started=True)
        if status.started is not None and watch is not None:
            watch.started()
        if status.started is not None and ledger is not None:
            record = new_record(
                token=token,
                supervisor_pid=process.pid,
                pid=status.started[0],
                start=status.started[1],
                command=" ".join(given)[:200],
            )
            if record is not None:
                ledger.add(record)
        # The status pipe reaches end-of-file when the supervisor exits: waiting on it wakes at
        # once, where Popen.wait(timeout) polls with sleeps of up to 50 ms.
        why = "timeout"
        while not status.eof and (remaining := deadline - time.monotonic()) > 0:
            # Idle or stopped only while the command runs: its leftovers being ended are neither.
            if status.exit_code is None and watch is not None and watch.idle():
                why = "idle"
                break
            if status.exit_code is None and _asked_to_stop(checks):
                why = "stopped"
                break
            waits = [remaining]
            if watch is not None:
                waits.append(watch.wait_seconds())
            if checks:
                waits.append(STOP_POLL_SECONDS)
            status.read(min(waits))
        # Past the deadline (or idle, or stopped): stopped, unless the command exited and its
        # leftovers are being ended.
        stopped = not status.eof and status.exit_code is None
        if not status.eof:
            self._stop_supervisor(process, status)
        process.wait()
        return why if stopped else None

    def _stop_supervisor(
        self, process: subprocess.Popen[bytes], status: SupervisorStatus | None = None
    ) -> None:
        """Ask the supervisor to end the command (SIGTERM) and read its report; kill it if it
        does not exit in time."""
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        patience = self._grace + KILL_WAIT_SECONDS + SUPERVISOR_MARGIN_SECONDS
        if status is not None:
            status.read(patience)
            patience = 0.1 if status.eof else 0.0
        try:
            process.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _asked_to_stop(checks: Sequence[StopCheck]) -> bool:
    """True when one of ``checks`` answers True (one that raises counts as False)."""
    for check in checks:
        try:
            if check():
                return True
        except Exception:
            continue
    return False


def _start_error(name: str, number: int, message: str) -> str:
    """The ``error`` of a command the supervisor could not start (``errno`` ``number``)."""
    if number == errno.ENOENT:
        return f"command not found: {name} (no such file)"
    if number == errno.EACCES:
        return f"permission denied: {name} (not executable?)"
    return f"cannot start {name}: {message or os.strerror(number)}"
