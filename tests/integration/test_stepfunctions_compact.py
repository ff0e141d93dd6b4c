"""The COMPACT variant of the synthesized state machine (one Lambda task per iteration,
infrastructure/compact_state_machine.py), executed locally by moto with the real handler
(functions/run_iteration): the same loop, the same events as the steps variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine.stepfunctions import load_handler
from loopwright.engine.stepfunctions_loops import execute_loop
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import IterationEventType, LoopOutcome, LoopPhase
from loopwright.steps.checkpoint import recover
from tests.integration.test_stepfunctions_local import (
    GREEN,
    MISSING_TOOL,
    _config,
    _event_types,
    _with_check,
    _workspace,
)


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    """Both variants' templates (a synth each, about 15 s; cached under build/)."""
    return {variant: synthesize_template(state_machine=variant) for variant in ("steps", "compact")}


@pytest.mark.slow
def test_the_compact_variant_meets_the_condition_with_the_steps_variants_events(
    tmp_path: Path, templates: dict[str, dict[str, Any]]
) -> None:
    # Given the same scripted loop for both variants
    config = _config(tmp_path)
    steps_ws, compact_ws = _workspace(tmp_path / "steps"), _workspace(tmp_path / "compact")
    # When each variant's synthesized state machine runs it
    steps = execute_loop(config, steps_ws, "by-steps", template=templates["steps"], timeout_seconds=60)
    compact = execute_loop(
        config, compact_ws, "by-compact", template=templates["compact"], timeout_seconds=60
    )
    # Then both meet the condition in 2 iterations, in one execution that succeeded
    for run in (steps, compact):
        assert (run.result.outcome, run.result.iterations) == (LoopOutcome.CONDITIONS_MET, 2)
        assert [e.status for e in run.executions] == ["SUCCEEDED"]
    # And record the same IterationEvent types in the same order
    assert _event_types(compact_ws, "by-compact") == _event_types(steps_ws, "by-steps")
    # And the compact execution's history is a fraction of the steps one's
    print(f"\nhistory events: steps {steps.executions[0].events}, compact {compact.executions[0].events}")
    assert compact.executions[0].events * 2 < steps.executions[0].events


@pytest.mark.slow
def test_the_compact_variant_completes_a_green_repository_at_the_baseline(
    tmp_path: Path, templates: dict[str, dict[str, Any]]
) -> None:
    config = _with_check(_config(tmp_path), GREEN)
    workspace = _workspace(tmp_path / "ws")
    run = execute_loop(config, workspace, "green", template=templates["compact"], timeout_seconds=60)
    # RunIteration evaluated the baseline in-process and ended the loop there: no agent call
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.CONDITIONS_MET, 0)
    assert [e.status for e in run.executions] == ["SUCCEEDED"]
    assert _event_types(workspace, "green") == [
        IterationEventType.LOOP_STARTED,
        IterationEventType.CHECKS_PINNED,
        IterationEventType.EXIT_CONDITIONS_EVALUATED,
        IterationEventType.VERIFICATION_PASSED,
        IterationEventType.LOOP_COMPLETED,
        IterationEventType.EVIDENCE_RECORDED,
    ]


@pytest.mark.slow
def test_the_compact_variant_pauses_on_a_condition_error_at_the_baseline(
    tmp_path: Path, templates: dict[str, dict[str, Any]]
) -> None:
    config = _with_check(_config(tmp_path), MISSING_TOOL)
    run = execute_loop(
        config, _workspace(tmp_path / "ws"), "broken", template=templates["compact"], timeout_seconds=60
    )
    assert (run.result.outcome, run.result.phase, run.result.iterations) == (None, LoopPhase.PAUSED, 0)
    assert [e.status for e in run.executions] == ["SUCCEEDED"]


@pytest.mark.slow
def test_the_compact_variant_continues_as_new_and_stops_at_the_cedar_limit(
    tmp_path: Path, templates: dict[str, dict[str, Any]]
) -> None:
    config = _config(tmp_path, max_iterations=5, done_after=None)
    run = execute_loop(
        config,
        _workspace(tmp_path / "ws"),
        "compact-long",
        iterations_per_execution=2,
        template=templates["compact"],
        timeout_seconds=60,
    )
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.ITERATION_LIMIT, 5)
    assert [e.name for e in run.executions] == ["compact-long-g0", "compact-long-g1", "compact-long-g2"]
    assert all(e.status == "SUCCEEDED" for e in run.executions)


@pytest.mark.slow
def test_a_failing_iteration_is_recorded_and_its_checkpoint_survives(
    tmp_path: Path, templates: dict[str, dict[str, Any]]
) -> None:
    # Given a run_iteration handler that works once, then always fails (not retried on its failure)
    real = load_handler("run_iteration")
    calls: list[int] = []

    def run_iteration(event: Any, context: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the agent host is gone")
        return real(event, context)

    workspace = _workspace(tmp_path / "ws")
    # When the loop runs
    run = execute_loop(
        _config(tmp_path, done_after=None),
        workspace,
        "compact-broken",
        template=templates["compact"],
        handlers={"run_iteration": run_iteration},
        timeout_seconds=60,
    )
    # Then Catch -> RecordFailure -> Failed: the loop is FAILED after one try of iteration 2
    assert run.result.outcome is LoopOutcome.FAILED
    assert [e.status for e in run.executions] == ["FAILED"]
    assert len(calls) == 2
    # And the checkpoint of the first iteration can still be recovered
    assert (
        recover(
            "compact-broken", SqliteStore(workspace / ".loopwright" / "loopwright.db")
        ).checkpoint.iteration
        == 1
    )
