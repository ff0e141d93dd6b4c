"""Local plan store: plans, their activity events and inspection packets in SQLite.

The tables live in the same file as the loops (``<workspace>/.loopwright/loopwright.db``, see
:mod:`loopwright.adapters.local.sqlite_store`), opened the same way: WAL journal,
``synchronous=NORMAL``, a busy timeout for concurrent writers (the dispatcher's loops write the
same file). The tables are created here with ``CREATE TABLE IF NOT EXISTS`` on open; the loop
store's ``user_version`` is left alone.

Every table is keyed by (project, id) and every query filters on the project, so a plan of
project A cannot be read or written through project B (the :class:`PlanStore` contract).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from loopwright.adapters.local.sqlite_file import DEFAULT_BUSY_TIMEOUT_SECONDS, SqliteFile
from loopwright.exceptions import LoopFrameworkError
from loopwright.models.plans import ActivityEvent, ActivityEventType, InspectionPacket, Plan
from loopwright.plans.errors import PlanConflictError, PlanNotFoundError
from loopwright.plans.ports import PlanStore, check_project

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    project    TEXT NOT NULL,
    plan_id    TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version    INTEGER NOT NULL,
    plan       TEXT NOT NULL,
    PRIMARY KEY (project, plan_id)
);
CREATE TABLE IF NOT EXISTS plan_events (
    seq       INTEGER PRIMARY KEY,
    project   TEXT NOT NULL,
    plan_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS plan_events_by_plan ON plan_events (project, plan_id, seq);
CREATE TABLE IF NOT EXISTS inspection_packets (
    project    TEXT NOT NULL,
    packet_id  TEXT NOT NULL,
    loop_id    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    packet     TEXT NOT NULL,
    PRIMARY KEY (project, packet_id)
);
"""


class SqlitePlanStore(SqliteFile, PlanStore):
    """:class:`PlanStore` in a SQLite file (shared with the loop store).

    Args:
        path: the database file (``<state_dir>/loopwright.db``); its parent folders are created.
        busy_timeout_seconds: seconds to wait for another connection's write lock.

    Raises :class:`LoopFrameworkError` (wrapping :class:`sqlite3.Error`) when the file cannot be
    opened or a statement fails. Thread-safe (one connection under a lock). Use :meth:`close`.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(path, label="local plan store", busy_timeout_seconds=busy_timeout_seconds)
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # ----------------------------------------------------------------------------- plans
    def create_plan(self, project: str, plan: Plan, events: Sequence[ActivityEvent] = ()) -> Plan:
        """Store a new plan with ``events``; returns it with version 1.

        Raises :class:`PlanConflictError` when the project has a plan with the same id.
        """
        check_project(project, plan.project, f"plan {plan.plan_id}")
        _check_events(project, plan.plan_id, events)
        stored = plan.model_copy(update={"version": 1})
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO plans (project, plan_id, status, created_at, updated_at, version, plan)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        project,
                        stored.plan_id,
                        stored.status.value,
                        stored.created_at.isoformat(),
                        stored.updated_at.isoformat(),
                        1,
                        stored.model_dump_json(),
                    ),
                )
                _insert_events(conn, events)
        except LoopFrameworkError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise PlanConflictError(f"plan {plan.plan_id} already exists in project {project!r}") from exc
            raise
        return stored

    def get_plan(self, project: str, plan_id: str) -> Plan:
        """The plan ``plan_id`` of ``project``. Raises :class:`PlanNotFoundError`."""
        with self._guard() as conn:
            row = conn.execute(
                "SELECT plan FROM plans WHERE project=? AND plan_id=?", (project, plan_id)
            ).fetchone()
        if row is None:
            raise _not_found(project, plan_id)
        return _parse_plan(plan_id, row[0])

    def save_plan(self, project: str, plan: Plan, events: Sequence[ActivityEvent] = ()) -> Plan:
        """Store ``plan`` if the stored version equals ``plan.version``, with ``events`` in the
        same transaction; returns it with version + 1.

        Raises :class:`PlanNotFoundError` (no such plan in ``project``), :class:`PlanConflictError`
        (another writer changed it since it was read).
        """
        check_project(project, plan.project, f"plan {plan.plan_id}")
        _check_events(project, plan.plan_id, events)
        stored = plan.model_copy(update={"version": plan.version + 1})
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE plans SET status=?, updated_at=?, version=?, plan=?"
                " WHERE project=? AND plan_id=? AND version=?",
                (
                    stored.status.value,
                    stored.updated_at.isoformat(),
                    stored.version,
                    stored.model_dump_json(),
                    project,
                    plan.plan_id,
                    plan.version,
                ),
            )
            if cursor.rowcount != 1:
                row = conn.execute(
                    "SELECT version FROM plans WHERE project=? AND plan_id=?", (project, plan.plan_id)
                ).fetchone()
                if row is None:
                    raise _not_found(project, plan.plan_id)
                raise PlanConflictError(
                    f"plan {plan.plan_id} was changed by another writer: expected stored version "
                    f"{plan.version}, found {row[0]}; reload it and retry"
                )
            _insert_events(conn, events)
        return stored

    def list_plans(self, project: str, limit: int = 100) -> list[Plan]:
        """Up to ``limit`` plans of ``project``, most recently created first."""
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT plan_id, plan FROM plans WHERE project=? ORDER BY rowid DESC LIMIT ?",
                (project, limit),
            ).fetchall()
        return [_parse_plan(plan_id, payload) for plan_id, payload in rows]

    # ----------------------------------------------------------------------------- events
    def append_events(self, project: str, events: Sequence[ActivityEvent]) -> None:
        """Store ``events`` in one transaction. Raises :class:`PlanNotFoundError` when one names a
        plan ``project`` does not have."""
        if not events:
            return
        for event in events:
            check_project(project, event.project, f"event {event.event_id}")
        with self._write() as conn:
            for plan_id in {e.plan_id for e in events}:
                if (
                    conn.execute(
                        "SELECT 1 FROM plans WHERE project=? AND plan_id=?", (project, plan_id)
                    ).fetchone()
                    is None
                ):
                    raise _not_found(project, plan_id)
            _insert_events(conn, events)

    def list_events(
        self,
        project: str,
        plan_id: str,
        *,
        types: Sequence[ActivityEventType] | None = None,
        limit: int | None = None,
    ) -> list[ActivityEvent]:
        """Events of ``plan_id`` of ``project``, oldest first, optionally only of ``types``."""
        sql = "SELECT event FROM plan_events WHERE project=? AND plan_id=?"
        params: list[str | int] = [project, plan_id]
        if types is not None:
            if not types:
                return []
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params.extend(t.value for t in types)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._guard() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [ActivityEvent.model_validate_json(row[0]) for row in rows]

    # ----------------------------------------------------------------------------- packets
    def save_packet(self, project: str, packet: InspectionPacket) -> InspectionPacket:
        """Store ``packet``. Raises :class:`PlanConflictError` when its id is stored already."""
        check_project(project, packet.project, f"inspection packet {packet.packet_id}")
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO inspection_packets (project, packet_id, loop_id, created_at, packet)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        project,
                        packet.packet_id,
                        packet.loop_id,
                        packet.created_at.isoformat(),
                        packet.model_dump_json(),
                    ),
                )
        except LoopFrameworkError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise PlanConflictError(f"inspection packet {packet.packet_id} already exists") from exc
            raise
        return packet

    def get_packet(self, project: str, packet_id: str) -> InspectionPacket:
        """The packet ``packet_id`` of ``project``. Raises :class:`PlanNotFoundError`."""
        with self._guard() as conn:
            row = conn.execute(
                "SELECT packet FROM inspection_packets WHERE project=? AND packet_id=?", (project, packet_id)
            ).fetchone()
        if row is None:
            raise PlanNotFoundError(f"no inspection packet {packet_id!r} in project {project!r}")
        return InspectionPacket.model_validate_json(row[0])


def _not_found(project: str, plan_id: str) -> PlanNotFoundError:
    return PlanNotFoundError(f"no plan {plan_id!r} in project {project!r}")


def _parse_plan(plan_id: str, payload: str) -> Plan:
    try:
        return Plan.model_validate_json(payload)
    except ValidationError as exc:
        raise LoopFrameworkError(f"the stored plan {plan_id!r} cannot be read: {exc}") from exc


def _check_events(project: str, plan_id: str, events: Sequence[ActivityEvent]) -> None:
    for event in events:
        check_project(project, event.project, f"event {event.event_id}")
        if event.plan_id != plan_id:
            raise LoopFrameworkError(f"event {event.event_id} is of plan {event.plan_id}, not {plan_id}")


def _insert_events(conn: sqlite3.Connection, events: Sequence[ActivityEvent]) -> None:
    if events:
        conn.executemany(
            "INSERT INTO plan_events (project, plan_id, type, timestamp, event) VALUES (?, ?, ?, ?, ?)",
            [
                (e.project, e.plan_id, e.type.value, e.timestamp.isoformat(), e.model_dump_json())
                for e in events
            ],
        )
