"""The cost benchmark (bench/bench_cost.py) still counts: a 3-iteration run through the
synthesized state machine (crossing a continue-as-new), every count present and positive."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_FILE = Path(__file__).resolve().parents[2] / "bench" / "bench_cost.py"

KEYS = {
    "state_transitions",
    "lambda_invocations",
    "lambda_gb_seconds",
    "lambda_seconds",
    "dynamodb_wru",
    "dynamodb_gsi_wru",
    "dynamodb_rru",
    "memory_events",
    "authorization_calls",
    "authorization_decisions",
    "log_gb",
}


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_cost", BENCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.mark.slow
def test_a_tiny_run_counts_every_billed_item(tmp_path: Path) -> None:
    figures = bench.measure(3, 2, workdir=tmp_path)

    assert figures["outcome"] == "ITERATION_LIMIT"
    assert len(figures["executions"]) == 2  # g0 hands over to g1
    per = figures["per_iteration"]
    assert set(per) >= KEYS
    assert all(per[key] > 0 for key in KEYS)
    # One Cedar batch of two decisions per iteration (plus the denied one ending the loop)
    assert per["authorization_decisions"] == 2 * per["authorization_calls"]
    # A checkpoint per iteration, and the history agrees with the invoke count
    assert per["memory_events"] == 1
    totals = figures["totals"]
    assert totals["lambda_invocations"] == totals["lambda_scheduled_in_history"]
    table = bench.price_table(per)
    assert [r["item"] for r in table["rows"]] == [label for label, _, _ in bench.ROWS]
    assert table["total"] > 0 and table["passed"] is (table["total"] < bench.TARGET_USD_PER_1000)
    report = bench.render(figures, table)
    assert "TOTAL" in report and ("PASS" in report or "MISS" in report)
    # logs: the state machine's (ALL, with data) and the functions' lines, every invocation's
    assert per["log_bytes"] > per["lambda_invocations"] * 370
    waiting = bench.waiting_report(figures)
    assert len(waiting) == 6 and "a Lambda waits for them" in waiting[1]


def test_request_units_follow_dynamodbs_size_rules() -> None:
    assert bench.units(1, bench.WRITE_UNIT_BYTES) == 1
    assert bench.units(1024, bench.WRITE_UNIT_BYTES) == 1
    assert bench.units(1025, bench.WRITE_UNIT_BYTES) == 2
    assert bench.units(4097, bench.READ_UNIT_BYTES) == 2


def test_a_missing_price_is_excluded_from_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    per = dict.fromkeys({key for _, key, _ in bench.ROWS} | set(KEYS), 1.0)
    rows = tuple((label, key, None if key == "memory_events" else price) for label, key, price in bench.ROWS)
    monkeypatch.setattr(sys.modules[bench.price_table.__module__], "ROWS", rows)  # bench/cost_prices.py
    table = bench.price_table(per)
    missing = [r for r in table["rows"] if r["unit_usd"] is None]
    assert [r["item"] for r in missing] == ["AgentCore Memory events"]
    assert table["total"] == pytest.approx(sum(p.usd * 1000 for _, _, p in rows if p is not None))
    assert "price not found" in bench.render(_figures(per), table)


def _figures(per: dict[str, float]) -> dict[str, object]:
    return {
        "iterations": 1,
        "executions": ["x-g0"],
        "outcome": "ITERATION_LIMIT",
        "seconds": 0.0,
        "memory_mb": {},
        "lambda_calls": {},
        "per_iteration": {**per, "events_written": 1, "transactions": 1, "lambda_scheduled_in_history": 1},
        "item_bytes": {"loop_item_max": 1, "event_item_max": 1, "event_item_mean": 1.0},
    }
