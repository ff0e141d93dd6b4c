"""A loop longer than one execution's history allows, through the SYNTHESIZED state machine run
locally (loopwright.engine.stepfunctions): issue 3's "2,000-iteration loop with a no-op agent
that crosses at least two executions, with the largest execution's event count printed".

Quota: 25,000 events in one execution's history (AWS Step Functions service quotas, "Maximum
execution history size"); each execution runs ``DEFAULT_ITERATIONS_PER_EXECUTION`` (500)
iterations, then continues as a new execution.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine.stepfunctions_loops import execute_loop
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import (
    DEFAULT_ITERATIONS_PER_EXECUTION,
    AgentRequest,
    ExitConditionStatusValue,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
)

ITERATIONS = 2_000
#: AWS Step Functions quota: events in one execution's history.
HISTORY_QUOTA_EVENTS = 25_000
#: "Well below" the quota: room left for retries (each retry adds about 5 events).
HISTORY_CEILING_EVENTS = int(HISTORY_QUOTA_EVENTS * 0.8)


def no_op_agent(request: AgentRequest) -> None:
    """The agent of this loop: does nothing, reports nothing."""
    return None


def _config() -> LoopConfig:
    """2,000 iterations of the no-op agent; one CUSTOM condition that never holds (``false``: a
    process that exits 1 at once), so Cedar's ``iteration-limit`` policy ends the loop."""
    return LoopConfig.model_validate(
        {
            "goal": "run 2,000 iterations through the state machine",
            "max_iterations": ITERATIONS,
            "exit_conditions": [{"type": "CUSTOM", "name": "never", "command": ["false"]}],
            "agent": {"kind": "python", "function": f"{__name__}:no_op_agent"},
            "git_isolation": False,
        }
    )


@pytest.mark.slow
def test_a_2000_iteration_loop_crosses_executions_each_well_below_the_history_quota(
    tmp_path: Path, record_property: Any
) -> None:
    # Given a 2,000-iteration loop with a no-op agent, 500 iterations per execution (the default)
    template = synthesize_template()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    started = time.monotonic()
    # When the synthesized state machine runs it
    # (the steps' idempotency records in memory: moto's DynamoDB would triple the run's time)
    run = execute_loop(
        _config(), workspace, "long-2000", template=template, timeout_seconds=600, idempotency="memory"
    )
    seconds = time.monotonic() - started
    counts = [e.events for e in run.executions]
    largest = run.largest_execution_events
    print(
        f"\n2,000 iterations in {seconds:.1f} s ({seconds / ITERATIONS * 1000:.1f} ms an iteration), "
        f"{len(run.executions)} executions, history events {counts}, largest {largest} "
        f"(quota {HISTORY_QUOTA_EVENTS})"
    )
    record_property("largest_execution_events", largest)
    record_property("seconds", round(seconds, 1))
    # Then the loop ran all 2,000 iterations and Cedar stopped it at its limit
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.ITERATION_LIMIT, ITERATIONS)
    # And the check really ran every time (NOT_MET, not ERROR)
    assert [c.status for c in run.result.exit_conditions] == [ExitConditionStatusValue.NOT_MET]
    # And it crossed executions g0..g3 of 500 iterations each, plus g4 that records the denial
    generations = ITERATIONS // DEFAULT_ITERATIONS_PER_EXECUTION
    assert [e.name for e in run.executions] == [f"long-2000-g{g}" for g in range(generations + 1)]
    assert all(e.status == "SUCCEEDED" for e in run.executions)
    # And every execution's history stays well below the 25,000-event quota
    assert largest < HISTORY_CEILING_EVENTS, counts
    # And every iteration was recorded once
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    completed = store.list_events("long-2000", types=[IterationEventType.ITERATION_COMPLETED])
    assert [e.iteration for e in completed] == list(range(1, ITERATIONS + 1))
