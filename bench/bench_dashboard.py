"""Dashboard API benchmark: latency of the progress, events and list endpoints over a big local store.

Issue 4 "Done when": p50/p95 for the progress and events endpoints at 1,000 loops x 1,000 events
in the local store, target p95 < 50 ms.

1. A store of ``--loops`` loops (default 1,000) with ``--events`` events each (default 1,000: per
   iteration ITERATION_STARTED, AGENT_COMPLETED, EXIT_CONDITIONS_EVALUATED, ITERATION_COMPLETED)
   and one checkpoint each, written through the store API (``SqliteStore.create_loop``,
   ``append_events`` one transaction per loop, ``save``). Loops are spread over 10 projects and
   mixed phases (running, awaiting a response, paused, stopped, conditions met).
   ``--store DIR`` keeps it in DIR and reuses it on the next run (building takes about a minute).
2. The app ``loopwright dashboard`` serves (:func:`loopwright.cli.dashboard_local.local_dashboard`:
   SQLite queries, liveness from lock files, Cedar, the plan routes), measured two ways:
   ``app.resolve`` on API Gateway proxy events (what the Lambda and the local server run per
   request), and over real HTTP to :class:`~loopwright.dashboard.server.DashboardServer` (uvicorn)
   on 127.0.0.1, on one keep-alive connection (as a browser polls) and with a new connection per
   request. Many clients at once: ``bench/bench_dashboard_concurrency.py``.
3. ``--requests`` requests per endpoint (default 200; loop ids drawn at random, seeded), after 10
   warm-up requests; p50 and p95 in milliseconds (``statistics.quantiles``, inclusive method),
   PASS/MISS against p95 < :data:`TARGET_P95_MS` for every row; the verdict of the issue's target
   covers the progress and events rows.

Run it with ``./dev bench-dashboard`` or ``python bench/bench_dashboard.py``; ``--quick`` for a
smoke run (100 loops x 200 events, 50 requests). Results are printed and written to
``bench/results/dashboard-<time>.json``. Exit code 0 (also when a target is missed), 1 on error.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cli.dashboard_local import local_dashboard
from loopwright.dashboard.api import build_app
from loopwright.dashboard.server import DashboardServer, http_to_event
from loopwright.engine.local import DB_FILE_NAME
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import (
    Checkpoint,
    ExitConditionConfig,
    ExitConditionStatus,
    ExitConditionType,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
#: Issue 4's target for the progress and events endpoints, milliseconds.
TARGET_P95_MS = 50.0
#: Requests before the timed ones of each endpoint and transport.
WARMUP_REQUESTS = 10
#: Projects the loops are spread over.
PROJECTS = 10
#: Events per iteration in the seeded store (so ``--events`` must be a multiple of it).
EVENTS_PER_ITERATION = 4
#: The user the dashboard runs as (it operates every project: no operators file).
USER = "bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
EV = IterationEventType


class BenchError(Exception):
    """The benchmark cannot run (bad option, a request that did not answer 200)."""


@dataclass(frozen=True)
class BenchOptions:
    """What to run. ``store`` None: a temporary store, deleted afterwards. ``results_dir`` None:
    no JSON file is written."""

    loops: int = 1_000
    events: int = 1_000
    requests: int = 200
    http: bool = True
    store: Path | None = None
    results_dir: Path | None = RESULTS_DIR
    seed: int = 7


@dataclass(frozen=True)
class Endpoint:
    """One measured request kind: ``name``, the route as documented, and ``paths`` to request."""

    name: str
    route: str
    target: bool
    paths: Callable[[random.Random, int], list[str]]


# --------------------------------------------------------------------------------- the store
def loop_id_of(index: int) -> str:
    """The id of the ``index``-th seeded loop."""
    return f"bench-{index:05d}"


def _phase_of(index: int) -> tuple[LoopPhase, LoopOutcome | None]:
    kind = index % 10
    if kind == 0:
        return LoopPhase.COMPLETED, LoopOutcome.STOPPED
    if kind == 1:
        return LoopPhase.COMPLETED, LoopOutcome.CONDITIONS_MET
    if kind == 2:
        return LoopPhase.AWAITING_RESPONSE, None
    if kind == 3:
        return LoopPhase.PAUSED, None
    return LoopPhase.ITERATING, None


def loop_state(index: int, iterations: int) -> LoopState:
    """The ``index``-th seeded loop after ``iterations`` iterations (two exit conditions)."""
    phase, outcome = _phase_of(index)
    loop_id = loop_id_of(index)
    project = f"proj-{index % PROJECTS}"
    config = LoopConfig(
        goal=f"benchmark loop {index}",
        project=project,
        max_iterations=iterations + 50,
        exit_conditions=[
            ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS),
            ExitConditionConfig(type=ExitConditionType.LINTING_CLEAN),
        ],
    )
    return LoopState(
        loop_id=loop_id,
        project=project,
        config=config,
        phase=phase,
        outcome=outcome,
        iteration=iterations,
        tokens_used=100 * iterations,
        started_at=T0,
        updated_at=T0 + timedelta(seconds=6 * iterations),
        ended_at=T0 + timedelta(seconds=6 * iterations) if outcome else None,
        is_active=phase is LoopPhase.ITERATING,
        exit_conditions=[
            ExitConditionStatus(name="all_tests_pass", type=ExitConditionType.ALL_TESTS_PASS),
            ExitConditionStatus(name="linting_clean", type=ExitConditionType.LINTING_CLEAN),
        ],
    )


def template_events(iterations: int) -> list[IterationEvent]:
    """The events of one loop, oldest first (``loop_id`` is replaced per loop): per iteration
    STARTED, AGENT_COMPLETED (100 tokens), EXIT_CONDITIONS_EVALUATED and COMPLETED, 5 s apart
    from start to completion."""
    steps = (
        (EV.ITERATION_STARTED, 0.0, LoopPhase.ITERATING),
        (EV.AGENT_COMPLETED, 2.5, LoopPhase.ITERATING),
        (EV.EXIT_CONDITIONS_EVALUATED, 4.0, LoopPhase.EVALUATING),
        (EV.ITERATION_COMPLETED, 5.0, LoopPhase.DECIDING),
    )
    events: list[IterationEvent] = []
    for number in range(1, iterations + 1):
        start = T0 + timedelta(seconds=6 * (number - 1))
        statuses = {
            "all_tests_pass": "MET" if number % 3 else "NOT_MET",
            "linting_clean": "MET" if number % 2 else "NOT_MET",
        }
        for kind, offset, phase in steps:
            data: dict[str, Any] = {}
            if kind is EV.AGENT_COMPLETED:
                data = {"tokens_used": 100, "summary": "edited 3 files"}
            elif kind is EV.EXIT_CONDITIONS_EVALUATED:
                data = {"statuses": statuses, "summaries": {"all_tests_pass": "455 passed"}}
            events.append(
                IterationEvent(
                    loop_id="template",
                    iteration=number,
                    type=kind,
                    phase=phase,
                    timestamp=start + timedelta(seconds=offset),
                    message=f"{kind.value.lower()} {number}",
                    data=data,
                )
            )
    return events


def stored_counts(db: Path) -> tuple[int, int]:
    """(loops, events) in the store file ``db`` ((0, 0) when it does not exist)."""
    if not db.is_file():
        return 0, 0
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        loops = conn.execute("SELECT count(*) FROM loops").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return int(loops), int(events)


def build_store(state_dir: Path, loops: int, events: int, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Seed ``state_dir/loopwright.db`` (see the module docstring) unless it already holds exactly
    ``loops`` x ``events``; returns the figures of the build (seconds, bytes, reused)."""
    db = state_dir / DB_FILE_NAME
    if stored_counts(db) == (loops, loops * events):
        return {"reused": True, "seconds": 0.0, "bytes": db.stat().st_size}
    if db.exists():
        raise BenchError(f"--store {state_dir}: holds another store {stored_counts(db)}; use an empty folder")
    iterations = events // EVENTS_PER_ITERATION
    template = template_events(iterations)
    started = time.perf_counter()
    with SqliteStore(db) as store:
        for index in range(loops):
            loop_id = loop_id_of(index)
            state = store.create_loop(loop_state(index, iterations))
            store.append_events([e.model_copy(update={"loop_id": loop_id}) for e in template])
            store.save(Checkpoint.from_loop_state(state, commit=f"{index:040x}"), retention=5)
            if (index + 1) % max(1, loops // 10) == 0:
                seconds = time.perf_counter() - started
                log(f"  seeded {index + 1:>6,} loops x {events:,} events ({seconds:.0f} s)")
    return {"reused": False, "seconds": round(time.perf_counter() - started, 1), "bytes": db.stat().st_size}


# --------------------------------------------------------------------------------- requests
def deep_offset(events: int) -> int:
    """Events skipped by the "older page" row: 500 (the 6th page of 100), at most half a loop's."""
    return min(500, events // 2)


def endpoints(loops: int, cursors: dict[str, str], list_cursor: str) -> list[Endpoint]:
    """The measured requests. ``cursors``: loop id -> a cursor :func:`deep_offset` events back in
    its events; ``list_cursor``: the cursor of the loop list's second page."""

    def loop_ids(rng: random.Random, n: int) -> list[str]:
        return [loop_id_of(rng.randrange(loops)) for _ in range(n)]

    def each(template: str) -> Callable[[random.Random, int], list[str]]:
        return lambda rng, n: [template.format(id=loop_id) for loop_id in loop_ids(rng, n)]

    def fixed(*paths: str) -> Callable[[random.Random, int], list[str]]:
        return lambda rng, n: [paths[i % len(paths)] for i in range(n)]

    deep = sorted(cursors)

    def deep_pages(rng: random.Random, n: int) -> list[str]:
        chosen = [deep[rng.randrange(len(deep))] for _ in range(n)]
        return [f"/api/loops/{i}/events?{urlencode({'cursor': cursors[i]})}" for i in chosen]

    projects = [f"proj-{p}" for p in range(PROJECTS)]
    return [
        Endpoint("progress", "GET /api/loops/{loop_id}", True, each("/api/loops/{id}")),
        Endpoint(
            "events, newest 100", "GET /api/loops/{loop_id}/events", True, each("/api/loops/{id}/events")
        ),
        Endpoint(
            "events, by type",
            "GET /api/loops/{loop_id}/events?type=EXIT_CONDITIONS_EVALUATED&limit=50",
            True,
            each("/api/loops/{id}/events?type=EXIT_CONDITIONS_EVALUATED&limit=50"),
        ),
        Endpoint("events, older page", "GET /api/loops/{loop_id}/events?cursor=...", True, deep_pages),
        Endpoint("list, newest 50", "GET /api/loops", False, fixed("/api/loops")),
        Endpoint(
            "list, 2nd page", "GET /api/loops?cursor=...", False, fixed(f"/api/loops?cursor={list_cursor}")
        ),
        Endpoint(
            "list, by project",
            "GET /api/loops?project=proj-N",
            False,
            fixed(*[f"/api/loops?project={p}" for p in projects]),
        ),
        Endpoint(
            "list, by status",
            "GET /api/loops?status=AWAITING_RESPONSE|STOPPED",
            False,
            fixed("/api/loops?status=AWAITING_RESPONSE", "/api/loops?status=STOPPED"),
        ),
        Endpoint(
            "list, filter matching none",
            "GET /api/loops?project=proj-7&status=STOPPED",
            False,
            fixed("/api/loops?project=proj-7&status=STOPPED"),
        ),
        Endpoint(
            "condition history (chart)",
            "GET /api/loops/{loop_id}/conditions?limit=500",
            False,
            each("/api/loops/{id}/conditions?limit=500"),
        ),
        Endpoint(
            "checkpoints", "GET /api/loops/{loop_id}/checkpoints", False, each("/api/loops/{id}/checkpoints")
        ),
    ]


class _Context:
    function_name = "loopwright-dashboard-bench"
    memory_limit_in_mb = 0
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:loopwright-dashboard-bench"
    aws_request_id = "bench"


def resolve_caller(app: APIGatewayRestResolver) -> Callable[[str], int]:
    """Status code of a GET of ``path`` resolved by ``app`` as the Lambda resolves it."""
    context = cast(LambdaContext, _Context())

    def call(path: str) -> int:
        event = http_to_event("GET", path, [("Host", "127.0.0.1")], b"")
        return int(app.resolve(event, context)["statusCode"])

    return call


def http_caller(port: int, *, keep_alive: bool) -> Callable[[str], int]:
    """Status code of a real HTTP GET of ``path`` to 127.0.0.1:``port`` (body read in full)."""
    shared = http.client.HTTPConnection("127.0.0.1", port, timeout=30) if keep_alive else None

    def call(path: str) -> int:
        connection = shared or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            if shared is None:
                connection.close()

    return call


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) of ``samples`` (milliseconds)."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return round(cuts[49], 2), round(cuts[94], 2)


def measure(call: Callable[[str], int], paths: Sequence[str]) -> dict[str, Any]:
    """Request the first :data:`WARMUP_REQUESTS` of ``paths`` untimed, then time each of the
    others; raises :class:`BenchError` for an answer other than 200."""
    for path in paths[:WARMUP_REQUESTS]:
        call(path)
    samples: list[float] = []
    for path in paths[WARMUP_REQUESTS:]:
        started = time.perf_counter()
        status = call(path)
        samples.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise BenchError(f"GET {path} answered {status}, not 200")
    p50, p95 = percentiles(samples)
    return {
        "n": len(samples),
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": round(max(samples), 2),
        "pass": p95 < TARGET_P95_MS,
    }


@contextmanager
def serving(app: APIGatewayRestResolver) -> Iterator[int]:
    """The local dashboard server on a free port of 127.0.0.1 (its port), stopped on exit."""
    with DashboardServer(app, "127.0.0.1", 0).running() as server:
        yield int(server.server_address[1])


# --------------------------------------------------------------------------------- the run
def run_benchmark(options: BenchOptions, *, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Build (or reuse) the store, measure every endpoint; returns the figures (also written to
    ``options.results_dir/dashboard-<UTC time>.json`` unless it is None)."""
    if options.loops < 1 or options.requests < 1:
        raise BenchError("--loops and --requests must be at least 1")
    if options.events < EVENTS_PER_ITERATION or options.events % EVENTS_PER_ITERATION:
        raise BenchError(f"--events must be a positive multiple of {EVENTS_PER_ITERATION}")
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-dashboard-") as temp:
        state_dir = (options.store or Path(temp) / "ws" / ".loopwright").resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        log(f"store: {state_dir / DB_FILE_NAME} ({options.loops:,} loops x {options.events:,} events)")
        build = build_store(state_dir, options.loops, options.events, log=log)
        local = local_dashboard(state_dir, user=USER)
        try:
            app = build_app(local.deps, routers=local.routers)
            list_cursor = local.queries.list_loops(limit=50).next_cursor or ""
            cursors: dict[str, str] = {}
            for index in range(0, options.loops, max(1, options.loops // 50)):
                page = local.queries.list_events(loop_id_of(index), limit=deep_offset(options.events))
                if page.next_cursor:
                    cursors[loop_id_of(index)] = page.next_cursor
            if not cursors:
                raise BenchError(f"--events {options.events}: too few events for an older page")
            transports: list[tuple[str, Callable[[], Any]]] = [("app.resolve", lambda: resolve_caller(app))]
            rows: list[dict[str, Any]] = []
            with serving(app) if options.http else _nothing() as port:
                if port is not None:
                    transports.append(("HTTP keep-alive", lambda: http_caller(port, keep_alive=True)))
                    transports.append(("HTTP new connection", lambda: http_caller(port, keep_alive=False)))
                for endpoint in endpoints(options.loops, cursors, list_cursor):
                    paths = endpoint.paths(random.Random(options.seed), options.requests + WARMUP_REQUESTS)
                    for transport, make_caller in transports:
                        figures = measure(make_caller(), paths)
                        rows.append(
                            {"endpoint": endpoint.name, "route": endpoint.route, "via": transport}
                            | {"issue_target": endpoint.target}
                            | figures
                        )
                        log(f"  {endpoint.name:<28} {transport:<20} p95 {figures['p95_ms']:>7.2f} ms")
        finally:
            local.close()
    target_rows = [r for r in rows if r["issue_target"]]
    figures_out: dict[str, Any] = {
        "meta": {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
            "loopwright": importlib.metadata.version("loopwright"),
            "results_file": None,
        },
        "loops": options.loops,
        "events_per_loop": options.events,
        "requests": options.requests,
        "store": build,
        "rows": rows,
        "target": {
            "p95_ms_below": TARGET_P95_MS,
            "rows": "progress and events",
            "pass": all(r["pass"] for r in target_rows),
        },
    }
    if options.results_dir is not None:
        options.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = options.results_dir / f"dashboard-{stamp}.json"
        figures_out["meta"]["results_file"] = str(path)
        path.write_text(json.dumps(figures_out, indent=2) + "\n", encoding="utf-8")
    return figures_out


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def render(figures: dict[str, Any]) -> str:
    """The report as text: one line per endpoint and transport, then the verdict."""
    store = figures["store"]
    built = "reused" if store["reused"] else f"built in {store['seconds']} s"
    lines = [
        f"Dashboard API at {figures['loops']:,} loops x {figures['events_per_loop']:,} events "
        f"({store['bytes'] / 1e6:,.0f} MB store, {built}); {figures['requests']} requests per row, "
        f"milliseconds; target p95 < {TARGET_P95_MS:g} ms",
        "",
        f"{'endpoint':<28} {'via':<20} {'p50':>8} {'p95':>8} {'max':>8}  target",
        f"{'-' * 28} {'-' * 20} {'-' * 8} {'-' * 8} {'-' * 8}  ------",
    ]
    previous = None
    for row in figures["rows"]:
        name = row["endpoint"] if row["endpoint"] != previous else ""
        previous = row["endpoint"]
        verdict = "PASS" if row["pass"] else "MISS"
        lines.append(
            f"{name:<28} {row['via']:<20} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} "
            f"{row['max_ms']:>8.2f}  {verdict}"
        )
    target = figures["target"]
    lines += [
        "",
        f"issue 4 target, progress and events p95 < {TARGET_P95_MS:g} ms (every transport): "
        + ("PASS" if target["pass"] else "MISS"),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> BenchOptions:
    """Options from the command line (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--loops", type=int, default=None, help="loops in the store (1000)")
    parser.add_argument("--events", type=int, default=None, help="events per loop, a multiple of 4 (1000)")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per row (200)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 loops x 200 events, 50 requests")
    parser.add_argument("--no-http", action="store_true", help="only app.resolve, no local HTTP server")
    parser.add_argument("--store", type=Path, default=None, help="keep the store in this folder and reuse it")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = parser.parse_args(argv)
    options = BenchOptions(http=not args.no_http, store=args.store, results_dir=args.results_dir)
    if args.quick:
        options = replace(options, loops=100, events=200, requests=50)
    for name in ("loops", "events", "requests"):
        if getattr(args, name) is not None:
            options = replace(options, **{name: getattr(args, name)})
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; exit code 0 (also when a target is missed), 1 on
    error."""
    options = parse_args(argv)
    try:
        figures = run_benchmark(options, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (BenchError, LoopFrameworkError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(render(figures))
    if figures["meta"]["results_file"]:
        print(f"\nresults: {figures['meta']['results_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
