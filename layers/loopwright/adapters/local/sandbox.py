"""Local sandbox: runs one command as a subprocess, never through a shell.

The child gets its own session (so its own process group); on timeout the whole group
(the command, its children and grandchildren) is sent SIGTERM, then SIGKILL after
:data:`KILL_GRACE_SECONDS`. Processes the command leaves behind in its group when it exits
are sent SIGTERM and SIGKILL (after up to :data:`DRAIN_SECONDS` for its output to end).
A process that left the group (``setsid``, daemons) is out of reach; if it keeps a pipe open,
the output is returned without waiting for it, with a note at the end of stderr.

stdout and stderr are read in two threads, each keeping only the last ``max_output_bytes``
(the end of a tool's output holds its summary), so a chatty command cannot exhaust memory and
a grandchild holding a pipe open cannot hang the caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, cast

from loopwright.models import CommandResult, utcnow
from loopwright.ports import Sandbox

#: Seconds between SIGTERM and SIGKILL when a process group is ended.
KILL_GRACE_SECONDS = 1.0
#: Seconds the readers get to reach end-of-file once the command has exited.
DRAIN_SECONDS = 0.5
#: Bytes read from a pipe at a time.
_CHUNK_BYTES = 64 * 1024
#: ``command[0]`` values replaced by the running interpreter (``sys.executable``).
PYTHON_ALIASES = frozenset({"python", "python3"})
_INCOMPLETE_MARKER = "[loopwright: output incomplete: a process outside the group kept a pipe open]"


class _TailReader(threading.Thread):
    """Reads a pipe to end-of-file, keeping its last ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)  # a pipe held by an escaped process must not block exit
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()
        self.dropped = 0

    def run(self) -> None:
        read = getattr(self._stream, "read1", self._stream.read)
        try:
            while chunk := read(_CHUNK_BYTES):
                self._buffer += chunk
                excess = len(self._buffer) - self._limit
                if excess > 0:
                    del self._buffer[:excess]
                    self.dropped += excess
        except (OSError, ValueError):  # the pipe was closed under us: keep what was read
            pass

    def text(self) -> str:
        """The kept bytes decoded as UTF-8 (invalid bytes replaced), with a marker if cut."""
        body = bytes(self._buffer).decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} bytes truncated, last {self._limit} kept ...]\n{body}"
        return body


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid`` (0: only test that it exists); False when the
    group no longer exists (or its members may no longer be signalled)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user; nothing more we may do
        return False
    return True


def _join(readers: Sequence[threading.Thread], seconds: float) -> bool:
    """Wait up to ``seconds`` in total for ``readers``; True when all have finished."""
    deadline = time.monotonic() + seconds
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    return not any(reader.is_alive() for reader in readers)


def build_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The child's environment: ``os.environ`` overlaid with ``env``, plus
    ``PYTHONDONTWRITEBYTECODE=1`` and the directory of ``sys.executable`` first on ``PATH``
    (so tools installed next to loopwright, such as pytest, ruff and bandit, are found)."""
    merged = dict(os.environ)
    if env:
        merged.update(env)
    merged["PYTHONDONTWRITEBYTECODE"] = "1"
    bin_dir = str(Path(sys.executable).parent)
    path = merged.get("PATH", "")
    merged["PATH"] = bin_dir + (os.pathsep + path if path else "")
    return merged


class SubprocessSandbox(Sandbox):
    """Runs commands with :func:`subprocess.Popen` (``shell=False``, own session).

    ``command[0]`` equal to ``python`` or ``python3`` is replaced by ``sys.executable``, so
    ``python -m pytest`` runs with loopwright's interpreter and its installed tools; the
    :class:`CommandResult` keeps the command as given. The environment is built by
    :func:`build_environment`. stdin is ``/dev/null``.
    """

    def __init__(self, kill_grace_seconds: float = KILL_GRACE_SECONDS) -> None:
        self._grace = kill_grace_seconds

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
    ) -> CommandResult:
        """Run ``command`` in ``cwd`` for at most ``timeout_seconds`` (wall clock).

        Returns ``exit_code`` (negative: killed by that signal), ``timed_out=True`` with
        ``exit_code=None`` on timeout, and ``error`` with ``exit_code=None`` when the command
        could not start (empty command, missing executable or ``cwd``, no permission).
        stdout/stderr each keep their last ``max_output_bytes`` bytes (``truncated`` tells).
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
        argv = [sys.executable if given[0] in PYTHON_ALIASES else given[0], *given[1:]]
        environment = build_environment(env)
        try:
            process = subprocess.Popen(  # nosec B603 - argv list, never a shell
                argv,
                cwd=cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                shell=False,
                start_new_session=True,
            )
        except FileNotFoundError:
            return failed(f"command not found: {argv[0]} (not on PATH; install it or give its full path)")
        except PermissionError as exc:
            return failed(f"permission denied: {exc.filename or argv[0]} (not executable?)")
        except OSError as exc:
            return failed(f"cannot start {argv[0]}: {exc.strerror or exc}")

        pipes = (cast(IO[bytes], process.stdout), cast(IO[bytes], process.stderr))
        readers = [_TailReader(pipe, max_output_bytes) for pipe in pipes]
        for reader in readers:
            reader.start()
        pgid = process.pid  # start_new_session: the child leads its own process group
        timed_out = False
        try:
            try:
                process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._end_group(pgid, process)
            # The command has exited; what it left in its group (or holding its pipes) goes too.
            drained = _join(readers, DRAIN_SECONDS)
            if not drained or _signal_group(pgid, 0):
                self._end_group(pgid, process)
            complete = drained or _join(readers, self._grace)
        finally:
            if process.poll() is None:  # interrupted (e.g. KeyboardInterrupt): leave nothing
                _signal_group(pgid, signal.SIGKILL)
                process.wait()
        if complete:
            for pipe in pipes:
                pipe.close()
        stdout, stderr = (reader.text() for reader in readers)
        if not complete:
            stderr += f"\n{_INCOMPLETE_MARKER}"
        return CommandResult(
            command=given,
            exit_code=None if timed_out else process.returncode,
            stdout=stdout,
            stderr=stderr,
            duration_seconds=time.monotonic() - start,
            timed_out=timed_out,
            truncated=any(reader.dropped for reader in readers),
            started_at=started_at,
        )

    def _end_group(self, pgid: int, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the group, wait up to the grace period for the leader, then SIGKILL it."""
        if _signal_group(pgid, signal.SIGTERM):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self._grace)
            _signal_group(pgid, signal.SIGKILL)
        process.wait()
