"""Plans end to end on a real git repository with real loops (issue 5 "Done when").

Each task's agent is a one-line Python command that writes a file (after a pause, so parallel
tasks overlap); each task's exit condition checks its files; gate:all checks the merged result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopwright.engine.plan_dispatch import LocalPlans
from loopwright.models import LoopOutcome
from loopwright.models.plans import (
    INTEGRATION_CHECK,
    TASKS_CHECK,
    ActivityEvent,
    ActivityEventType,
    GateCheckStatus,
    Plan,
    PlanStatus,
    TaskState,
)
from loopwright.plans.decompose import ConditionPlanner
from loopwright.plans.errors import PlanConflictError, PlanNotFoundError, PlanValidationError
from loopwright.plans.service import create_plan, generate_plan
from loopwright.plans.validation import parse_draft
from tests.integration.helpers import git, make_repo

EV = ActivityEventType
WRITE = (
    "import pathlib,sys,time; time.sleep(float(sys.argv[2])); "
    "pathlib.Path(sys.argv[1]).write_text(sys.argv[3] if len(sys.argv) > 3 else 'done\\n')"
)


def exists(*names: str) -> list[str]:
    return [
        "python",
        "-c",
        f"import os,sys; sys.exit(0 if all(os.path.exists(n) for n in {list(names)!r}) else 1)",
    ]


def task(
    task_id: str,
    deps: list[str],
    *,
    writes: str | None = None,
    needs: str | None = None,
    delay: float = 0.0,
    text: str = "done\n",
) -> dict[str, Any]:
    """A task whose agent writes ``writes`` (default ``<task_id>.txt``) and whose condition needs
    its dependencies' files and ``needs`` (default: what it writes)."""
    name = writes or f"{task_id}.txt"
    return {
        "task_id": task_id,
        "description": f"write {name}",
        "depends_on": deps,
        "loop": {
            "agent": {"kind": "command", "command": ["python", "-c", WRITE, name, str(delay), text]},
            "exit_conditions": [
                {
                    "type": "CUSTOM",
                    "name": "files",
                    "command": exists(*[f"{d}.txt" for d in deps], needs or name),
                }
            ],
        },
    }


def diamond_draft(**overrides: dict[str, Any]) -> dict[str, Any]:
    tasks = {
        "a": task("a", []),
        "b": task("b", ["a"], delay=0.6),
        "c": task("c", ["a"], delay=0.6),
        "d": task("d", ["b", "c"]),
    }
    tasks.update(overrides)
    return {
        "goal": "write four files",
        "defaults": {"max_iterations": 1, "checkpoint_retention": 1},
        "tasks": list(tasks.values()),
        "gates": [{"name": "gate:files", "command": exists("a.txt", "b.txt", "c.txt", "d.txt")}],
    }


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws", {"README.md": "shop\n"})


@pytest.fixture
def plans(workspace: Path) -> Iterator[LocalPlans]:
    with LocalPlans(workspace) as opened:
        yield opened


def _events(plans: LocalPlans, plan: Plan) -> list[ActivityEvent]:
    return plans.store.list_events(plan.project, plan.plan_id)


def _at(events: list[ActivityEvent], kind: ActivityEventType, task_id: str) -> float:
    [event] = [e for e in events if e.type is kind and e.task_id == task_id]
    return event.timestamp.timestamp()


@pytest.mark.slow
def test_a_diamond_runs_its_middle_tasks_in_parallel_verifies_and_records_everything(
    workspace: Path, plans: LocalPlans
) -> None:
    user_head = git(workspace, "rev-parse", "HEAD")
    plan = create_plan(plans.store, "shop", parse_draft(diamond_draft()))

    plan = plans.dispatch("shop", plan.plan_id, concurrency=4)

    assert plan.status is PlanStatus.RUNNING and plan.completed_at is not None and not plan.is_partial
    assert [t.status for t in plan.tasks] == [TaskState.COMPLETED] * 4
    events = _events(plans, plan)
    # b and c ran at the same time: each started before the other completed
    assert _at(events, EV.TASK_STARTED, "b") < _at(events, EV.TASK_COMPLETED, "c")
    assert _at(events, EV.TASK_STARTED, "c") < _at(events, EV.TASK_COMPLETED, "b")
    # and d only after both
    assert _at(events, EV.TASK_STARTED, "d") >= max(_at(events, EV.TASK_COMPLETED, t) for t in "bc")

    plan = plans.verify("shop", plan.plan_id)

    assert plan.status is PlanStatus.VERIFIED and plan.verified_at is not None
    assert plan.gate_result is not None and plan.gate_result.passed
    assert [(c.name, c.status) for c in plan.gate_result.checks] == [
        (TASKS_CHECK, GateCheckStatus.PASSED),
        ("gate:files", GateCheckStatus.PASSED),
    ]
    events = _events(plans, plan)
    kinds = [(e.type.value, e.task_id) for e in events]
    assert kinds[:4] == [
        ("plan_created", None),
        ("plan_dispatched", None),
        ("task_started", "a"),
        ("task_completed", "a"),
    ]
    assert sorted(kinds[4:8]) == [
        ("task_completed", "b"),
        ("task_completed", "c"),
        ("task_started", "b"),
        ("task_started", "c"),
    ]
    assert kinds[8:] == [
        ("task_started", "d"),
        ("task_completed", "d"),
        ("plan_completed", None),
        ("verify_started", None),
        ("gate_checked", None),
        ("gate_checked", None),
        ("plan_verified", None),
    ]
    # evidence: each task's commit is its loop's branch head; d started from b and c's commits
    for t in plan.tasks:
        completed = next(e for e in events if e.type is EV.TASK_COMPLETED and e.task_id == t.task_id)
        assert completed.loop_id == f"{plan.plan_id}.{t.task_id}"
        assert completed.evidence["commit"] == git(
            workspace, "rev-parse", f"loopwright/{plan.plan_id}.{t.task_id}"
        )
        assert completed.evidence["commit"] == t.head_commit
    started_d = next(e for e in events if e.type is EV.TASK_STARTED and e.task_id == "d")
    assert started_d.evidence["dependency_commits"] == [
        plan.task("b").head_commit,
        plan.task("c").head_commit,
    ]
    gate = next(e for e in events if e.type is EV.GATE_CHECKED and e.evidence["check"] == "gate:files")
    assert len(gate.evidence["output_sha256"]) == 64 and gate.evidence["exit_code"] == 0
    # the loops are the engine's, in the plan's project; the user's checkout is untouched
    loops = plans.loops.list_loops(project="shop")
    assert sorted(s.loop_id for s in loops) == sorted(t.loop_id or "" for t in plan.tasks)
    assert {s.outcome for s in loops} == {LoopOutcome.CONDITIONS_MET}
    assert git(workspace, "rev-parse", "HEAD") == user_head
    assert not (workspace / "a.txt").exists()
    verified = workspace / ".loopwright" / "worktrees" / f"verify_{plan.plan_id}"
    assert sorted(p.name for p in verified.glob("*.txt")) == ["a.txt", "b.txt", "c.txt", "d.txt"]


@pytest.mark.slow
def test_a_plan_with_a_failing_task_ends_failed_with_the_right_checks(plans: LocalPlans) -> None:
    stuck = task("b", ["a"], writes="other.txt", needs="b.txt")  # its loop hits the iteration limit
    plan = create_plan(plans.store, "shop", parse_draft(diamond_draft(b=stuck)))

    plan = plans.dispatch("shop", plan.plan_id)

    status = {t.task_id: t.status for t in plan.tasks}
    assert status == {
        "a": TaskState.COMPLETED,
        "b": TaskState.ERROR,
        "c": TaskState.COMPLETED,
        "d": TaskState.SKIPPED,
    }
    assert (plan.status, plan.is_partial) == (PlanStatus.RUNNING, True)  # the seed's "RUNNING (partial)"
    assert plan.task("b").outcome is LoopOutcome.ITERATION_LIMIT
    assert "iteration-limit" in (plan.task("b").reason or "")

    plan = plans.verify("shop", plan.plan_id)

    assert plan.status is PlanStatus.FAILED
    assert plan.gate_result is not None
    checks = {c.name: c for c in plan.gate_result.checks}
    assert list(checks) == [TASKS_CHECK, "gate:files"]
    assert checks[TASKS_CHECK].status is GateCheckStatus.FAILED
    assert "b ERROR" in checks[TASKS_CHECK].message and "d SKIPPED" in checks[TASKS_CHECK].message
    assert (checks["gate:files"].status, checks["gate:files"].exit_code) == (GateCheckStatus.FAILED, 1)
    events = _events(plans, plan)
    assert [e.type for e in events[-4:]] == [
        EV.VERIFY_STARTED,
        EV.GATE_CHECKED,
        EV.GATE_CHECKED,
        EV.PLAN_FAILED,
    ]
    assert events[-1].evidence["failed_checks"] == [TASKS_CHECK, "gate:files"]
    assert [e.task_id for e in events if e.type is EV.TASK_FAILED] == ["b"]
    assert [e.task_id for e in events if e.type is EV.TASK_SKIPPED] == ["d"]
    with pytest.raises(PlanConflictError):  # no automatic retry
        plans.verify("shop", plan.plan_id)


@pytest.mark.slow
def test_conflicting_results_fail_the_dependent_task_and_the_integration(plans: LocalPlans) -> None:
    draft = diamond_draft(
        b=task("b", ["a"], writes="shared.txt", text="from b\n"),
        c=task("c", ["a"], writes="shared.txt", text="from c\n"),
    )
    plan = plans.dispatch("shop", create_plan(plans.store, "shop", parse_draft(draft)).plan_id)

    assert plan.task("d").status is TaskState.ERROR
    assert "conflict in shared.txt" in (plan.task("d").reason or "")
    plan = plans.verify("shop", plan.plan_id)
    assert plan.gate_result is not None
    assert [(c.name, c.status) for c in plan.gate_result.checks] == [
        (TASKS_CHECK, GateCheckStatus.FAILED),
        (INTEGRATION_CHECK, GateCheckStatus.FAILED),
        ("gate:files", GateCheckStatus.SKIPPED),
    ]
    assert plan.gate_result.checks[1].details["conflicts"] == ["shared.txt"]


@pytest.mark.parametrize(
    ("tasks", "field"),
    [
        ([task("a", ["b"]), task("b", ["a"])], "tasks.0.depends_on"),  # cycle
        ([task("a", ["ghost"])], "tasks.0.depends_on"),  # unknown dependency
        ([], "tasks"),  # empty
        ([task(f"t{i}", []) for i in range(51)], "tasks"),  # oversized
        ([task("a", []), task("a", [])], "tasks.1.task_id"),  # duplicate
    ],
)
def test_bad_plans_are_rejected_and_nothing_is_dispatched(
    plans: LocalPlans, tasks: list[dict[str, Any]], field: str
) -> None:
    draft = parse_draft({"defaults": {"max_iterations": 1}, "tasks": tasks})
    with pytest.raises(PlanValidationError) as caught:
        create_plan(plans.store, "shop", draft)
    assert caught.value.field == field
    assert plans.store.list_plans("shop") == []
    assert plans.loops.list_loops() == []


def test_a_failed_generated_plan_is_recorded_and_never_dispatched(workspace: Path, plans: LocalPlans) -> None:
    from loopwright.models import LoopConfig, LoopState
    from loopwright.plans.inspect import build_packet

    succeeded = LoopState(
        loop_id="loop_ok",
        project="shop",
        config=LoopConfig.model_validate(
            {"goal": "g", "project": "shop", "exit_conditions": [{"type": "CUSTOM", "command": "true"}]}
        ),
        outcome=LoopOutcome.CONDITIONS_MET,
    )
    plan = generate_plan(plans.store, ConditionPlanner(), build_packet(succeeded, [], []))
    assert plan.status is PlanStatus.FAILED
    assert [e.type for e in _events(plans, plan)] == [EV.PLAN_CREATED, EV.PLAN_FAILED]
    with pytest.raises(PlanConflictError):
        plans.dispatch("shop", plan.plan_id)
    assert plans.loops.list_loops() == []


@pytest.mark.slow
def test_plans_of_one_project_are_invisible_to_another(plans: LocalPlans) -> None:
    draft = parse_draft({"defaults": {"max_iterations": 1}, "tasks": [task("a", [])]})
    plan = create_plan(plans.store, "shop", draft)
    for action in (
        lambda: plans.store.get_plan("bank", plan.plan_id),
        lambda: plans.dispatch("bank", plan.plan_id),
        lambda: plans.verify("bank", plan.plan_id),
    ):
        with pytest.raises(PlanNotFoundError):
            action()
    assert plans.store.list_plans("bank") == []
    assert plans.store.get_plan("shop", plan.plan_id).status is PlanStatus.DRAFT  # untouched
    plan = plans.dispatch("shop", plan.plan_id)
    assert plan.tasks[0].status is TaskState.COMPLETED
    assert [s.project for s in plans.loops.list_loops()] == ["shop"]
    assert plans.loops.list_loops(project="bank") == []
