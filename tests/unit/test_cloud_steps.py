"""The state machine's steps, chained as the ASL chains them, against in-memory ports.

The same scripted loop runs through the in-process engine and through the step functions; both
must record the same sequence of IterationEvent types (issue 3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.python_agent import PythonAgent
from loopwright.cloud.steps import (
    CloudPorts,
    authorize_step,
    checkpoint_step,
    decide_step,
    evaluate_step,
    evaluation_step,
    iterate_step,
    record_failure_step,
    start_step,
    verify_step,
)
from loopwright.engine import LoopFramework
from loopwright.models import (
    AgentRequest,
    AgentResult,
    HardLimit,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopState,
    NextAction,
    StepInput,
    StepOutput,
)
from loopwright.steps.checkpoint import recover
from tests.fakes import FakeWorkspace, MemoryStore, ScriptedSandbox


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "make the check pass",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 5,
        "git_isolation": False,
        "max_stuck_iterations": None,  # the scripted agent changes nothing: not about stuck loops
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


class Scenario:
    """The check passes once the agent has run ``passes_at`` times."""

    def __init__(self, passes_at: int) -> None:
        self.runs = 0
        self.passes_at = passes_at

    def work(self, request: AgentRequest) -> AgentResult:
        self.runs = request.iteration
        return AgentResult(tokens_used=10)

    def sandbox(self) -> ScriptedSandbox:
        return ScriptedSandbox(lambda command, call: (0 if self.runs >= self.passes_at else 1, ""))


def run_state_machine(
    ports: CloudPorts, loop_id: str, per_execution: int = 500, first: StepInput | None = None
) -> list[StepOutput]:
    """Chain the steps exactly like infrastructure/state_machine.py; returns each Decide output
    (and the Baseline task's, when it ends or pauses the loop)."""
    event = first or StepInput(loop_id=loop_id, iterations_per_execution=per_execution, baseline=True)
    # start_loop opens the session, then starts the execution with its input (baseline included)
    event = StepInput.model_validate({**start_step(event, ports).model_dump(), "baseline": event.baseline})
    decisions: list[StepOutput] = []
    if event.baseline:  # Baseline? -> Baseline (the Evaluate Lambda) -> Action?
        out = evaluation_step(event, ports)
        if out.action is not NextAction.CONTINUE:
            return [out]
        event = StepInput.model_validate(out.model_dump())
    for _ in range(100):
        out = authorize_step(event, ports)
        if not out.allowed:
            decisions.append(out)
            return decisions
        for step in (iterate_step, checkpoint_step, evaluate_step, verify_step):
            out = step(out, ports)
            if out.action is NextAction.STOP:  # a stop request ended the loop mid-iteration
                decisions.append(out)
                return decisions
        out = decide_step(out, ports)
        decisions.append(out)
        if out.action is not NextAction.CONTINUE:
            return decisions
        event = StepInput.model_validate(out.model_dump())
    raise AssertionError("the state machine did not end")


def _cloud_ports(tmp_path: Path, scenario: Scenario, store: MemoryStore) -> CloudPorts:
    return CloudPorts(
        store=store,
        checkpoints=store,
        policy=CedarPolicyEngine(),
        sandbox=scenario.sandbox(),
        agent=PythonAgent(scenario.work),
        workspace=FakeWorkspace(tmp_path),
        state_dir=tmp_path / "state",
    )


def _create(store: MemoryStore, config: LoopConfig, loop_id: str, tmp_path: Path) -> None:
    store.create_loop(LoopState(loop_id=loop_id, config=config, worktree=str(tmp_path)))


@pytest.mark.parametrize(
    ("passes_at", "outcome"), [(3, LoopOutcome.CONDITIONS_MET), (99, LoopOutcome.ITERATION_LIMIT)]
)
def test_both_engines_record_the_same_event_types(
    tmp_path: Path, passes_at: int, outcome: LoopOutcome
) -> None:
    # Given the same scripted loop for both engines
    engine_store, cloud_store = MemoryStore(), MemoryStore()
    local = Scenario(passes_at)
    LoopFramework(
        _config(),
        workspace=tmp_path,
        loop_id="same",
        store=engine_store,
        sandbox=local.sandbox(),
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
    ).run(work_function=local.work)
    cloud = Scenario(passes_at)
    _create(cloud_store, _config(), "same", tmp_path)
    # When the cloud steps run it as the state machine does
    decisions = run_state_machine(_cloud_ports(tmp_path, cloud, cloud_store), "same")
    # Then the outcome and the recorded event types are the same, the baseline (iteration 0)
    # included
    assert decisions[-1].outcome is outcome
    assert cloud_store.get_state("same").outcome is outcome
    assert cloud_store.types("same") == engine_store.types("same")
    baselines = [e for e in cloud_store.list_events("same") if e.data.get("baseline")]
    assert [(e.type, e.iteration) for e in baselines] == [(IterationEventType.EXIT_CONDITIONS_EVALUATED, 0)]


def test_both_engines_set_aside_an_agent_a_hard_limit_ended_and_let_cedar_end_the_loop(
    tmp_path: Path,
) -> None:
    # Given an agent whose streamed usage crossed the token budget, so its adapter ended it
    def ended(request: AgentRequest) -> AgentResult:
        assert request.tokens_left == 500
        return AgentResult(tokens_used=600, summary="ended at the budget", ended_by=HardLimit.TOKEN_BUDGET)

    engine_store, cloud_store = MemoryStore(), MemoryStore()
    engine_workspace, cloud_workspace = FakeWorkspace(tmp_path), FakeWorkspace(tmp_path)
    LoopFramework(
        _config(token_budget=500),
        workspace=tmp_path,
        loop_id="hard",
        store=engine_store,
        sandbox=Scenario(99).sandbox(),
        policy=CedarPolicyEngine(),
        workspace_adapter=engine_workspace,
    ).run(work_function=ended)
    cloud_store.create_loop(
        LoopState(loop_id="hard", config=_config(token_budget=500), worktree=str(tmp_path), head_commit="c0")
    )
    ports = _cloud_ports(tmp_path, Scenario(99), cloud_store)
    ports = CloudPorts(**{**ports.__dict__, "agent": PythonAgent(ended), "workspace": cloud_workspace})
    # When both run it
    decisions = run_state_machine(ports, "hard")
    # Then the work is set aside (the branch back at the base), the iteration is not evaluated,
    # and Cedar's token-budget policy ends the loop, in both engines alike
    assert decisions[-1].outcome is LoopOutcome.TOKEN_BUDGET_EXHAUSTED
    for store, workspace in ((engine_store, engine_workspace), (cloud_store, cloud_workspace)):
        state = store.get_state("hard")
        assert state.outcome is LoopOutcome.TOKEN_BUDGET_EXHAUSTED and state.iteration == 1
        assert state.tokens_used == 600 and state.head_commit == "c0" and workspace.resets == ["c0"]
        evaluated = store.list_events("hard", types=[IterationEventType.EXIT_CONDITIONS_EVALUATED])
        assert [e.iteration for e in evaluated] == [0]  # the baseline only
        [event] = store.list_events("hard", types=[IterationEventType.AGENT_ENDED_AT_LIMIT])
        assert event.data["limit"] == "TOKEN_BUDGET"
    assert cloud_store.types("hard") == engine_store.types("hard")


def test_decide_hands_over_to_a_new_execution_every_k_iterations(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, _config(max_iterations=7), "long", tmp_path)
    decisions = run_state_machine(_cloud_ports(tmp_path, Scenario(99), store), "long", per_execution=3)
    handovers = [(d.iteration, d.generation) for d in decisions if d.handover]
    assert handovers == [(3, 1), (6, 2)]
    assert store.get_state("long").generation == 2


def test_a_resumed_execution_hands_over_k_iterations_after_its_own_start(tmp_path: Path) -> None:
    # Given a loop resumed at iteration 4 in a new execution of generation 5
    store = MemoryStore()
    _create(store, _config(max_iterations=9), "resumed", tmp_path)
    state = store.get_state("resumed")
    store.save_state(state.model_copy(update={"iteration": 4, "evaluated_iteration": 4, "sessions_used": 1}))
    first = StepInput(
        loop_id="resumed", iteration=4, generation=5, first_iteration=4, iterations_per_execution=3
    )
    # When it runs to its limit
    decisions = run_state_machine(_cloud_ports(tmp_path, Scenario(99), store), "resumed", first=first)
    # Then it hands over 3 iterations after its own start, not after generation x K
    handovers = [(d.iteration, d.generation, d.first_iteration) for d in decisions if d.handover]
    assert handovers == [(7, 6, 7)]
    assert decisions[-1].outcome is LoopOutcome.ITERATION_LIMIT
    assert decisions[-1].outcome is LoopOutcome.ITERATION_LIMIT


def test_a_stop_request_ends_the_loop_at_the_next_step(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, _config(), "stop", tmp_path)
    store.request_stop("stop", "operator")
    decisions = run_state_machine(_cloud_ports(tmp_path, Scenario(99), store), "stop")
    assert decisions[-1].outcome is LoopOutcome.STOPPED
    assert store.get_state("stop").iteration == 0


def test_record_failure_ends_failed_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, _config(), "fail", tmp_path)
    ports = _cloud_ports(tmp_path, Scenario(99), store)
    event = start_step(StepInput(loop_id="fail"), ports)
    for step in (authorize_step, iterate_step, checkpoint_step):
        event = step(event, ports)
    out = record_failure_step(event, {"Error": "Lambda.Unknown", "Cause": "evaluate timed out"}, ports)
    assert out.outcome is LoopOutcome.FAILED and "evaluate timed out" in out.reason
    state = store.get_state("fail")
    assert state.outcome is LoopOutcome.FAILED
    assert recover("fail", store).checkpoint.iteration == 1
    assert IterationEventType.ERROR in store.types("fail")


def test_a_step_without_its_port_says_which(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, _config(), "ports", tmp_path)
    with pytest.raises(ValueError, match="needs the policy port"):
        authorize_step(StepInput(loop_id="ports"), CloudPorts(store=store))
