"""A per-loop lock file, so one loop runs in at most one process at a time.

``fcntl.flock`` locks are released by the kernel when the holding process dies, including by
``kill -9``, so a crashed loop never stays locked. POSIX only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from loopwright.exceptions import ConfigError, LoopAlreadyRunningError
from loopwright.models.types import loop_id_problem


class LoopLock:
    """Exclusive lock on ``<state_dir>/locks/<loop_id>.lock``; the holder's pid is written in it.

    Raises :class:`ConfigError` for a ``loop_id`` that is not a loop id (before any file is
    opened: an id such as ``../../x`` would otherwise name a file outside the folder).
    """

    def __init__(self, state_dir: Path, loop_id: str) -> None:
        problem = loop_id_problem(loop_id)
        if problem is not None:
            raise ConfigError(problem)
        self.loop_id = loop_id
        self.path = state_dir / "locks" / f"{loop_id}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock. Raises :class:`LoopAlreadyRunningError` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LoopAlreadyRunningError(
                f"loop {self.loop_id!r} is already running (process {holder}); "
                f"stop it with `loopwright stop {self.loop_id}`"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Release the lock if held."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def holder(self) -> int | None:
        """The pid of the process running the loop, or None when no process holds the lock."""
        if not self.path.exists():
            return None
        with self.path.open("a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                text = handle.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return None


#: Seconds a run waits for another process preparing a loop in the same workspace.
WORKSPACE_LOCK_TIMEOUT_SECONDS = 120.0
_POLL_SECONDS = 0.05


@contextlib.contextmanager
def workspace_lock(
    state_dir: Path, *, timeout_seconds: float = WORKSPACE_LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Hold ``<state_dir>/locks/workspace.lock`` while a loop is prepared, so first runs in one
    folder are serialized: only one makes it a git repository and commits its snapshot, and
    ``git worktree add`` calls never race on the repository's lock files.

    Raises :class:`LoopAlreadyRunningError` when another process holds it for more than
    ``timeout_seconds`` (seconds).
    """
    path = state_dir / "locks" / "workspace.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    with path.open("a+", encoding="utf-8") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LoopAlreadyRunningError(
                        f"another loopwright process has been preparing a loop in {state_dir.parent} "
                        f"for more than {timeout_seconds:.0f} s ({path} is locked); try again"
                    ) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
