"""Local durable store: loops, events, queued controls, checkpoints and the agent's iteration
records in one SQLite file (checkpoints in :mod:`.sqlite_checkpoints`, records in
:mod:`.sqlite_records`; the rest here).

The file (default ``<workspace>/.loopwright/loopwright.db``) is opened in WAL mode with
``synchronous=NORMAL``: a committed transaction survives a crash of the process (including
``kill -9``); a power loss or OS crash may lose the last transactions committed before it
(never corrupting the file). Readers never block the writer and the writer never blocks
readers, so a CLI process (``loopwright status``, ``loopwright stop``) can use the file while
the engine runs; a writer waits up to ``busy_timeout_seconds`` for another writer.

The connection, its pragmas and transactions come from
:class:`~loopwright.adapters.local.sqlite_file.SqliteFile`: the write-ahead log is checkpointed
into the database every ``WAL_AUTOCHECKPOINT_PAGES`` pages and truncated back to
``WAL_SIZE_LIMIT_BYTES`` after a checkpoint, so the ``-wal`` file stays at about 2 MiB however
long a loop runs (SQLite's defaults let it reach 4 MiB and never shrink it, more than the database
of a 1,000-iteration loop). Rows are numbered by plain ``INTEGER PRIMARY KEY``, without
``AUTOINCREMENT``: a new row still gets a number above every existing row, so ``seq`` order is
insertion order (only the number of a deleted newest row could be reused, which nothing relies
on), and each insert writes one page less (``sqlite_sequence``). Measured with
``bench/bench_loop.py`` (1,000 iterations, ext4): the page saved is worth about 0.2 ms per
iteration and the twice as frequent checkpoints cost about as much, so the time per iteration is
unchanged; a 256-page WAL (1 MiB) would cost about 0.5 ms per iteration more."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from loopwright.adapters.local.sqlite_checkpoints import SqliteCheckpoints, _insert_checkpoint
from loopwright.adapters.local.sqlite_file import DEFAULT_BUSY_TIMEOUT_SECONDS
from loopwright.adapters.local.sqlite_records import RECORDS_SCHEMA, SqliteIterationRecords
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import (
    Checkpoint,
    ControlRequest,
    IterationEvent,
    IterationEventType,
    LoopState,
    utcnow,
)
from loopwright.ports import LoopStore

_RowT = TypeVar("_RowT", bound=BaseModel)

#: Schema version stored in ``PRAGMA user_version``; raise it with a migration. Version 2 adds
#: the ``quarantine`` table, keeps each loop's checkpoints as a ring of ``retention`` rows
#: overwritten in place (ordered by ``ordinal``; no unique index on ``checkpoint_id``), and drops
#: the ``events (loop_id, type)`` index, which no query needed: a step's write touches about half
#: the pages it did (``bench/bench_loop.py``: the checkpoint transaction about 2x faster).
#: Version 3 adds ``iteration_records`` (the agent's record of each iteration, see
#: :mod:`loopwright.adapters.local.sqlite_records`).
SCHEMA_VERSION = 3

#: Version 1 -> 2, run before :data:`_SCHEMA` (whose statements are all idempotent).
_MIGRATE_FROM_1 = (
    "DROP INDEX IF EXISTS events_by_loop_type",
    "ALTER TABLE checkpoints ADD COLUMN ordinal INTEGER NOT NULL DEFAULT 0",
    "UPDATE checkpoints SET ordinal = seq",
    "DROP INDEX IF EXISTS checkpoints_by_loop",
)

logger = logging.getLogger(__name__)

#: Seconds between two looks for controls other processes queued (see ``pending_controls``).
CONTROL_POLL_SECONDS = 0.05

# ``seq`` is the rowid (no AUTOINCREMENT, see the module docstring); stores created before that
# change declare AUTOINCREMENT, which the queries below do not depend on.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS loops (
    loop_id    TEXT PRIMARY KEY,
    project    TEXT NOT NULL,
    phase      TEXT NOT NULL,
    outcome    TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS loops_by_project ON loops (project);
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY,
    loop_id   TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    type      TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_loop ON events (loop_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq           INTEGER PRIMARY KEY,
    loop_id       TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    iteration     INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    checksum      TEXT NOT NULL,
    payload       TEXT NOT NULL,
    ordinal       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS checkpoints_by_loop_ordinal ON checkpoints (loop_id, ordinal);
CREATE TABLE IF NOT EXISTS controls (
    seq          INTEGER PRIMARY KEY,
    control_id   TEXT NOT NULL UNIQUE,
    loop_id      TEXT NOT NULL,
    payload      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS controls_by_loop ON controls (loop_id, seq);
CREATE TABLE IF NOT EXISTS quarantine (
    seq            INTEGER PRIMARY KEY,
    source         TEXT NOT NULL,
    loop_id        TEXT NOT NULL,
    payload        TEXT NOT NULL,
    error          TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
);
"""
    + RECORDS_SCHEMA
)


class SqliteStore(SqliteCheckpoints, SqliteIterationRecords, LoopStore):
    """:class:`LoopStore` and :class:`CheckpointStore` in one SQLite file.

    Args:
        path: the database file; its parent folders are created.
        busy_timeout_seconds: seconds to wait for another connection's write lock.

    Raises :class:`LoopFrameworkError` (wrapping :class:`sqlite3.Error`) when the file cannot be
    opened or a statement fails, :class:`LoopNotFoundError` for an unknown loop id.
    Use :meth:`close` (or ``with SqliteStore(...) as store``) to release the file.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(path, label="local store", busy_timeout_seconds=busy_timeout_seconds)
        # Controls read per loop, keyed by (data_version, own control writes) at the read.
        self._controls_cache: dict[str, tuple[tuple[int, int], list[ControlRequest]]] = {}
        self._controls_checked: dict[str, float] = {}  # loop id -> time.monotonic() of the check
        self._local_writes = 0
        with self._write() as conn:
            stored_version = conn.execute("PRAGMA user_version").fetchone()[0]
            if stored_version > SCHEMA_VERSION:
                raise LoopFrameworkError(
                    f"the local store {self.path} has schema version {stored_version}, newer than "
                    f"this loopwright supports ({SCHEMA_VERSION}); upgrade loopwright"
                )
            if stored_version == 1:
                for statement in _MIGRATE_FROM_1:
                    conn.execute(statement)
            if stored_version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # ----------------------------------------------------------------------------- loops
    def create_loop(self, state: LoopState) -> LoopState:
        """Store a new loop; returns it with ``version`` 1.

        Raises :class:`LoopFrameworkError` when a loop with the same id exists.
        """
        stored = state.model_copy(update={"version": 1})
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO loops (loop_id, project, phase, outcome, created_at, updated_at,"
                    " version, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        stored.loop_id,
                        stored.project,
                        stored.phase.value,
                        stored.outcome.value if stored.outcome else None,
                        utcnow().isoformat(),
                        stored.updated_at.isoformat(),
                        1,
                        stored.model_dump_json(),
                    ),
                )
        except LoopFrameworkError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise LoopFrameworkError(
                    f"loop {state.loop_id!r} already exists in {self.path}; "
                    "choose another loop id or resume it"
                ) from exc.__cause__
            raise
        return stored

    def save_state(self, state: LoopState, events: Sequence[IterationEvent] = ()) -> LoopState:
        """Store ``state`` if the stored version equals ``state.version``, and ``events`` with
        it in the same transaction; returns the state with version + 1.

        Raises :class:`LoopNotFoundError` for an unknown loop, :class:`LoopFrameworkError` when
        another writer changed the loop since ``state`` was read (version mismatch).
        """
        return self._save_state(state, events)

    def save_state_with_checkpoint(
        self,
        state: LoopState,
        events: Sequence[IterationEvent],
        checkpoint: Checkpoint,
        retention: int,
    ) -> LoopState:
        """:meth:`save_state` and :meth:`save` in ONE transaction: a crash never leaves a
        checkpoint without the state and events it belongs to (or the reverse)."""
        if retention < 1:
            raise LoopFrameworkError(f"checkpoint retention must be at least 1, got {retention}")
        return self._save_state(state, events, (checkpoint, retention))

    def _save_state(
        self,
        state: LoopState,
        events: Sequence[IterationEvent],
        checkpoint: tuple[Checkpoint, int] | None = None,
    ) -> LoopState:
        stored = state.model_copy(update={"version": state.version + 1})
        with self._write() as conn:
            if checkpoint is not None:
                _insert_checkpoint(conn, *checkpoint)
            cursor = conn.execute(
                "UPDATE loops SET project=?, phase=?, outcome=?, updated_at=?, version=?, state=?"
                " WHERE loop_id=? AND version=?",
                (
                    stored.project,
                    stored.phase.value,
                    stored.outcome.value if stored.outcome else None,
                    stored.updated_at.isoformat(),
                    stored.version,
                    stored.model_dump_json(),
                    state.loop_id,
                    state.version,
                ),
            )
            if cursor.rowcount != 1:
                row = conn.execute("SELECT version FROM loops WHERE loop_id=?", (state.loop_id,)).fetchone()
                if row is None:
                    raise _not_found(state.loop_id)
                raise LoopFrameworkError(
                    f"loop {state.loop_id!r} was changed by another writer: expected stored "
                    f"version {state.version}, found {row[0]}; reload it and retry"
                )
            _insert_events(conn, events)
        return stored

    def get_state(self, loop_id: str) -> LoopState:
        """The stored state of ``loop_id``. Raises :class:`LoopNotFoundError`."""
        with self._guard() as conn:
            row = conn.execute("SELECT state FROM loops WHERE loop_id=?", (loop_id,)).fetchone()
        if row is None:
            raise _not_found(loop_id)
        return _parse_state(loop_id, row[0])

    def list_loops(self, project: str | None = None, limit: int = 100) -> list[LoopState]:
        """Up to ``limit`` loops, most recently created first, optionally of one project."""
        with self._guard() as conn:
            if project is None:
                rows = conn.execute(
                    "SELECT loop_id, state FROM loops ORDER BY rowid DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT loop_id, state FROM loops WHERE project=? ORDER BY rowid DESC LIMIT ?",
                    (project, limit),
                ).fetchall()
        states: list[LoopState] = []
        for loop_id, payload in rows:
            try:
                states.append(_parse_state(loop_id, payload))
            except LoopFrameworkError as exc:
                logger.warning("%s; it is left out of the list", exc)
        return states

    # ----------------------------------------------------------------------------- events
    def append_events(self, events: Sequence[IterationEvent]) -> None:
        """Store ``events`` in order, in one transaction (all or none)."""
        if not events:
            return
        with self._write() as conn:
            _insert_events(conn, events)

    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[IterationEvent]:
        """Events of ``loop_id`` in order of recording (or newest first), optionally only of
        ``types``; at most ``limit`` (None: all). An unknown loop has no events."""
        sql = "SELECT event FROM events WHERE loop_id=?"
        params: list[str | int] = [loop_id]
        if types is not None:
            if not types:
                return []
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params.extend(t.value for t in types)
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._guard() as conn:
            rows = conn.execute(sql.replace("SELECT event", "SELECT seq, event"), params).fetchall()
        return self._parse_rows("events", loop_id, rows, IterationEvent)

    # ----------------------------------------------------------------------------- controls
    def add_control(self, request: ControlRequest) -> None:
        """Queue ``request`` for its loop (replacing one with the same ``control_id``).

        Raises :class:`LoopNotFoundError` for an unknown loop."""
        self._local_writes += 1
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM loops WHERE loop_id=?", (request.loop_id,)).fetchone() is None:
                raise _not_found(request.loop_id)
            conn.execute(
                "INSERT INTO controls (control_id, loop_id, payload) VALUES (?, ?, ?) "
                "ON CONFLICT (control_id) DO UPDATE SET payload = excluded.payload",
                (request.control_id, request.loop_id, request.model_dump_json()),
            )

    def pending_controls(self, loop_id: str) -> list[ControlRequest]:
        """The queued controls of ``loop_id``, oldest first.

        A running engine asks before every step; the table is read again only when the file
        changed since the last read (``PRAGMA data_version`` moves when another connection
        commits; this object's own writes are counted apart), and another connection's control is
        looked for at most every :data:`CONTROL_POLL_SECONDS` (a human's pause or stop is seen
        within that much of a step boundary; this object's own controls at once).
        """
        cached = self._controls_cache.get(loop_id)
        if (
            cached is not None
            and cached[0][1] == self._local_writes
            and time.monotonic() - self._controls_checked.get(loop_id, 0.0) < CONTROL_POLL_SECONDS
        ):
            return list(cached[1])
        self._controls_checked[loop_id] = time.monotonic()
        with self._guard() as conn:
            version = (conn.execute("PRAGMA data_version").fetchone()[0], self._local_writes)
            cached = self._controls_cache.get(loop_id)
            if cached is not None and cached[0] == version:
                return list(cached[1])
            rows = conn.execute(
                "SELECT seq, payload FROM controls WHERE loop_id=? ORDER BY seq", (loop_id,)
            ).fetchall()
        controls = self._parse_rows("controls", loop_id, rows, ControlRequest)
        with self._guard() as conn:
            version_now = (conn.execute("PRAGMA data_version").fetchone()[0], self._local_writes)
        if version_now == version:
            self._controls_cache[loop_id] = (version, controls)
        return list(controls)

    def clear_controls(self, loop_id: str, control_ids: Sequence[str]) -> None:
        """Forget the given queued controls of ``loop_id``."""
        if not control_ids:
            return
        self._local_writes += 1
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM controls WHERE loop_id=? AND control_id=?",
                [(loop_id, control_id) for control_id in control_ids],
            )

    # ----------------------------------------------------------------------------- quarantine
    def _parse_rows(
        self, table: str, loop_id: str, rows: Sequence[tuple[int, str]], model: type[_RowT]
    ) -> list[_RowT]:
        """Parse each row's JSON as ``model``; rows that do not parse (garbled by a crash, a
        disk fault or a hand edit) are moved to the ``quarantine`` table with a warning, so one
        bad row never makes a loop unreadable or unresumable."""
        parsed: list[_RowT] = []
        bad: list[tuple[int, str, str]] = []
        for seq, payload in rows:
            try:
                parsed.append(model.model_validate_json(payload))
            except (ValidationError, ValueError) as exc:
                bad.append((seq, payload, str(exc).splitlines()[0][:500]))
        if bad:
            self._quarantine(table, loop_id, bad)
        return parsed

    def _quarantine(self, table: str, loop_id: str, bad: Sequence[tuple[int, str, str]]) -> None:
        self._local_writes += 1
        now = utcnow().isoformat()
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO quarantine (source, loop_id, payload, error, quarantined_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(table, loop_id, payload, error, now) for _, payload, error in bad],
            )
            conn.executemany(f"DELETE FROM {table} WHERE seq=?", [(seq,) for seq, _, _ in bad])  # nosec B608
        logger.warning(
            "loopwright: %d unreadable %s row(s) of loop %r moved to the quarantine table of %s (%s)",
            len(bad),
            table,
            loop_id,
            self.path,
            bad[0][2],
        )

    def quarantined(self, loop_id: str | None = None) -> list[dict[str, str]]:
        """Rows moved aside because they could not be read: ``source`` table, ``loop_id``,
        ``payload``, ``error``, ``quarantined_at`` (oldest first)."""
        sql = "SELECT source, loop_id, payload, error, quarantined_at FROM quarantine"
        params: tuple[str, ...] = ()
        if loop_id is not None:
            sql, params = sql + " WHERE loop_id=?", (loop_id,)
        with self._guard() as conn:
            rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
        keys = ("source", "loop_id", "payload", "error", "quarantined_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _not_found(loop_id: str) -> LoopNotFoundError:
    return LoopNotFoundError(
        f"no loop {loop_id!r} in the local store; list the loops with `loopwright status`"
    )


def _parse_state(loop_id: str, payload: str) -> LoopState:
    try:
        return LoopState.model_validate_json(payload)
    except ValidationError as exc:
        raise LoopFrameworkError(f"the stored state of loop {loop_id!r} cannot be read: {exc}") from exc


def _insert_events(conn: sqlite3.Connection, events: Sequence[IterationEvent]) -> None:
    """Insert ``events`` in order inside the caller's transaction."""
    if events:
        conn.executemany(
            "INSERT INTO events (loop_id, iteration, type, timestamp, event) VALUES (?, ?, ?, ?, ?)",
            [
                (e.loop_id, e.iteration, e.type.value, e.timestamp.isoformat(), e.model_dump_json())
                for e in events
            ],
        )
