"""The checkpoints part of the local SQLite store (:class:`SqliteCheckpoints`, mixed into
:class:`~loopwright.adapters.local.sqlite_store.SqliteStore`): each loop's newest checkpoints as
a ring of ``retention`` rows in the ``checkpoints`` table (schema in ``sqlite_store``)."""

from __future__ import annotations

import sqlite3

from pydantic import ValidationError

from loopwright.adapters.local.sqlite_file import SqliteFile
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import Checkpoint
from loopwright.ports import CheckpointStore


class SqliteCheckpoints(SqliteFile, CheckpointStore):
    """:class:`CheckpointStore` over the ``checkpoints`` table of a :class:`SqliteFile`."""

    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        """Store ``checkpoint`` and delete all but the newest ``retention`` (>= 1) of its loop,
        in one transaction. The checksum is stored as given, not verified.

        Raises :class:`LoopFrameworkError` for ``retention`` < 1 or a checkpoint id already stored.
        """
        if retention < 1:
            raise LoopFrameworkError(f"checkpoint retention must be at least 1, got {retention}")
        try:
            with self._write() as conn:
                _insert_checkpoint(conn, checkpoint, retention)
        except LoopFrameworkError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise LoopFrameworkError(
                    f"checkpoint {checkpoint.checkpoint_id!r} is already stored"
                ) from exc.__cause__
            raise

    def list_checkpoints(self, loop_id: str) -> list[Checkpoint | str]:
        """Checkpoints of ``loop_id``, newest first; one whose payload cannot be parsed is
        returned as its checkpoint id. Checksums are not verified here (the core does)."""
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT checkpoint_id, payload FROM checkpoints WHERE loop_id=? ORDER BY ordinal DESC",
                (loop_id,),
            ).fetchall()
        found: list[Checkpoint | str] = []
        for checkpoint_id, payload in rows:
            try:
                found.append(Checkpoint.model_validate_json(payload))
            except ValidationError:
                found.append(str(checkpoint_id))
        return found


def _insert_checkpoint(conn: sqlite3.Connection, checkpoint: Checkpoint, retention: int) -> None:
    """Store ``checkpoint`` as its loop's newest and keep the newest ``retention``, inside the
    caller's transaction: with ``retention`` rows stored already, the oldest row is overwritten
    in place (a ring: the table and its index keep their pages); rows beyond ``retention`` (it
    was lowered) are deleted. Raises :class:`sqlite3.IntegrityError` for a checkpoint id the
    loop already has."""
    loop_id = checkpoint.loop_id
    rows = conn.execute(
        "SELECT seq, ordinal, checkpoint_id FROM checkpoints WHERE loop_id=? ORDER BY ordinal", (loop_id,)
    ).fetchall()
    if any(row[2] == checkpoint.checkpoint_id for row in rows):
        raise sqlite3.IntegrityError(f"checkpoint {checkpoint.checkpoint_id} is already stored")
    ordinal = rows[-1][1] + 1 if rows else 1
    values = (
        ordinal,
        checkpoint.checkpoint_id,
        checkpoint.iteration,
        checkpoint.created_at.isoformat(),
        checkpoint.checksum,
        checkpoint.payload_json(),
    )
    if len(rows) < retention:
        conn.execute(
            "INSERT INTO checkpoints (ordinal, checkpoint_id, iteration, created_at, checksum, payload,"
            " loop_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*values, loop_id),
        )
        return
    conn.execute(
        "UPDATE checkpoints SET ordinal=?, checkpoint_id=?, iteration=?, created_at=?, checksum=?,"
        " payload=? WHERE seq=?",
        (*values, rows[0][0]),
    )
    surplus = rows[1 : len(rows) - retention + 1]
    if surplus:
        conn.executemany("DELETE FROM checkpoints WHERE seq=?", [(row[0],) for row in surplus])
