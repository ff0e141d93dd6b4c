"""PlanDispatch, the synthesized state machine, executed locally (issue 5 "Done when": the state
machine for dispatch is in the CDK stack and executed locally in a test).

moto runs the ASL of PlanDispatch and of the loop state machine; every Lambda is the real handler
with the local adapters; each task's loop runs as executions of the loop state machine in the
same moto, its agent a one-line Python command in the task's git worktree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopwright.engine.plan_stepfunctions import LocalPlanStepFunctions
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models.plans import ActivityEvent, ActivityEventType, PlanStatus, TaskState
from loopwright.plans.errors import PlanConflictError
from loopwright.plans.service import create_plan
from loopwright.plans.validation import parse_draft
from tests.integration.helpers import git, make_repo
from tests.integration.test_plans_e2e import diamond_draft, task

EV = ActivityEventType


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synthesize_template()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws", {"README.md": "shop\n"})


@pytest.fixture
def local(template: dict[str, Any], workspace: Path) -> Iterator[LocalPlanStepFunctions]:
    with LocalPlanStepFunctions(template, workspace) as opened:
        yield opened


def _at(events: list[ActivityEvent], kind: ActivityEventType, task_id: str) -> float:
    [event] = [e for e in events if e.type is kind and e.task_id == task_id]
    return event.timestamp.timestamp()


@pytest.mark.slow
def test_a_diamond_runs_through_the_map_state_with_its_middle_tasks_in_parallel(
    local: LocalPlanStepFunctions, workspace: Path
) -> None:
    assert local.store is not None
    plan = create_plan(local.store, "shop", parse_draft(diamond_draft()))
    executor = local.executor(poll_seconds=1)

    dispatched = executor.dispatch("shop", plan.plan_id, concurrency=4)
    assert dispatched.status in (PlanStatus.DISPATCHING, PlanStatus.RUNNING)
    assert {t.loop_id for t in dispatched.tasks} == {f"{plan.plan_id}.{t}" for t in "abcd"}
    summary = local.wait("shop", plan.plan_id, timeout_seconds=120)
    with pytest.raises(PlanConflictError):  # one dispatch per plan
        executor.dispatch("shop", plan.plan_id, concurrency=4)

    assert summary.status == "SUCCEEDED", summary
    plan = local.store.get_plan("shop", plan.plan_id)
    assert plan.status is PlanStatus.RUNNING and plan.completed_at is not None
    reasons = {t.task_id: t.reason for t in plan.tasks}
    assert {t.task_id: t.status for t in plan.tasks} == dict.fromkeys("abcd", TaskState.COMPLETED), reasons
    assert all(t.head_commit and t.loop_id == f"{plan.plan_id}.{t.task_id}" for t in plan.tasks)
    events = local.store.list_events("shop", plan.plan_id)
    # B and C ran at the same time: each started before the other completed
    assert _at(events, EV.TASK_STARTED, "b") < _at(events, EV.TASK_COMPLETED, "c")
    assert _at(events, EV.TASK_STARTED, "c") < _at(events, EV.TASK_COMPLETED, "b")
    # D started from the merge of B's and C's results
    assert _at(events, EV.TASK_STARTED, "d") > max(_at(events, EV.TASK_COMPLETED, t) for t in "bc")
    d_head = plan.task("d").head_commit
    assert d_head is not None
    assert set(git(workspace, "ls-tree", "--name-only", d_head).split()) >= {
        "a.txt",
        "b.txt",
        "c.txt",
        "d.txt",
    }
    assert not (workspace / "a.txt").exists()  # the user's checkout is never touched
    kinds = [e.type for e in events]
    assert kinds[:2] == [EV.PLAN_CREATED, EV.PLAN_DISPATCHED] and kinds[-1] is EV.PLAN_COMPLETED
    assert kinds.count(EV.TASK_STARTED) == kinds.count(EV.TASK_COMPLETED) == 4
    # the task loops ran as executions of the loop state machine, with the real handlers
    assert local.local.invocations.count("Loopwright-plan_start_task") == 4
    assert local.local.invocations.count("Loopwright-authorize") >= 4

    # verify through the AWS executor: it answers VERIFYING and a verify execution of PlanDispatch
    # (the real plan_verify handler) runs gate:all in the local sandbox on the merged result
    verifying = executor.verify("shop", plan.plan_id)
    assert verifying.status in (PlanStatus.VERIFYING, PlanStatus.VERIFIED)
    summary = local.wait("shop", plan.plan_id, timeout_seconds=120, verify=True)
    assert summary.status == "SUCCEEDED", summary
    assert summary.output is not None and summary.output["status"] == "VERIFIED"
    verified = local.store.get_plan("shop", plan.plan_id)
    assert verified.status is PlanStatus.VERIFIED, verified.gate_result
    assert [e.type for e in local.store.list_events("shop", plan.plan_id)][-1] is EV.PLAN_VERIFIED
    assert local.local.invocations.count("Loopwright-plan_verify") == 1


@pytest.mark.slow
def test_a_failing_task_ends_error_its_dependents_skipped_the_rest_completed(
    local: LocalPlanStepFunctions,
) -> None:
    assert local.store is not None
    draft = diamond_draft(b=task("b", ["a"], needs="never.txt"))
    plan = create_plan(local.store, "shop", parse_draft(draft))

    local.executor(poll_seconds=1).dispatch("shop", plan.plan_id, concurrency=2)
    summary = local.wait("shop", plan.plan_id, timeout_seconds=120)

    assert summary.status == "SUCCEEDED", summary
    plan = local.store.get_plan("shop", plan.plan_id)
    statuses = {t.task_id: t.status for t in plan.tasks}
    assert statuses == {
        "a": TaskState.COMPLETED,
        "b": TaskState.ERROR,
        "c": TaskState.COMPLETED,
        "d": TaskState.SKIPPED,
    }
    assert plan.status is PlanStatus.RUNNING and plan.is_partial
    assert "ITERATION_LIMIT" in (plan.task("b").reason or "")
    events = local.store.list_events("shop", plan.plan_id)
    completed = [e for e in events if e.type is EV.PLAN_COMPLETED]
    assert len(completed) == 1 and completed[0].evidence["partial"] is True
    assert [e.task_id for e in events if e.type is EV.TASK_SKIPPED] == ["d"]


@pytest.mark.slow
def test_a_dispatch_that_fails_after_its_retries_fails_the_plan_with_evidence(
    template: dict[str, Any], workspace: Path
) -> None:
    calls: list[int] = []

    def broken_next(event: Any, context: Any) -> Any:
        calls.append(1)
        raise RuntimeError("the plans table is gone")

    with LocalPlanStepFunctions(template, workspace, handlers={"plan_next": broken_next}) as local:
        assert local.store is not None
        plan = create_plan(local.store, "shop", parse_draft(diamond_draft()))
        local.executor(poll_seconds=1).dispatch("shop", plan.plan_id, concurrency=4)
        summary = local.wait("shop", plan.plan_id, timeout_seconds=120)
        plan = local.store.get_plan("shop", plan.plan_id)
        events = local.store.list_events("shop", plan.plan_id)

    assert summary.status == "FAILED" and len(calls) == 4, (
        calls,
        summary,
    )  # MaxAttempts 3 retries, then caught
    assert plan.status is PlanStatus.FAILED
    assert {t.task_id: t.status for t in plan.tasks} == {
        "a": TaskState.COMPLETED, "b": TaskState.SKIPPED, "c": TaskState.SKIPPED, "d": TaskState.SKIPPED,
    }  # fmt: skip
    assert plan.gate_result is not None and plan.gate_result.checks[0].name == "plan_dispatch"
    failed = events[-1]
    assert failed.type is EV.PLAN_FAILED and failed.evidence["error"] == "RuntimeError"
    assert "the plans table is gone" in failed.evidence["cause"]
    assert failed.evidence["execution"] == local.execution_arn("shop", plan.plan_id)
