"""Plan state transitions: pure functions, each with its evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopwright.models import LoopOutcome, LoopPhase, LoopResult
from loopwright.models.plans import (
    PLAN_GENERATION_CHECK,
    ActivityEventType,
    GateCheck,
    GateCheckStatus,
    Plan,
    PlanStatus,
    TaskState,
)
from loopwright.plans.errors import PlanConflictError
from loopwright.plans.transitions import (
    begin_dispatch,
    begin_verify,
    cancel_plan,
    failed_plan,
    finish_task,
    finish_verify,
    mark_running,
    new_plan,
    start_task,
    task_run_request,
)
from loopwright.plans.validation import parse_draft

EV = ActivityEventType
T0 = datetime(2025, 2, 3, 12, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def diamond(**defaults: Any) -> Plan:
    tasks = [
        {"task_id": "a", "description": "a"},
        {"task_id": "b", "description": "b", "depends_on": ["a"]},
        {"task_id": "c", "description": "c", "depends_on": ["a"]},
        {"task_id": "d", "description": "d", "depends_on": ["b", "c"]},
    ]
    draft = parse_draft(
        {"defaults": {"exit_conditions": [{"type": "CUSTOM", "command": "true"}], **defaults}, "tasks": tasks}
    )
    return new_plan(draft, project="shop", plan_id="plan_1", now=T0).plan


def running(plan: Plan) -> Plan:
    return mark_running(begin_dispatch(plan, now=at(1)).plan, now=at(1)).plan


def result(loop_id: str, success: bool, commit: str = "abc123") -> LoopResult:
    return LoopResult(
        loop_id=loop_id,
        success=success,
        outcome=LoopOutcome.CONDITIONS_MET if success else LoopOutcome.ITERATION_LIMIT,
        phase=LoopPhase.COMPLETED,
        iterations=2,
        features_completed=1 if success else 0,
        features_total=1,
        sessions_used=1,
        total_tokens=300,
        errors_recovered=0,
        duration_seconds=1.5,
        stop_reason=None if success else "policy iteration-limit",
        branch=f"loopwright/{loop_id}",
        head_commit=commit,
    )


def test_new_plan_is_a_draft_with_a_plan_created_event() -> None:
    change = new_plan(
        parse_draft(
            {
                "tasks": [
                    {
                        "task_id": "a",
                        "description": "a",
                        "loop": {"exit_conditions": [{"type": "ALL_TESTS_PASS"}]},
                    }
                ]
            }
        ),
        project="shop",
        source_loop_id="loop_1",
        packet_id="pkt_1",
        now=T0,
    )
    assert change.plan.status is PlanStatus.DRAFT
    assert [g.key for g in change.plan.gates] == ["gate:all_tests_pass"]
    [event] = change.events
    assert (event.type, event.project, event.plan_id, event.timestamp) == (
        EV.PLAN_CREATED,
        "shop",
        change.plan.plan_id,
        T0,
    )
    assert event.evidence["waves"] == [["a"]]
    assert (event.evidence["source_loop_id"], event.evidence["packet_id"]) == ("loop_1", "pkt_1")


def test_an_invalid_draft_becomes_a_failed_plan_with_a_plan_generation_check_and_cannot_be_dispatched() -> (
    None
):
    draft = parse_draft({"tasks": [{"task_id": "a", "description": "a", "depends_on": ["a"]}]})
    change = new_plan(draft, project="shop", now=T0)
    plan = change.plan
    assert plan.status is PlanStatus.FAILED
    assert plan.gate_result is not None and not plan.gate_result.passed
    [check] = plan.gate_result.checks
    assert (check.name, check.passed, check.status) == (PLAN_GENERATION_CHECK, False, GateCheckStatus.FAILED)
    assert "cycle: a -> a" in check.message and "tasks.0.depends_on" in check.message
    assert [e.type for e in change.events] == [EV.PLAN_CREATED, EV.PLAN_FAILED]
    with pytest.raises(PlanConflictError, match="only a DRAFT plan can be dispatched"):
        begin_dispatch(plan)
    assert failed_plan("shop", "model gave no JSON").plan.gate_result is not None


def test_begin_dispatch_assigns_loop_ids_and_leaves_its_argument_alone() -> None:
    plan = diamond()
    change = begin_dispatch(plan, now=at(1))
    assert plan.status is PlanStatus.DRAFT and plan.tasks[0].loop_id is None
    assert change.plan.status is PlanStatus.DISPATCHING
    assert change.plan.executed_at == at(1)
    assert [t.loop_id for t in change.plan.tasks] == ["plan_1.a", "plan_1.b", "plan_1.c", "plan_1.d"]
    [event] = change.events
    assert event.type is EV.PLAN_DISPATCHED
    assert event.evidence["runs"][1] == {"task_id": "b", "loop_id": "plan_1.b"}
    assert event.evidence["waves"] == [["a"], ["b", "c"], ["d"]]
    assert mark_running(change.plan).plan.status is PlanStatus.RUNNING


def test_a_task_starts_only_when_its_dependencies_completed() -> None:
    plan = running(diamond())
    with pytest.raises(PlanConflictError, match="waits for a"):
        start_task(plan, "b")
    plan = start_task(plan, "a", now=at(2)).plan
    assert plan.task("a").status is TaskState.RUNNING
    with pytest.raises(PlanConflictError, match="not CREATED"):
        start_task(plan, "a")
    change = finish_task(plan, "a", result=result("plan_1.a", True, "c0ffee"), now=at(3))
    plan = change.plan
    [event] = change.events
    assert (event.type, event.task_id, event.loop_id) == (EV.TASK_COMPLETED, "a", "plan_1.a")
    assert event.evidence["commit"] == "c0ffee"
    assert event.evidence["outcome"] == "CONDITIONS_MET"
    started = start_task(plan, "b", now=at(4))
    assert started.events[0].evidence["dependency_commits"] == ["c0ffee"]
    request = task_run_request(started.plan, "b")
    assert (request.loop_id, request.dependency_heads, request.config.project) == (
        "plan_1.b",
        ["c0ffee"],
        "shop",
    )


def test_a_failed_task_is_error_its_dependents_skipped_the_others_go_on() -> None:
    plan = running(diamond())
    plan = start_task(plan, "a").plan
    plan = finish_task(plan, "a", result=result("plan_1.a", True)).plan
    plan = start_task(start_task(plan, "b").plan, "c").plan
    change = finish_task(plan, "b", result=result("plan_1.b", False))
    plan = change.plan
    assert [e.type for e in change.events] == [EV.TASK_FAILED, EV.TASK_SKIPPED]
    assert plan.task("b").status is TaskState.ERROR
    assert plan.task("b").reason == "the loop ended ITERATION_LIMIT: policy iteration-limit"
    assert plan.task("d").status is TaskState.SKIPPED
    assert "task b" in (plan.task("d").reason or "")
    assert plan.task("c").status is TaskState.RUNNING  # the others go on
    assert plan.status is PlanStatus.RUNNING and plan.completed_at is None
    change = finish_task(plan, "c", result=result("plan_1.c", True), now=at(9))
    assert [e.type for e in change.events] == [EV.TASK_COMPLETED, EV.PLAN_COMPLETED]
    plan = change.plan
    assert (plan.status, plan.completed_at, plan.is_partial) == (PlanStatus.RUNNING, at(9), True)
    completed = change.events[-1].evidence
    assert completed["partial"] is True
    assert completed["counts"] == {"completed": 2, "error": 1, "skipped": 1}


def test_a_task_that_could_not_start_is_error_with_the_reason() -> None:
    plan = start_task(running(diamond()), "a").plan
    change = finish_task(plan, "a", error="merge conflict in x.py")
    assert change.plan.task("a").reason == "merge conflict in x.py"
    assert [e.type for e in change.events] == [
        EV.TASK_FAILED,
        EV.TASK_SKIPPED,
        EV.TASK_SKIPPED,
        EV.TASK_SKIPPED,
        EV.PLAN_COMPLETED,
    ]
    with pytest.raises(PlanConflictError, match="already ended ERROR"):
        finish_task(change.plan, "a", error="again")


def _all_done(plan: Plan) -> Plan:
    for task_id in ("a", "b", "c", "d"):
        plan = start_task(plan, task_id).plan
        plan = finish_task(plan, task_id, result=result(f"plan_1.{task_id}", True)).plan
    return plan


def test_verify_needs_every_task_ended_and_records_each_check() -> None:
    plan = running(diamond())
    with pytest.raises(PlanConflictError, match="still runs tasks a, b, c, d"):
        begin_verify(plan)
    with pytest.raises(PlanConflictError, match="only a RUNNING plan can be verified"):
        begin_verify(diamond())
    plan = _all_done(plan)
    change = begin_verify(plan, now=at(20))
    assert (change.plan.status, change.plan.verify_run_id) == (PlanStatus.VERIFYING, "verify_plan_1")
    assert change.events[0].type is EV.VERIFY_STARTED
    checks = [
        GateCheck(name="gate:tasks", status=GateCheckStatus.PASSED, passed=True),
        GateCheck(
            name="gate:web", status=GateCheckStatus.FAILED, passed=False, exit_code=1, output_sha256="ab" * 32
        ),
    ]
    done = finish_verify(change.plan, checks, now=at(30))
    assert (done.plan.status, done.plan.verified_at) == (PlanStatus.FAILED, at(30))
    assert done.plan.gate_result is not None and done.plan.gate_result.checks == checks
    assert [e.type for e in done.events] == [EV.GATE_CHECKED, EV.GATE_CHECKED, EV.PLAN_FAILED]
    assert done.events[1].evidence["output_sha256"] == "ab" * 32
    assert done.events[2].evidence["failed_checks"] == ["gate:web"]
    with pytest.raises(PlanConflictError):  # no automatic retry of a FAILED plan
        begin_verify(done.plan)
    passed = finish_verify(change.plan, checks[:1])
    assert passed.plan.status is PlanStatus.VERIFIED
    assert passed.events[-1].type is EV.PLAN_VERIFIED


def test_gate_check_passed_matches_its_status() -> None:
    assert GateCheck.model_validate({"name": "x", "status": "PASSED"}).passed is True
    with pytest.raises(ValueError, match="contradicts"):
        GateCheck.model_validate({"name": "x", "status": "FAILED", "passed": True})


def test_cancel_a_draft_or_an_idle_running_plan() -> None:
    change = cancel_plan(diamond(), "not needed")
    assert change.plan.status is PlanStatus.CANCELLED
    assert {t.status for t in change.plan.tasks} == {TaskState.CANCELLED}
    assert change.events[0].type is EV.PLAN_CANCELLED
    with pytest.raises(PlanConflictError, match="runs tasks a"):
        cancel_plan(start_task(running(diamond()), "a").plan, "stop")
