"""AWS cost per 1,000 iterations of loopwright's orchestration, from ONE local run of the
SYNTHESIZED state machine (:mod:`loopwright.engine.stepfunctions`: moto's ASL interpreter, the
real handlers, the local adapters).

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
- AgentCore Memory events: ``CheckpointStore.save`` calls (one CreateEvent each; the pruning
  DeleteEvents and the ListEvents are not counted);
- Verified Permissions: ``is_authorized_batch`` / ``is_authorized`` calls (API calls: a
  BatchIsAuthorized call is billed as ONE authorization request, see the price's source) and
  the decisions they carry.

Prices: AWS list prices, us-east-1, first tier, without free tiers; each constant names its
page and the date it was read. Local handler durations are this machine's, not a Lambda's
(a 512 MB function has a fraction of a vCPU), and exclude cold starts.

Run: ``.venv/bin/python bench/bench_cost.py [--iterations 20] [--per-execution 8]``.
"""

from __future__ import annotations

import argparse
import contextlib
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

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.cloud.observability import metrics
from loopwright.cloud.start import execution_name
from loopwright.cloud.steps import CloudPorts
from loopwright.engine.stepfunctions import (
    Handler,
    LocalStepFunctions,
    create_loop,
    load_handler,
    synthesize_template,
)
from loopwright.models import (
    AuthorizationRequest,
    Checkpoint,
    CommandResult,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopState,
    PolicyDecision,
    StepInput,
    StepOutput,
)
from loopwright.ports import CheckpointStore, LoopStore, PolicyEngine, Sandbox

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
#: Short-term memory: $0.25 per 1,000 new events (CreateEvent).
AGENTCORE_MEMORY_EVENT = Price(
    0.25 / 1000,
    "new event",
    "https://aws.amazon.com/bedrock/agentcore/pricing/ (rate as quoted by a cost guide citing it: "
    "http://brick-house.org/960d063e-4af9-4fcf-ad6c-5d7790c91c52?page=8)",
)
#: First 40 million a month: $0.00015 per authorization request; "A single API call to
#: BatchIsAuthorized is considered a single authorization request, irrespective of the numbers
#: of authorizations requested".
VERIFIED_PERMISSIONS_REQUEST = Price(
    0.00015, "authorization request", "https://aws.amazon.com/verified-permissions/pricing/"
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

    def request_stop(self, loop_id: str, reason: str) -> None:
        self._inner.request_stop(loop_id, reason)

    def stop_requested(self, loop_id: str) -> str | None:
        self._read()
        return self._inner.stop_requested(loop_id)

    def clear_stop(self, loop_id: str) -> None:
        self._inner.clear_stop(loop_id)


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


class CountingPolicy(PolicyEngine):
    """A :class:`PolicyEngine` counting API calls and the decisions they carry."""

    def __init__(self, inner: PolicyEngine, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        self._tally.authorization_calls += 1
        self._tally.authorization_decisions += 1
        return self._inner.is_authorized(request)

    def is_authorized_batch(self, requests: Sequence[AuthorizationRequest]) -> list[PolicyDecision]:
        self._tally.authorization_calls += 1
        self._tally.authorization_decisions += len(requests)
        return self._inner.is_authorized_batch(requests)


class TimedSandbox(Sandbox):
    """A :class:`Sandbox` summing the seconds its commands (agent, checks) take."""

    def __init__(self, inner: Sandbox, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
    ) -> CommandResult:
        started = time.perf_counter()
        try:
            return self._inner.run(
                command, cwd=cwd, timeout_seconds=timeout_seconds, env=env, max_output_bytes=max_output_bytes
            )
        finally:
            self._tally.sandbox_seconds += time.perf_counter() - started


def _counting_ports(tally: Tally, original: Callable[[Any], CloudPorts]) -> Callable[[Any], CloudPorts]:
    def build(settings: Any) -> CloudPorts:
        ports = original(settings)
        return CloudPorts(
            store=CountingStore(ports.store, tally),
            checkpoints=CountingCheckpoints(ports.checkpoints, tally) if ports.checkpoints else None,
            policy=CountingPolicy(ports.policy, tally) if ports.policy else None,
            sandbox=TimedSandbox(ports.sandbox, tally) if ports.sandbox else None,
            agent=ports.agent,
            workspace=ports.workspace,
            state_dir=ports.state_dir,
        )

    return build


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


def bench_config(iterations: int) -> LoopConfig:
    """A loop of ``iterations`` iterations: no-op agent, a CUSTOM check that never passes."""
    return LoopConfig.model_validate(
        {
            "goal": "cost benchmark: no-op agent",
            "max_iterations": iterations,
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
    with namespace, ports, quiet, warnings.catch_warnings():
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
) -> dict[str, Any]:
    """Run the loop once through the state machine; the counts, totals and per iteration.

    Returns ``{"iterations", "executions", "outcome", "seconds", "memory_mb", "totals",
    "per_iteration", "item_bytes"}``: ``totals``/``per_iteration`` have the keys
    ``state_transitions``, ``lambda_invocations``, ``lambda_gb_seconds``, ``lambda_seconds``,
    ``dynamodb_wru``, ``dynamodb_gsi_wru``, ``dynamodb_rru``, ``memory_events``,
    ``authorization_calls``, ``authorization_decisions``. Raises :class:`RuntimeError` when
    the loop does not end at its iteration limit.
    """
    template = template or synthesize_template()
    memory = function_memory_mb(template)
    tally = Tally()
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lw-cost-")))
        workspace = _git_repo(root / "ws").resolve()
        handlers = {name: _timed(name, load_handler(name), tally) for name in memory}
        started = time.monotonic()
        stack.enter_context(_counting(tally))
        local = stack.enter_context(
            LocalStepFunctions(template, workspace / ".loopwright", handlers=handlers)
        )
        loop_id = create_loop(bench_config(iterations), workspace)
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
        "events_written": tally.events_written,
        "transactions": tally.transactions,
    }
    return {
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
    ("AgentCore Memory events", "memory_events", AGENTCORE_MEMORY_EVENT),
    ("Verified Permissions requests", "authorization_calls", VERIFIED_PERMISSIONS_REQUEST),
)


def price_table(per_iteration: Mapping[str, float]) -> dict[str, Any]:
    """Rows ``{item, per_iteration, unit_usd, unit, usd_per_1000}`` (``unit_usd`` and
    ``usd_per_1000`` None when the price was not found), the ``total`` of priced rows, and
    ``passed`` (total below :data:`TARGET_USD_PER_1000`)."""
    rows: list[dict[str, Any]] = []
    for label, key, price in ROWS:
        count = per_iteration[key]
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


def render(figures: Mapping[str, Any], table: Mapping[str, Any]) -> str:
    """The report: the run, the table, the total and the target line, then the sources."""
    per = figures["per_iteration"]
    lines = [
        f"loop: {figures['iterations']} iterations, outcome {figures['outcome']}, executions "
        f"{', '.join(figures['executions'])} ({figures['seconds']:.1f} s locally)",
        f"Lambda calls: {json.dumps(figures['lambda_calls'], sort_keys=True)}; memory MB "
        f"{json.dumps(figures['memory_mb'], sort_keys=True)}",
        f"per iteration: {per['events_written']:.2f} events in {per['transactions']:.2f} "
        f"transactions, {per['authorization_decisions']:.2f} Cedar decisions in "
        f"{per['authorization_calls']:.2f} calls, {per['lambda_seconds'] * 1000:.1f} ms handler "
        f"time (sandbox excluded); history LambdaFunctionScheduled {per['lambda_scheduled_in_history']:.2f}",
        f"item bytes: loop item max {figures['item_bytes']['loop_item_max']}, event item max "
        f"{figures['item_bytes']['event_item_max']}, mean {figures['item_bytes']['event_item_mean']:.0f}",
        "",
        f"{'item':<36} {'count/iteration':>16} {'unit price (USD)':>22} {'$ / 1,000 it.':>14}",
    ]
    for row in table["rows"]:
        unit = f"{row['unit_usd']:.10f}".rstrip("0") if row["unit_usd"] is not None else "price not found"
        cost = f"{row['usd_per_1000']:.5f}" if row["usd_per_1000"] is not None else "excluded"
        lines.append(f"{row['item']:<36} {row['per_iteration']:>16.3f} {unit:>22} {cost:>14}")
    missing = [r["item"] for r in table["rows"] if r["unit_usd"] is None]
    lines.append(f"{'TOTAL':<36} {'':>16} {'':>22} {table['total']:>14.5f}")
    if missing:
        lines.append(f"excluded from the total (price not found): {', '.join(missing)}")
    verdict = "PASS" if table["passed"] else "MISS"
    lines += [
        f"target: below ${TARGET_USD_PER_1000:.2f} per 1,000 iterations, excluding model tokens and "
        f"checks: {verdict} (${table['total']:.4f})",
        "excluded: the agent's and the checks' own compute (sandbox time subtracted from handler "
        "time), model tokens, Lambda cold starts, free tiers, storage, logs/X-Ray, data transfer.",
        "handler durations are this machine's, not a Lambda's (512 MB is a fraction of a vCPU).",
        "",
        "prices (us-east-1 list, read " + _DATE_READ + "):",
    ]
    for label, _, price in ROWS:
        if price is not None:
            lines.append(f"  {label}: ${price.usd:.10f}".rstrip("0") + f" per {price.unit}: {price.source}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--iterations`` (default 20), ``--per-execution`` (default 8), ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--per-execution", type=int, default=8, help="iterations per execution")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the report; exit code 0 (PASS or MISS), 1 when the loop misbehaves."""
    args = parse_args(argv)
    try:
        figures = measure(args.iterations, args.per_execution)
    except RuntimeError as exc:
        print(f"bench_cost: {exc}", file=sys.stderr)
        return 1
    table = price_table(figures["per_iteration"])
    print(render(figures, table))
    if args.json:
        print(json.dumps({"figures": figures, "table": table}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
