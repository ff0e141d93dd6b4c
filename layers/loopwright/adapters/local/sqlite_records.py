"""The agent's records part of the local SQLite store (:class:`SqliteIterationRecords`, mixed
into :class:`~loopwright.adapters.local.sqlite_store.SqliteStore`).

Table ``iteration_records`` (schema version 3), one row per loop and iteration:
``loop_id`` (TEXT), ``iteration`` (INTEGER), primary key both; ``summary`` (TEXT, the
:class:`~loopwright.models.records.IterationSummary` JSON, for lists without reading the texts);
``record`` (BLOB, the :class:`~loopwright.models.records.IterationRecord` JSON compressed with
zlib: agent output is text and shrinks about 5 to 10 times, so a loop of 1,000 iterations whose
agent fills its 272 Ki characters of kept output each time takes some 30 to 60 MB, not 270).
A row is replaced in one statement (``INSERT ... ON CONFLICT DO UPDATE``): a reader sees the old
or the new record, never a mix.
"""

from __future__ import annotations

import zlib

from pydantic import ValidationError

from loopwright.adapters.local.sqlite_file import SqliteFile
from loopwright.exceptions import LoopFrameworkError
from loopwright.models.records import IterationRecord, IterationSummary

#: DDL of the table (idempotent); run by the store's schema set-up.
RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS iteration_records (
    loop_id   TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    summary   TEXT NOT NULL,
    record    BLOB NOT NULL,
    PRIMARY KEY (loop_id, iteration)
);
"""

#: zlib level of the stored record: 6 compresses 272 Ki characters of output in a few ms.
COMPRESSION_LEVEL = 6


class SqliteIterationRecords(SqliteFile):
    """Iteration records in the ``iteration_records`` table of a :class:`SqliteFile`.

    Raises :class:`LoopFrameworkError` when a statement fails or a stored record cannot be read.
    """

    def save_iteration_record(self, record: IterationRecord) -> None:
        """Store ``record``, replacing the stored one of the same loop and iteration."""
        packed = zlib.compress(record.model_dump_json().encode(), COMPRESSION_LEVEL)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO iteration_records (loop_id, iteration, summary, record) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (loop_id, iteration) DO UPDATE SET summary = excluded.summary,"
                " record = excluded.record",
                (record.loop_id, record.iteration, record.summarize().model_dump_json(), packed),
            )

    def get_iteration_record(self, loop_id: str, iteration: int) -> IterationRecord | None:
        """The record of ``iteration`` of ``loop_id``, or None."""
        with self._guard() as conn:
            row = conn.execute(
                "SELECT record FROM iteration_records WHERE loop_id=? AND iteration=?", (loop_id, iteration)
            ).fetchone()
        if row is None:
            return None
        try:
            return IterationRecord.model_validate_json(zlib.decompress(row[0]))
        except (zlib.error, ValidationError) as exc:
            raise LoopFrameworkError(
                f"the record of iteration {iteration} of loop {loop_id!r} in {self.path} cannot be "
                f"read: {str(exc).splitlines()[0][:300]}"
            ) from exc

    def list_iteration_records(self, loop_id: str) -> list[IterationSummary]:
        """Summaries of ``loop_id``'s records, oldest iteration first; unreadable ones are left out."""
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT summary FROM iteration_records WHERE loop_id=? ORDER BY iteration", (loop_id,)
            ).fetchall()
        found: list[IterationSummary] = []
        for (summary,) in rows:
            try:
                found.append(IterationSummary.model_validate_json(summary))
            except ValidationError:
                continue
        return found
