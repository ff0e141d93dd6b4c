"""What the cost benchmark (``bench/bench_cost.py``) counts while the synthesized state machine runs
locally: the store, checkpoint, policy and sandbox calls the handlers make (wrapping the local
adapters), the DynamoDB request units the AWS adapters would use for them, the Verified
Permissions requests, the idempotency records, and each handler's duration."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine
from loopwright.cloud.steps import CloudPorts
from loopwright.engine.memory_idempotency import MemoryPersistenceLayer
from loopwright.engine.stepfunctions import Handler
from loopwright.models import (
    AuthorizationRequest,
    Checkpoint,
    CommandResult,
    ControlRequest,
    IterationEvent,
    IterationEventType,
    LoopState,
    PolicyDecision,
)
from loopwright.ports import CheckpointStore, LoopStore, OutputCallback, PolicyEngine, Sandbox, StopCheck

# DynamoDB sizing rules (https://aws.amazon.com/dynamodb/pricing/on-demand/): a standard write of
# up to 1 KB is 1 WRU, a transactional one 2 WRU; a strongly consistent read of up to 4 KB 1 RRU.
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
TRANSACTIONAL_FACTOR = 2
#: The loop item's attributes besides ``state`` (dynamodb_store.py), as name -> typical value.
_LOOP_ITEM_OTHER = {
    "project": "default",
    "created_at": "2026-11-23T00:00:00.000000+00:00",
    "gsi_all": "loops",
    "phase": "AWAITING_EVALUATION",
    "updated_at": "2026-11-23T00:00:00.000000+00:00",
    "version": "123456",
    "event_count": "123456",
    "outcome": "ITERATION_LIMIT",
}


# ----------------------------------------------------------------------------- sizes
def _attributes_bytes(attributes: Mapping[str, str]) -> int:
    """DynamoDB item size: UTF-8 bytes of each attribute name plus its value."""
    return sum(len(name.encode()) + len(value.encode()) for name, value in attributes.items())


def loop_item_bytes(state_json: str, loop_id: str) -> int:
    """Estimated bytes of the loop item holding ``state_json`` (bytes)."""
    return _attributes_bytes({"loop_id": loop_id, "state": state_json, **_LOOP_ITEM_OTHER})


def event_item_bytes(event: IterationEvent) -> int:
    """Estimated bytes of one event item (key, ``type``, ``iteration``, ``timestamp``,
    ``event`` JSON, ``loop_type``)."""
    return _attributes_bytes(
        {
            "loop_id": event.loop_id,
            "seq": "0" * 12,
            "type": event.type.value,
            "iteration": str(event.iteration),
            "timestamp": event.timestamp.isoformat(),
            "event": event.model_dump_json(),
            "loop_type": f"{event.loop_id}#{event.type.value}",
        }
    )


def units(size_bytes: int, unit_bytes: int) -> int:
    """Request units for an item of ``size_bytes``: one per started ``unit_bytes``."""
    return max(1, math.ceil(size_bytes / unit_bytes))


# ----------------------------------------------------------------------------- counters
@dataclass
class Tally:
    """What the run used, summed over every handler call."""

    wru_transactions: int = 0
    wru_gsi: int = 0
    wru_standard: int = 0
    rru: int = 0
    transactions: int = 0
    events_written: int = 0
    memory_events: int = 0
    authorization_calls: int = 0
    authorization_decisions: int = 0
    avp_single_requests: int = 0
    avp_batch_requests: int = 0
    idempotency_wru: int = 0
    idempotency_rru: int = 0
    sandbox_seconds: float = 0.0
    lambda_calls: Counter[str] = field(default_factory=Counter)
    lambda_seconds: dict[str, float] = field(default_factory=dict)
    lambda_log_bytes: int = 0  # what the handlers printed (Powertools' EMF metrics, logs)
    loop_item_bytes: list[int] = field(default_factory=list)
    event_item_bytes: list[int] = field(default_factory=list)


class CountingStore(LoopStore):
    """A :class:`LoopStore` that tallies the DynamoDB request units its calls would use."""

    def __init__(self, inner: LoopStore, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally
        self._last_item = 1024

    def _read(self) -> None:
        self._tally.rru += units(self._last_item, READ_UNIT_BYTES)

    def _write_events(self, events: Sequence[IterationEvent]) -> None:
        for event in events:
            size = event_item_bytes(event)
            self._tally.event_item_bytes.append(size)
            self._tally.wru_transactions += TRANSACTIONAL_FACTOR * units(size, WRITE_UNIT_BYTES)
            self._tally.wru_gsi += units(size, WRITE_UNIT_BYTES)
        self._tally.events_written += len(events)

    def create_loop(self, state: LoopState) -> LoopState:
        return self._inner.create_loop(state)

    def save_state(self, state: LoopState, events: Sequence[IterationEvent] = ()) -> LoopState:
        self._last_item = loop_item_bytes(state.model_dump_json(), state.loop_id)
        self._tally.loop_item_bytes.append(self._last_item)
        if events:
            self._read()  # the event counter, read before the transaction
            self._tally.transactions += 1
            self._tally.wru_transactions += TRANSACTIONAL_FACTOR * units(self._last_item, WRITE_UNIT_BYTES)
            self._write_events(events)
        else:
            self._tally.wru_standard += units(self._last_item, WRITE_UNIT_BYTES)
        return self._inner.save_state(state, events)

    def get_state(self, loop_id: str) -> LoopState:
        state = self._inner.get_state(loop_id)
        self._last_item = loop_item_bytes(state.model_dump_json(), loop_id)
        self._read()
        return state

    def list_loops(self, project: str | None = None, limit: int = 100) -> list[LoopState]:
        return self._inner.list_loops(project, limit)

    def append_events(self, events: Sequence[IterationEvent]) -> None:
        if events:
            self._read()
            self._tally.transactions += 1
            self._tally.wru_transactions += TRANSACTIONAL_FACTOR  # the counter update
            self._write_events(events)
        self._inner.append_events(events)

    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[IterationEvent]:
        return self._inner.list_events(loop_id, types=types, limit=limit, newest_first=newest_first)

    def add_control(self, request: ControlRequest) -> None:
        self._inner.add_control(request)

    def pending_controls(self, loop_id: str) -> list[ControlRequest]:
        self._read()  # one GetItem of the loop item's controls map
        return self._inner.pending_controls(loop_id)

    def clear_controls(self, loop_id: str, control_ids: Sequence[str]) -> None:
        self._inner.clear_controls(loop_id, control_ids)


class CountingCheckpoints(CheckpointStore):
    """A :class:`CheckpointStore` counting saves (one AgentCore Memory CreateEvent each)."""

    def __init__(self, inner: CheckpointStore, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        self._tally.memory_events += 1
        self._inner.save(checkpoint, retention)

    def list_checkpoints(self, loop_id: str) -> list[Checkpoint | str]:
        return self._inner.list_checkpoints(loop_id)


class RecordingVerifiedPermissions:
    """A ``verifiedpermissions`` client answering ALLOW to everything and counting the calls
    (the decisions themselves come from cedarpy; this only shows which API calls the AWS
    adapter would make)."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def is_authorized(self, **request: Any) -> dict[str, Any]:
        self._tally.avp_single_requests += 1
        return {"decision": "ALLOW", "determiningPolicies": [], "errors": []}

    def batch_is_authorized(self, **request: Any) -> dict[str, Any]:
        self._tally.avp_batch_requests += 1
        allowed = {"decision": "ALLOW", "determiningPolicies": [], "errors": []}
        return {"results": [{"request": item, **allowed} for item in request["requests"]]}


class CountingPolicy(PolicyEngine):
    """A :class:`PolicyEngine` counting its calls (``authorization_calls``) and the decisions
    they carry, and the Verified Permissions API calls the AWS adapter would make for them."""

    def __init__(self, inner: PolicyEngine, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally
        self._aws = VerifiedPermissionsPolicyEngine("bench", {}, client=RecordingVerifiedPermissions(tally))

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        self._tally.authorization_calls += 1
        self._tally.authorization_decisions += 1
        self._aws.is_authorized(request)
        return self._inner.is_authorized(request)

    def is_authorized_batch(self, requests: Sequence[AuthorizationRequest]) -> list[PolicyDecision]:
        self._tally.authorization_calls += 1
        self._tally.authorization_decisions += len(requests)
        self._aws.is_authorized_batch(requests)
        return self._inner.is_authorized_batch(requests)


class TimedSandbox(Sandbox):
    """A :class:`Sandbox` summing the seconds its commands (agent, checks) take."""

    def __init__(self, inner: Sandbox, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        return self._inner.find_program(name, cwd=cwd)

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: StopCheck | None = None,
    ) -> CommandResult:
        started = time.perf_counter()
        try:
            return self._inner.run(
                command,
                cwd=cwd,
                timeout_seconds=timeout_seconds,
                env=env,
                max_output_bytes=max_output_bytes,
                stdin=stdin,
                on_output=on_output,
                idle_timeout_seconds=idle_timeout_seconds,
                should_stop=should_stop,
            )
        finally:
            self._tally.sandbox_seconds += time.perf_counter() - started


def _counting_ports(tally: Tally, original: Callable[[Any], CloudPorts]) -> Callable[[Any], CloudPorts]:
    def build(settings: Any) -> CloudPorts:
        ports = original(settings)
        return dataclasses.replace(
            ports,
            store=CountingStore(ports.store, tally),
            checkpoints=CountingCheckpoints(ports.checkpoints, tally) if ports.checkpoints else None,
            policy=CountingPolicy(ports.policy, tally) if ports.policy else None,
            sandbox=TimedSandbox(ports.sandbox, tally) if ports.sandbox else None,
        )

    return build


def idempotency_item_bytes(record: Any) -> int:
    """Estimated bytes of an idempotency item as ``DynamoDBPersistenceLayer`` writes it: ``id``,
    ``expiration``, ``status``, ``in_progress_expiration``, ``validation`` and ``data``
    (attribute names plus values)."""
    attributes = {
        "id": str(record.idempotency_key),
        "expiration": str(record.expiry_timestamp or 0),
        "status": str(record.status),
        "in_progress_expiration": str(record.in_progress_expiry_timestamp or 0),
        "validation": str(record.payload_hash or ""),
        "data": str(record.response_data or ""),
    }
    return _attributes_bytes(attributes)


@contextlib.contextmanager
def _counting_idempotency(tally: Tally) -> Iterator[None]:
    """Count the DynamoDB requests the idempotency records would cost (see the module docstring)."""
    layer = MemoryPersistenceLayer

    def writes(method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(self: Any, data_record: Any) -> Any:
            tally.idempotency_wru += units(idempotency_item_bytes(data_record), WRITE_UNIT_BYTES)
            return method(self, data_record)

        return counted

    def reads(method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(self: Any, idempotency_key: str) -> Any:
            tally.idempotency_rru += 1
            return method(self, idempotency_key)

        return counted

    with contextlib.ExitStack() as stack:
        for name in ("_put_record", "_update_record", "_delete_record"):
            stack.enter_context(mock.patch.object(layer, name, writes(getattr(layer, name))))
        stack.enter_context(mock.patch.object(layer, "_get_record", reads(layer._get_record)))
        yield


def _timed(name: str, handler: Handler, tally: Tally) -> Handler:
    """``handler`` adding its wall seconds minus its sandbox seconds to ``tally``."""

    def timed(event: Any, context: Any) -> Any:
        sandbox_before = tally.sandbox_seconds
        started = time.perf_counter()
        try:
            return handler(event, context)
        finally:
            own = time.perf_counter() - started - (tally.sandbox_seconds - sandbox_before)
            tally.lambda_calls[name] += 1
            tally.lambda_seconds[name] = tally.lambda_seconds.get(name, 0.0) + max(own, 0.0)

    return timed


# ----------------------------------------------------------------------------- template
