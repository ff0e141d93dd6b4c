"""The pipes between the local sandbox and its supervisor: output readers and the status report.

:class:`TailReader` reads a command's stdout or stderr to end-of-file, keeping only the last
bytes and showing every chunk to an optional :data:`~loopwright.ports.OutputCallback`;
:class:`SupervisorStatus` parses the supervisor's status pipe (see
:mod:`loopwright.adapters.local.supervisor`); :func:`feed_stdin` writes a command's input.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from loopwright.ports import OutputCallback

#: Bytes read from a pipe at a time.
CHUNK_BYTES = 64 * 1024


class TailReader(threading.Thread):
    """Reads a pipe to end-of-file, keeping its last ``limit`` bytes; ``on_output`` (if any)
    sees every chunk as ``(name, text)``, decoded incrementally so no character is split.
    ``last_output`` is the ``time.monotonic()`` of the latest chunk (None before the first)."""

    def __init__(
        self, stream: IO[bytes], limit: int, *, name: str = "stdout", on_output: OutputCallback | None = None
    ) -> None:
        super().__init__(daemon=True)  # a pipe held by an escaped process must not block exit
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()
        self._name = name
        self._on_output = on_output
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.dropped = 0
        self.last_output: float | None = None

    def run(self) -> None:
        read = getattr(self._stream, "read1", self._stream.read)
        try:
            while chunk := read(CHUNK_BYTES):
                self.last_output = time.monotonic()
                self._show(chunk)
                self._buffer += chunk
                excess = len(self._buffer) - self._limit
                if excess > 0:
                    del self._buffer[:excess]
                    self.dropped += excess
        except (OSError, ValueError):  # the pipe was closed under us: keep what was read
            pass
        self._show(b"", final=True)

    def _show(self, chunk: bytes, *, final: bool = False) -> None:
        if self._on_output is None:
            return
        text = self._decoder.decode(chunk, final)
        if text:
            with contextlib.suppress(Exception):  # a viewer's failure must not lose the output
                self._on_output(self._name, text)

    def text(self) -> str:
        """The kept bytes decoded as UTF-8 (invalid bytes replaced), with a marker if cut."""
        body = bytes(self._buffer).decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} bytes truncated, last {self._limit} kept ...]\n{body}"
        return body


def join_all(readers: Sequence[threading.Thread], seconds: float) -> bool:
    """Wait up to ``seconds`` in total for ``readers``; True when all have finished."""
    deadline = time.monotonic() + seconds
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    return not any(reader.is_alive() for reader in readers)


@dataclass
class SupervisorStatus:
    """What the supervisor reported on its status pipe (see its module docstring)."""

    fd: int
    pending: bytes = b""
    started: tuple[int, int] | None = None  # (pid, start ticks)
    failed: int | None = None  # errno of the failed start
    failed_message: str = ""
    exit_code: int | None = None
    stopped: bool = False
    left: list[str] = field(default_factory=list)
    done: bool = False
    eof: bool = False

    @property
    def first_line_read(self) -> bool:
        """True once the supervisor said whether the command started."""
        return self.started is not None or self.failed is not None or self.stopped

    def read(self, seconds: float, *, until_started: bool = False) -> None:
        """Read lines for up to ``seconds`` (to end-of-file, or to the first line)."""
        deadline = time.monotonic() + seconds
        poller = select.poll()  # not select(): it fails on descriptors above 1023
        poller.register(self.fd, select.POLLIN)
        while not self.eof and not (until_started and self.first_line_read):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return
            chunk = os.read(self.fd, 4096)
            if not chunk:
                self.eof = True
            self.pending += chunk
            *lines, self.pending = self.pending.split(b"\n")
            for line in lines:
                self._parse(line.decode("utf-8", "replace"))

    def _parse(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "started":
            pid, _, ticks = rest.partition(" ")
            self.started = (int(pid), int(ticks or 0))
        elif kind == "failed":
            number, _, self.failed_message = rest.partition(" ")
            self.failed = int(number) if number.isdigit() else 0
        elif kind == "exited":
            self.exit_code = int(rest)
        elif kind == "stopped":
            self.stopped = True
        elif kind == "left":
            pid, _, command = rest.partition(" ")
            self.left.append(f"pid {pid}: {command}")
        elif kind == "done":
            self.done = True


def feed_stdin(pipe: IO[bytes], text: str) -> threading.Thread:
    """Write ``text`` (UTF-8) to ``pipe`` and close it, in a thread (a command that does not
    read its input must not block the caller); a command that exits early is not an error."""

    def write() -> None:
        with contextlib.suppress(OSError, ValueError):
            try:
                pipe.write(text.encode("utf-8"))
            finally:
                pipe.close()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread
