"""Orchestration benchmark of loopwright's in-process engine, with LangGraph as the peer.

A loop of ``--iterations`` (default 1,000) iterations with a no-op agent (a work function
returning None) and no-op checks (a sandbox answering exit code 1 at once, so the exit
condition never holds and the loop runs until the Cedar ``iteration-limit`` policy denies
iteration N+1). Everything else is real: Cedar authorization (:class:`CedarPolicyEngine`), events
and checkpoints in the SQLite store (checkpoint every iteration, 5 kept), git worktree when on.

Figures (milliseconds unless named otherwise):

1. ``run()`` call to the first call of the work function, median of ``--repeats`` fresh loops;
2. CLI process start (just before ``Popen``) to the first iteration, without and with git
   isolation (worktree creation included), median of ``--repeats`` processes;
3. overhead per iteration: wall time of ``run()`` / iterations, and p50/p95 of the intervals
   between consecutive work-function calls, without and with git isolation;
4. checkpoint save (the transaction writing it with its iteration's state and events) and load
   (``recover``: newest valid checkpoint with checksum verification) p50/p95;
5. bytes of the ``.loopwright`` folder (database, ``-wal``, ``-shm``) and of the checkpoints table
   at iteration 10 and N, and after the run;
6. the same no-op loop in LangGraph (a ``StateGraph`` node incrementing a counter, looping back
   through a conditional edge; ``SqliteSaver`` on a file, ``durability="sync"``);
7. targets with PASS/MISS.

Run it with ``./dev bench`` (installs the ``bench`` extra) or ``python bench/bench_loop.py``;
``--quick`` for a smoke run. Results are printed and written to ``bench/results/<time>.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import importlib.metadata
import io
import json
import os
import platform
import pstats
import sqlite3
import statistics
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine import LoopFramework
from loopwright.engine.local import DB_FILE_NAME, state_dir_for
from loopwright.models import (
    AgentRequest,
    Checkpoint,
    CommandResult,
    IterationEvent,
    LoopConfig,
    LoopOutcome,
    LoopState,
)
from loopwright.ports import OutputCallback, Sandbox, StopCheck
from loopwright.steps.checkpoint import recover

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
#: Environment variable read by ``bench_agent.first_iteration`` (the same name is defined there).
STAMP_ENV = "LOOPWRIGHT_BENCH_STAMP"
#: The CLI's exit code when a policy stopped the loop (``loopwright.cli.app.EXIT_POLICY``).
CLI_EXIT_POLICY = 3
#: Iteration at which the state folder is measured besides the last one.
EARLY_ITERATION = 10
#: Targets (seed 001 benchmark brief).
TARGET_CHECKPOINT_SAVE_P95_MS = 20.0
TARGET_CLI_FIRST_ITERATION_MS = 500.0
#: Checkpoint storage counts as bounded when bytes at N are at most this multiple of bytes at 10.
TARGET_CHECKPOINT_GROWTH = 1.5
_GIT_IDENTITY = ("-c", "user.name=bench", "-c", "user.email=bench@localhost")


class BenchError(RuntimeError):
    """A benchmark run did not behave as expected (wrong outcome, CLI failure)."""


@dataclass(frozen=True)
class BenchOptions:
    """What to run. ``results_dir`` None: no JSON file is written."""

    iterations: int = 1000
    repeats: int = 5
    recover_samples: int = 200
    cli: bool = True
    git: bool = True
    peer: bool = True
    profile: bool = False
    results_dir: Path | None = RESULTS_DIR


# ----------------------------------------------------------------------------- ports of the bench
class NoopSandbox(Sandbox):
    """Every check fails instantly: exit code 1, no output, no process started; every program
    is found (preflight)."""

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        return name

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
        return CommandResult(command=list(command), exit_code=1)


class TimedStore(SqliteStore):
    """The SQLite store, recording how long each checkpoint write took (seconds): the engine
    writes a checkpoint with its iteration's state and events in one transaction
    (``save_state_with_checkpoint``), so that whole transaction is what is timed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.save_seconds: list[float] = []

    def save_state_with_checkpoint(
        self, state: LoopState, events: Sequence[IterationEvent], checkpoint: Checkpoint, retention: int
    ) -> LoopState:
        started = time.perf_counter()
        saved = super().save_state_with_checkpoint(state, events, checkpoint, retention)
        self.save_seconds.append(time.perf_counter() - started)
        return saved

    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        started = time.perf_counter()
        super().save(checkpoint, retention)
        self.save_seconds.append(time.perf_counter() - started)


class IterationProbe:
    """The no-op agent: records when each iteration starts (``time.perf_counter()``, seconds) and,
    at the iterations in ``measure_at``, the state folder's bytes (:func:`state_dir_bytes`)."""

    def __init__(self, measure: Callable[[], dict[str, int]], measure_at: Sequence[int] = ()) -> None:
        self.starts: list[float] = []
        self.sizes: dict[int, dict[str, int]] = {}
        self._measure = measure
        self._measure_at = set(measure_at)

    def __call__(self, request: AgentRequest) -> None:
        self.starts.append(time.perf_counter())
        if request.iteration in self._measure_at:
            self.sizes[request.iteration] = self._measure()


# ----------------------------------------------------------------------------- measuring helpers
def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """``{"mean", "p50", "p95", "max", "count"}`` of ``seconds``, in milliseconds (p: inclusive)."""
    values = [s * 1000.0 for s in seconds]
    if not values:
        return {
            "mean": float("nan"),
            "p50": float("nan"),
            "p95": float("nan"),
            "max": float("nan"),
            "count": 0,
        }
    if len(values) == 1:
        p50 = p95 = values[0]
    else:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        p50, p95 = cuts[49], cuts[94]
    return {
        "mean": statistics.fmean(values),
        "p50": p50,
        "p95": p95,
        "max": max(values),
        "count": len(values),
    }


def median_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """``{"median", "samples"}`` in milliseconds."""
    values = [s * 1000.0 for s in seconds]
    return {"median": statistics.median(values), "samples": values}


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def sqlite_file_bytes(db: Path) -> dict[str, int]:
    """Bytes of ``db`` and its ``-wal`` and ``-shm`` files: ``{"db", "wal", "shm"}``."""
    return {
        "db": _file_size(db),
        "wal": _file_size(db.with_name(db.name + "-wal")),
        "shm": _file_size(db.with_name(db.name + "-shm")),
    }


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (0 when missing)."""
    return sum(_file_size(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def state_dir_bytes(state_dir: Path) -> dict[str, int]:
    """Sizes of a loopwright state folder, bytes.

    Keys: ``total`` (every file of the folder), ``db``/``wal``/``shm`` (the store's files),
    ``checkpoint_rows``, ``checkpoint_payload`` (sum of the checkpoints' JSON) and
    ``checkpoint_pages`` (pages of the checkpoints table and its indexes, from ``dbstat``),
    ``event_rows``. Read through a separate read-only connection, as another process would.
    """
    db = state_dir / DB_FILE_NAME
    sizes = {"total": folder_bytes(state_dir), **sqlite_file_bytes(db)}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows, payload = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM checkpoints"
        ).fetchone()
        pages = conn.execute(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN "
            "('checkpoints', 'checkpoints_by_loop', 'sqlite_autoindex_checkpoints_1')"
        ).fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    conn.close()
    sizes.update(checkpoint_rows=rows, checkpoint_payload=payload, checkpoint_pages=pages, event_rows=events)
    return sizes


def filesystem_of(path: Path) -> str:
    """The type of the file system holding ``path`` (from ``/proc/mounts``), or "unknown"."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3 or len(parts[1]) <= len(best):
            continue
        if resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/"):
            best, kind = parts[1], parts[2]
    return kind


def make_git_repo(folder: Path) -> None:
    """``git init`` ``folder`` with one commit (a README), independent of the global identity."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("bench\n", encoding="utf-8")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "README.md"],
        [*_GIT_IDENTITY, "commit", "-q", "--no-verify", "-m", "initial"],
    ):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)  # nosec B603 B607


def bench_config(max_iterations: int, git: bool) -> LoopConfig:
    """The benchmark's loop: one never-met CUSTOM check, checkpoints every iteration, 5 kept."""
    return LoopConfig.model_validate(
        {
            "goal": "benchmark: no-op agent, no-op checks",
            "exit_conditions": [
                {"type": "CUSTOM", "name": "noop", "command": "noop-check", "parser": "exit_code"}
            ],
            "max_iterations": max_iterations,
            "checkpoint_interval": 1,
            "checkpoint_retention": 5,
            "git_isolation": git,
            "max_stuck_iterations": None,  # the no-op agent would be paused as stuck
        }
    )


# ----------------------------------------------------------------------------- loopwright
@dataclass
class LoopRun:
    """One finished benchmark loop. Times in seconds (``time.perf_counter``)."""

    loop_id: str
    workspace: Path
    state_dir: Path
    iterations: int
    run_started: float
    run_seconds: float
    starts: list[float]
    save_seconds: list[float]
    sizes: dict[int, dict[str, int]] = field(default_factory=dict)
    after_run: dict[str, int] = field(default_factory=dict)
    recover_seconds: list[float] = field(default_factory=list)


def run_loopwright(
    workspace: Path,
    iterations: int,
    *,
    git: bool,
    measure_at: Sequence[int] = (),
    recover_samples: int = 0,
    profiler: cProfile.Profile | None = None,
) -> LoopRun:
    """Run one no-op loop of ``iterations`` in ``workspace`` (a fresh folder; a git repository is
    made in it when ``git``). Raises :class:`BenchError` unless the iteration limit ended it."""
    if git:
        make_git_repo(workspace)
    else:
        workspace.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir_for(workspace.resolve())
    store = TimedStore(state_dir / DB_FILE_NAME)
    try:
        timed = store
        framework = LoopFramework(
            bench_config(iterations, git),
            workspace=workspace,
            store=store,
            sandbox=NoopSandbox(),
            policy=CedarPolicyEngine(),
        )
        probe = IterationProbe(lambda: state_dir_bytes(state_dir), measure_at)
        if profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        result = framework.run(work_function=probe)
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
        if result.outcome is not LoopOutcome.ITERATION_LIMIT or result.iterations != iterations:
            raise BenchError(
                f"expected {iterations} iterations ended by the iteration limit, got "
                f"{result.iterations} ending with {result.outcome}: {result.stop_reason}"
            )
        recovered: list[float] = []
        for _ in range(recover_samples):
            begin = time.perf_counter()
            recover(framework.loop_id, store)
            recovered.append(time.perf_counter() - begin)
        return LoopRun(
            loop_id=framework.loop_id,
            workspace=workspace,
            state_dir=state_dir,
            iterations=iterations,
            run_started=started,
            run_seconds=elapsed,
            starts=probe.starts,
            save_seconds=timed.save_seconds,
            sizes=probe.sizes,
            after_run=state_dir_bytes(state_dir),
            recover_seconds=recovered,
        )
    finally:
        store.close()


def overhead_figures(run: LoopRun) -> dict[str, float]:
    """Per-iteration overhead of ``run``, ms: ``mean`` (wall time of run() / iterations), ``p50``,
    ``p95`` and ``max`` of the intervals between consecutive work-function calls; ``wall_s``."""
    intervals = [b - a for a, b in zip(run.starts, run.starts[1:], strict=False)]
    spread = summary_ms(intervals)
    return {
        "mean": run.run_seconds * 1000.0 / run.iterations,
        "p50": spread["p50"],
        "p95": spread["p95"],
        "max": spread["max"],
        "wall_s": run.run_seconds,
    }


def cli_first_iteration(root: Path, *, git: bool, repeats: int) -> dict[str, Any]:
    """Median ms from just before ``Popen`` of ``python -m loopwright run`` to its first iteration.

    Each run is a fresh workspace (a git repository with one commit when ``git``). Also returns
    the whole process's wall time (``process_ms``). Raises :class:`BenchError` when the CLI
    fails or never reaches the first iteration.
    """
    latencies: list[float] = []
    process: list[float] = []
    python_path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
    for index in range(repeats):
        workspace = root / f"cli-{'git' if git else 'nogit'}-{index}"
        if git:
            make_git_repo(workspace)
        else:
            workspace.mkdir(parents=True)
        stamp = root / f"stamp-{'git' if git else 'nogit'}-{index}"
        argv = [
            sys.executable,
            "-m",
            "loopwright",
            "run",
            "-w",
            str(workspace),
            "--goal",
            "g",
            "--max-iterations",
            "1",
            "--condition",
            "CUSTOM=false",
            "--agent-function",
            "bench_agent:first_iteration",
            "--git-isolation" if git else "--no-git-isolation",
            "--quiet",
        ]
        env = {**os.environ, STAMP_ENV: str(stamp), "PYTHONPATH": python_path}
        started = time.time()
        done = subprocess.run(  # nosec B603 - argv list, shell=False
            argv, cwd=workspace, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        ended = time.time()
        if done.returncode != CLI_EXIT_POLICY or not stamp.is_file():
            raise BenchError(
                f"`{' '.join(argv)}` exited {done.returncode} (expected {CLI_EXIT_POLICY}); "
                f"stdout: {done.stdout.strip()[-500:]} stderr: {done.stderr.strip()[-2000:]}"
            )
        latencies.append(float(stamp.read_text(encoding="utf-8")) - started)
        process.append(ended - started)
    figures = median_ms(latencies)
    figures["process_ms"] = statistics.median(p * 1000.0 for p in process)
    return figures


def bench_loopwright(options: BenchOptions, root: Path) -> dict[str, Any]:
    """Every loopwright figure (see the module docstring), as a JSON-ready dict."""
    n = options.iterations
    measure_at = sorted({min(EARLY_ITERATION, n), n})
    first = [
        (lambda run: run.starts[0] - run.run_started)(run_loopwright(root / f"first-{index}", 1, git=False))
        for index in range(options.repeats)
    ]
    main_run = run_loopwright(
        root / "loop-nogit", n, git=False, measure_at=measure_at, recover_samples=options.recover_samples
    )
    figures: dict[str, Any] = {
        "run_to_first_iteration_ms": median_ms(first),
        "overhead_ms": {"no_git": overhead_figures(main_run)},
        "checkpoint_save_ms": summary_ms(main_run.save_seconds),
        "checkpoint_load_ms": summary_ms(main_run.recover_seconds),
        "state_dir_bytes": {str(k): v for k, v in main_run.sizes.items()} | {"after_run": main_run.after_run},
        "measured_at": measure_at,
        "cli_to_first_iteration_ms": None,
        "profile": None,
    }
    if options.git:
        git_run = run_loopwright(root / "loop-git", n, git=True)
        figures["overhead_ms"]["git"] = overhead_figures(git_run)
    if options.cli:
        figures["cli_to_first_iteration_ms"] = {
            "no_git": cli_first_iteration(root, git=False, repeats=options.repeats)
        }
        if options.git:
            figures["cli_to_first_iteration_ms"]["git"] = cli_first_iteration(
                root, git=True, repeats=options.repeats
            )
    if options.profile:
        profiler = cProfile.Profile()
        run_loopwright(root / "loop-profiled", n, git=False, profiler=profiler)
        figures["profile"] = {
            "own": top_functions(profiler, n),
            "loopwright_cumulative": top_functions(profiler, n, by="cumulative_ms", only="loopwright/"),
        }
    return figures


def top_functions(
    profiler: cProfile.Profile,
    iterations: int,
    *,
    by: str = "own_ms",
    only: str = "",
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The ``limit`` functions with the highest ``by`` (``own_ms`` or ``cumulative_ms``), of
    files whose path contains ``only``: ``function``, ``calls``, ``own_ms`` and ``cumulative_ms``
    (whole run), ``own_us_per_iteration`` and ``cumulative_us_per_iteration``."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if only not in filename:
            continue
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls": calls,
                "own_ms": own * 1000.0,
                "cumulative_ms": cumulative * 1000.0,
                "own_us_per_iteration": own * 1e6 / iterations,
                "cumulative_us_per_iteration": cumulative * 1e6 / iterations,
            }
        )
    rows.sort(key=lambda row: float(row[by]), reverse=True)
    return rows[:limit]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "layers/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# ----------------------------------------------------------------------------- LangGraph peer
class CounterState(TypedDict):
    """The peer graph's state: how many times its node ran."""

    count: int


def langgraph_version() -> str | None:
    """The installed langgraph version, or None when it is not installed."""
    try:
        return importlib.metadata.version("langgraph")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class PeerRun:
    """One finished LangGraph run. Times in seconds (``time.perf_counter``)."""

    invoke_started: float
    invoke_seconds: float
    starts: list[float]
    sizes: dict[int, dict[str, int]]
    after_run: dict[str, int]


def run_langgraph(
    db: Path, iterations: int, measure_at: Sequence[int] = (), *, synchronous: str | None = "NORMAL"
) -> PeerRun:
    """The no-op loop in LangGraph: node ``step`` increments ``count`` and a conditional edge
    loops back to it until ``count`` reaches ``iterations``. Checkpoints: ``SqliteSaver`` on
    ``db`` (WAL), ``durability="sync"``. ``synchronous="NORMAL"`` gives it loopwright's
    durability (safe against a crash of the process, not of the machine); ``None`` leaves
    SQLite's default (FULL: an fsync per commit), as LangGraph ships."""
    # Imported here: langgraph is an optional extra (bench), and loopwright's figures must be
    # measurable without it.
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    starts: list[float] = []
    sizes: dict[int, dict[str, int]] = {}
    wanted = set(measure_at)

    def step(state: CounterState) -> dict[str, int]:
        starts.append(time.perf_counter())
        count = state["count"] + 1
        if count in wanted:
            sizes[count] = sqlite_file_bytes(db)
        return {"count": count}

    def route(state: CounterState) -> str:
        return "step" if state["count"] < iterations else END

    graph = StateGraph(CounterState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", route, ["step", END])
    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if synchronous is not None:
            conn.execute(f"PRAGMA synchronous={synchronous}")
        app = graph.compile(checkpointer=SqliteSaver(conn))
        config: Any = {"configurable": {"thread_id": "bench"}, "recursion_limit": iterations * 2 + 10}
        started = time.perf_counter()
        final = app.invoke({"count": 0}, config, durability="sync")
        elapsed = time.perf_counter() - started
        if final["count"] != iterations:
            raise BenchError(f"LangGraph ended at count {final['count']}, expected {iterations}")
        return PeerRun(started, elapsed, starts, sizes, sqlite_file_bytes(db))
    finally:
        conn.close()


def bench_langgraph(options: BenchOptions, root: Path) -> dict[str, Any]:
    """The peer's figures, or ``{"skipped": why}`` when langgraph cannot be imported."""
    version = langgraph_version()
    try:
        for module in ("langgraph.graph", "langgraph.checkpoint.sqlite"):
            importlib.import_module(module)
    except ImportError as exc:
        return {"skipped": f"langgraph is not importable ({exc}); install it: pip install -e '.[bench]'"}
    n = options.iterations
    measure_at = sorted({min(EARLY_ITERATION, n), n})
    first = []
    for index in range(options.repeats):
        (root / "peer").mkdir(exist_ok=True)
        run = run_langgraph(root / "peer" / f"first-{index}.db", 1)
        first.append(run.starts[0] - run.invoke_started)
    main_run = run_langgraph(root / "peer" / "loop.db", n, measure_at)
    shipped = run_langgraph(root / "peer" / "shipped.db", n, synchronous=None)
    intervals = [b - a for a, b in zip(main_run.starts, main_run.starts[1:], strict=False)]
    spread = summary_ms(intervals)
    return {
        "version": version,
        "invoke_to_first_node_ms": median_ms(first),
        "overhead_ms": {
            "mean": main_run.invoke_seconds * 1000.0 / n,
            "p50": spread["p50"],
            "p95": spread["p95"],
            "max": spread["max"],
            "wall_s": main_run.invoke_seconds,
        },
        "db_bytes": {str(k): v for k, v in main_run.sizes.items()} | {"after_run": main_run.after_run},
        "shipped_overhead_ms": shipped.invoke_seconds * 1000.0 / n,
    }


# ----------------------------------------------------------------------------- targets and report
def targets(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each target: ``name``, ``target`` (text), ``figure`` (text) and ``passed`` (None: not
    measured in this run)."""
    lw, peer = figures["loopwright"], figures["langgraph"]
    n = figures["iterations"]
    results: list[dict[str, Any]] = []
    own = lw["overhead_ms"]["no_git"]["mean"]
    if "overhead_ms" in peer:
        theirs = peer["overhead_ms"]["mean"]
        results.append(
            {
                "name": "overhead per iteration (no git) <= LangGraph's",
                "target": f"<= {theirs:.3f} ms",
                "figure": f"{own:.3f} ms",
                "passed": own <= theirs,
            }
        )
        shipped = peer["shipped_overhead_ms"]
        results.append(
            {
                "name": "overhead per iteration (no git) <= LangGraph's as shipped (synchronous=FULL)",
                "target": f"<= {shipped:.3f} ms",
                "figure": f"{own:.3f} ms",
                "passed": own <= shipped,
            }
        )
    else:
        results.append(
            {
                "name": "overhead per iteration (no git) <= LangGraph's",
                "target": "<= LangGraph",
                "figure": f"{own:.3f} ms",
                "passed": None,
            }
        )
    save_p95 = lw["checkpoint_save_ms"]["p95"]
    results.append(
        {
            "name": "checkpoint save p95",
            "target": f"< {TARGET_CHECKPOINT_SAVE_P95_MS:.0f} ms",
            "figure": f"{save_p95:.3f} ms",
            "passed": save_p95 < TARGET_CHECKPOINT_SAVE_P95_MS,
        }
    )
    early, late = lw["state_dir_bytes"][str(lw["measured_at"][0])], lw["state_dir_bytes"][str(n)]
    growth = late["checkpoint_pages"] / max(1, early["checkpoint_pages"])
    results.append(
        {
            "name": f"checkpoint storage bounded by retention ({lw['measured_at'][0]} -> {n})",
            "target": f"<= {TARGET_CHECKPOINT_GROWTH}x, 5 rows",
            "figure": f"{early['checkpoint_pages']:,} -> {late['checkpoint_pages']:,} B "
            f"({growth:.2f}x), {late['checkpoint_rows']} rows",
            "passed": growth <= TARGET_CHECKPOINT_GROWTH and late["checkpoint_rows"] <= 5,
        }
    )
    cli = lw["cli_to_first_iteration_ms"]
    for key, label in (("no_git", "no git"), ("git", "git worktree")):
        if cli is not None and key in cli:
            value = cli[key]["median"]
            results.append(
                {
                    "name": f"CLI start -> first iteration ({label})",
                    "target": f"< {TARGET_CLI_FIRST_ITERATION_MS:.0f} ms",
                    "figure": f"{value:.0f} ms",
                    "passed": value < TARGET_CLI_FIRST_ITERATION_MS,
                }
            )
    return results


def _kb(value: int) -> str:
    return f"{value / 1024:,.1f} KiB"


def _sizes(sizes: Mapping[str, int]) -> str:
    return f"db {_kb(sizes['db'])} + wal {_kb(sizes['wal'])} + shm {_kb(sizes['shm'])}"


def render(figures: Mapping[str, Any]) -> str:
    """The report printed by :func:`main`."""
    lw, peer, meta = figures["loopwright"], figures["langgraph"], figures["meta"]
    n = figures["iterations"]
    lines = [
        f"loopwright orchestration benchmark: {n:,} iterations, no-op agent, no-op checks "
        "(exit code 1), Cedar authorization, SQLite events, checkpoint every iteration (5 kept)",
        f"python {meta['python']}, sqlite {meta['sqlite']}, loopwright {meta['loopwright']}, "
        f"langgraph {meta['langgraph'] or 'not installed'}, {meta['cpus']} CPUs, "
        f"temp dir {meta['temp_dir']} ({meta['temp_fs']}), repeats {meta['repeats']}",
        "",
    ]
    rows: list[tuple[str, str, str]] = [("figure", "loopwright", "LangGraph")]
    has_peer = "overhead_ms" in peer

    def add(name: str, own: str, theirs: str = "") -> None:
        rows.append((name, own, theirs))

    add(
        "run()/invoke() -> first iteration, median (ms)",
        f"{lw['run_to_first_iteration_ms']['median']:.2f}",
        f"{peer['invoke_to_first_node_ms']['median']:.2f}" if has_peer else "",
    )
    cli = lw["cli_to_first_iteration_ms"]
    if cli is not None:
        for key, label in (("no_git", "no git"), ("git", "git worktree")):
            if key in cli:
                add(
                    f"CLI start -> first iteration, {label}, median (ms)",
                    f"{cli[key]['median']:.0f} (process {cli[key]['process_ms']:.0f})",
                )
    for key, label in (("no_git", "no git"), ("git", "git worktree, 1 git status")):
        if key in lw["overhead_ms"]:
            own = lw["overhead_ms"][key]
            theirs = peer["overhead_ms"] if has_peer and key == "no_git" else None
            add(
                f"overhead/iteration, {label}: mean (ms)",
                f"{own['mean']:.3f}",
                f"{theirs['mean']:.3f}" if theirs else "",
            )
            add(
                "    p50 / p95 (ms)",
                f"{own['p50']:.3f} / {own['p95']:.3f}",
                f"{theirs['p50']:.3f} / {theirs['p95']:.3f}" if theirs else "",
            )
    if has_peer:
        add("LangGraph as shipped (synchronous=FULL): mean (ms)", "", f"{peer['shipped_overhead_ms']:.3f}")
    save, load = lw["checkpoint_save_ms"], lw["checkpoint_load_ms"]
    add(f"checkpoint save p50 / p95 (ms, {save['count']} saves)", f"{save['p50']:.3f} / {save['p95']:.3f}")
    add(
        f"checkpoint load (recover) p50 / p95 (ms, {load['count']}x)",
        f"{load['p50']:.3f} / {load['p95']:.3f}",
    )
    for key in [str(k) for k in lw["measured_at"]] + ["after_run"]:
        sizes = lw["state_dir_bytes"][key]
        label = "after the run" if key == "after_run" else f"at iteration {key}"
        theirs_sizes = peer["db_bytes"].get(key) if has_peer else None
        add(
            f"state bytes {label}: total",
            _kb(sizes["total"]),
            _kb(sum(theirs_sizes.values())) if theirs_sizes else "",
        )
        add("    files", _sizes(sizes), _sizes(theirs_sizes) if theirs_sizes else "")
        add(
            "    checkpoints (rows, table pages)",
            f"{sizes['checkpoint_rows']}, {_kb(sizes['checkpoint_pages'])}",
        )
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in width))
    lines.append("")
    lines.append("targets")
    for target in figures["targets"]:
        verdict = {True: "PASS", False: "MISS", None: "n/a "}[target["passed"]]
        lines.append(f"  {verdict}  {target['name']}: {target['figure']} (target {target['target']})")
    lines.append("")
    if has_peer:
        lines.append(
            "notes: the LangGraph peer does no git, no policy check, no event log and no exit-condition"
        )
        lines.append("  evaluation; it is compared with loopwright's no-git figure. Both use SQLite WAL with")
        lines.append(
            "  synchronous=NORMAL (the peer also runs as shipped, FULL); LangGraph keeps every"
            " checkpoint (no retention), loopwright keeps 5."
        )
    else:
        lines.append(f"LangGraph peer skipped: {peer['skipped']}")
    events = lw["state_dir_bytes"]["after_run"]["event_rows"] / n
    lines.append(
        f"  loopwright's state bytes include its event log ({events:.1f} events per iteration), "
        "which grows by design."
    )
    profile = lw.get("profile")
    if profile:
        lines.append("")
        lines.append(
            f"profile (cProfile, no git, {n:,} iterations; the profiler slows Python code down, "
            "compare the rows with each other)"
        )
        for key, title in (("own", "by own time"), ("loopwright_cumulative", "loopwright, by cumulative")):
            lines.append(f"  {title}:   own us/it   cum us/it     calls  function")
            for row in profile[key]:
                lines.append(
                    f"  {'':{len(title) + 2}}{row['own_us_per_iteration']:9.1f}  "
                    f"{row['cumulative_us_per_iteration']:10.1f}  {row['calls']:>8}  {row['function']}"
                )
    return "\n".join(lines)


def run_benchmark(options: BenchOptions) -> dict[str, Any]:
    """Run every part ``options`` asks for; returns the figures (also written as JSON to
    ``options.results_dir/<UTC time>.json`` unless it is None, path under ``meta.results_file``).

    Keys: ``meta``, ``iterations``, ``loopwright`` (see :func:`bench_loopwright`), ``langgraph``
    (``{"skipped": why}`` when not run), ``targets`` (see :func:`targets`).
    Raises :class:`BenchError` when a loop or the CLI misbehaves.
    """
    if options.iterations < 2:
        raise BenchError("--iterations must be at least 2")
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-") as tmp:
        root = Path(tmp)
        figures: dict[str, Any] = {
            "meta": {
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "sqlite": sqlite3.sqlite_version,
                "loopwright": importlib.metadata.version("loopwright"),
                "langgraph": langgraph_version(),
                "temp_dir": tempfile.gettempdir(),
                "temp_fs": filesystem_of(root),
                "repeats": options.repeats,
                "results_file": None,
            },
            "iterations": options.iterations,
            "loopwright": bench_loopwright(options, root),
            "langgraph": (
                bench_langgraph(options, root) if options.peer else {"skipped": "not asked (--no-peer)"}
            ),
        }
    figures["targets"] = targets(figures)
    if options.results_dir is not None:
        options.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = options.results_dir / f"{stamp}.json"
        figures["meta"]["results_file"] = str(path)
        path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def parse_args(argv: Sequence[str] | None = None) -> BenchOptions:
    """Options from the command line (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=None, help="iterations of the loop (1000)")
    parser.add_argument("--repeats", type=int, default=None, help="fresh loops/processes per median (5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 iterations, 2 repeats")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI start-up figures")
    parser.add_argument("--no-git", action="store_true", help="skip the git-isolation figures")
    parser.add_argument("--no-peer", action="store_true", help="skip the LangGraph peer")
    parser.add_argument("--profile", action="store_true", help="also profile a no-git loop (cProfile)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = parser.parse_args(argv)
    options = BenchOptions(
        cli=not args.no_cli,
        git=not args.no_git,
        peer=not args.no_peer,
        profile=args.profile,
        results_dir=args.results_dir,
    )
    if args.quick:
        options = replace(options, iterations=100, repeats=2, recover_samples=50)
    if args.iterations is not None:
        options = replace(options, iterations=args.iterations)
    if args.repeats is not None:
        options = replace(options, repeats=args.repeats)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report; exit code 0 (also when a target is missed), 1 on error."""
    options = parse_args(argv)
    try:
        figures = run_benchmark(options)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(render(figures))
    if figures["meta"]["results_file"]:
        print(f"\nresults: {figures['meta']['results_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
