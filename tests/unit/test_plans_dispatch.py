"""The dispatcher over a fake TaskRunner: tasks start as soon as their dependencies complete,
never more than the concurrency cap at once, and a failing task does not stop the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.engine.plan_dispatch import PlanDispatcher
from loopwright.models.plans import ActivityEventType, Plan, PlanStatus, TaskState
from loopwright.plans.errors import PlanConflictError
from loopwright.plans.service import create_plan
from loopwright.plans.validation import parse_draft
from tests.unit.plans_fakes import FakeRunner

EV = ActivityEventType


def _plan(store: SqlitePlanStore, *tasks: tuple[str, list[str]]) -> Plan:
    draft = parse_draft(
        {
            "defaults": {"exit_conditions": [{"type": "CUSTOM", "command": "true"}]},
            "tasks": [{"task_id": t, "description": t, "depends_on": deps} for t, deps in tasks],
        }
    )
    return create_plan(store, "p", draft)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with SqlitePlanStore(tmp_path / "db") as opened:
        yield opened


def _times(store: SqlitePlanStore, plan: Plan) -> dict[tuple[str, str], float]:
    return {
        (e.type.value, e.task_id or ""): e.timestamp.timestamp()
        for e in store.list_events("p", plan.plan_id)
        if e.task_id
    }


def test_a_task_starts_as_soon_as_its_own_dependencies_complete(store: SqlitePlanStore) -> None:
    plan = _plan(store, ("slow", []), ("fast", []), ("after_fast", ["fast"]))
    runner = FakeRunner({"slow": 0.6, "fast": 0.05, "after_fast": 0.05})
    done = PlanDispatcher(store, runner, concurrency=4).dispatch("p", plan.plan_id)
    assert {t.status for t in done.tasks} == {TaskState.COMPLETED}
    times = _times(store, plan)
    # not wave by wave: after_fast ran while slow (of the first wave) still ran
    assert times[("task_started", "after_fast")] < times[("task_completed", "slow")]
    assert times[("task_completed", "after_fast")] < times[("task_completed", "slow")]
    assert [r.dependency_heads for r in runner.requests if r.task_id == "after_fast"] == [["commit-fast"]]


def test_the_concurrency_cap_holds(store: SqlitePlanStore) -> None:
    plan = _plan(store, *[(f"t{i}", []) for i in range(6)])
    runner = FakeRunner(dict.fromkeys([f"t{i}" for i in range(6)], 0.1))
    PlanDispatcher(store, runner, concurrency=2).dispatch("p", plan.plan_id)
    assert runner.most_active == 2
    with pytest.raises(ValueError, match="concurrency"):
        PlanDispatcher(store, runner, concurrency=0)


def test_failures_mark_error_skip_dependents_and_the_others_go_on(store: SqlitePlanStore) -> None:
    plan = _plan(store, ("a", []), ("b", ["a"]), ("c", []), ("d", ["c"]), ("e", []))
    runner = FakeRunner({}, fail=frozenset({"a"}), broken=frozenset({"c"}))
    events: list[str] = []
    dispatcher = PlanDispatcher(store, runner, observer=lambda e, _p: events.append(e.type.value))
    done = dispatcher.dispatch("p", plan.plan_id)
    status = {t.task_id: t.status for t in done.tasks}
    assert status == {
        "a": TaskState.ERROR,
        "b": TaskState.SKIPPED,
        "c": TaskState.ERROR,
        "d": TaskState.SKIPPED,
        "e": TaskState.COMPLETED,
    }
    assert done.task("c").reason == "git exploded"
    assert (done.status, done.is_partial, done.completed_at is not None) == (PlanStatus.RUNNING, True, True)
    assert events[0] == "plan_dispatched" and events[-1] == "plan_completed"
    assert (
        events == [e.type.value for e in store.list_events("p", plan.plan_id)][1:]
    )  # all observed, in order
    with pytest.raises(PlanConflictError):
        dispatcher.dispatch("p", plan.plan_id)  # only a DRAFT plan is dispatched
