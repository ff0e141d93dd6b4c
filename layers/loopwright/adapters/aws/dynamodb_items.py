"""The DynamoDB loop store's item encoding: the loop item's update expressions, the ``state``
attribute (inline or zlib-compressed) and events read back (used by
:mod:`loopwright.adapters.aws.dynamodb_store` and :mod:`loopwright.adapters.aws.dynamodb_queries`)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from loopwright.adapters.aws.dynamodb_keys import (
    _EVENT_COUNT,
    _STATE,
    _VERSION,
    EVENTS_SORT_KEY,
    LOOPS_PARTITION_KEY,
    LOOPS_PROJECT_ATTRIBUTE,
    STATE_INLINE_LIMIT_BYTES,
    STATE_MAX_BYTES,
)
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import IterationEvent, LoopState

_T = TypeVar("_T")


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
