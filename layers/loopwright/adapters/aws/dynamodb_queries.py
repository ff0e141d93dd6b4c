"""The dashboard's read-side queries over the DynamoDB tables of
:class:`~loopwright.adapters.aws.dynamodb_store.DynamoDbStore` (key schema in its docstring).

Query and BatchGetItem only, never Scan:

- loops: a Query of the ``by_project`` GSI (one project) or the ``all_loops`` GSI (every loop),
  newest first (``created_at`` descending), KEYS_ONLY; then BatchGetItem of the states (strongly
  consistent). A status filter (a phase or an outcome) first reads only the items' ``phase`` and
  ``outcome`` attributes of a page of keys, then the states of the loops that match; a call
  examines at most :data:`MAX_EXAMINED_LOOPS` keys, so a rare status may give a short (even
  empty) page with a ``next_cursor`` to go on. The cursor is the index key of the last loop
  examined (``ExclusiveStartKey`` of the next Query). GSIs are eventually consistent: a loop
  created a moment ago may be missing.
- events newest first: a Query of the events table (``loop_id``, ``seq`` descending, strongly
  consistent), or of the ``by_type`` GSI once per type, merged by ``seq``. The cursor is the
  ``seq`` of the last event returned (``seq < :cursor`` in the key condition).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import boto3

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, retry_config
from loopwright.adapters.aws.dynamodb_items import _decode_event, _decode_state
from loopwright.adapters.aws.dynamodb_keys import (
    EVENTS_BY_TYPE_INDEX,
    EVENTS_LOOP_TYPE_ATTRIBUTE,
    EVENTS_PARTITION_KEY,
    EVENTS_SORT_KEY,
    LOOPS_ALL_ATTRIBUTE,
    LOOPS_ALL_INDEX,
    LOOPS_ALL_VALUE,
    LOOPS_BY_PROJECT_INDEX,
    LOOPS_CREATED_ATTRIBUTE,
    LOOPS_PARTITION_KEY,
    LOOPS_PROJECT_ATTRIBUTE,
    MAX_BATCH_GET_KEYS,
    SEQ_DIGITS,
    UNPROCESSED_ROUNDS,
)
from loopwright.dashboard.ports import (
    InvalidCursorError,
    LoopQueries,
    LoopStatus,
    LoopSummary,
    Page,
    decode_cursor,
    encode_cursor,
)
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import IterationEvent, IterationEventType, LoopOutcome

#: Index keys examined per ``list_loops`` call with a status filter (then a cursor is returned).
MAX_EXAMINED_LOOPS = 1_000


class DynamoDbQueries(LoopQueries):
    """:class:`LoopQueries` over the loops and events tables (see the module docstring).

    Args:
        loops_table, events_table: the tables' names.
        client: a boto3 DynamoDB client; default one with standard-mode retries.
        region_name, max_attempts: of the default client.

    Raises :class:`LoopFrameworkError` for any AWS error (``from`` the botocore error) and
    :class:`InvalidCursorError` for a foreign cursor.
    """

    def __init__(
        self,
        loops_table: str,
        events_table: str,
        *,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.loops_table = loops_table
        self.events_table = events_table
        self._client: Any = (
            client
            if client is not None
            else boto3.client("dynamodb", region_name=region_name, config=retry_config(max_attempts))
        )

    # ----------------------------------------------------------------------------- loops
    def list_loops(
        self,
        *,
        project: str | None = None,
        status: LoopStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[LoopSummary]:
        """Up to ``limit`` loops, most recently created first (see the module docstring)."""
        if project is None:
            index, attribute, value = LOOPS_ALL_INDEX, LOOPS_ALL_ATTRIBUTE, LOOPS_ALL_VALUE
        else:
            index, attribute, value = LOOPS_BY_PROJECT_INDEX, LOOPS_PROJECT_ATTRIBUTE, project
        request: dict[str, Any] = {
            "TableName": self.loops_table,
            "IndexName": index,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": attribute},
            "ExpressionAttributeValues": {":pk": {"S": value}},
            "ScanIndexForward": False,
        }
        if cursor:
            request["ExclusiveStartKey"] = self._loop_key(cursor, attribute, value)
        found: list[LoopSummary] = []
        examined = 0
        last_key: dict[str, Any] | None = None
        with aws_errors(f"listing loops of DynamoDB table {self.loops_table!r}"):
            while True:
                request["Limit"] = limit + 1 - len(found) if status is None else MAX_BATCH_GET_KEYS
                page = self._client.query(**request)
                keys: list[dict[str, Any]] = page.get("Items", [])
                ids = [str(key[LOOPS_PARTITION_KEY]["S"]) for key in keys]
                matching = set(ids) if status is None else self._matching(ids, status)
                chosen: list[str] = []
                full = False
                for key, loop_id in zip(keys, ids, strict=True):
                    if len(found) + len(chosen) == limit:
                        full = True  # a loop follows the page: the cursor is the last one taken
                        break
                    examined += 1
                    last_key = key
                    if loop_id in matching:
                        chosen.append(loop_id)
                states = self._states(chosen)
                found += [LoopSummary.from_state(states[i]) for i in chosen if i in states]
                if full:
                    return self._page(found, last_key)
                if not page.get("LastEvaluatedKey"):
                    return self._page(found, None)
                if len(found) == limit or examined >= MAX_EXAMINED_LOOPS:
                    return self._page(found, last_key)
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _page(self, found: list[LoopSummary], last_key: dict[str, Any] | None) -> Page[LoopSummary]:
        cursor = None
        if last_key is not None:
            cursor = encode_cursor({name: next(iter(value.values())) for name, value in last_key.items()})
        return Page[LoopSummary](items=found, next_cursor=cursor)

    def _loop_key(self, cursor: str, attribute: str, value: str) -> dict[str, Any]:
        """The ``ExclusiveStartKey`` of ``cursor``; it must belong to the same index and partition."""
        position = decode_cursor(cursor, LOOPS_PARTITION_KEY, LOOPS_CREATED_ATTRIBUTE, attribute)
        if position[attribute] != value or not all(isinstance(v, str) for v in position.values()):
            raise InvalidCursorError("cursor: it belongs to another project filter; omit it to start over")
        return {
            LOOPS_PARTITION_KEY: {"S": position[LOOPS_PARTITION_KEY]},
            LOOPS_CREATED_ATTRIBUTE: {"S": position[LOOPS_CREATED_ATTRIBUTE]},
            attribute: {"S": value},
        }

    def _matching(self, loop_ids: list[str], status: LoopStatus) -> set[str]:
        """The ids among ``loop_ids`` whose phase (or outcome) is ``status`` (BatchGetItem of two
        small attributes)."""
        attribute = "outcome" if isinstance(status, LoopOutcome) else "phase"
        items = self._batch_get(loop_ids, "#id, #status", {"#id": LOOPS_PARTITION_KEY, "#status": attribute})
        return {
            str(item[LOOPS_PARTITION_KEY]["S"])
            for item in items
            if item.get(attribute, {}).get("S") == status.value
        }

    def _states(self, loop_ids: list[str]) -> dict[str, Any]:
        items = self._batch_get(loop_ids, "#id, #state", {"#id": LOOPS_PARTITION_KEY, "#state": "state"})
        return {
            str(item[LOOPS_PARTITION_KEY]["S"]): _decode_state(
                str(item[LOOPS_PARTITION_KEY]["S"]), item["state"]
            )
            for item in items
            if "state" in item
        }

    def _batch_get(
        self, loop_ids: Iterable[str], projection: str, names: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Items of ``loop_ids`` (consistent reads), retrying unprocessed keys with backoff."""
        found: list[dict[str, Any]] = []
        ids = list(dict.fromkeys(loop_ids))
        for start in range(0, len(ids), MAX_BATCH_GET_KEYS):
            pending: dict[str, Any] = {
                self.loops_table: {
                    "Keys": [
                        {LOOPS_PARTITION_KEY: {"S": i}} for i in ids[start : start + MAX_BATCH_GET_KEYS]
                    ],
                    "ConsistentRead": True,
                    "ProjectionExpression": projection,
                    "ExpressionAttributeNames": names,
                }
            }
            for round_ in range(UNPROCESSED_ROUNDS):
                if round_:
                    time.sleep(0.05 * 2**round_)
                response = self._client.batch_get_item(RequestItems=pending)
                found += response.get("Responses", {}).get(self.loops_table, [])
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise LoopFrameworkError(
                    f"DynamoDB left keys of table {self.loops_table!r} unprocessed after "
                    f"{UNPROCESSED_ROUNDS} rounds; retry later or raise its capacity"
                )
        return found

    # ----------------------------------------------------------------------------- events
    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[IterationEvent]:
        """Up to ``limit`` events of ``loop_id``, newest first (see the module docstring)."""
        before = self._seq_cursor(cursor) if cursor else None
        if types is not None and not types:
            return Page[IterationEvent](items=[])
        with aws_errors(f"listing events of loop {loop_id!r} in DynamoDB table {self.events_table!r}"):
            if types is None:
                items = self._query_events(limit + 1, EVENTS_PARTITION_KEY, loop_id, before, index=None)
            else:
                items = []
                for event_type in dict.fromkeys(types):
                    items += self._query_events(
                        limit + 1,
                        EVENTS_LOOP_TYPE_ATTRIBUTE,
                        f"{loop_id}#{event_type.value}",
                        before,
                        index=EVENTS_BY_TYPE_INDEX,
                    )
                items.sort(key=lambda item: str(item[EVENTS_SORT_KEY]["S"]), reverse=True)
        more = len(items) > limit
        items = items[:limit]
        next_cursor = encode_cursor({"seq": str(items[-1][EVENTS_SORT_KEY]["S"])}) if more and items else None
        return Page[IterationEvent](items=[_decode_event(item) for item in items], next_cursor=next_cursor)

    @staticmethod
    def _seq_cursor(cursor: str) -> str:
        seq = decode_cursor(cursor, "seq")["seq"]
        if not isinstance(seq, str) or len(seq) != SEQ_DIGITS or not seq.isdigit():
            raise InvalidCursorError("cursor: not a cursor returned by this API; omit it to start over")
        return seq

    def _query_events(
        self, want: int, partition: str, value: str, before: str | None, *, index: str | None
    ) -> list[dict[str, Any]]:
        """Up to ``want`` items of one partition, ``seq`` descending, below ``before``."""
        request: dict[str, Any] = {
            "TableName": self.events_table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": partition},
            "ExpressionAttributeValues": {":pk": {"S": value}},
            "ScanIndexForward": False,
        }
        if index is None:
            request["ConsistentRead"] = True
        else:
            request["IndexName"] = index
        if before is not None:
            request["KeyConditionExpression"] += " AND #seq < :before"
            request["ExpressionAttributeNames"]["#seq"] = EVENTS_SORT_KEY
            request["ExpressionAttributeValues"][":before"] = {"S": before}
        items: list[dict[str, Any]] = []
        while len(items) < want:
            request["Limit"] = want - len(items)
            page = self._client.query(**request)
            items += page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items
