"""One SQLite connection to the local state file, shared between threads under a lock.

The loop store, the plan store and the dashboard's read-only queries open the same file
(``<state_dir>/loopwright.db``) through this class: WAL journal (readers never block the
writer), ``synchronous=NORMAL`` (durable at each WAL checkpoint; a power loss may lose the last
transactions, never corrupt the file), a bounded WAL, and ``BEGIN IMMEDIATE`` write
transactions, so two processes writing wait on each other for up to ``busy_timeout_seconds``
instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from loopwright.exceptions import LoopFrameworkError

#: Seconds a connection waits for another one's write lock before failing.
DEFAULT_BUSY_TIMEOUT_SECONDS = 10.0
#: WAL pages (4 KiB each) after which SQLite checkpoints the WAL into the database: 2 MiB.
WAL_AUTOCHECKPOINT_PAGES = 512
#: The WAL is truncated back to this size after a checkpoint (bytes).
WAL_SIZE_LIMIT_BYTES = 2 * 1024 * 1024


class SqliteFile:
    """The connection (``isolation_level=None``: each method runs its own transactions).

    Args:
        path: the database file; its parent folders are created (not with ``read_only``).
        label: how errors name the file ("local store", "local plan store").
        read_only: open with ``mode=ro`` (the file must exist); no pragmas are set.
        busy_timeout_seconds: seconds to wait for another connection's write lock.

    Raises :class:`LoopFrameworkError` (wrapping the OS or SQLite error) when the file cannot be
    opened, and from :meth:`_guard` / :meth:`_write` when a statement fails. Use :meth:`close`
    (or ``with``) to release the file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        label: str,
        read_only: bool = False,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self._label = label
        self._lock = threading.Lock()
        try:
            if read_only:
                target: str | Path = f"{self.path.resolve().as_uri()}?mode=ro"
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = self.path
            self._conn = sqlite3.connect(
                target,
                uri=read_only,
                timeout=busy_timeout_seconds,
                isolation_level=None,
                check_same_thread=False,  # shared between threads under self._lock
            )
        except (OSError, sqlite3.Error) as exc:
            raise LoopFrameworkError(f"cannot open the {label} {self.path}: {exc}") from exc
        if not read_only:
            with self._guard() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; SQLite errors become LoopFrameworkError."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise LoopFrameworkError(f"{self._label} {self.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error)."""
        with self._guard() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
