"""The agent's iteration records in the DynamoDB loop store (:class:`DynamoDbIterationRecords`,
mixed into :class:`~loopwright.adapters.aws.dynamodb_store.DynamoDbStore`).

One item per record, in the loops table (no new table, no new index): partition key
``loop_id`` = ``"<loop_id>#iteration#<n, 6 digits>"`` (a loop id never holds ``#``, so these keys
never meet a loop's), attributes ``summary`` (S, the
:class:`~loopwright.models.records.IterationSummary` JSON) and ``record`` (B, the
:class:`~loopwright.models.records.IterationRecord` JSON compressed with zlib). Record items have
no ``project``, ``gsi_all`` or ``created_at``, so they are in neither of the table's indexes and
never listed as loops.

DynamoDB items are limited to 400 KB: a compressed record above :data:`RECORD_MAX_BYTES` is
stored with a shorter output tail (halved until it fits; ``output.total_chars`` still counts all
the agent wrote), and one that still does not fit is refused with a :class:`LoopFrameworkError`
(the engine logs it and goes on). Listing reads the loop's state for its iteration count, then the
summaries with BatchGetItem (no Query or Scan of the table).
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from pydantic import ValidationError

from loopwright.adapters.aws._errors import aws_errors
from loopwright.adapters.aws.dynamodb_keys import LOOPS_PARTITION_KEY, MAX_BATCH_GET_KEYS, UNPROCESSED_ROUNDS
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import LoopState
from loopwright.models.records import IterationRecord, IterationSummary

#: Largest compressed ``record`` attribute stored (bytes), under DynamoDB's 400 KB item limit.
RECORD_MAX_BYTES = 350 * 1024
#: Separator between the loop id and the iteration in a record item's key.
RECORD_KEY_INFIX = "#iteration#"


def record_key(loop_id: str, iteration: int) -> dict[str, dict[str, str]]:
    """The loops-table key of the record of ``iteration`` of ``loop_id``."""
    return {LOOPS_PARTITION_KEY: {"S": f"{loop_id}{RECORD_KEY_INFIX}{iteration:06d}"}}


def pack_record(record: IterationRecord) -> bytes:
    """The compressed JSON of ``record``, its output tail shortened until it fits
    :data:`RECORD_MAX_BYTES`. Raises :class:`LoopFrameworkError` when even no tail does."""
    tail = len(record.output.tail)
    while True:
        packed = zlib.compress(record.model_dump_json().encode(), 6)
        if len(packed) <= RECORD_MAX_BYTES:
            return packed
        if tail == 0:
            raise LoopFrameworkError(
                f"the record of iteration {record.iteration} of loop {record.loop_id!r} is "
                f"{len(packed)} bytes compressed without its output tail, above the "
                f"{RECORD_MAX_BYTES} bytes a DynamoDB item can hold"
            )
        tail //= 2
        record = record.shrunk(tail)


class DynamoDbIterationRecords:
    """Records in the loops table; the host class sets ``loops_table`` and ``_client`` and
    provides ``get_state``."""

    loops_table: str
    _client: Any

    def get_state(self, loop_id: str) -> LoopState:  # provided by the host
        raise NotImplementedError

    def save_iteration_record(self, record: IterationRecord) -> None:
        """Store ``record`` (one PutItem), replacing the stored one of the same iteration."""
        item = record_key(record.loop_id, record.iteration) | {
            "summary": {"S": record.summarize().model_dump_json()},
            "record": {"B": pack_record(record)},
        }
        with aws_errors(f"storing the record of iteration {record.iteration} of loop {record.loop_id!r}"):
            self._client.put_item(TableName=self.loops_table, Item=item)

    def get_iteration_record(self, loop_id: str, iteration: int) -> IterationRecord | None:
        """The record of ``iteration`` of ``loop_id`` (strongly consistent), or None."""
        with aws_errors(f"reading the record of iteration {iteration} of loop {loop_id!r}"):
            response = self._client.get_item(
                TableName=self.loops_table, Key=record_key(loop_id, iteration), ConsistentRead=True
            )
        item = response.get("Item")
        if not item or "record" not in item:
            return None
        try:
            return IterationRecord.model_validate_json(zlib.decompress(item["record"]["B"]))
        except (zlib.error, ValidationError) as exc:
            raise LoopFrameworkError(
                f"the record of iteration {iteration} of loop {loop_id!r} cannot be read: "
                f"{str(exc).splitlines()[0][:300]}"
            ) from exc

    def list_iteration_records(self, loop_id: str) -> list[IterationSummary]:
        """Summaries of ``loop_id``'s records, oldest first ([] for an unknown loop)."""
        try:
            last = self.get_state(loop_id).iteration + 1  # the iteration in progress too
        except LoopNotFoundError:
            return []
        found: dict[int, IterationSummary] = {}
        numbers = list(range(1, last + 1))
        with aws_errors(f"listing the records of loop {loop_id!r}"):
            for start in range(0, len(numbers), MAX_BATCH_GET_KEYS):
                self._batch_summaries(loop_id, numbers[start : start + MAX_BATCH_GET_KEYS], found)
        return [found[n] for n in sorted(found)]

    def _batch_summaries(self, loop_id: str, numbers: list[int], found: dict[int, IterationSummary]) -> None:
        pending: dict[str, Any] = {
            self.loops_table: {
                "Keys": [record_key(loop_id, n) for n in numbers],
                "ConsistentRead": True,
                "ProjectionExpression": "#summary",
                "ExpressionAttributeNames": {"#summary": "summary"},
            }
        }
        for round_ in range(UNPROCESSED_ROUNDS):
            if round_:
                time.sleep(0.05 * 2**round_)
            response = self._client.batch_get_item(RequestItems=pending)
            for item in response.get("Responses", {}).get(self.loops_table, []):
                try:
                    summary = IterationSummary.model_validate_json(item["summary"]["S"])
                except (KeyError, ValidationError):
                    continue
                found[summary.iteration] = summary
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return
        raise LoopFrameworkError(
            f"DynamoDB left keys of table {self.loops_table!r} unprocessed after {UNPROCESSED_ROUNDS} "
            "rounds; retry later or raise its capacity"
        )
