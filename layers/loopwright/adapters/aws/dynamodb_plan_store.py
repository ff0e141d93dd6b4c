"""DynamoDB plan store: plans, their activity events and inspection packets in one table.

Key schema (the CDK stack's plans table is built from these constants, see
``infrastructure/storage.py``): partition key ``project`` (S), sort key ``sk`` (S). Every item of
a project is under its own partition key, so a plan, its events or a packet of project A is
never read or written through project B (the :class:`~loopwright.plans.ports.PlanStore`
contract): every request names the project in its key.

- **Plan** ``sk = PLAN#<plan_id>``: ``plan_id`` (S), ``status`` (S), ``created`` (S,
  ``<created_at ISO 8601>#<plan_id>``, the index's sort key), ``updated_at`` (S), ``version``
  (N, optimistic-concurrency counter: every write is conditional on it), ``event_count`` (N, the
  plan's events so far: the last event's number) and ``plan``: the :class:`Plan` JSON as S up to
  :data:`INLINE_LIMIT_BYTES`, else zlib-compressed as B (a plan is at most 300,000 bytes of JSON
  when created, ``MAX_PLAN_BYTES``, and grows with its results; DynamoDB's item limit is 400 KB).
- **Event** ``sk = EVENT#<plan_id>#<seq>``: ``seq`` is the plan's event number zero-padded to
  :data:`SEQ_DIGITS` digits, so string order is recording order; ``plan_id``, ``type``,
  ``timestamp`` (S) and ``event`` (S, the :class:`ActivityEvent` JSON).
- **Packet** ``sk = PACKET#<packet_id>``: ``loop_id``, ``created_at`` (S) and ``packet`` (the
  :class:`InspectionPacket` JSON, S or compressed B as a plan).
- GSI :data:`PLANS_BY_CREATED_INDEX`: partition key ``project``, sort key ``created``,
  projection KEYS_ONLY. Only plan items have ``created`` (a sparse index): a project's plans
  newest first without a Scan; the plans are then read with BatchGetItem (strongly consistent).
  The index is eventually consistent: a plan created a moment ago may be missing from a list.

Writes: a plan and the events of its transition go in one ``TransactWriteItems`` (all or
nothing): the plan item's update is conditional on ``version`` (the version read) and on
``event_count`` (the counter read), and each event is a Put conditional on its key being new.
A transaction cancelled while the version still matches lost only the event counter to a
concurrent :meth:`DynamoDbPlanStore.append_events`: it is read again and retried up to
:data:`COUNTER_RACE_ATTEMPTS` times. One write holds at most :data:`MAX_TRANSACTION_ITEMS`
actions (DynamoDB's limit), so at most 99 events (a plan transition records at most 52: a task's
end, 49 skipped dependents and ``plan_completed``). Reads are Query, GetItem and BatchGetItem,
never Scan. Throttling is retried by botocore's standard retry mode; AWS errors that remain are
raised as :class:`~loopwright.exceptions.LoopFrameworkError` ``from`` the botocore error.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from typing import Any, TypeVar

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, error_code, retry_config
from loopwright.exceptions import LoopFrameworkError
from loopwright.models.plans import ActivityEvent, ActivityEventType, InspectionPacket, Plan
from loopwright.plans.errors import PlanConflictError, PlanNotFoundError
from loopwright.plans.ports import PlanStore, check_project

# ----------------------------------------------------------------------------- key schema
#: Partition key (S): the project id.
PARTITION_KEY = "project"
#: Sort key (S): ``PLAN#<plan_id>``, ``EVENT#<plan_id>#<seq>`` or ``PACKET#<packet_id>``.
SORT_KEY = "sk"
#: GSI of the plans of a project by creation time (sparse: plan items only).
PLANS_BY_CREATED_INDEX = "plans_by_created"
#: Sort key (S) of :data:`PLANS_BY_CREATED_INDEX`: ``<created_at ISO 8601>#<plan_id>``.
CREATED_ATTRIBUTE = "created"
PLAN_PREFIX = "PLAN#"
EVENT_PREFIX = "EVENT#"
PACKET_PREFIX = "PACKET#"

# ----------------------------------------------------------------------------- limits
#: Digits of an event number (10^12 events per plan).
SEQ_DIGITS = 12
#: Actions in one TransactWriteItems (DynamoDB quota).
MAX_TRANSACTION_ITEMS = 100
#: Keys in one BatchGetItem (DynamoDB quota).
MAX_BATCH_GET_KEYS = 100
#: JSON stored as plain S up to this many UTF-8 bytes; above, zlib-compressed as B.
INLINE_LIMIT_BYTES = 300 * 1024
#: Largest stored ``plan`` / ``packet`` value (bytes), under DynamoDB's 400 KB item limit.
MAX_VALUE_BYTES = 380 * 1024
#: Times a write is retried after a concurrent writer moved the plan's event counter.
COUNTER_RACE_ATTEMPTS = 5
#: Rounds of BatchGetItem for keys DynamoDB left unprocessed (backoff 50 ms doubling).
UNPROCESSED_ROUNDS = 6

_M = TypeVar("_M", bound=BaseModel)
_VERSION = "version"
_EVENT_COUNT = "event_count"


def create_table_request(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments (on-demand) of a plans table with the key schema above; for
    tests and local development (the CDK stack declares the same keys)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in (PARTITION_KEY, SORT_KEY, CREATED_ATTRIBUTE)
        ],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": PLANS_BY_CREATED_INDEX,
                "KeySchema": [
                    {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": CREATED_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    }


def plan_key(project: str, plan_id: str) -> dict[str, dict[str, str]]:
    """The key of plan ``plan_id`` of ``project``."""
    return {PARTITION_KEY: {"S": project}, SORT_KEY: {"S": PLAN_PREFIX + plan_id}}


def event_prefix(plan_id: str) -> str:
    """``EVENT#<plan_id>#``: the sort-key prefix of a plan's events (plan ids hold no '#')."""
    return f"{EVENT_PREFIX}{plan_id}#"


class _CounterRace(Exception):
    """A transaction was cancelled by a condition or a concurrent transaction: read again."""


class DynamoDbPlanStore(PlanStore):
    """:class:`PlanStore` over one DynamoDB table (key schema in the module docstring).

    Args:
        table: name of the plans table.
        client: a boto3 DynamoDB client; default one with standard-mode retries of
            ``max_attempts`` attempts in ``region_name`` (default: the environment's region).

    Raises :class:`PlanNotFoundError`, :class:`PlanConflictError` and
    :class:`~loopwright.plans.errors.PlanValidationError` as the port says, and
    :class:`LoopFrameworkError` for an AWS error (throttling after the retries, a missing table
    or permission) ``from`` the botocore error, or a plan too large to store.
    """

    def __init__(
        self,
        table: str,
        *,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.table = table
        self._client: Any = (
            client
            if client is not None
            else boto3.client("dynamodb", region_name=region_name, config=retry_config(max_attempts))
        )

    # ----------------------------------------------------------------------------- plans
    def create_plan(self, project: str, plan: Plan, events: Sequence[ActivityEvent] = ()) -> Plan:
        """Store a new plan with ``events`` in one transaction; returns it with version 1.

        Raises :class:`PlanConflictError` when the project has a plan with the same id.
        """
        check_project(project, plan.project, f"plan {plan.plan_id}")
        _check_events(project, plan.plan_id, events)
        _check_count(len(events) + 1)
        stored = plan.model_copy(update={"version": 1})
        item = {
            **plan_key(project, stored.plan_id),
            "plan_id": {"S": stored.plan_id},
            "status": {"S": stored.status.value},
            CREATED_ATTRIBUTE: {"S": f"{stored.created_at.isoformat()}#{stored.plan_id}"},
            "updated_at": {"S": stored.updated_at.isoformat()},
            _VERSION: {"N": "1"},
            _EVENT_COUNT: {"N": str(len(events))},
            "plan": _encode(stored, f"plan {stored.plan_id}"),
        }
        put = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#sk)",
            "ExpressionAttributeNames": {"#sk": SORT_KEY},
        }
        exists = PlanConflictError(f"plan {plan.plan_id} already exists in project {project!r}")
        with aws_errors(self._action("creating plan", plan.plan_id, project)):
            try:
                if events:
                    self._client.transact_write_items(
                        TransactItems=[{"Put": put}, *self._event_puts(project, events, 0)]
                    )
                else:
                    self._client.put_item(**put)
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException" or _first_failed(exc):
                    raise exists from exc
                raise
        return stored

    def get_plan(self, project: str, plan_id: str) -> Plan:
        """The plan ``plan_id`` of ``project`` (strongly consistent). Raises :class:`PlanNotFoundError`."""
        with aws_errors(self._action("reading plan", plan_id, project)):
            response = self._client.get_item(
                TableName=self.table,
                Key=plan_key(project, plan_id),
                ConsistentRead=True,
                ProjectionExpression="#plan",
                ExpressionAttributeNames={"#plan": "plan"},
            )
        item = response.get("Item")
        if not item or "plan" not in item:
            raise _not_found(project, plan_id)
        return _decode(Plan, item["plan"], f"plan {plan_id!r}")

    def save_plan(self, project: str, plan: Plan, events: Sequence[ActivityEvent] = ()) -> Plan:
        """Store ``plan`` if its stored version equals ``plan.version``, with ``events`` in the
        same transaction; returns it with version + 1.

        Raises :class:`PlanNotFoundError` (no such plan in ``project``), :class:`PlanConflictError`
        (another writer changed it since it was read).
        """
        check_project(project, plan.project, f"plan {plan.plan_id}")
        _check_events(project, plan.plan_id, events)
        _check_count(len(events) + 1)
        stored = plan.model_copy(update={"version": plan.version + 1})
        values: dict[str, Any] = {
            ":status": {"S": stored.status.value},
            ":updated": {"S": stored.updated_at.isoformat()},
            ":version": {"N": str(stored.version)},
            ":plan": _encode(stored, f"plan {stored.plan_id}"),
            ":expected": {"N": str(plan.version)},
        }
        names = {"#status": "status", "#updated": "updated_at", "#version": _VERSION, "#plan": "plan"}
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": plan_key(project, plan.plan_id),
            "UpdateExpression": (
                "SET #status = :status, #updated = :updated, #version = :version, #plan = :plan"
            ),
            "ConditionExpression": "#version = :expected",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        action = self._action("saving plan", plan.plan_id, project)
        if not events:
            with aws_errors(action):
                try:
                    self._client.update_item(**update)
                except ClientError as exc:
                    if error_code(exc) == "ConditionalCheckFailedException":
                        raise self._lost_write(project, plan.plan_id, plan.version) from exc
                    raise
            return stored
        for _attempt in range(COUNTER_RACE_ATTEMPTS):
            head = self._head(project, plan.plan_id)
            if head is None or head[0] != plan.version:
                raise self._lost_write(project, plan.plan_id, plan.version)
            count = head[1]
            counted = {
                **update,
                "UpdateExpression": update["UpdateExpression"] + ", #count = :count_new",
                "ConditionExpression": "#version = :expected AND #count = :count_read",
                "ExpressionAttributeNames": {**names, "#count": _EVENT_COUNT},
                "ExpressionAttributeValues": {
                    **values,
                    ":count_new": {"N": str(count + len(events))},
                    ":count_read": {"N": str(count)},
                },
            }
            try:
                self._transact(action, [{"Update": counted}, *self._event_puts(project, events, count)])
            except _CounterRace:
                continue
            return stored
        raise self._raced(project, [plan.plan_id])

    def list_plans(self, project: str, limit: int = 100) -> list[Plan]:
        """Up to ``limit`` plans of ``project``, most recently created first (a Query of the
        index, then BatchGetItem; no Scan)."""
        if limit <= 0:
            return []
        with aws_errors(f"listing the plans of project {project!r} in DynamoDB table {self.table!r}"):
            keys = self._query(
                limit,
                TableName=self.table,
                IndexName=PLANS_BY_CREATED_INDEX,
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames={"#pk": PARTITION_KEY},
                ExpressionAttributeValues={":pk": {"S": project}},
                ScanIndexForward=False,
            )
            sort_keys = [str(key[SORT_KEY]["S"]) for key in keys]
            found = self._batch_get_plans(project, sort_keys)
        return [found[sk] for sk in sort_keys if sk in found]

    # ----------------------------------------------------------------------------- events
    def append_events(self, project: str, events: Sequence[ActivityEvent]) -> None:
        """Store ``events`` (of one or more plans of ``project``) in one transaction. Raises
        :class:`PlanNotFoundError` when one names a plan ``project`` does not have; nothing is
        written then."""
        if not events:
            return
        for event in events:
            check_project(project, event.project, f"event {event.event_id}")
        groups: dict[str, list[ActivityEvent]] = {}
        for event in events:
            groups.setdefault(event.plan_id, []).append(event)
        _check_count(len(events) + len(groups))
        action = f"appending events of project {project!r} to DynamoDB table {self.table!r}"
        for _attempt in range(COUNTER_RACE_ATTEMPTS):
            items: list[dict[str, Any]] = []
            puts: list[dict[str, Any]] = []
            for plan_id, group in groups.items():
                head = self._head(project, plan_id)
                if head is None:
                    raise _not_found(project, plan_id)
                items.append({"Update": self._counter_update(project, plan_id, head[1], len(group))})
                puts += self._event_puts(project, group, head[1])
            try:
                self._transact(action, [*items, *puts])
            except _CounterRace:
                continue
            return
        raise self._raced(project, list(groups))

    def list_events(
        self,
        project: str,
        plan_id: str,
        *,
        types: Sequence[ActivityEventType] | None = None,
        limit: int | None = None,
    ) -> list[ActivityEvent]:
        """Events of ``plan_id`` of ``project``, oldest first (a strongly consistent Query of the
        plan's sort-key prefix), optionally only of ``types`` (a filter), at most ``limit``."""
        if (limit is not None and limit <= 0) or (types is not None and not types):
            return []
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            "ExpressionAttributeValues": {":pk": {"S": project}, ":prefix": {"S": event_prefix(plan_id)}},
            "ConsistentRead": True,
            "ProjectionExpression": "#event",
        }
        request["ExpressionAttributeNames"]["#event"] = "event"
        paged_limit = limit
        if types is not None:
            wanted = list(dict.fromkeys(t.value for t in types))
            request["FilterExpression"] = f"#type IN ({', '.join(f':t{i}' for i in range(len(wanted)))})"
            request["ExpressionAttributeNames"]["#type"] = "type"
            request["ExpressionAttributeValues"] |= {f":t{i}": {"S": t} for i, t in enumerate(wanted)}
            paged_limit = None  # Limit counts items before the filter: read pages until enough match
        with aws_errors(f"listing the events of plan {plan_id!r} in DynamoDB table {self.table!r}"):
            items = self._query(paged_limit, stop_at=limit, **request)
        if limit is not None:
            items = items[:limit]
        return [_decode(ActivityEvent, item["event"], "stored activity event") for item in items]

    # ----------------------------------------------------------------------------- packets
    def save_packet(self, project: str, packet: InspectionPacket) -> InspectionPacket:
        """Store ``packet``. Raises :class:`PlanConflictError` when its id is stored already."""
        check_project(project, packet.project, f"inspection packet {packet.packet_id}")
        with aws_errors(self._action("storing inspection packet", packet.packet_id, project)):
            try:
                self._client.put_item(
                    TableName=self.table,
                    Item={
                        PARTITION_KEY: {"S": project},
                        SORT_KEY: {"S": PACKET_PREFIX + packet.packet_id},
                        "loop_id": {"S": packet.loop_id},
                        "created_at": {"S": packet.created_at.isoformat()},
                        "packet": _encode(packet, f"inspection packet {packet.packet_id}"),
                    },
                    ConditionExpression="attribute_not_exists(#sk)",
                    ExpressionAttributeNames={"#sk": SORT_KEY},
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    raise PlanConflictError(f"inspection packet {packet.packet_id} already exists") from exc
                raise
        return packet

    def get_packet(self, project: str, packet_id: str) -> InspectionPacket:
        """The packet ``packet_id`` of ``project``. Raises :class:`PlanNotFoundError`."""
        with aws_errors(self._action("reading inspection packet", packet_id, project)):
            response = self._client.get_item(
                TableName=self.table,
                Key={PARTITION_KEY: {"S": project}, SORT_KEY: {"S": PACKET_PREFIX + packet_id}},
                ConsistentRead=True,
            )
        item = response.get("Item")
        if not item or "packet" not in item:
            raise PlanNotFoundError(f"no inspection packet {packet_id!r} in project {project!r}")
        return _decode(InspectionPacket, item["packet"], f"inspection packet {packet_id!r}")

    # ----------------------------------------------------------------------------- internals
    def _action(self, verb: str, item_id: str, project: str) -> str:
        return f"{verb} {item_id!r} of project {project!r} in DynamoDB table {self.table!r}"

    def _head(self, project: str, plan_id: str) -> tuple[int, int] | None:
        """(version, event_count) of the plan item, strongly consistent; None if absent."""
        with aws_errors(self._action("reading plan", plan_id, project)):
            response = self._client.get_item(
                TableName=self.table,
                Key=plan_key(project, plan_id),
                ConsistentRead=True,
                ProjectionExpression="#version, #count",
                ExpressionAttributeNames={"#version": _VERSION, "#count": _EVENT_COUNT},
            )
        item = response.get("Item")
        if not item or _VERSION not in item:
            return None
        return int(item[_VERSION]["N"]), int(item.get(_EVENT_COUNT, {}).get("N", "0"))

    def _lost_write(self, project: str, plan_id: str, expected: int) -> LoopFrameworkError:
        head = self._head(project, plan_id)
        if head is None:
            return _not_found(project, plan_id)
        return PlanConflictError(
            f"plan {plan_id} was changed by another writer: expected stored version {expected}, "
            f"found {head[0]}; reload it and retry"
        )

    def _raced(self, project: str, plan_ids: list[str]) -> PlanConflictError:
        return PlanConflictError(
            f"could not record events of plans {', '.join(plan_ids)} of project {project!r}: "
            f"{COUNTER_RACE_ATTEMPTS} attempts lost to concurrent writers; retry"
        )

    def _counter_update(self, project: str, plan_id: str, count: int, added: int) -> dict[str, Any]:
        return {
            "TableName": self.table,
            "Key": plan_key(project, plan_id),
            "UpdateExpression": "SET #count = :count_new",
            "ConditionExpression": "attribute_exists(#sk) AND #count = :count_read",
            "ExpressionAttributeNames": {"#count": _EVENT_COUNT, "#sk": SORT_KEY},
            "ExpressionAttributeValues": {
                ":count_new": {"N": str(count + added)},
                ":count_read": {"N": str(count)},
            },
        }

    def _event_puts(self, project: str, events: Sequence[ActivityEvent], count: int) -> list[dict[str, Any]]:
        """One conditional Put per event, numbered from ``count + 1``."""
        return [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        PARTITION_KEY: {"S": project},
                        SORT_KEY: {"S": f"{event_prefix(event.plan_id)}{number:0{SEQ_DIGITS}d}"},
                        "plan_id": {"S": event.plan_id},
                        "type": {"S": event.type.value},
                        "timestamp": {"S": event.timestamp.isoformat()},
                        "event": {"S": event.model_dump_json()},
                    },
                    "ConditionExpression": "attribute_not_exists(#sk)",
                    "ExpressionAttributeNames": {"#sk": SORT_KEY},
                }
            }
            for number, event in enumerate(events, start=count + 1)
        ]

    def _transact(self, action: str, items: list[dict[str, Any]]) -> None:
        """One TransactWriteItems; :class:`_CounterRace` when a condition failed or another
        transaction conflicted (the caller reads again and tells which)."""
        with aws_errors(action):
            try:
                self._client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if error_code(exc) == "TransactionCanceledException":
                    reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
                    if reasons & {"ConditionalCheckFailed", "TransactionConflict"}:
                        raise _CounterRace from exc
                raise

    def _query(
        self, limit: int | None, *, stop_at: int | None = None, **request: Any
    ) -> list[dict[str, Any]]:
        """Items of a Query, following ``LastEvaluatedKey`` until ``limit`` items per page budget
        (None: no Limit) or ``stop_at`` items in all (None: every page)."""
        items: list[dict[str, Any]] = []
        stop = stop_at if stop_at is not None else limit
        while True:
            if limit is not None:
                request["Limit"] = limit - len(items)
            page = self._client.query(**request)
            items += page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last or (stop is not None and len(items) >= stop):
                return items
            request["ExclusiveStartKey"] = last

    def _batch_get_plans(self, project: str, sort_keys: Sequence[str]) -> dict[str, Plan]:
        """sort key -> plan for the ``sort_keys`` of ``project`` that exist (consistent reads)."""
        found: dict[str, Plan] = {}
        for start in range(0, len(sort_keys), MAX_BATCH_GET_KEYS):
            chunk = sort_keys[start : start + MAX_BATCH_GET_KEYS]
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [{PARTITION_KEY: {"S": project}, SORT_KEY: {"S": sk}} for sk in chunk],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#sk, #plan",
                    "ExpressionAttributeNames": {"#sk": SORT_KEY, "#plan": "plan"},
                }
            }
            for round_ in range(UNPROCESSED_ROUNDS):
                if round_:
                    time.sleep(0.05 * 2**round_)
                response = self._client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table, []):
                    sk = str(item[SORT_KEY]["S"])
                    found[sk] = _decode(Plan, item["plan"], f"plan {sk.removeprefix(PLAN_PREFIX)!r}")
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise LoopFrameworkError(
                    f"DynamoDB left keys of table {self.table!r} unprocessed after "
                    f"{UNPROCESSED_ROUNDS} rounds; retry later or raise its capacity"
                )
        return found


def _not_found(project: str, plan_id: str) -> PlanNotFoundError:
    return PlanNotFoundError(f"no plan {plan_id!r} in project {project!r}")


def _first_failed(exc: ClientError) -> bool:
    """A cancelled transaction whose first action (the plan's Put) failed its condition."""
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons", [])
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"


def _check_count(actions: int) -> None:
    if actions > MAX_TRANSACTION_ITEMS:
        raise LoopFrameworkError(
            f"{actions} actions in one write, more than the {MAX_TRANSACTION_ITEMS} of a DynamoDB "
            "transaction; record fewer events at once"
        )


def _check_events(project: str, plan_id: str, events: Sequence[ActivityEvent]) -> None:
    for event in events:
        check_project(project, event.project, f"event {event.event_id}")
        if event.plan_id != plan_id:
            raise LoopFrameworkError(f"event {event.event_id} is of plan {event.plan_id}, not {plan_id}")


def _encode(model: BaseModel, what: str) -> dict[str, Any]:
    """A model's JSON as S up to :data:`INLINE_LIMIT_BYTES`, else zlib-compressed B."""
    text = model.model_dump_json()
    raw = text.encode()
    if len(raw) <= INLINE_LIMIT_BYTES:
        return {"S": text}
    packed = zlib.compress(raw, level=6)
    if len(packed) > MAX_VALUE_BYTES:
        raise LoopFrameworkError(
            f"{what} is {len(raw)} bytes of JSON, {len(packed)} compressed, above the "
            f"{MAX_VALUE_BYTES} bytes a DynamoDB item can hold; shorten its goals or split it"
        )
    return {"B": packed}


def _decode(model: type[_M], value: dict[str, Any], what: str) -> _M:
    try:
        text = value["S"] if "S" in value else zlib.decompress(value["B"]).decode()
        return model.model_validate_json(text)
    except (KeyError, zlib.error, UnicodeDecodeError, ValidationError) as exc:
        raise LoopFrameworkError(f"the stored {what} cannot be read: {exc}") from exc
