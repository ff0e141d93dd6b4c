"""Powertools Idempotency records in memory, for the local Step Functions runner
(:mod:`loopwright.engine.stepfunctions`, ``idempotency="memory"``): the same records and rules as
the steps' DynamoDB table (:mod:`loopwright.cloud.idempotency`) without moto's DynamoDB, about 4
times faster for a long loop.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any, cast

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS, DataRecord

from loopwright.cloud import idempotency


class MemoryPersistenceLayer(BasePersistenceLayer):
    """Powertools Idempotency records in a dict, with the rule of ``DynamoDBPersistenceLayer``'s
    conditional put: a record is written when no record has its key, or the record's
    ``expiry_timestamp`` (seconds) has passed, or it is ``INPROGRESS`` with an
    ``in_progress_expiry_timestamp`` (milliseconds) that has passed; otherwise the stored record
    is validated against the new one's payload hash and
    ``IdempotencyItemAlreadyExistsError(old_data_record=...)`` is raised, as the DynamoDB layer
    does with the item returned on a failed condition. Everything else (keys, hashing, status,
    expiry, replay) is Powertools' own code in :class:`BasePersistenceLayer`."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated
        self.records: dict[str, DataRecord] = {}

    def _get_record(self, idempotency_key: str) -> DataRecord:
        try:
            return self.records[idempotency_key]
        except KeyError as exc:
            raise IdempotencyItemNotFoundError from exc

    def _put_record(self, data_record: DataRecord) -> None:
        old = self.records.get(data_record.idempotency_key)
        now = time.time()
        if (
            old is None
            or old.expiry_timestamp is None
            or old.expiry_timestamp < int(now)
            or (
                old.status == STATUS_CONSTANTS["INPROGRESS"]
                and old.in_progress_expiry_timestamp is not None
                and old.in_progress_expiry_timestamp < int(now * 1000)
            )
        ):
            self.records[data_record.idempotency_key] = data_record
            return
        self._validate_payload(data_payload=data_record, stored_data_record=old)
        self._save_to_cache(data_record=old)
        raise IdempotencyItemAlreadyExistsError(old_data_record=old)

    def _update_record(self, data_record: DataRecord) -> None:
        # UpdateItem SETs response data, expiry, status and payload hash; other attributes stay.
        old = self.records.get(data_record.idempotency_key)
        record = copy.copy(data_record)
        record.in_progress_expiry_timestamp = old.in_progress_expiry_timestamp if old else None
        self.records[data_record.idempotency_key] = record

    def _delete_record(self, data_record: DataRecord) -> None:
        self.records.pop(data_record.idempotency_key, None)


class InMemoryIdempotency:
    """``loopwright.cloud.idempotency.idempotency_store`` with its config and
    :class:`MemoryPersistenceLayer` instead of the DynamoDB layer: one record dict for the whole
    run (as one table is), a layer and a config of its own for each thread (as each Lambda
    container has: Powertools sets a call's key prefix and Lambda context on them);
    ``cache_clear`` clears the original's cache."""

    def __init__(self, store_for: Any) -> None:
        self._store_for = store_for
        self.records: dict[str, DataRecord] = {}
        self._local = threading.local()

    def __call__(self, settings: Any) -> Any:
        stores: dict[Any, Any] = self._local.__dict__.setdefault("stores", {})
        if settings not in stores:
            store = self._store_for(settings)
            if store is None:
                return None
            layer = MemoryPersistenceLayer()
            layer.records = self.records
            # The store calls only the BasePersistenceLayer interface, which this layer implements.
            stores[settings] = idempotency.IdempotencyStore(
                persistence=cast("Any", layer), config=copy.copy(store.config)
            )
        return stores[settings]

    def cache_clear(self) -> None:
        self._store_for.cache_clear()
