"""Idle detection for the local sandbox: a command with no output and no file change for too long.

A command is *active* when it writes to stdout or stderr (the sandbox's
:class:`~loopwright.adapters.local.sandbox_pipes.TailReader` notes when each chunk arrives) or
changes a file under its working directory. File changes are found by scanning the working
directory (``os.scandir``, no link followed) for the newest change time (``st_ctime``, which a
write, a rename, a ``chmod`` or a ``touch`` all advance, as well as ``st_mtime``): a newer one than
the last scan found is activity. Created and deleted files count too, through their folder's
change time.

The scan is kept cheap: it runs only once the output has been quiet for a scan interval (a tenth
of the idle timeout, at most :data:`SCAN_INTERVAL_SECONDS`), and once more before a command is
found idle; it skips :data:`SKIPPED_FOLDERS` (``.git``, ``node_modules``, virtual environments,
caches) and stops after :data:`MAX_SCAN_ENTRIES` entries (a change beyond them is not seen: a
command that only changes files there, silently, is ended as idle).
Under bubblewrap the working directory is the same folder, bound into the sandbox, so the same
scan sees the command's changes.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: Longest time between two scans of the working directory, seconds (a scan runs every tenth of
#: the idle timeout, at most this far apart: a 900 s timeout ends a silent agent 900-910 s after
#: its last file change).
SCAN_INTERVAL_SECONDS = 10.0
#: Shortest time between two scans, seconds (a very small idle timeout does not spin).
MIN_SCAN_INTERVAL_SECONDS = 0.05
#: Entries (files and folders) one scan looks at, at most.
MAX_SCAN_ENTRIES = 20_000
#: Folders never scanned: version control, dependencies, virtual environments and caches.
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
    }
)


def newest_change(root: Path, max_entries: int = MAX_SCAN_ENTRIES) -> int:
    """The newest change time (``max(st_mtime_ns, st_ctime_ns)``, nanoseconds since the epoch)
    of ``root`` and what is under it, skipping :data:`SKIPPED_FOLDERS` and stopping after
    ``max_entries`` entries; 0 when nothing can be read. Never raises (a file that vanishes or
    cannot be read is skipped); symbolic links are looked at, never followed."""
    newest = 0
    seen = 0
    folders = [str(root)]
    try:
        info = os.stat(root)
        newest = max(info.st_mtime_ns, info.st_ctime_ns)
    except OSError:
        return 0
    while folders and seen < max_entries:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > max_entries:
                        break
                    try:
                        if entry.name in SKIPPED_FOLDERS and entry.is_dir(follow_symlinks=False):
                            continue  # nor its own times: writing in it changes them
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
                    if stat.S_ISDIR(info.st_mode):
                        folders.append(entry.path)
        except OSError:
            continue
    return newest


class IdleWatch:
    """Tells when a command has been idle (no output, no file change under ``cwd``) for
    ``idle_seconds``.

    ``last_output`` returns the ``time.monotonic()`` of the command's latest output (None: none
    yet); ``clock`` is ``time.monotonic`` (a test may give another). The watch's own scans run in
    the caller's thread, from :meth:`idle`.
    """

    def __init__(
        self,
        cwd: Path,
        idle_seconds: float,
        last_output: Callable[[], float | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_SCAN_ENTRIES,
    ) -> None:
        self.cwd = cwd
        self.idle_seconds = idle_seconds
        self.interval = max(MIN_SCAN_INTERVAL_SECONDS, min(SCAN_INTERVAL_SECONDS, idle_seconds / 10))
        self._last_output = last_output
        self._clock = clock
        self._max_entries = max_entries
        self._newest = newest_change(cwd, max_entries)
        self._last_file_change = self._clock()
        self._last_scan = self._last_file_change

    def started(self) -> None:
        """The command has just started: its idle time counts from now (not from the watch's
        creation, before its supervisor, bubblewrap and interpreter started)."""
        self._last_file_change = max(self._last_file_change, self._clock())

    def last_activity(self) -> float:
        """``time.monotonic()`` of the latest output or file change seen (the start at first)."""
        output = self._last_output()
        return self._last_file_change if output is None else max(output, self._last_file_change)

    def idle(self) -> bool:
        """True when nothing happened for ``idle_seconds``. Scans the files first when the
        output has been quiet for a scan interval and the last scan is that old, and always
        before it answers True (a change since the last scan is never missed)."""
        now = self._clock()
        quiet = now - self.last_activity()
        if quiet >= self.idle_seconds or (quiet >= self.interval and now - self._last_scan >= self.interval):
            self._last_scan = now
            newest = newest_change(self.cwd, self._max_entries)
            if newest > self._newest:
                self._newest = newest
                self._last_file_change = now
        return now - self.last_activity() >= self.idle_seconds

    def wait_seconds(self) -> float:
        """How long the caller may wait before asking :meth:`idle` again, seconds."""
        now = self._clock()
        until_idle = self.last_activity() + self.idle_seconds - now
        return max(MIN_SCAN_INTERVAL_SECONDS, min(self.interval, until_idle))


def latest(times: Sequence[float | None]) -> float | None:
    """The latest of ``times`` that is not None (None when all are)."""
    known = [moment for moment in times if moment is not None]
    return max(known) if known else None
