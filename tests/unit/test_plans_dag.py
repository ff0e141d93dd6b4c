"""Plan drafts: shapes, DAG validation (cycle, unknown dependency, empty, oversized, duplicate),
each task's loop config, and waves."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from loopwright.models.plans import MAX_PLAN_TASKS, PlanDraft, PlanStatus, TaskState
from loopwright.plans.dag import compute_waves, dependents, find_cycle, ready_tasks, sink_tasks
from loopwright.plans.errors import PlanValidationError
from loopwright.plans.transitions import new_plan
from loopwright.plans.validation import default_gates, parse_draft, task_loop_config, validate_draft

CONDITION = {"type": "CUSTOM", "name": "check", "command": "true"}


def task(task_id: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "description": f"do {task_id}", "depends_on": list(depends_on), **extra}


def draft(*tasks: dict[str, Any], **extra: Any) -> PlanDraft:
    return parse_draft({"defaults": {"exit_conditions": [CONDITION]}, "tasks": list(tasks), **extra})


def problem(plan: PlanDraft) -> PlanValidationError:
    with pytest.raises(PlanValidationError) as caught:
        validate_draft(plan, "proj")
    return caught.value


def test_a_diamond_is_valid_and_has_three_waves() -> None:
    plan = draft(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))
    validate_draft(plan, "proj")
    assert compute_waves(plan.tasks) == [["a"], ["b", "c"], ["d"]]


def test_a_cycle_is_reported_with_its_path_and_the_field() -> None:
    error = problem(draft(task("a"), task("b", "a", "d"), task("c", "b"), task("d", "c")))
    assert error.field.startswith("tasks.") and error.field.endswith(".depends_on")
    # the path, each task depending on the next, closed on itself
    path = error.problem.split("cycle: ")[1].split(" (")[0].split(" -> ")
    assert path[0] == path[-1]
    assert set(path) == {"b", "c", "d"}
    assert len(path) == 4
    graph = {"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"]}
    assert all(nxt in graph[cur] for cur, nxt in itertools.pairwise(path))


def test_a_task_depending_on_itself_is_a_cycle() -> None:
    error = problem(draft(task("a", "a")))
    assert (error.field, "a -> a" in error.problem) == ("tasks.0.depends_on", True)


def test_an_unknown_dependency_names_the_task_and_the_dependency() -> None:
    error = problem(draft(task("a"), task("b", "ghost")))
    assert error.field == "tasks.1.depends_on"
    assert "'b' depends on unknown task 'ghost'" in error.problem
    assert "known tasks: a, b" in error.problem


def test_an_empty_plan_is_rejected() -> None:
    error = problem(draft())
    assert (error.field, error.problem) == ("tasks", "the plan has no tasks; give at least one")


def test_an_oversized_plan_is_rejected() -> None:
    error = problem(draft(*[task(f"t{i}") for i in range(MAX_PLAN_TASKS + 1)]))
    assert error.field == "tasks"
    assert f"{MAX_PLAN_TASKS + 1} tasks, more than {MAX_PLAN_TASKS}" in error.problem
    validate_draft(draft(*[task(f"t{i}") for i in range(MAX_PLAN_TASKS)]), "proj")


def test_a_plan_too_large_in_bytes_is_rejected() -> None:
    long_goal = {"loop": {"goal": "x" * 19_000}}
    error = problem(draft(*[task(f"t{i}", **long_goal) for i in range(20)]))
    assert error.field == "(plan)"
    assert "bytes of JSON" in error.problem


def test_a_duplicate_task_id_is_rejected() -> None:
    error = problem(draft(task("a"), task("b"), task("a")))
    assert error.field == "tasks.2.task_id"
    assert "already used by tasks.0" in error.problem


def test_a_repeated_dependency_is_a_shape_error() -> None:
    with pytest.raises(PlanValidationError) as caught:
        draft(task("a"), task("b", "a", "a"))
    assert caught.value.field == "tasks.1.depends_on"


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"tasks": [], "agent": {}}, "agent", "unknown field; allowed: defaults, gates, goal, tasks"),
        ({"tasks": [{"description": "x", "deps": []}]}, "tasks.0.deps", "allowed: depends_on"),
        ({"tasks": [{"task_id": "a.b", "description": "x"}]}, "tasks.0.task_id", "String should match"),
        ({"tasks": [{"task_id": "a"}]}, "tasks.0.description", "required field is missing"),
        ({"tasks": "a"}, "tasks", "valid list"),
        ({"gates": [{"name": "gate:x"}]}, "gates.0", "CUSTOM exit condition needs a 'command'"),
    ],
)
def test_shape_errors_name_the_field(data: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(PlanValidationError) as caught:
        parse_draft(data)
    assert caught.value.field == field
    assert text in caught.value.problem


def test_loop_config_errors_name_the_task_or_the_defaults() -> None:
    error = problem(draft(task("a", loop={"max_iterations": 0})))
    assert error.field == "tasks.0.loop.max_iterations"
    bad_default = parse_draft(
        {"defaults": {"exit_conditions": [CONDITION], "max_iterations": 0}, "tasks": [task("a")]}
    )
    assert problem(bad_default).field == "defaults.max_iterations"
    no_conditions = parse_draft({"tasks": [task("a")]})
    error = problem(no_conditions)
    assert error.field == "tasks.0.loop.exit_conditions"
    assert "set it in the plan's defaults or in the task's loop" in error.problem
    assert (
        problem(draft(task("a", loop={"agent": {"kind": "command"}}))).field == "tasks.0.loop.agent.command"
    )
    assert "allowed:" in problem(draft(task("a", loop={"max_iteration": 3}))).problem


def test_project_and_git_isolation_are_the_plans() -> None:
    assert problem(draft(task("a", loop={"project": "other"}))).field == "tasks.0.loop.project"
    assert problem(draft(task("a", loop={"git_isolation": False}))).field == "tasks.0.loop.git_isolation"
    with_project = parse_draft(
        {"defaults": {"exit_conditions": [CONDITION], "project": "x"}, "tasks": [task("a")]}
    )
    assert problem(with_project).field == "defaults.project"


def test_task_loop_config_merges_defaults_task_and_project() -> None:
    plan = parse_draft(
        {
            "defaults": {"exit_conditions": [CONDITION], "max_iterations": 7, "git_isolation": False},
            "tasks": [task("a"), task("b", loop={"goal": "special", "max_iterations": 2})],
        }
    )
    first = task_loop_config("proj", plan.defaults, plan.tasks[0])
    second = task_loop_config("proj", plan.defaults, plan.tasks[1], index=1)
    assert (first.goal, first.max_iterations, first.project, first.git_isolation) == (
        "do a",
        7,
        "proj",
        False,
    )
    assert (second.goal, second.max_iterations) == ("special", 2)


def test_default_gates_are_the_distinct_exit_conditions_of_the_tasks() -> None:
    other = {"type": "ALL_TESTS_PASS"}
    plan = draft(task("a"), task("b", loop={"exit_conditions": [CONDITION, other]}))
    gates = default_gates("proj", plan)
    assert [g.key for g in gates] == ["gate:check", "gate:all_tests_pass"]
    assert gates[0].command == ["true"]
    own = draft(task("a"), gates=[{"name": "gate:web", "command": "npm run gate:web"}])
    assert [g.key for g in default_gates("proj", own)] == ["gate:web"]


def test_waves_order_by_priority_then_position() -> None:
    plan = draft(
        task("a"), task("z", "a", priority=2), task("y", "a", priority=1), task("x", "a", priority=2)
    )
    assert compute_waves(plan.tasks) == [["a"], ["y", "z", "x"]]


def test_find_cycle_none_for_a_dag() -> None:
    assert find_cycle({"a": [], "b": ["a"]}) is None


def test_dependents_ready_and_sinks() -> None:
    plan = new_plan(
        draft(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"), task("e")), project="p"
    ).plan
    assert dependents(plan.tasks, "a") == ["b", "c", "d"]
    assert dependents(plan.tasks, "c") == ["d"]
    assert [t.task_id for t in ready_tasks(plan)] == ["a", "e"]
    for task_id in ("a", "b"):
        plan.task(task_id).status = TaskState.COMPLETED
    assert [t.task_id for t in ready_tasks(plan)] == ["c", "e"]
    assert [t.task_id for t in sink_tasks(plan)] == ["b"]
    assert plan.status is PlanStatus.DRAFT
