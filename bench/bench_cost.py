"""AWS cost per 1,000 iterations of loopwright's orchestration, from local runs of the
SYNTHESIZED state machine (:mod:`loopwright.engine.stepfunctions`: moto's ASL interpreter, the
real handlers, the local adapters): one run per state machine variant (``steps``: one Lambda
per step; ``compact``: one Lambda per iteration, ``infrastructure/compact_state_machine.py``) and
per ``checkpoint_interval``, each priced and marked PASS or MISS against the target.

The loop: a no-op command agent (``python -c pass``) and one CUSTOM condition that never holds
(``python -c "import sys; sys.exit(1)"``), so it runs until the Cedar ``iteration-limit`` policy
stops it; ``iterations_per_execution`` small enough that it crosses at least one
continue-as-new. Counted over the whole run, then divided by the iterations (so per-loop costs,
start and end, are included and amortized over N):

- Step Functions state transitions: ``*StateEntered`` events of every execution's history (how
  Standard workflows bill; retries would add more);
- Lambda invocations (calls through the patched invoke) and their durations (wall seconds of the
  handler, MINUS the seconds spent in the sandbox: the agent's and the checks' own compute is
  excluded), priced at each function's ``MemorySize`` from the synthesized template, arm64;
- DynamoDB request units the AWS adapter (:mod:`loopwright.adapters.aws.dynamodb_store`) WOULD
  use for the store calls the handlers made: ``save_state`` with events is one
  ``TransactWriteItems`` (loop item + one item per event, 2 WRU per started KB each), without
  events one ``UpdateItem`` (1 WRU per KB); each event also writes the ``by_type`` GSI
  (projection ALL: 1 WRU per KB); reads (``get_state``, ``stop_requested``, the event-counter
  read before a transaction) are strongly consistent GetItems, 1 RRU per started 4 KB. Item
  sizes: attribute names plus values, from the LoopState and IterationEvent JSON;
- DynamoDB request units of the steps' Powertools Idempotency records (the run keeps them in
  :class:`~loopwright.engine.memory_idempotency.MemoryPersistenceLayer`, whose calls are
  ``DynamoDBPersistenceLayer``'s): a PutItem when a step starts and an UpdateItem with its
  output when it ends (1 WRU per started KB each), a DeleteItem when it fails, a GetItem on a
  conflict;
- AgentCore Memory events: ``CheckpointStore.save`` calls (one CreateEvent each; the pruning
  DeleteEvents and the ListEvents are not counted: short-term memory bills new events);
- Verified Permissions: the API calls the AWS adapter
  (:class:`~loopwright.adapters.aws.verified_permissions.VerifiedPermissionsPolicyEngine`) makes
  for the decisions the handlers asked for, found by running that adapter on a recording client:
  ``IsAuthorized`` (single, $0.000005 each) and ``BatchIsAuthorized`` (one billed request
  whatever its size, $0.00015 each).

Prices: AWS list prices, us-east-1, first tier, without free tiers; each constant names its
page and the date it was read. Local handler durations are this machine's, not a Lambda's
(a 512 MB function has a fraction of a vCPU), and exclude cold starts.

Run: ``.venv/bin/python bench/bench_cost.py [--iterations 20] [--per-execution 8]
[--state-machine steps,compact] [--checkpoint-interval 1,10] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.cloud.observability import metrics
from loopwright.cloud.start import execution_name
from loopwright.cloud.steps import CloudPorts
from loopwright.engine.memory_idempotency import MemoryPersistenceLayer
from loopwright.engine.stepfunctions import Handler, LocalStepFunctions, load_handler
from loopwright.engine.stepfunctions_loops import create_loop
from loopwright.engine.stepfunctions_template import STATE_MACHINES, synthesize_template
from loopwright.models import (
    AuthorizationRequest,
    Checkpoint,
    CommandResult,
    ControlRequest,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopState,
    PolicyDecision,
    StepInput,
    StepOutput,
)
from loopwright.ports import CheckpointStore, LoopStore, OutputCallback, PolicyEngine, Sandbox

#: Target of the seed brief: orchestration cost per 1,000 iterations, excluding model tokens
#: and the checks' (and agent's) own compute.
TARGET_USD_PER_1000 = 0.20
_DATE_READ = "2026-11-23"


@dataclass(frozen=True)
class Price:
    """One AWS list price (USD per ``unit``), us-east-1, with where and when it was read."""

    usd: float
    unit: str
    source: str
    read_on: str = _DATE_READ


#: $0.0250 per 1,000 state transitions, US East (N. Virginia), Standard workflows.
STEP_FUNCTIONS_TRANSITION = Price(
    0.025 / 1000, "state transition", "https://aws.amazon.com/step-functions/pricing/"
)
#: $0.20 per 1M requests (same for x86 and Arm). The AWS page renders its rate tables
#: client-side; the figure was read from pages quoting it (see README's sources).
LAMBDA_REQUEST = Price(
    0.20 / 1_000_000,
    "request",
    "https://aws.amazon.com/lambda/pricing/ (as quoted by "
    "https://git.mcrn.ar/mariano/lambda_local_runner/src/commit/"
    "957e45b8adae23ce50b966346229585b5df18b4d/docs/lambdas-md/lambda-13-cost.md)",
)
#: Arm, first 7.5 billion GB-seconds a month: $0.0000133334 per GB-second.
LAMBDA_ARM_GB_SECOND = Price(
    0.0000133334,
    "GB-second (arm64)",
    "https://aws.amazon.com/lambda/pricing/ (as quoted by https://cloudchipr.com/blog/aws-lambda-pricing "
    "and artillery's lib/platform/aws-lambda/prices.js)",
)
#: On-demand, US East: $0.625 per million write request units (since the November 2024 cut).
DYNAMODB_WRU = Price(
    0.625 / 1_000_000,
    "write request unit",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ (rate as quoted by "
    "https://airbyte.com/data-engineering-resources/dynamodb-pricing)",
)
#: On-demand, US East: $0.125 per million read request units.
DYNAMODB_RRU = Price(
    0.125 / 1_000_000,
    "read request unit",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ (rate as quoted by "
    "https://airbyte.com/data-engineering-resources/dynamodb-pricing)",
)
#: Short-term memory: $0.25 per 1,000 new events (CreateEvent); reads are not billed. The AWS
#: page renders its tables client-side; the rate as AWS's own agent toolkit quotes that page.
AGENTCORE_MEMORY_EVENT = Price(
    0.25 / 1000,
    "new event",
    "https://aws.amazon.com/bedrock/agentcore/pricing/ (rate as quoted by AWS's agent toolkit: "
    "https://raw.githubusercontent.com/aws/agent-toolkit-for-aws/main/plugins/aws-agents/skills/"
    "agents-optimize/references/cost.md, 'Memory events ... $0.25 per 1,000 new events')",
)
#: "Single authorization requests ... each call to IsAuthorized or IsAuthorizedWithToken API is
#: metered as one request": $0.000005 per API request (since the 2024 price change).
VERIFIED_PERMISSIONS_SINGLE = Price(
    0.000005,
    "IsAuthorized request",
    "https://aws.amazon.com/verified-permissions/pricing/ (Single authorization requests)",
)
#: "each call to BatchIsAuthorized or BatchIsAuthorizedWithToken API is metered as one request,
#: irrespective of the number of authorizations": first 40 million a month $0.00015 per request.
VERIFIED_PERMISSIONS_BATCH = Price(
    0.00015,
    "BatchIsAuthorized request",
    "https://aws.amazon.com/verified-permissions/pricing/ (Batch authorization requests)",
)

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
def function_memory_mb(template: Mapping[str, Any]) -> dict[str, int]:
    """``functions/<name>`` folder -> the function's ``MemorySize`` (MB) in ``template`` (the
    folder is named in the description, ``... (functions/<name>/handler.py)``)."""
    sizes: dict[str, int] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource.get("Properties", {})
        description = str(props.get("Description", ""))
        if "(functions/" in description:
            folder = description.split("(functions/", 1)[1].split("/", 1)[0]
            sizes[folder] = int(props.get("MemorySize", 128))
    return sizes


# ----------------------------------------------------------------------------- the run
def _git_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("bench\n")
    identity = ("-c", "user.name=bench", "-c", "user.email=bench@localhost")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "initial")):
        subprocess.run(["git", *identity, *args], cwd=root, check=True, capture_output=True)  # nosec B603 B607
    return root


_NEVER = "import sys; sys.exit(1)"


def bench_config(iterations: int, checkpoint_interval: int = 1) -> LoopConfig:
    """A loop of ``iterations`` iterations: no-op agent, a CUSTOM check that never passes, a
    checkpoint every ``checkpoint_interval`` iterations."""
    return LoopConfig.model_validate(
        {
            "goal": "cost benchmark: no-op agent",
            "max_iterations": iterations,
            "checkpoint_interval": checkpoint_interval,
            "exit_conditions": [
                {
                    "type": "CUSTOM",
                    "name": "never",
                    "command": [sys.executable, "-c", "import sys; sys.exit(1)"],
                }
            ],
            "agent": {"kind": "command", "command": [sys.executable, "-c", "pass"]},
        }
    )


@contextlib.contextmanager
def _counting(tally: Tally) -> Iterator[None]:
    # The handlers' Metrics object is created when loopwright.cloud.observability is imported,
    # here before LocalStepFunctions sets POWERTOOLS_METRICS_NAMESPACE: without a namespace, the
    # metrics buffer's automatic flush at 100 metrics (about iteration 17) raises
    # SchemaValidationError and the loop FAILS. The namespace the stack sets is given here.
    namespace = mock.patch.object(metrics.provider, "namespace", "Loopwright")
    ports = mock.patch.object(runtime, "_local_ports", _counting_ports(tally, runtime._local_ports))
    # The flushed metrics are printed as EMF JSON lines (CloudWatch reads them in AWS): dropped.
    quiet = contextlib.redirect_stdout(io.StringIO())
    with namespace, ports, quiet, _counting_idempotency(tally), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="aws_lambda_powertools")
        runtime.ports.cache_clear()
        try:
            yield
        finally:
            runtime.ports.cache_clear()


def measure(
    iterations: int = 20,
    iterations_per_execution: int = 8,
    *,
    workdir: Path | None = None,
    template: Mapping[str, Any] | None = None,
    timeout_seconds: float = 600.0,
    state_machine: str = "steps",
    checkpoint_interval: int = 1,
) -> dict[str, Any]:
    """Run the loop once through the ``state_machine`` variant (``steps`` or ``compact``) with a
    checkpoint every ``checkpoint_interval`` iterations; the counts, totals and per iteration.

    Returns ``{"state_machine", "checkpoint_interval", "iterations", "executions", "outcome",
    "seconds", "memory_mb", "totals", "per_iteration", "item_bytes"}``: ``totals`` /
    ``per_iteration`` have the keys ``state_transitions``, ``lambda_invocations``,
    ``lambda_gb_seconds``, ``lambda_seconds``, ``dynamodb_wru``, ``dynamodb_gsi_wru``,
    ``dynamodb_rru``, ``idempotency_wru``, ``idempotency_rru``, ``memory_events``,
    ``authorization_calls``, ``authorization_decisions``, ``avp_single_requests``,
    ``avp_batch_requests``. Raises :class:`RuntimeError` when the loop does not end at its
    iteration limit.
    """
    template = template or synthesize_template(state_machine=state_machine)
    memory = function_memory_mb(template)
    tally = Tally()
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lw-cost-")))
        workspace = _git_repo(root / "ws").resolve()
        handlers = {name: _timed(name, load_handler(name), tally) for name in memory}
        started = time.monotonic()
        stack.enter_context(_counting(tally))
        local = stack.enter_context(
            LocalStepFunctions(template, workspace / ".loopwright", handlers=handlers, idempotency="memory")
        )
        loop_id = create_loop(bench_config(iterations, checkpoint_interval), workspace)
        step_input = StepInput(loop_id=loop_id)
        step_input.iterations_per_execution = iterations_per_execution
        name = execution_name(loop_id, 0)
        local.start(name, step_input)
        names: list[str] = []
        transitions = scheduled = 0
        while True:
            summary = local.wait(name, timeout_seconds)
            names.append(name)
            history = local.history(local.execution_arn(name))
            transitions += sum(1 for e in history if str(e["type"]).endswith("StateEntered"))
            scheduled += sum(1 for e in history if e["type"] == "LambdaFunctionScheduled")
            output = StepOutput.model_validate(summary.output) if summary.output else None
            if summary.status != "SUCCEEDED" or output is None or not output.handover:
                break
            name = execution_name(loop_id, output.generation)
        state = SqliteStore(workspace / ".loopwright" / "loopwright.db").get_state(loop_id)
        seconds = time.monotonic() - started
    if state.outcome is not LoopOutcome.ITERATION_LIMIT or state.iteration != iterations:
        raise RuntimeError(f"loop ended {state.outcome} after {state.iteration} iterations, not at the limit")
    gb_seconds = sum(
        math.ceil(tally.lambda_seconds[n] * 1000) / 1000 * memory[n] / 1024 for n in tally.lambda_seconds
    )
    totals: dict[str, float] = {
        "state_transitions": transitions,
        "lambda_invocations": sum(tally.lambda_calls.values()),
        "lambda_scheduled_in_history": scheduled,
        "lambda_seconds": sum(tally.lambda_seconds.values()),
        "lambda_gb_seconds": gb_seconds,
        "dynamodb_wru": tally.wru_transactions + tally.wru_standard,
        "dynamodb_gsi_wru": tally.wru_gsi,
        "dynamodb_rru": tally.rru,
        "memory_events": tally.memory_events,
        "authorization_calls": tally.authorization_calls,
        "authorization_decisions": tally.authorization_decisions,
        "avp_single_requests": tally.avp_single_requests,
        "avp_batch_requests": tally.avp_batch_requests,
        "idempotency_wru": tally.idempotency_wru,
        "idempotency_rru": tally.idempotency_rru,
        "events_written": tally.events_written,
        "transactions": tally.transactions,
    }
    return {
        "state_machine": state_machine,
        "checkpoint_interval": checkpoint_interval,
        "iterations": iterations,
        "executions": names,
        "outcome": state.outcome.value,
        "seconds": seconds,
        "memory_mb": memory,
        "lambda_calls": dict(tally.lambda_calls),
        "totals": totals,
        "per_iteration": {k: v / iterations for k, v in totals.items()},
        "item_bytes": {
            "loop_item_max": max(tally.loop_item_bytes, default=0),
            "event_item_max": max(tally.event_item_bytes, default=0),
            "event_item_mean": sum(tally.event_item_bytes) / max(len(tally.event_item_bytes), 1),
        },
    }


# ----------------------------------------------------------------------------- pricing
#: Table rows: label, key of ``per_iteration``, price (None: price not found).
ROWS: tuple[tuple[str, str, Price | None], ...] = (
    ("Step Functions state transitions", "state_transitions", STEP_FUNCTIONS_TRANSITION),
    ("Lambda requests", "lambda_invocations", LAMBDA_REQUEST),
    ("Lambda duration (GB-s, arm64)", "lambda_gb_seconds", LAMBDA_ARM_GB_SECOND),
    ("DynamoDB writes (WRU, tables)", "dynamodb_wru", DYNAMODB_WRU),
    ("DynamoDB writes (WRU, GSI by_type)", "dynamodb_gsi_wru", DYNAMODB_WRU),
    ("DynamoDB reads (RRU)", "dynamodb_rru", DYNAMODB_RRU),
    ("DynamoDB writes (WRU, idempotency)", "idempotency_wru", DYNAMODB_WRU),
    ("DynamoDB reads (RRU, idempotency)", "idempotency_rru", DYNAMODB_RRU),
    ("AgentCore Memory events", "memory_events", AGENTCORE_MEMORY_EVENT),
    ("Verified Permissions IsAuthorized", "avp_single_requests", VERIFIED_PERMISSIONS_SINGLE),
    ("Verified Permissions BatchIsAuthorized", "avp_batch_requests", VERIFIED_PERMISSIONS_BATCH),
)


def price_table(per_iteration: Mapping[str, float]) -> dict[str, Any]:
    """Rows ``{item, per_iteration, unit_usd, unit, usd_per_1000}`` (``unit_usd`` and
    ``usd_per_1000`` None when the price was not found), the ``total`` of priced rows, and
    ``passed`` (total below :data:`TARGET_USD_PER_1000`)."""
    rows: list[dict[str, Any]] = []
    for label, key, price in ROWS:
        count = per_iteration.get(key, 0.0)
        rows.append(
            {
                "item": label,
                "per_iteration": count,
                "unit_usd": price.usd if price else None,
                "unit": price.unit if price else "",
                "usd_per_1000": count * 1000 * price.usd if price else None,
            }
        )
    total = float(sum(r["usd_per_1000"] for r in rows if r["usd_per_1000"] is not None))
    return {"rows": rows, "total": total, "passed": total < TARGET_USD_PER_1000}


def render(figures: Mapping[str, Any], table: Mapping[str, Any], *, sources: bool = True) -> str:
    """The report of one run: the run, the table, the total and the target line, then (with
    ``sources``) the prices' sources."""
    per = figures["per_iteration"]
    variant = figures.get("state_machine", "steps")
    interval = figures.get("checkpoint_interval", 1)
    lines = [
        f"== state machine '{variant}', checkpoint_interval {interval}: {figures['iterations']} iterations, "
        f"outcome {figures['outcome']}, executions {', '.join(figures['executions'])} "
        f"({figures['seconds']:.1f} s locally)",
        f"Lambda calls: {json.dumps(figures['lambda_calls'], sort_keys=True)}; memory MB "
        f"{json.dumps(figures['memory_mb'], sort_keys=True)}",
        f"per iteration: {per['events_written']:.2f} events in {per['transactions']:.2f} "
        f"transactions, {per['authorization_decisions']:.2f} Cedar decisions in "
        f"{per['authorization_calls']:.2f} calls, {per['lambda_seconds'] * 1000:.1f} ms handler "
        f"time (sandbox excluded); history LambdaFunctionScheduled {per['lambda_scheduled_in_history']:.2f}",
        f"item bytes: loop item max {figures['item_bytes']['loop_item_max']}, event item max "
        f"{figures['item_bytes']['event_item_max']}, mean {figures['item_bytes']['event_item_mean']:.0f}",
        "",
        f"{'item':<40} {'count/iteration':>16} {'unit price (USD)':>22} {'$ / 1,000 it.':>14}",
    ]
    for row in table["rows"]:
        unit = f"{row['unit_usd']:.10f}".rstrip("0") if row["unit_usd"] is not None else "price not found"
        cost = f"{row['usd_per_1000']:.5f}" if row["usd_per_1000"] is not None else "excluded"
        lines.append(f"{row['item']:<40} {row['per_iteration']:>16.3f} {unit:>22} {cost:>14}")
    missing = [r["item"] for r in table["rows"] if r["unit_usd"] is None]
    lines.append(f"{'TOTAL':<40} {'':>16} {'':>22} {table['total']:>14.5f}")
    if missing:
        lines.append(f"excluded from the total (price not found): {', '.join(missing)}")
    lines.append(f"target: below ${TARGET_USD_PER_1000:.2f} per 1,000 iterations: {verdict(table)}")
    if sources:
        lines += ["", *notes()]
    return "\n".join(lines)


def single_requests(per_iteration: Mapping[str, float]) -> dict[str, float]:
    """``per_iteration`` as if the Verified Permissions adapter asked each decision with its own
    ``IsAuthorized`` call instead of ``BatchIsAuthorized`` (cheaper since the 2024 price change:
    up to 30 single requests cost no more than one batch, whose quota is 30 requests)."""
    return {
        **per_iteration,
        "avp_single_requests": per_iteration["authorization_decisions"],
        "avp_batch_requests": 0.0,
    }


def verdict(table: Mapping[str, Any]) -> str:
    """``PASS ($x.xxxx)`` or ``MISS ($x.xxxx)``."""
    return f"{'PASS' if table['passed'] else 'MISS'} (${table['total']:.4f})"


def notes() -> list[str]:
    """What is excluded, and the prices with their sources."""
    lines = [
        "excluded: the agent's and the checks' own compute (sandbox time subtracted from handler "
        "time), model tokens, Lambda cold starts, free tiers, storage, logs/X-Ray, data transfer.",
        "handler durations are this machine's, not a Lambda's (512 MB is a fraction of a vCPU).",
        "",
        "prices (us-east-1 list, read " + _DATE_READ + "):",
    ]
    for label, _, price in ROWS:
        if price is not None:
            lines.append(f"  {label}: ${price.usd:.10f}".rstrip("0") + f" per {price.unit}: {price.source}")
    return lines


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [kind(item.strip()) for item in text.split(",") if item.strip()]

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--iterations`` (default 20), ``--per-execution`` (default 8), ``--state-machine``
    (comma-separated, default ``steps,compact``), ``--checkpoint-interval`` (comma-separated,
    default ``1,10``), ``--json``. Exits 2 naming the option for a bad value."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--per-execution", type=int, default=8, help="iterations per execution")
    parser.add_argument(
        "--state-machine",
        type=_csv(str),
        default=list(STATE_MACHINES),
        help=f"variants to run, comma-separated: {', '.join(STATE_MACHINES)}",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=_csv(int),
        default=[1, 10],
        help="checkpoint_interval values to run, comma-separated (each variant runs with each)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    unknown = [v for v in args.state_machine if v not in STATE_MACHINES]
    if unknown or not args.state_machine:
        parser.error(f"--state-machine: {unknown or 'none'} not among {', '.join(STATE_MACHINES)}")
    if not args.checkpoint_interval or any(n < 1 for n in args.checkpoint_interval):
        parser.error("--checkpoint-interval: give whole numbers of iterations, 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every variant with every checkpoint interval, print each report and a summary with
    PASS or MISS for each; exit code 0 (PASS or MISS), 1 when a loop misbehaves."""
    args = parse_args(argv)
    results: list[dict[str, Any]] = []
    for variant in args.state_machine:
        for interval in args.checkpoint_interval:
            try:
                figures = measure(
                    args.iterations, args.per_execution, state_machine=variant, checkpoint_interval=interval
                )
            except RuntimeError as exc:
                print(f"bench_cost: {variant}, checkpoint_interval {interval}: {exc}", file=sys.stderr)
                return 1
            table = price_table(figures["per_iteration"])
            print(render(figures, table, sources=False) + "\n")
            results.append({"figures": figures, "table": table})
    print(f"summary: $ per 1,000 iterations (target below ${TARGET_USD_PER_1000:.2f})")
    for result in results:
        figures, table = result["figures"], result["table"]
        per = figures["per_iteration"]
        line = (
            f"  {figures['state_machine']:<8} checkpoint_interval {figures['checkpoint_interval']:<3} "
            f"{per['state_transitions']:5.2f} transitions, {per['memory_events']:4.2f} Memory events, "
            f"{per['avp_single_requests'] + per['avp_batch_requests']:4.2f} Verified Permissions calls "
            f"an iteration: {verdict(table)}"
        )
        if per["avp_batch_requests"]:
            line += f"; with one IsAuthorized per decision: {verdict(price_table(single_requests(per)))}"
        print(line)
    print("\n" + "\n".join(notes()))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
