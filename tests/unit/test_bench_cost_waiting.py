"""The cost of waiting for a 5-minute agent and 2 minutes of checks (bench/cost_waiting.py): the
polls the steps' own wait function makes, and what blocking would cost instead."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
waiting = importlib.import_module("cost_waiting")


def _figures(state_machine: str = "compact") -> dict[str, Any]:
    per = dict.fromkeys(
        ["state_transitions", "lambda_invocations", "lambda_gb_seconds", "idempotency_wru", "dynamodb_rru"],
        1.0,
    )
    per["log_gb"] = 0.0
    memory = {"run_iteration": 1024, "iterate": 1024, "evaluate": 1024}
    return {
        "state_machine": state_machine,
        "checkpoint_interval": 10,
        "per_iteration": per,
        "memory_mb": memory,
    }


@pytest.mark.parametrize(
    ("seconds", "expected", "polls"),
    [
        (300, 300, 1),  # as long as last time: the first poll finds it done
        (360, 300, 2),  # 20% slower: one more
        (300, None, 6),  # nothing to expect: 10, 20, 40, 80, 160 s... waits
        (1, None, 0),  # done within the step's inline wait: no poll at all
    ],
)
def test_polls_follow_the_steps_own_waits(seconds: float, expected: float | None, polls: int) -> None:
    assert waiting.polls_for(seconds, expected).polls == polls


def test_blocking_pays_the_lambda_for_every_second() -> None:
    per, detail = waiting.waiting_per_iteration(_figures(), "blocking")
    assert detail["lambda_waiting_gb_seconds"] == 420.0  # 300 s + 120 s at 1 GB
    assert per["lambda_gb_seconds"] == 421.0 and per["state_transitions"] == 1.0


def test_background_pays_three_transitions_and_a_short_invocation_per_poll() -> None:
    per, detail = waiting.waiting_per_iteration(_figures(), "steady", poll_seconds=1.0)
    assert (detail["agent_polls"], detail["checks_polls"]) == (1, 1)
    assert per["state_transitions"] == 1.0 + 3 * 2
    assert per["lambda_invocations"] == 1.0 + 2
    assert per["lambda_gb_seconds"] == pytest.approx(1.0 + 2 * 2.0 + 2 * 1.0)  # inline waits + polls
    assert per["idempotency_wru"] == 1.0 + 2 * 2 and per["log_gb"] > 0


def test_the_report_prices_each_way_against_its_target() -> None:
    lines = waiting.waiting_report(_figures())
    assert len(lines) == 6
    assert "no-wait iteration" in lines[0]
    assert all(("PASS" in line) or ("MISS" in line) for line in lines)
