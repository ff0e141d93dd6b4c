"""The dashboard benchmark (bench/bench_dashboard.py) still runs: a tiny store, every row measured."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_FILE = Path(__file__).resolve().parents[2] / "bench" / "bench_dashboard.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_dashboard", BENCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_a_tiny_run_measures_every_endpoint_and_reuses_its_store(tmp_path: Path) -> None:
    options = bench.BenchOptions(
        loops=12, events=40, requests=5, http=False, store=tmp_path / "store", results_dir=tmp_path
    )
    figures = bench.run_benchmark(options)
    assert figures["store"]["reused"] is False and figures["store"]["bytes"] > 0
    rows = figures["rows"]
    assert {row["endpoint"] for row in rows} >= {"progress", "events, newest 100", "list, by status"}
    assert all(row["via"] == "app.resolve" and row["n"] == 5 for row in rows)
    assert all(0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"] for row in rows)
    assert figures["target"]["pass"] == all(r["pass"] for r in rows if r["issue_target"])
    report = bench.render(figures)
    assert "progress" in report and "issue 4 target" in report
    written = json.loads(Path(figures["meta"]["results_file"]).read_text())
    assert written["rows"] == rows

    again = bench.run_benchmark(options)
    assert again["store"]["reused"] is True


def test_over_http_the_local_server_answers(tmp_path: Path) -> None:
    from loopwright.cli.dashboard_local import local_dashboard
    from loopwright.dashboard.api import build_app

    state_dir = tmp_path / "ws" / ".loopwright"
    bench.build_store(state_dir, 3, 8, log=lambda _: None)
    local = local_dashboard(state_dir, user="bench")
    try:
        with bench.serving(build_app(local.deps, routers=local.routers)) as port:
            for keep_alive in (True, False):
                call = bench.http_caller(port, keep_alive=keep_alive)
                assert call("/api/loops/bench-00001") == 200
                assert call("/api/loops/nope") == 404
    finally:
        local.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--events", "6"], "multiple of 4"), (["--loops", "0"], "at least 1")],
)
def test_bad_options_are_refused(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main([*argv, "--results-dir", str(tmp_path), "--no-http"]) == 1
    assert message in capsys.readouterr().err
