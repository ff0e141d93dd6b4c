"""Idempotency keys of the steps, and the explicit switch when no table is configured."""

from __future__ import annotations

from typing import Any

import pytest

from loopwright.cloud import idempotency
from loopwright.cloud.idempotency import idempotent_step, step_key
from loopwright.exceptions import ConfigError


@pytest.fixture(autouse=True)
def _fresh_store() -> Any:
    idempotency.idempotency_store.cache_clear()
    yield
    idempotency.idempotency_store.cache_clear()


def _event(**fields: Any) -> dict[str, Any]:
    base = {"loop_id": "l1", "iteration": 3, "generation": 0, "iterations_per_execution": 500}
    return base | fields


def test_a_retry_has_the_key_of_the_first_attempt() -> None:
    assert step_key(_event(reason="x")) == step_key(_event(reason="x"))


def test_each_visit_of_a_state_in_an_execution_has_its_own_key() -> None:
    # Decide after Verify (no action) and Decide after a Cedar denial (STOP) at the same iteration
    after_verify = _event(allowed=False, action=None)
    after_denial = _event(allowed=False, action="STOP", outcome="ITERATION_LIMIT")
    assert step_key(after_verify) != step_key(after_denial)
    # The same iteration in the next execution (continued or resumed)
    assert step_key(_event()) != step_key(_event(generation=1))
    assert step_key(_event()) != step_key(_event(iteration=4))


def test_each_poll_of_a_pending_step_is_a_new_invocation_and_its_retry_is_not() -> None:
    first = _event()
    polls = [_event(polls=n, pending_step="iterate", commands={"agent#0": {}}) for n in (1, 2)]
    keys = [step_key(first), *(step_key(poll) for poll in polls)]
    assert len({str(key) for key in keys}) == 3
    assert step_key(polls[0]) == step_key(dict(polls[0]))  # a retry of a poll replays it
    # compact: evaluate of iteration N pending, and iterate of iteration N+1 pending, both at N
    assert step_key(_event(polls=1, pending_step="evaluate")) != step_key(
        _event(polls=1, pending_step="iterate")
    )


def test_a_baseline_at_iteration_n_does_not_share_iteration_ns_evaluate_key() -> None:
    # The Evaluate Lambda serves Baseline (input with baseline: true) and Evaluate
    baseline = _event(baseline=True)
    evaluate = _event()
    assert step_key(baseline) != step_key(evaluate)
    assert step_key(baseline) == {**(step_key(evaluate) or {}), "baseline": True}
    # Any other event's key is what it was before the flag existed
    assert (
        step_key(_event(baseline=False))
        == step_key(evaluate)
        == {
            "loop_id": "l1",
            "generation": 0,
            "iteration": 3,
            "action": None,
        }
    )


def test_an_event_without_a_loop_id_has_no_key() -> None:
    assert step_key({"iteration": 1}) is None
    assert step_key("not an object") is None


def test_without_a_table_a_local_run_is_not_idempotent_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_ADAPTERS", "local")
    monkeypatch.delenv("IDEMPOTENCY_TABLE_NAME", raising=False)
    calls: list[int] = []

    @idempotent_step("probe")
    def handler(event: Any, context: Any) -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert [handler(_event(), None), handler(_event(), None)] == [{"n": 1}, {"n": 2}]
    warnings = [r.getMessage() for r in caplog.records if "idempotency is off" in r.getMessage()]
    assert len(warnings) == 1  # once per container


def test_without_a_table_an_aws_step_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWRIGHT_ADAPTERS", "aws")
    monkeypatch.delenv("IDEMPOTENCY_TABLE_NAME", raising=False)

    @idempotent_step("probe")
    def handler(event: Any, context: Any) -> None:
        raise AssertionError("must not run")

    with pytest.raises(ConfigError, match="IDEMPOTENCY_TABLE_NAME is required"):
        handler(_event(), None)


def test_the_in_progress_error_is_powertools_exception_name() -> None:
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    assert IdempotencyAlreadyInProgressError.__name__ == idempotency.IN_PROGRESS_ERROR
