"""gate:all parsing, the deterministic planner, inspection packets and plan generation."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from loopwright.models import (
    CommandResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)
from loopwright.models.plans import (
    PLAN_GENERATION_CHECK,
    GateCheckStatus,
    GateConfig,
    InspectionPacket,
    PlanDraft,
    PlanStatus,
    TaskState,
)
from loopwright.plans.dag import compute_waves
from loopwright.plans.decompose import ConditionPlanner, task_id_for
from loopwright.plans.errors import PlanGenerationError, PlanValidationError
from loopwright.plans.inspect import build_packet
from loopwright.plans.ports import Planner
from loopwright.plans.transitions import new_plan
from loopwright.plans.validation import validate_draft
from loopwright.plans.verify import output_digest, run_gates, tasks_check
from loopwright.ports import Sandbox
from tests.fakes import ScriptedSandbox


class _TimeoutSandbox(Sandbox):
    def run(self, command: Sequence[str], **_: object) -> CommandResult:  # type: ignore[override]
        return CommandResult(command=list(command), exit_code=None, timed_out=True, duration_seconds=30.0)


def test_run_gates_runs_every_gate_in_order_and_parses_each(tmp_path: Path) -> None:
    outputs = {
        "lint": (0, "All checks passed!\n"),
        "web": (1, "line\n" * 3000 + "2 failed\n"),
        "spec": (0, ""),
    }
    sandbox = ScriptedSandbox(lambda command, _n: outputs[command[-1]])
    gates = [GateConfig(name=f"gate:{n}", command=f"npm run {n}") for n in ("lint", "web", "spec")]

    checks = run_gates(gates, sandbox, tmp_path)

    assert sandbox.calls == [
        ["npm", "run", "lint"],
        ["npm", "run", "web"],
        ["npm", "run", "spec"],
    ]  # all, in order
    assert [(c.name, c.status, c.passed, c.exit_code) for c in checks] == [
        ("gate:lint", GateCheckStatus.PASSED, True, 0),
        ("gate:web", GateCheckStatus.FAILED, False, 1),
        ("gate:spec", GateCheckStatus.PASSED, True, 0),
    ]
    web = checks[1]
    assert web.output_sha256 == hashlib.sha256(outputs["web"][1].encode() + b"\0").hexdigest()
    assert web.output_sha256 == output_digest(outputs["web"][1], "")
    assert web.output_tail.endswith("2 failed\n") and len(web.output_tail) == 4000
    assert "2 failed" in web.message
    assert web.command == ["npm", "run", "web"]


def test_a_gate_that_times_out_is_a_timeout_check(tmp_path: Path) -> None:
    [check] = run_gates([GateConfig(name="gate:slow", command="sleep 99")], _TimeoutSandbox(), tmp_path)
    assert (check.status, check.passed, check.duration_seconds) == (GateCheckStatus.TIMEOUT, False, 30.0)


def test_a_typed_gate_uses_the_conditions_parser(tmp_path: Path) -> None:
    pytest_out = "FAILED test_x.py::test_a - assert 1 == 2\n1 failed, 4 passed in 0.1s\n"
    sandbox = ScriptedSandbox(lambda _c, _n: (1, pytest_out))
    [check] = run_gates(
        [GateConfig(name="gate:tests", type=ExitConditionType.ALL_TESTS_PASS)], sandbox, tmp_path
    )
    assert check.status is GateCheckStatus.FAILED
    assert check.details["failed"] == 1 and check.details["passed"] == 4
    assert "test_x.py::test_a" in check.message


def _state(outcome: LoopOutcome | None = LoopOutcome.ITERATION_LIMIT) -> LoopState:
    config = LoopConfig.model_validate(
        {
            "goal": "make it good",
            "project": "shop",
            "exit_conditions": [
                {"type": "LINTING_CLEAN"},
                {"type": "ALL_TESTS_PASS"},
                {"type": "BUILD_SUCCEEDS"},
                {"type": "CUSTOM", "name": "types check", "command": "mypy ."},
                {"type": "SECURITY_SCAN_CLEAN", "required": False},
            ],
            "agent": {"kind": "command", "command": "my-agent"},
            "max_iterations": 4,
        }
    )

    def status(name: str, kind: ExitConditionType, value: ExitConditionStatusValue) -> ExitConditionStatus:
        return ExitConditionStatus(
            name=name,
            type=kind,
            status=value,
            summary=f"{name} said no",
            failures=[f"{name}: f1"],
            stdout="big" * 100,
        )

    NOT_MET, MET = ExitConditionStatusValue.NOT_MET, ExitConditionStatusValue.MET
    return LoopState(
        loop_id="loop_1",
        project="shop",
        config=config,
        phase=LoopPhase.COMPLETED,
        iteration=4,
        outcome=outcome,
        outcome_reason="policy iteration-limit",
        exit_conditions=[
            status("linting_clean", ExitConditionType.LINTING_CLEAN, NOT_MET),
            status("all_tests_pass", ExitConditionType.ALL_TESTS_PASS, NOT_MET),
            status("build_succeeds", ExitConditionType.BUILD_SUCCEEDS, ExitConditionStatusValue.ERROR),
            status("types check", ExitConditionType.CUSTOM, NOT_MET),
            status("security_scan_clean", ExitConditionType.SECURITY_SCAN_CLEAN, MET),
        ],
        base_commit="base",
        head_commit="head",
        branch="loopwright/loop_1",
    )


def _packet() -> InspectionPacket:
    events = [
        IterationEvent(
            loop_id="loop_1",
            iteration=i,
            type=IterationEventType.ITERATION_COMPLETED,
            phase=LoopPhase.DECIDING,
        )
        for i in range(30)
    ]
    return build_packet(_state(), events, ["a.py", "b.py"])


def test_build_packet_keeps_failing_conditions_without_raw_output_and_bounds_events() -> None:
    packet = _packet()
    assert (packet.project, packet.loop_id, packet.outcome) == ("shop", "loop_1", LoopOutcome.ITERATION_LIMIT)
    assert [c.name for c in packet.failing_conditions] == [
        "linting_clean",
        "all_tests_pass",
        "build_succeeds",
        "types check",
    ]
    assert all(c.stdout == "" and c.failures for c in packet.failing_conditions)
    assert [e.iteration for e in packet.recent_events] == list(range(10, 30))
    assert packet.changed_files == ["a.py", "b.py"]


def test_a_running_loop_cannot_be_inspected() -> None:
    with pytest.raises(PlanValidationError, match="has not ended") as caught:
        build_packet(_state(outcome=None), [], [])
    assert caught.value.field == "loop_id"


def test_condition_planner_makes_one_task_per_failing_condition_in_tiers() -> None:
    draft = ConditionPlanner().plan(_packet())
    validate_draft(draft, "shop")
    ids = [t.task_id for t in draft.tasks]
    assert ids == ["build_succeeds", "all_tests_pass", "types-check", "linting_clean"]
    deps = {t.task_id: t.depends_on for t in draft.tasks}
    assert deps == {
        "build_succeeds": [],
        "all_tests_pass": ["build_succeeds"],
        "types-check": ["build_succeeds"],
        "linting_clean": ["all_tests_pass", "types-check"],
    }
    assert compute_waves(draft.tasks) == [
        ["build_succeeds"],
        ["all_tests_pass", "types-check"],
        ["linting_clean"],
    ]
    tests_task = draft.tasks[1]
    assert tests_task.loop["exit_conditions"] == [{"type": "ALL_TESTS_PASS"}]
    assert "all_tests_pass: f1" in tests_task.loop["goal"] and "make it good" in tests_task.loop["goal"]
    assert draft.defaults["agent"] == {
        "kind": "command",
        "command": ["my-agent"],
        "timeout_seconds": 1800.0,
        "idle_timeout_seconds": 900.0,
    }
    assert draft.defaults["max_iterations"] == 4 and "project" not in draft.defaults
    # gates: every required condition of the loop, including those that held
    assert [g.key for g in draft.gates] == [
        "gate:linting_clean",
        "gate:all_tests_pass",
        "gate:build_succeeds",
        "gate:types check",
    ]


def test_task_ids_from_condition_names_are_unique_and_valid() -> None:
    taken: set[str] = set()
    assert [task_id_for(n, taken) for n in ("a b", "a:b", "...")] == ["a-b", "a-b-2", "condition"]


def test_a_loop_without_failures_gives_a_failed_plan() -> None:
    state = _state(outcome=LoopOutcome.CONDITIONS_MET)
    state.exit_conditions = [
        c.model_copy(update={"status": ExitConditionStatusValue.MET}) for c in state.exit_conditions
    ]
    with pytest.raises(PlanGenerationError, match="no failing exit condition"):
        ConditionPlanner().plan(build_packet(state, [], []))


class _CyclicPlanner(Planner):
    def plan(self, packet: InspectionPacket, *, model: str | None = None) -> PlanDraft:
        return PlanDraft.model_validate(
            {
                "defaults": {"exit_conditions": [{"type": "ALL_TESTS_PASS"}]},
                "tasks": [
                    {"task_id": "a", "description": "a", "depends_on": ["b"]},
                    {"task_id": "b", "description": "b", "depends_on": ["a"]},
                ],
            }
        )


def test_generate_plan_records_planner_failures_as_failed_plans(tmp_path: Path) -> None:
    from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
    from loopwright.plans.service import generate_plan

    with SqlitePlanStore(tmp_path / "db") as store:
        cyclic = generate_plan(store, _CyclicPlanner(), _packet())
        assert cyclic.status is PlanStatus.FAILED
        assert cyclic.gate_result is not None
        [check] = cyclic.gate_result.checks
        assert check.name == PLAN_GENERATION_CHECK and "cycle" in check.message
        assert [t.status for t in cyclic.tasks] == [TaskState.CREATED, TaskState.CREATED]  # kept as evidence
        packet = _packet()
        good = generate_plan(store, ConditionPlanner(), packet)
        assert (good.status, good.source_loop_id, good.packet_id) == (
            PlanStatus.DRAFT,
            "loop_1",
            packet.packet_id,
        )
        assert [p.plan_id for p in store.list_plans("shop")] == [good.plan_id, cyclic.plan_id]
    assert tasks_check(new_plan(ConditionPlanner().plan(_packet()), project="shop").plan).passed is False
