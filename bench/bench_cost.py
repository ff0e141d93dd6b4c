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
import io
import json
import math
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling modules, also when loaded by path

from cost_counting import (  # noqa: F401 - READ_UNIT_BYTES, WRITE_UNIT_BYTES, units: re-exported
    READ_UNIT_BYTES,
    WRITE_UNIT_BYTES,
    Tally,
    _counting_idempotency,
    _counting_ports,
    _timed,
    units,
)
from cost_prices import (  # noqa: F401 - ROWS: re-exported
    LAMBDA_PLATFORM_LOG_BYTES,
    LOG_EVENT_OVERHEAD_BYTES,
    ROWS,
    TARGET_USD_PER_1000,
    notes,
    price_table,
    single_requests,
    verdict,
)
from cost_waiting import AGENT_SECONDS, CHECKS_SECONDS, POLL_SECONDS, waiting_report

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.cloud.observability import metrics
from loopwright.cloud.start import execution_name
from loopwright.engine.stepfunctions import LocalStepFunctions, load_handler
from loopwright.engine.stepfunctions_loops import create_loop
from loopwright.engine.stepfunctions_template import STATE_MACHINES, synthesize_template
from loopwright.models import (
    LoopConfig,
    LoopOutcome,
    StepInput,
    StepOutput,
)


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
            "max_stuck_iterations": None,  # the no-op agent would be paused as stuck
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
    # The flushed metrics are printed as EMF JSON lines (CloudWatch reads them in AWS): counted as
    # the functions' log bytes, not shown.
    printed = io.StringIO()
    quiet = contextlib.redirect_stdout(printed)
    with namespace, ports, quiet, _counting_idempotency(tally), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="aws_lambda_powertools")
        runtime.ports.cache_clear()
        try:
            yield
        finally:
            runtime.ports.cache_clear()
            lines = printed.getvalue().splitlines()
            tally.lambda_log_bytes = sum(len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES for line in lines)


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
        transitions = scheduled = state_machine_log_bytes = 0
        while True:
            summary = local.wait(name, timeout_seconds)
            names.append(name)
            history = local.history(local.execution_arn(name))
            transitions += sum(1 for e in history if str(e["type"]).endswith("StateEntered"))
            # the state machine logs ALL events with their data (infrastructure/state_machine.py)
            state_machine_log_bytes += sum(
                len(json.dumps(e, default=str).encode()) + LOG_EVENT_OVERHEAD_BYTES for e in history
            )
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
    invocations = sum(tally.lambda_calls.values())
    log_bytes = state_machine_log_bytes + tally.lambda_log_bytes + invocations * LAMBDA_PLATFORM_LOG_BYTES
    totals: dict[str, float] = {
        "log_bytes": log_bytes,
        "log_gb": log_bytes / 1024**3,
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
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=POLL_SECONDS,
        help="assumed duration of one poll invocation of a background command (seconds)",
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
    print(
        f"\nper iteration with a {AGENT_SECONDS:g} s agent and {CHECKS_SECONDS:g} s of checks "
        f"(bench/cost_waiting.py; a poll invocation assumed {args.poll_seconds:g} s):"
    )
    for result in results:
        print("\n".join(waiting_report(result["figures"], poll_seconds=args.poll_seconds)))
    print("\n" + "\n".join(notes()))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
