"""The PlanDispatch steps (loopwright.cloud.plan_steps) over in-memory ports, without AWS."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.cloud import plan_steps
from loopwright.cloud.plan_steps import DispatchInput, DispatchState, PlanStepPorts, TaskItem
from loopwright.exceptions import ConfigError
from loopwright.models import IterationEventType, LoopOutcome, TaskRunRequest
from loopwright.models.plans import ActivityEvent, ActivityEventType, Plan, PlanStatus, TaskState
from loopwright.plans.errors import PlanConflictError
from loopwright.plans.service import create_plan
from loopwright.plans.validation import parse_draft
from tests.fakes import MemoryStore

EV = ActivityEventType
CONDITION = [{"type": "CUSTOM", "command": "true"}]
AGENT = {"kind": "command", "command": ["true"]}


class Harness:
    """A plan store, a loop store, recorded execution starts and optional failures."""

    def __init__(self, tmp: Path) -> None:
        self.plans = SqlitePlanStore(tmp / "plans.db")
        self.loops = MemoryStore()
        self.started: list[tuple[str, str]] = []
        self.bad_config: set[str] = set()
        self.branches: list[tuple[str, list[str]]] = []
        self.ports = PlanStepPorts(
            plans=self.plans,
            loops=self.loops,
            start_execution=self.start,
            branches=self.make_branches,
            check_loop=self.check,
        )

    def start(self, name: str, payload: str) -> str:
        self.started.append((name, payload))
        return f"arn:{name}"

    def check(self, config: Any, repository: str | None) -> None:
        if config.goal in self.bad_config:
            raise ConfigError("agent.kind: not on AWS")

    def make_branches(self, request: TaskRunRequest, repository: str | None) -> Any:
        harness = self

        class Branches:
            def prepare_task(self, loop_id: str, heads: Sequence[str]) -> dict[str, Any]:
                harness.branches.append((loop_id, list(heads)))
                return {"branch": f"loopwright/{loop_id}"}

        return Branches()

    def plan(self, tasks: dict[str, list[str]]) -> Plan:
        draft = {
            "defaults": {"exit_conditions": CONDITION, "agent": AGENT},
            "tasks": [{"task_id": t, "description": t, "depends_on": d} for t, d in tasks.items()],
        }
        return create_plan(self.plans, "shop", parse_draft(draft))

    def events(self, plan: Plan) -> list[ActivityEvent]:
        return self.plans.list_events("shop", plan.plan_id)

    def end_loop(self, loop_id: str, outcome: LoopOutcome, head: str = "c0ffee") -> None:
        state = self.loops.get_state(loop_id)
        state.outcome = outcome
        state.head_commit = head
        self.loops.save_state(state)

    def run_task(self, item: TaskItem, outcome: LoopOutcome = LoopOutcome.CONDITIONS_MET) -> TaskItem:
        started = plan_steps.start_task(item, self.ports)
        if started.ended:
            return started
        assert started.loop_id is not None
        self.end_loop(started.loop_id, outcome, head=f"head-{item.task_id}")
        checked = plan_steps.check_task(started, self.ports)
        assert checked.ended
        return plan_steps.finish_task(checked, self.ports)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.plans.close()


def _input(plan: Plan, **fields: Any) -> DispatchInput:
    return DispatchInput(project="shop", plan_id=plan.plan_id, poll_seconds=2, **fields)


def test_begin_runs_the_plan_and_returns_the_first_wave(h: Harness) -> None:
    plan = h.plan({"a": [], "b": ["a"], "c": []})
    state = plan_steps.begin(_input(plan, concurrency=3), h.ports)
    assert (state.more, [i.task_id for i in state.ready], state.concurrency) == (True, ["a", "c"], 3)
    assert state.ready[0].loop_id == f"{plan.plan_id}.a" and state.ready[0].wait_seconds == 2
    assert h.plans.get_plan("shop", plan.plan_id).status is PlanStatus.RUNNING
    assert [e.type for e in h.events(plan)] == [EV.PLAN_CREATED, EV.PLAN_DISPATCHED]
    # a retried Begin changes nothing and gives the same wave
    again = plan_steps.begin(_input(plan, concurrency=3), h.ports)
    assert [i.task_id for i in again.ready] == ["a", "c"] and len(h.events(plan)) == 2


def test_begin_refuses_a_plan_that_cannot_be_dispatched(h: Harness) -> None:
    plan = h.plan({"a": []})
    h.plans.save_plan("shop", plan.model_copy(update={"status": PlanStatus.CANCELLED}))
    with pytest.raises(PlanConflictError, match="CANCELLED"):
        plan_steps.begin(_input(plan), h.ports)


def test_start_task_starts_the_loop_once_even_when_retried(h: Harness) -> None:
    plan = h.plan({"a": []})
    (item,) = plan_steps.begin(_input(plan, repository="/ws"), h.ports).ready
    started = plan_steps.start_task(item, h.ports)
    retried = plan_steps.start_task(item, h.ports)
    loop_id = f"{plan.plan_id}.a"
    assert started.loop_id == retried.loop_id == loop_id and not started.ended
    assert h.loops.get_state(loop_id).workspace == "/ws"
    assert h.loops.get_state(loop_id).branch == f"loopwright/{loop_id}"
    assert h.loops.types(loop_id).count(IterationEventType.LOOP_STARTED) == 1
    assert [name for name, _ in h.started] == [f"{loop_id}-g0", f"{loop_id}-g0"]  # same name: idempotent
    assert [e.type for e in h.events(plan)].count(EV.TASK_STARTED) == 1


def test_a_task_whose_loop_cannot_start_ends_error_and_its_dependents_are_skipped(h: Harness) -> None:
    plan = h.plan({"a": [], "b": ["a"], "c": []})
    h.bad_config.add("a")
    ready = plan_steps.begin(_input(plan), h.ports).ready
    ended = plan_steps.start_task(ready[0], h.ports)
    assert ended.ended and h.started == []
    stored = h.plans.get_plan("shop", plan.plan_id)
    assert [t.status for t in stored.tasks] == [TaskState.ERROR, TaskState.SKIPPED, TaskState.CREATED]
    assert "not on AWS" in (stored.task("a").reason or "")


def test_check_task_polls_with_a_growing_wait_until_the_loop_ends(h: Harness) -> None:
    plan = h.plan({"a": []})
    (item,) = plan_steps.begin(_input(plan), h.ports).ready
    item = plan_steps.start_task(item, h.ports)
    waits = []
    for _ in range(4):
        item = plan_steps.check_task(item, h.ports)
        waits.append(item.wait_seconds)
    assert not item.ended and waits == [3, 5, 8, 12] and item.polls == 4
    item = item.model_copy(update={"wait_seconds": plan_steps.MAX_POLL_SECONDS})
    assert plan_steps.check_task(item, h.ports).wait_seconds == plan_steps.MAX_POLL_SECONDS
    assert item.loop_id is not None
    h.end_loop(item.loop_id, LoopOutcome.CONDITIONS_MET)
    assert plan_steps.check_task(item, h.ports).ended


def test_waves_run_the_plan_to_the_end_with_partial_failure(h: Harness) -> None:
    plan = h.plan({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    state: DispatchState = plan_steps.begin(_input(plan), h.ports)
    waves = []
    while state.more:
        waves.append([i.task_id for i in state.ready])
        for item in state.ready:
            h.run_task(
                item, LoopOutcome.ITERATION_LIMIT if item.task_id == "b" else LoopOutcome.CONDITIONS_MET
            )
        state = plan_steps.next_wave(state, h.ports)
    assert waves == [["a"], ["b", "c"]]
    stored = h.plans.get_plan("shop", plan.plan_id)
    statuses = {t.task_id: t.status for t in stored.tasks}
    assert statuses == {
        "a": TaskState.COMPLETED,
        "b": TaskState.ERROR,
        "c": TaskState.COMPLETED,
        "d": TaskState.SKIPPED,
    }
    assert stored.status is PlanStatus.RUNNING and stored.completed_at is not None
    assert h.branches[1:] == [(f"{plan.plan_id}.b", ["head-a"]), (f"{plan.plan_id}.c", ["head-a"])]
    assert h.events(plan)[-1].type is EV.PLAN_COMPLETED
    # finishing again (a retried FinishTask) records nothing more
    count = len(h.events(plan))
    plan_steps.finish_task(TaskItem(project="shop", plan_id=plan.plan_id, task_id="a", loop_id="x"), h.ports)
    assert len(h.events(plan)) == count


def test_a_caught_error_ends_the_task_error_and_asks_its_loop_to_stop(h: Harness) -> None:
    plan = h.plan({"a": [], "b": []})
    ready = plan_steps.begin(_input(plan), h.ports).ready
    item = plan_steps.start_task(ready[0], h.ports)
    failed = item.model_copy(update={"error": {"Error": "Lambda.Unknown", "Cause": "boom"}})
    assert plan_steps.finish_task(failed, h.ports).ended
    stored = h.plans.get_plan("shop", plan.plan_id)
    assert stored.task("a").status is TaskState.ERROR and "Lambda.Unknown: boom" in (
        stored.task("a").reason or ""
    )
    assert item.loop_id is not None and h.loops.stop_requested(item.loop_id)
    assert stored.task("b").status is TaskState.CREATED  # the others go on


def test_concurrent_writers_are_reloaded_and_applied_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = h.plan({"a": [], "b": []})
    ready = plan_steps.begin(_input(plan), h.ports).ready
    real_save = h.plans.save_plan
    lost = []

    def save_after_another_writer(project: str, changed: Plan, events: Sequence[ActivityEvent] = ()) -> Plan:
        if not lost:  # another task's write lands first
            lost.append(1)
            plan_steps.start_task(ready[1], h.ports)
        return real_save(project, changed, events)

    monkeypatch.setattr(h.plans, "save_plan", save_after_another_writer)
    plan_steps.start_task(ready[0], h.ports)
    stored = h.plans.get_plan("shop", plan.plan_id)
    assert [t.status for t in stored.tasks] == [TaskState.RUNNING, TaskState.RUNNING]


def test_record_failure_fails_the_plan_with_evidence(h: Harness) -> None:
    plan = h.plan({"a": [], "b": ["a"]})
    state = plan_steps.begin(_input(plan), h.ports)
    item = plan_steps.start_task(state.ready[0], h.ports)
    failure = state.model_copy(
        update={"error": {"Error": "States.Timeout", "Cause": "x" * 5000}, "execution": "arn:exec"}
    )
    out = plan_steps.record_failure(failure, h.ports)
    assert not out.more
    stored = h.plans.get_plan("shop", plan.plan_id)
    assert stored.status is PlanStatus.FAILED
    assert [t.status for t in stored.tasks] == [TaskState.ERROR, TaskState.SKIPPED]
    assert stored.gate_result is not None and stored.gate_result.checks[0].name == plan_steps.DISPATCH_CHECK
    last = h.events(plan)[-1]
    assert last.type is EV.PLAN_FAILED and last.evidence["error"] == "States.Timeout"
    assert (
        last.evidence["execution"] == "arn:exec" and len(last.evidence["cause"]) == plan_steps.MAX_CAUSE_CHARS
    )
    assert item.loop_id is not None and h.loops.stop_requested(item.loop_id)
    # a plan that already ended is left alone
    plan_steps.record_failure(failure, h.ports)
    assert h.events(plan)[-1] == last


def test_execution_names_keep_projects_apart() -> None:
    a = plan_steps.dispatch_execution_name("shop", "plan_0123456789ab")
    assert a == plan_steps.dispatch_execution_name("shop", "plan_0123456789ab")
    assert a != plan_steps.dispatch_execution_name("other", "plan_0123456789ab")
    assert a.startswith("plan_0123456789ab-") and len(a) <= 80


def test_a_task_loop_on_aws_needs_a_command_agent_and_a_pushed_repository() -> None:
    from loopwright.cloud.plan_runtime import check_task_loop
    from loopwright.models import LoopConfig

    agent = {**AGENT, "timeout_seconds": 600}

    def config(**fields: Any) -> LoopConfig:
        return LoopConfig.model_validate(
            {"goal": "g", "exit_conditions": CONDITION, "agent": agent, **fields}
        )

    check_task_loop(config(), "local")  # locally the workspace folder is the repository
    with pytest.raises(ConfigError, match=r"repository: required"):
        check_task_loop(config(), "aws")
    with pytest.raises(ConfigError, match="push"):
        check_task_loop(config(repository={"url": "https://example.com/r.git"}), "aws")
    check_task_loop(config(repository={"url": "https://example.com/r.git", "push": True}), "aws")
    python_agent = {"kind": "python", "function": "m:f"}
    with pytest.raises(ConfigError, match=r"agent\.kind"):
        check_task_loop(
            config(agent=python_agent, repository={"url": "https://e.com/r.git", "push": True}), "aws"
        )
