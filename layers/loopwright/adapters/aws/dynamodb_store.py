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
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
from botocore.exceptions import ClientError
from pydantic import ValidationError

from loopwright.adapters.aws._errors import (
    DEFAULT_MAX_ATTEMPTS,
    aws_errors,
    error_code,
    retry_config,
)
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import ControlRequest, IterationEvent, IterationEventType, LoopState, utcnow
from loopwright.ports import LoopStore

# ----------------------------------------------------------------------------- key schema
#: Loops table: partition key (S).
LOOPS_PARTITION_KEY = "loop_id"
#: GSI of the loops table: a project's loops by creation time.
LOOPS_BY_PROJECT_INDEX = "by_project"
#: Partition key (S) of :data:`LOOPS_BY_PROJECT_INDEX`.
LOOPS_PROJECT_ATTRIBUTE = "project"
#: Sort key (S, ISO 8601 UTC) of both loops GSIs.
LOOPS_CREATED_ATTRIBUTE = "created_at"
#: GSI of the loops table: every loop by creation time.
LOOPS_ALL_INDEX = "all_loops"
#: Partition key (S) of :data:`LOOPS_ALL_INDEX`, always :data:`LOOPS_ALL_VALUE`.
LOOPS_ALL_ATTRIBUTE = "gsi_all"
LOOPS_ALL_VALUE = "loops"
#: Events table: partition key (S) and sort key (S, zero-padded event number).
EVENTS_PARTITION_KEY = "loop_id"
EVENTS_SORT_KEY = "seq"
#: GSI of the events table: a loop's events of one type.
EVENTS_BY_TYPE_INDEX = "by_type"
#: Partition key (S, ``f"{loop_id}#{type}"``) of :data:`EVENTS_BY_TYPE_INDEX`; sort key ``seq``.
EVENTS_LOOP_TYPE_ATTRIBUTE = "loop_type"

# ----------------------------------------------------------------------------- limits
#: Digits of an event number in ``seq`` (10^12 events per loop).
SEQ_DIGITS = 12
#: Actions in one TransactWriteItems (DynamoDB quota, since September 2022).
MAX_TRANSACTION_ITEMS = 100
#: Keys in one BatchGetItem (DynamoDB quota).
MAX_BATCH_GET_KEYS = 100
#: State JSON stored as plain S up to this many UTF-8 bytes; above, zlib-compressed as B.
STATE_INLINE_LIMIT_BYTES = 300 * 1024
#: Largest stored ``state`` value (bytes), leaving room under DynamoDB's 400 KB item limit
#: (which counts attribute names and values) for the other attributes.
STATE_MAX_BYTES = 380 * 1024
#: Times an event write is retried after a concurrent writer moved the loop's event counter.
COUNTER_RACE_ATTEMPTS = 5
#: Rounds of BatchGetItem for keys DynamoDB left unprocessed (backoff 50 ms doubling).
UNPROCESSED_ROUNDS = 6

_T = TypeVar("_T")
_STATE = "state"
_VERSION = "version"
_EVENT_COUNT = "event_count"
_CONTROLS = "controls"


def create_table_requests(loops_table: str, events_table: str) -> list[dict[str, Any]]:
    """``CreateTable`` arguments (on-demand billing) for both tables with the key schema above;
    for tests and local development. The CDK stack declares the same keys."""
    string = "S"
    return [
        {
            "TableName": loops_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": string}
                for name in (
                    LOOPS_PARTITION_KEY,
                    LOOPS_PROJECT_ATTRIBUTE,
                    LOOPS_CREATED_ATTRIBUTE,
                    LOOPS_ALL_ATTRIBUTE,
                )
            ],
            "KeySchema": [{"AttributeName": LOOPS_PARTITION_KEY, "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                _index(index, partition, LOOPS_CREATED_ATTRIBUTE, "KEYS_ONLY")
                for index, partition in (
                    (LOOPS_BY_PROJECT_INDEX, LOOPS_PROJECT_ATTRIBUTE),
                    (LOOPS_ALL_INDEX, LOOPS_ALL_ATTRIBUTE),
                )
            ],
        },
        {
            "TableName": events_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": string}
                for name in (EVENTS_PARTITION_KEY, EVENTS_SORT_KEY, EVENTS_LOOP_TYPE_ATTRIBUTE)
            ],
            "KeySchema": [
                {"AttributeName": EVENTS_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": EVENTS_SORT_KEY, "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                _index(EVENTS_BY_TYPE_INDEX, EVENTS_LOOP_TYPE_ATTRIBUTE, EVENTS_SORT_KEY, "ALL")
            ],
        },
    ]


def _index(name: str, partition: str, sort: str, projection: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": partition, "KeyType": "HASH"},
            {"AttributeName": sort, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": projection},
    }


class _CounterRace(Exception):
    """A transaction was cancelled by a condition or a concurrent transaction: read again."""


@dataclass
class _Update:
    """One UpdateItem expression under construction (SET and REMOVE clauses, a condition)."""

    sets: list[str] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, attribute: str, value: dict[str, Any]) -> None:
        self.names[f"#{attribute}"] = attribute
        self.values[f":{attribute}"] = value
        self.sets.append(f"#{attribute} = :{attribute}")

    def remove(self, attribute: str) -> None:
        self.names[f"#{attribute}"] = attribute
        self.removes.append(f"#{attribute}")

    def require(self, condition: str, names: dict[str, str], values: dict[str, dict[str, Any]]) -> None:
        self.conditions.append(condition)
        self.names.update(names)
        self.values.update(values)

    def request(self, table: str, loop_id: str) -> dict[str, Any]:
        """Arguments of UpdateItem (or of a transaction's ``Update``)."""
        clauses = []
        if self.sets:
            clauses.append("SET " + ", ".join(self.sets))
        if self.removes:
            clauses.append("REMOVE " + ", ".join(self.removes))
        request: dict[str, Any] = {
            "TableName": table,
            "Key": {LOOPS_PARTITION_KEY: {"S": loop_id}},
            "UpdateExpression": " ".join(clauses),
            "ExpressionAttributeNames": self.names,
        }
        if self.conditions:
            request["ConditionExpression"] = " AND ".join(f"({c})" for c in self.conditions)
        if self.values:
            request["ExpressionAttributeValues"] = self.values
        return request


class DynamoDbStore(LoopStore):
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

    # ----------------------------------------------------------------------------- stop requests
    def add_control(self, request: ControlRequest) -> None:
        """Queue ``request`` in the loop item's ``controls`` map (``version`` is not changed).

        Two UpdateItems at most: set the map entry when the map exists, else create the map
        (conditions keep a concurrent writer's entry). Raises :class:`LoopNotFoundError` for an
        unknown loop."""
        names = {"#c": _CONTROLS, "#cid": request.control_id, "#id": LOOPS_PARTITION_KEY}
        body = {"S": request.model_dump_json()}
        key = {LOOPS_PARTITION_KEY: {"S": request.loop_id}}
        with aws_errors(self._action("queueing a control of", request.loop_id)):
            for _ in range(2):
                try:
                    self._client.update_item(
                        TableName=self.loops_table,
                        Key=key,
                        UpdateExpression="SET #c.#cid = :body",
                        ConditionExpression="attribute_exists(#c)",
                        ExpressionAttributeNames={"#c": _CONTROLS, "#cid": request.control_id},
                        ExpressionAttributeValues={":body": body},
                    )
                    return
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise
                try:
                    self._client.update_item(
                        TableName=self.loops_table,
                        Key=key,
                        UpdateExpression="SET #c = :map",
                        ConditionExpression="attribute_exists(#id) AND attribute_not_exists(#c)",
                        ExpressionAttributeNames={"#c": _CONTROLS, "#id": names["#id"]},
                        ExpressionAttributeValues={":map": {"M": {request.control_id: body}}},
                    )
                    return
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise
                    if not self._exists(request.loop_id):
                        raise self._not_found(request.loop_id) from exc
        raise LoopFrameworkError(f"could not queue control {request.control_id} of loop {request.loop_id!r}")

    def pending_controls(self, loop_id: str) -> list[ControlRequest]:
        """The queued controls of ``loop_id`` (strongly consistent read), oldest first."""
        with aws_errors(self._action("reading the controls of", loop_id)):
            response = self._client.get_item(
                TableName=self.loops_table,
                Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
                ConsistentRead=True,
                ProjectionExpression="#c",
                ExpressionAttributeNames={"#c": _CONTROLS},
            )
        entries = response.get("Item", {}).get(_CONTROLS, {}).get("M", {})
        controls = [ControlRequest.model_validate_json(value["S"]) for value in entries.values()]
        return sorted(controls, key=lambda c: (c.requested_at, c.control_id))

    def clear_controls(self, loop_id: str, control_ids: Sequence[str]) -> None:
        """Remove the given entries of the loop item's ``controls`` map (unknown ones are fine)."""
        if not control_ids:
            return
        names = {"#c": _CONTROLS} | {f"#k{i}": control_id for i, control_id in enumerate(control_ids)}
        removes = ", ".join(f"#c.#k{i}" for i in range(len(control_ids)))
        with aws_errors(self._action("clearing controls of", loop_id)):
            try:
                self._client.update_item(
                    TableName=self.loops_table,
                    Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
                    UpdateExpression=f"REMOVE {removes}",
                    ConditionExpression="attribute_exists(#c)",
                    ExpressionAttributeNames=names,
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise

    def _exists(self, loop_id: str) -> bool:
        response = self._client.get_item(
            TableName=self.loops_table,
            Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
            ConsistentRead=True,
            ProjectionExpression="#id",
            ExpressionAttributeNames={"#id": LOOPS_PARTITION_KEY},
        )
        return "Item" in response

    # ----------------------------------------------------------------------------- internals
    def _action(self, verb: str, loop_id: str) -> str:
        return f"{verb} loop {loop_id!r} in DynamoDB table {self.loops_table!r}"

    def _not_found(self, loop_id: str) -> LoopNotFoundError:
        return LoopNotFoundError(
            f"no loop {loop_id!r} in DynamoDB table {self.loops_table!r}; "
            "list the loops with `loopwright status`"
        )

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


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """``items`` in lists of at most ``size`` (``itertools.batched`` is Python 3.12+)."""
    chunk: list[_T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _state_update(stored: LoopState, *, expected: int) -> _Update:
    """The loop item's update for ``stored`` (version already advanced), conditional on the
    stored version being ``expected``. ``created_at``, the counters and stop requests stay."""
    update = _Update()
    update.set(LOOPS_PROJECT_ATTRIBUTE, {"S": stored.project})
    update.set("phase", {"S": stored.phase.value})
    update.set("updated_at", {"S": stored.updated_at.isoformat()})
    update.set(_VERSION, {"N": str(stored.version)})
    update.set(_STATE, _encode_state(stored))
    if stored.outcome is None:
        update.remove("outcome")
    else:
        update.set("outcome", {"S": stored.outcome.value})
    update.require("#version = :expected", {"#version": _VERSION}, {":expected": {"N": str(expected)}})
    return update


def _counter_update(update: _Update, count: int, added: int) -> _Update:
    """``update`` plus: advance ``event_count`` from ``count`` by ``added``, only if it is still
    ``count`` and the loop exists."""
    update.set(_EVENT_COUNT, {"N": str(count + added)})
    condition = "#event_count = :count_read"
    if count == 0:
        condition = f"({condition} OR attribute_not_exists(#event_count))"
    update.require(
        f"attribute_exists(#id) AND {condition}",
        {"#id": LOOPS_PARTITION_KEY},
        {":count_read": {"N": str(count)}},
    )
    return update


def _encode_state(state: LoopState) -> dict[str, Any]:
    """The ``state`` attribute value: S up to the inline limit, else zlib-compressed B."""
    text = state.model_dump_json()
    raw = text.encode()
    if len(raw) <= STATE_INLINE_LIMIT_BYTES:
        return {"S": text}
    packed = zlib.compress(raw, level=6)
    if len(packed) > STATE_MAX_BYTES:
        raise LoopFrameworkError(
            f"the state of loop {state.loop_id!r} is {len(raw)} bytes of JSON, {len(packed)} "
            f"compressed, above the {STATE_MAX_BYTES} bytes a DynamoDB item can hold; lower the "
            "exit conditions' max_output_bytes"
        )
    return {"B": packed}


def _decode_state(loop_id: str, value: dict[str, Any]) -> LoopState:
    try:
        text = value["S"] if "S" in value else zlib.decompress(value["B"]).decode()
        return LoopState.model_validate_json(text)
    except (KeyError, zlib.error, UnicodeDecodeError, ValidationError) as exc:
        raise LoopFrameworkError(f"the stored state of loop {loop_id!r} cannot be read: {exc}") from exc


def _decode_event(item: dict[str, Any]) -> IterationEvent:
    try:
        return IterationEvent.model_validate_json(item["event"]["S"])
    except (KeyError, ValidationError) as exc:
        seq = item.get(EVENTS_SORT_KEY, {}).get("S")
        raise LoopFrameworkError(f"stored event {seq!r} cannot be read: {exc}") from exc
