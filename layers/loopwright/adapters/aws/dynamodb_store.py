"""DynamoDB store: loops, their events and stop requests in two DynamoDB tables.

Key schema (the CDK stack must create exactly this; every name is a module constant below):

Loops table (name given to the constructor), partition key ``loop_id`` (S), no sort key.
One item per loop with the attributes:

- ``loop_id`` (S), ``project`` (S), ``phase`` (S), ``outcome`` (S, absent while running),
  ``created_at`` (S, ISO 8601 UTC, written once), ``updated_at`` (S, ISO 8601 UTC),
  ``version`` (N, optimistic-concurrency counter), ``event_count`` (N, events recorded so
  far: the last event's ``seq``), ``gsi_all`` (S, always ``"loops"``) and ``controls`` (M,
  control id -> the queued :class:`ControlRequest` JSON; absent when none was ever queued).
- ``state`` : the :class:`LoopState` JSON, as S when it is at most
  :data:`STATE_INLINE_LIMIT_BYTES` (300 KiB) of UTF-8, otherwise zlib-compressed as B
  (DynamoDB's item limit is 400 KB; exit-condition outputs of up to 256 KiB each can exceed
  it). A state still above :data:`STATE_MAX_BYTES` once compressed is refused with a
  :class:`LoopFrameworkError` naming both sizes.
- GSI ``by_project``: partition key ``project`` (S), sort key ``created_at`` (S), projection
  KEYS_ONLY: a project's loops newest first without a scan.
- GSI ``all_loops``: partition key ``gsi_all`` (S, the constant ``"loops"``), sort key
  ``created_at`` (S), projection KEYS_ONLY: every loop newest first without a scan. One
  partition value is fine here: the index is written once per loop (its keys never change).

Both indexes sort by ``created_at``, not ``updated_at``: loops are listed most recently created
first, like :class:`~loopwright.adapters.local.sqlite_store.SqliteStore` (an update does not
reorder the list), and ``save_state`` never rewrites an index entry. Listing reads the keys
from the index and the states with ``BatchGetItem`` (strongly consistent); the index itself is
eventually consistent, so a loop created a moment ago may be missing from a list.

Events table (name given to the constructor), partition key ``loop_id`` (S), sort key ``seq``
(S, the per-loop event number zero-padded to :data:`SEQ_DIGITS` digits, so string order is
recording order). Attributes ``type`` (S), ``iteration`` (N), ``timestamp`` (S), ``event``
(S, the :class:`IterationEvent` JSON) and ``loop_type`` (S, ``f"{loop_id}#{type}"``).
GSI ``by_type``: partition key ``loop_type`` (S), sort key ``seq`` (S), projection ALL: a
loop's events of one type in order without a scan (eventually consistent).

Event numbers come from the loop item's ``event_count``: a write reads it, then in one
``TransactWriteItems`` advances it (condition: still the value read) and puts the events with
the numbers in between (condition: ``seq`` not yet used). So events of one loop sort in the
order they were recorded, and events need an existing loop (:class:`LoopNotFoundError`
otherwise). ``save_state`` adds ``version = :expected`` to that condition. A transaction holds
at most :data:`MAX_TRANSACTION_ITEMS` (100, DynamoDB's limit) actions: events beyond the first
transaction go in following ones, their numbers already reserved by the first, so order holds;
atomicity then covers only the first transaction (the engine records a handful of events per
step, far below the limit).

Retries: throttling (``ProvisionedThroughputExceededException``, ``ThrottlingException``...)
and transient errors are retried by botocore's standard retry mode (``max_attempts``).
``TransactWriteItems`` carries a ``ClientRequestToken`` (botocore generates one per call and
reuses it for its retries), so a retried transaction is applied once. A transaction cancelled
by a concurrent writer of the event counter is read again and retried up to
:data:`COUNTER_RACE_ATTEMPTS` times.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import boto3
from botocore.exceptions import ClientError

from loopwright.adapters.aws._errors import (
    DEFAULT_MAX_ATTEMPTS,
    aws_errors,
    error_code,
    retry_config,
)
from loopwright.adapters.aws.dynamodb_controls import DynamoDbControls
from loopwright.adapters.aws.dynamodb_items import (
    _chunks,
    _counter_update,
    _decode_event,
    _decode_state,
    _encode_state,
    _state_update,
    _Update,
)
from loopwright.adapters.aws.dynamodb_keys import (
    _EVENT_COUNT,
    _STATE,
    _VERSION,
    COUNTER_RACE_ATTEMPTS,
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
    MAX_TRANSACTION_ITEMS,
    SEQ_DIGITS,
    STATE_INLINE_LIMIT_BYTES,
    STATE_MAX_BYTES,
    UNPROCESSED_ROUNDS,
    create_table_requests,
)
from loopwright.adapters.aws.dynamodb_records import DynamoDbIterationRecords
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import IterationEvent, IterationEventType, LoopState, utcnow
from loopwright.ports import LoopStore

#: Re-exported: the key schema, limits and item codec live in dynamodb_keys and dynamodb_items.
__all__ = [
    "COUNTER_RACE_ATTEMPTS",
    "EVENTS_BY_TYPE_INDEX",
    "EVENTS_LOOP_TYPE_ATTRIBUTE",
    "EVENTS_PARTITION_KEY",
    "EVENTS_SORT_KEY",
    "LOOPS_ALL_ATTRIBUTE",
    "LOOPS_ALL_INDEX",
    "LOOPS_ALL_VALUE",
    "LOOPS_BY_PROJECT_INDEX",
    "LOOPS_CREATED_ATTRIBUTE",
    "LOOPS_PARTITION_KEY",
    "LOOPS_PROJECT_ATTRIBUTE",
    "MAX_BATCH_GET_KEYS",
    "MAX_TRANSACTION_ITEMS",
    "SEQ_DIGITS",
    "STATE_INLINE_LIMIT_BYTES",
    "STATE_MAX_BYTES",
    "UNPROCESSED_ROUNDS",
    "DynamoDbStore",
    "_decode_event",
    "_decode_state",
    "create_table_requests",
]


class _CounterRace(Exception):
    """A transaction was cancelled by a condition or a concurrent transaction: read again."""


class DynamoDbStore(DynamoDbControls, DynamoDbIterationRecords, LoopStore):
    """:class:`LoopStore` over two DynamoDB tables (key schema in the module docstring).

    Args:
        loops_table: name of the loops table.
        events_table: name of the events table.
        client: a boto3 DynamoDB client; default one built with standard-mode retries of
            ``max_attempts`` attempts in ``region_name`` (default: the environment's region).
        region_name: the region of the default client.
        max_attempts: attempts per call of the default client (botocore standard retry mode).

    Raises :class:`LoopNotFoundError` for an unknown loop id and :class:`LoopFrameworkError`
    for a lost conditional write ("changed by another writer"), a state too large to store, and
    any AWS error (throttling after the retries, missing table, missing permission), ``from``
    the botocore error.
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
    def create_loop(self, state: LoopState) -> LoopState:
        """Store a new loop; returns it with ``version`` 1.

        Raises :class:`LoopFrameworkError` when a loop with the same id exists.
        """
        stored = state.model_copy(update={"version": 1})
        item: dict[str, dict[str, Any]] = {
            LOOPS_PARTITION_KEY: {"S": stored.loop_id},
            LOOPS_PROJECT_ATTRIBUTE: {"S": stored.project},
            LOOPS_CREATED_ATTRIBUTE: {"S": utcnow().isoformat()},
            LOOPS_ALL_ATTRIBUTE: {"S": LOOPS_ALL_VALUE},
            "phase": {"S": stored.phase.value},
            "updated_at": {"S": stored.updated_at.isoformat()},
            _VERSION: {"N": "1"},
            _EVENT_COUNT: {"N": "0"},
            _STATE: _encode_state(stored),
        }
        if stored.outcome is not None:
            item["outcome"] = {"S": stored.outcome.value}
        with aws_errors(self._action("creating", state.loop_id)):
            try:
                self._client.put_item(
                    TableName=self.loops_table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#id)",
                    ExpressionAttributeNames={"#id": LOOPS_PARTITION_KEY},
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    raise LoopFrameworkError(
                        f"loop {state.loop_id!r} already exists in DynamoDB table "
                        f"{self.loops_table!r}; choose another loop id or resume it"
                    ) from exc
                raise
        return stored

    def save_state(self, state: LoopState, events: Sequence[IterationEvent] = ()) -> LoopState:
        """Store ``state`` if the stored version equals ``state.version``, with ``events`` in the
        same transaction; returns the state with version + 1 (``state`` is not changed).

        Raises :class:`LoopNotFoundError` for an unknown loop (or an event of one),
        :class:`LoopFrameworkError` when another writer changed the loop since ``state`` was
        read, or when the state is too large (see the module docstring).
        """
        stored = state.model_copy(update={"version": state.version + 1})
        if events:
            self._commit(events, (stored, state.version))
            return stored
        update = _state_update(stored, expected=state.version)
        with aws_errors(self._action("saving", state.loop_id)):
            try:
                self._client.update_item(**update.request(self.loops_table, state.loop_id))
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    raise self._lost_write(state.loop_id, state.version) from exc
                raise
        return stored

    def get_state(self, loop_id: str) -> LoopState:
        """The stored state of ``loop_id`` (strongly consistent read). Raises
        :class:`LoopNotFoundError`."""
        with aws_errors(self._action("reading", loop_id)):
            response = self._client.get_item(
                TableName=self.loops_table,
                Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
                ConsistentRead=True,
                ProjectionExpression="#state",
                ExpressionAttributeNames={"#state": _STATE},
            )
        item = response.get("Item")
        if not item or _STATE not in item:
            raise self._not_found(loop_id)
        return _decode_state(loop_id, item[_STATE])

    def list_loops(self, project: str | None = None, limit: int = 100) -> list[LoopState]:
        """Up to ``limit`` loops, most recently created first, optionally of one project
        (a Query of a GSI, then BatchGetItem of the states; no scan)."""
        if limit <= 0:
            return []
        if project is None:
            index, attribute, value = LOOPS_ALL_INDEX, LOOPS_ALL_ATTRIBUTE, LOOPS_ALL_VALUE
        else:
            index, attribute, value = LOOPS_BY_PROJECT_INDEX, LOOPS_PROJECT_ATTRIBUTE, project
        with aws_errors(f"listing loops of DynamoDB table {self.loops_table!r}"):
            keys = self._query(
                limit,
                TableName=self.loops_table,
                IndexName=index,
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames={"#pk": attribute},
                ExpressionAttributeValues={":pk": {"S": value}},
                ScanIndexForward=False,
            )
            loop_ids = [str(key[LOOPS_PARTITION_KEY]["S"]) for key in keys]
            states = self._batch_get_states(loop_ids)
        return [states[loop_id] for loop_id in loop_ids if loop_id in states]

    # ----------------------------------------------------------------------------- events
    def append_events(self, events: Sequence[IterationEvent]) -> None:
        """Store ``events`` in recording order, atomically up to :data:`MAX_TRANSACTION_ITEMS`
        actions. Raises :class:`LoopNotFoundError` when an event's loop does not exist."""
        if events:
            self._commit(events, None)

    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[IterationEvent]:
        """Events of ``loop_id`` in order of recording (or newest first), optionally only of
        ``types`` (one Query of the ``by_type`` index per type); at most ``limit`` (None: all;
        0 or less: none). An unknown loop has no events."""
        if (limit is not None and limit <= 0) or (types is not None and not types):
            return []
        names = {"#pk": EVENTS_PARTITION_KEY}
        with aws_errors(f"listing events of loop {loop_id!r} in DynamoDB table {self.events_table!r}"):
            if types is None:
                items = self._query(
                    limit,
                    TableName=self.events_table,
                    KeyConditionExpression="#pk = :pk",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":pk": {"S": loop_id}},
                    ScanIndexForward=not newest_first,
                    ConsistentRead=True,
                )
            else:
                items = []
                for event_type in dict.fromkeys(types):
                    items += self._query(
                        limit,
                        TableName=self.events_table,
                        IndexName=EVENTS_BY_TYPE_INDEX,
                        KeyConditionExpression="#pk = :pk",
                        ExpressionAttributeNames={"#pk": EVENTS_LOOP_TYPE_ATTRIBUTE},
                        ExpressionAttributeValues={":pk": {"S": f"{loop_id}#{event_type.value}"}},
                        ScanIndexForward=not newest_first,
                    )
                items.sort(key=lambda item: str(item[EVENTS_SORT_KEY]["S"]), reverse=newest_first)
        if limit is not None:
            items = items[:limit]
        return [_decode_event(item) for item in items]

    # ----------------------------------------------------------------------------- internals
    def _lost_write(self, loop_id: str, expected: int) -> LoopFrameworkError:
        """The error for a failed ``version = :expected`` condition: not found, or who won."""
        head = self._head(loop_id)
        if head is None:
            return self._not_found(loop_id)
        return LoopFrameworkError(
            f"loop {loop_id!r} was changed by another writer: expected stored version {expected}, "
            f"found {head[0]}; reload it and retry"
        )

    def _head(self, loop_id: str) -> tuple[int, int] | None:
        """(version, event_count) of the loop item, strongly consistent; None if absent."""
        with aws_errors(self._action("reading", loop_id)):
            response = self._client.get_item(
                TableName=self.loops_table,
                Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
                ConsistentRead=True,
                ProjectionExpression="#version, #count",
                ExpressionAttributeNames={"#version": _VERSION, "#count": _EVENT_COUNT},
            )
        item = response.get("Item")
        if not item or _VERSION not in item:
            return None
        return int(item[_VERSION]["N"]), int(item.get(_EVENT_COUNT, {}).get("N", "0"))

    def _commit(self, events: Sequence[IterationEvent], state: tuple[LoopState, int] | None) -> None:
        """Write ``events`` (numbered from their loops' counters) and, if given, ``(stored state,
        expected version)``, in one transaction (plus overflow ones, see the module docstring)."""
        groups: dict[str, list[IterationEvent]] = {}
        state_loop = None if state is None else state[0].loop_id
        if state is not None:
            groups[state[0].loop_id] = []
        for event in events:
            groups.setdefault(event.loop_id, []).append(event)
        if len(groups) > MAX_TRANSACTION_ITEMS // 2:
            raise LoopFrameworkError(
                f"events of {len(groups)} loops in one write; at most {MAX_TRANSACTION_ITEMS // 2}"
            )
        for _attempt in range(COUNTER_RACE_ATTEMPTS):
            counters: dict[str, int] = {}
            for loop_id in groups:
                head = self._head(loop_id)
                if head is None:
                    raise self._not_found(loop_id)
                if state is not None and loop_id == state_loop and head[0] != state[1]:
                    raise self._lost_write(loop_id, state[1])
                counters[loop_id] = head[1]
            updates: list[dict[str, Any]] = []
            puts: list[dict[str, Any]] = []
            for loop_id, group in groups.items():
                update = (
                    _state_update(state[0], expected=state[1])
                    if state is not None and loop_id == state_loop
                    else _Update()
                )
                update = _counter_update(update, counters[loop_id], len(group))
                updates.append({"Update": update.request(self.loops_table, loop_id)})
                puts += [
                    {"Put": self._event_put(event, counters[loop_id] + offset)}
                    for offset, event in enumerate(group, start=1)
                ]
            room = MAX_TRANSACTION_ITEMS - len(updates)
            try:
                self._transact([*updates, *puts[:room]])
            except _CounterRace:
                continue
            for chunk in _chunks(puts[room:], MAX_TRANSACTION_ITEMS):
                self._transact(list(chunk))
            return
        raise LoopFrameworkError(
            f"could not record events of {', '.join(map(repr, groups))} in DynamoDB table "
            f"{self.events_table!r}: {COUNTER_RACE_ATTEMPTS} attempts lost to concurrent writers"
        )

    def _event_put(self, event: IterationEvent, number: int) -> dict[str, Any]:
        seq = f"{number:0{SEQ_DIGITS}d}"
        return {
            "TableName": self.events_table,
            "Item": {
                EVENTS_PARTITION_KEY: {"S": event.loop_id},
                EVENTS_SORT_KEY: {"S": seq},
                EVENTS_LOOP_TYPE_ATTRIBUTE: {"S": f"{event.loop_id}#{event.type.value}"},
                "type": {"S": event.type.value},
                "iteration": {"N": str(event.iteration)},
                "timestamp": {"S": event.timestamp.isoformat()},
                "event": {"S": event.model_dump_json()},
            },
            "ConditionExpression": "attribute_not_exists(#seq)",
            "ExpressionAttributeNames": {"#seq": EVENTS_SORT_KEY},
        }

    def _transact(self, items: list[dict[str, Any]]) -> None:
        """One TransactWriteItems; :class:`_CounterRace` when a condition failed or another
        transaction conflicted (CancellationReasons codes), a domain error for anything else."""
        with aws_errors(f"writing events to DynamoDB table {self.events_table!r}"):
            try:
                self._client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if error_code(exc) == "TransactionCanceledException":
                    reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
                    if reasons & {"ConditionalCheckFailed", "TransactionConflict"}:
                        raise _CounterRace from exc
                raise

    def _query(self, limit: int | None, **request: Any) -> list[dict[str, Any]]:
        """Items of a Query, following ``LastEvaluatedKey`` until ``limit`` items (None: all)."""
        items: list[dict[str, Any]] = []
        while True:
            if limit is not None:
                request["Limit"] = limit - len(items)
            page = self._client.query(**request)
            items += page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last or (limit is not None and len(items) >= limit):
                return items
            request["ExclusiveStartKey"] = last

    def _batch_get_states(self, loop_ids: Iterable[str]) -> dict[str, LoopState]:
        """loop id -> state for the ``loop_ids`` that exist (BatchGetItem, consistent reads)."""
        found: dict[str, LoopState] = {}
        for chunk in _chunks(loop_ids, MAX_BATCH_GET_KEYS):
            pending: dict[str, Any] = {
                self.loops_table: {
                    "Keys": [{LOOPS_PARTITION_KEY: {"S": loop_id}} for loop_id in chunk],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#id, #state",
                    "ExpressionAttributeNames": {"#id": LOOPS_PARTITION_KEY, "#state": _STATE},
                }
            }
            for round_ in range(UNPROCESSED_ROUNDS):
                if round_:
                    time.sleep(0.05 * 2**round_)
                response = self._client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.loops_table, []):
                    loop_id = str(item[LOOPS_PARTITION_KEY]["S"])
                    found[loop_id] = _decode_state(loop_id, item[_STATE])
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise LoopFrameworkError(
                    f"DynamoDB left keys of table {self.loops_table!r} unprocessed after "
                    f"{UNPROCESSED_ROUNDS} rounds; retry later or raise its capacity"
                )
        return found
