"""bench/bench_cost.py prices both state machine variants and the Verified Permissions calls the
AWS adapter makes (single IsAuthorized vs BatchIsAuthorized)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_FILE = Path(__file__).resolve().parents[2] / "bench" / "bench_cost.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_cost_variants", BENCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _per(**counts: float) -> dict[str, float]:
    return {**dict.fromkeys((key for _, key, _ in bench.ROWS), 0.0), **counts}


def test_verified_permissions_bills_a_batch_as_one_request_and_singles_each() -> None:
    # Two decisions an iteration: one BatchIsAuthorized call, or two IsAuthorized calls
    batch = bench.price_table(_per(avp_batch_requests=1.0, authorization_decisions=2.0))
    single = bench.price_table(
        bench.single_requests(_per(avp_batch_requests=1.0, authorization_decisions=2.0))
    )
    assert batch["total"] == pytest.approx(0.15)  # $0.00015 x 1,000
    assert single["total"] == pytest.approx(0.01)  # $0.000005 x 2 x 1,000


def test_the_options_choose_variants_and_intervals_and_refuse_bad_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = bench.parse_args([])
    assert (args.state_machine, args.checkpoint_interval) == (["steps", "compact"], [1, 10])
    args = bench.parse_args(["--state-machine", "compact", "--checkpoint-interval", "5"])
    assert (args.state_machine, args.checkpoint_interval) == (["compact"], [5])
    for bad in (["--state-machine", "express"], ["--checkpoint-interval", "0"]):
        with pytest.raises(SystemExit) as exited:
            bench.parse_args(bad)
        assert exited.value.code == 2
    assert "--state-machine: ['express'] not among steps, compact" in capsys.readouterr().err


@pytest.mark.slow
def test_the_compact_variant_runs_one_lambda_and_three_transitions_an_iteration(tmp_path: Path) -> None:
    figures = bench.measure(3, 2, workdir=tmp_path, state_machine="compact", checkpoint_interval=2)
    per = figures["per_iteration"]
    assert figures["outcome"] == "ITERATION_LIMIT"
    assert figures["lambda_calls"] == {"run_iteration": 4}  # 3 iterations + the denied 4th
    # RunIteration, RunIterationPending?, Action?; the hand-over and the end over 3 iterations
    assert per["state_transitions"] <= 5
    assert per["idempotency_wru"] >= 2 * 4 / 3  # a put and an update per invocation
    assert per["memory_events"] == pytest.approx(2 / 3)  # iteration 2, and the final one at 3
    assert per["avp_single_requests"] + per["avp_batch_requests"] > 0
