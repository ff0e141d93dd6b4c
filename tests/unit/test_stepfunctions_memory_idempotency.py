"""The local runner's in-memory idempotency records (loopwright.engine.stepfunctions
.MemoryPersistenceLayer) follow DynamoDBPersistenceLayer's conditional put, under Powertools'
own idempotency logic."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyItemAlreadyExistsError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from loopwright.engine.memory_idempotency import MemoryPersistenceLayer


def _record(
    key: str = "k", *, status: str = "INPROGRESS", expiry: int | None = None, **kw: Any
) -> DataRecord:
    return DataRecord(
        idempotency_key=key,
        status=status,
        expiry_timestamp=expiry if expiry is not None else int(time.time()) + 3600,
        **kw,
    )


def test_a_second_put_of_a_live_record_is_refused_with_the_stored_record() -> None:
    layer = MemoryPersistenceLayer()
    first = _record()
    layer._put_record(first)
    with pytest.raises(IdempotencyItemAlreadyExistsError) as raised:
        layer._put_record(_record())
    assert raised.value.old_data_record is first


def test_an_expired_record_or_an_expired_in_progress_record_is_replaced() -> None:
    layer = MemoryPersistenceLayer()
    layer._put_record(_record("old", expiry=int(time.time()) - 1))
    layer._put_record(_record("old", status="COMPLETED"))
    assert layer._get_record("old").status == "COMPLETED"
    stale = _record("stuck", in_progress_expiry_timestamp=int(time.time() * 1000) - 1)
    layer._put_record(stale)
    replacement = _record("stuck")
    layer._put_record(replacement)
    assert layer._get_record("stuck") is replacement


def test_update_keeps_the_in_progress_expiry_and_delete_forgets() -> None:
    layer = MemoryPersistenceLayer()
    layer._put_record(_record(in_progress_expiry_timestamp=123))
    layer._update_record(_record(status="COMPLETED", response_data='{"ok": 1}'))
    stored = layer._get_record("k")
    assert (stored.status, stored.response_data, stored.in_progress_expiry_timestamp) == (
        "COMPLETED",
        '{"ok": 1}',
        123,
    )
    layer._delete_record(stored)
    layer._put_record(_record())  # the key is free again


@pytest.mark.filterwarnings("ignore:Couldn.t determine the remaining time")
def test_powertools_replays_a_completed_call_and_refuses_a_running_one() -> None:
    # Given Powertools Idempotency over the in-memory layer, keyed on "key", validating "event"
    layer = MemoryPersistenceLayer()
    config = IdempotencyConfig(event_key_jmespath="key", payload_validation_jmespath="event")
    calls: list[int] = []

    def step(*, data: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return {"n": len(calls)}

    once = idempotent_function(step, data_keyword_argument="data", persistence_store=layer, config=config)
    # When the same call comes twice, then with the same key and another event
    assert once(data={"key": "a", "event": 1}) == {"n": 1}
    assert once(data={"key": "a", "event": 1}) == {"n": 1}
    # Then the second is replayed, and the third is refused as a reused key
    assert calls == [1]
    with pytest.raises(IdempotencyValidationError):
        once(data={"key": "a", "event": 2})
    # And a call whose key another invocation holds in progress is refused as in progress
    (key,) = [k for k in layer.records if layer.records[k].status == "COMPLETED"]
    layer.records[key] = _record(key, payload_hash=layer.records[key].payload_hash)
    with pytest.raises(IdempotencyAlreadyInProgressError):
        once(data={"key": "a", "event": 1})
