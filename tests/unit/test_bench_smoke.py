"""The orchestration benchmark (bench/bench_loop.py) still runs: a tiny loop, figures present."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_FILE = Path(__file__).resolve().parents[2] / "bench" / "bench_loop.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_loop", BENCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_loopwright_figures_of_a_tiny_run(tmp_path: Path) -> None:
    options = bench.BenchOptions(
        iterations=20,
        repeats=1,
        recover_samples=5,
        cli=False,
        git=False,
        peer=False,
        profile=True,
        results_dir=tmp_path,
    )
    figures = bench.run_benchmark(options)

    lw = figures["loopwright"]
    assert figures["iterations"] == 20
    assert lw["run_to_first_iteration_ms"]["median"] > 0
    assert set(lw["overhead_ms"]) == {"no_git"}
    overhead = lw["overhead_ms"]["no_git"]
    assert {"mean", "p50", "p95", "max", "wall_s"} <= set(overhead)
    assert 0 < overhead["p50"] <= overhead["p95"] <= overhead["max"]
    # one checkpoint per iteration (interval 1) plus none at the end (already taken)
    assert lw["checkpoint_save_ms"]["count"] == 20
    assert lw["checkpoint_load_ms"]["count"] == 5
    assert not math.isnan(lw["checkpoint_save_ms"]["p95"])
    assert lw["measured_at"] == [10, 20]
    for key in ("10", "20", "after_run"):
        sizes = lw["state_dir_bytes"][key]
        assert {"total", "db", "wal", "shm", "checkpoint_rows", "checkpoint_pages"} <= set(sizes)
        assert sizes["checkpoint_rows"] == 5  # retention
    assert lw["state_dir_bytes"]["after_run"]["event_rows"] > lw["state_dir_bytes"]["10"]["event_rows"]
    assert lw["cli_to_first_iteration_ms"] is None
    assert "skipped" in figures["langgraph"]
    names = [t["name"] for t in figures["targets"]]
    assert any("checkpoint save p95" in n for n in names)
    assert {t["passed"] for t in figures["targets"]} <= {True, False, None}
    profile = lw["profile"]
    assert profile["own"]
    assert all("loopwright/" in row["function"] for row in profile["loopwright_cumulative"])
    results = Path(figures["meta"]["results_file"])
    assert results.parent == tmp_path and results.is_file()
    report = bench.render(figures)
    assert "overhead/iteration, no git" in report and "LangGraph peer skipped" in report
    assert "loopwright, by cumulative" in report


@pytest.mark.slow
def test_cli_and_git_figures(tmp_path: Path) -> None:
    options = bench.BenchOptions(
        iterations=3, repeats=1, recover_samples=1, cli=True, git=True, peer=False, results_dir=None
    )
    figures = bench.run_benchmark(options)
    lw = figures["loopwright"]
    assert set(lw["overhead_ms"]) == {"no_git", "git"}
    cli = lw["cli_to_first_iteration_ms"]
    assert set(cli) == {"no_git", "git"}
    assert 0 < cli["no_git"]["median"] < cli["no_git"]["process_ms"]
    assert figures["meta"]["results_file"] is None
    assert sum(1 for t in figures["targets"] if t["name"].startswith("CLI start")) == 2


def test_options_from_the_command_line() -> None:
    quick = bench.parse_args(["--quick", "--no-peer"])
    assert (quick.iterations, quick.repeats, quick.peer, quick.cli) == (100, 2, False, True)
    assert bench.parse_args(["--quick", "--iterations", "50"]).iterations == 50
    assert bench.parse_args([]).iterations == 1000
