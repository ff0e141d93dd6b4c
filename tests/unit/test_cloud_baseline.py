"""The baseline on the Step Functions path (issue 9 point 6): ``baseline_step`` (the Evaluate
Lambda's ``Baseline`` state) and the compact variant's RunIteration, against in-memory ports, with
the in-process engine's events as the reference (tests/unit/test_preflight_baseline.py)."""

from __future__ import annotations

from pathlib import Path

from loopwright import pinning, workflow
from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.python_agent import PythonAgent
from loopwright.cloud.steps import CloudPorts, EventCollector, baseline_step, evaluation_step
from loopwright.cloud.steps_compact import run_iteration_step
from loopwright.engine import LoopFramework
from loopwright.models import (
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    NextAction,
    StepInput,
)
from tests.fakes import FakeWorkspace, MemoryStore
from tests.unit.test_preflight_baseline import Agent, Checks, failing, not_found, passing

EV = IterationEventType


def _config() -> LoopConfig:
    return LoopConfig.model_validate(
        {
            "goal": "make the check pass",
            "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
            "max_iterations": 5,
            "git_isolation": False,
        }
    )


def _started(store: MemoryStore, tmp_path: Path, loop_id: str = "l1") -> StepInput:
    """A loop created and its session opened as ``start_loop`` does; its first execution's input."""
    state = store.create_loop(LoopState(loop_id=loop_id, config=_config(), worktree=str(tmp_path)))
    record = EventCollector(state)
    workflow.start_session(state, record)
    pinning.record_pins(state, record)
    store.save_state(state, record.events)
    return StepInput(loop_id=loop_id, baseline=workflow.baseline_due(state))


def _ports(tmp_path: Path, store: MemoryStore, sandbox: Checks, agent: Agent) -> CloudPorts:
    return CloudPorts(
        store=store,
        checkpoints=store,
        policy=CedarPolicyEngine(),
        sandbox=sandbox,
        agent=PythonAgent(agent),
        workspace=FakeWorkspace(tmp_path),
        state_dir=tmp_path / "state",
    )


def _engine_types(tmp_path: Path, sandbox: Checks, agent: Agent) -> list[IterationEventType]:
    store = MemoryStore()
    LoopFramework(
        _config(),
        workspace=tmp_path,
        loop_id="engine",
        store=store,
        sandbox=sandbox,
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
    ).run(work_function=agent)
    return store.types("engine")


def test_a_green_repository_completes_at_the_baseline_like_the_local_engine(tmp_path: Path) -> None:
    # Given a new loop whose condition already passes, started as start_loop starts it
    store, sandbox = MemoryStore(), Checks(passing)
    agent = Agent(sandbox, {})
    event = _started(store, tmp_path)
    assert event.baseline is True
    # When the Baseline state runs (the Evaluate Lambda, told by the input's flag)
    out = evaluation_step(event, _ports(tmp_path, store, sandbox, agent))
    # Then the loop is complete with 0 iterations, the agent never ran, and the output routes
    # the Action? Choice to Done like Decide's
    assert (out.action, out.outcome, out.iteration, out.handover) == (
        NextAction.COMPLETE,
        LoopOutcome.CONDITIONS_MET,
        0,
        False,
    )
    assert out.baseline is False  # never carried to the next state
    state = store.get_state("l1")
    assert (state.outcome, state.phase, state.iteration, state.is_active) == (
        LoopOutcome.CONDITIONS_MET,
        LoopPhase.COMPLETED,
        0,
        False,
    )
    assert agent.requests == [] and state.last_checkpoint_id is None  # no checkpoint at iteration 0
    # And the events are the local engine's, the baseline flag included
    events = store.list_events("l1")
    reference = Checks(passing)
    assert [e.type for e in events] == _engine_types(tmp_path, reference, Agent(reference, {}))
    assert [e.type for e in events] == [
        EV.LOOP_STARTED,
        EV.CHECKS_PINNED,
        EV.EXIT_CONDITIONS_EVALUATED,
        EV.VERIFICATION_PASSED,
        EV.LOOP_COMPLETED,
    ]
    assert events[2].iteration == 0 and events[2].data["baseline"] is True


def test_a_failing_baseline_continues_and_is_not_evaluated_again_by_a_retried_start(tmp_path: Path) -> None:
    store, sandbox = MemoryStore(), Checks(failing)
    ports = _ports(tmp_path, store, sandbox, Agent(sandbox, {}))
    event = _started(store, tmp_path)
    out = baseline_step(event, ports)
    assert (out.action, out.iteration, out.handover, out.baseline) == (NextAction.CONTINUE, 0, False, False)
    state = store.get_state("l1")
    assert state.evaluated_iteration == 0 and [s.status.value for s in state.exit_conditions] == ["NOT_MET"]
    written = len(store.list_events("l1"))
    # A retried start of the execution (same input): the baseline is done, nothing is evaluated again
    again = baseline_step(event, ports)
    assert again.action is NextAction.CONTINUE and len(store.list_events("l1")) == written
    assert len(sandbox.calls) == 1


def test_a_condition_error_at_baseline_pauses_and_a_resume_evaluates_it_again(tmp_path: Path) -> None:
    # Given a condition whose tool cannot start
    store, sandbox = MemoryStore(), Checks(not_found)
    agent = Agent(sandbox, {})
    ports = _ports(tmp_path, store, sandbox, agent)
    # When the baseline runs
    out = baseline_step(_started(store, tmp_path), ports)
    # Then the loop pauses for a human (ResumeAt? -> Paused: no resume_at), before the agent ran
    assert (out.action, out.outcome, out.resume_at) == (NextAction.PAUSE, None, None)
    assert out.reason.startswith("paused: exit condition 'a' is ERROR: could not run: command not found")
    state = store.get_state("l1")
    assert (state.phase, state.iteration, agent.requests) == (LoopPhase.PAUSED, 0, [])
    assert store.types("l1")[-3:] == [EV.EXIT_CONDITIONS_EVALUATED, EV.VERIFICATION_FAILED, EV.LOOP_PAUSED]
    # And a resume (cloud.resume: a new session, the flag from baseline_due) evaluates it again
    assert workflow.baseline_due(state)
    sandbox.answer = passing
    record = EventCollector(state)
    workflow.start_session(state, record)
    store.save_state(state, record.events)
    resumed = baseline_step(StepInput(loop_id="l1", generation=1, baseline=True), ports)
    assert (resumed.action, resumed.outcome) == (NextAction.COMPLETE, LoopOutcome.CONDITIONS_MET)
    baselines = [e for e in store.list_events("l1") if e.data.get("baseline")]
    assert [e.data["statuses"]["a"] for e in baselines] == ["ERROR", "MET"]


def test_a_loop_resumed_after_a_condition_error_at_iteration_n_checks_again_before_the_agent(
    tmp_path: Path,
) -> None:
    # Given a loop paused after iteration 2 because its condition could not run
    store, sandbox = MemoryStore(), Checks(not_found)
    agent = Agent(sandbox, {})
    ports = _ports(tmp_path, store, sandbox, agent)
    _started(store, tmp_path)
    state = store.get_state("l1")
    workflow.evaluate_conditions(state, sandbox, EventCollector(state))
    state.iteration = state.evaluated_iteration = 2
    state.phase, state.is_active = LoopPhase.PAUSED, False
    store.save_state(state)
    assert workflow.baseline_due(state)
    # When it is resumed with the tool fixed and the agent's fix in place
    sandbox.answer = passing
    out = baseline_step(StepInput(loop_id="l1", iteration=2, generation=1, baseline=True), ports)
    # Then it completes without another agent run; the evaluation is not flagged as iteration 0's
    assert (out.action, out.outcome, out.iteration) == (NextAction.COMPLETE, LoopOutcome.CONDITIONS_MET, 2)
    assert agent.requests == []
    evaluated = store.list_events("l1", types=[EV.EXIT_CONDITIONS_EVALUATED])[-1]
    assert evaluated.iteration == 2 and "baseline" not in evaluated.data


def test_a_stop_asked_before_the_baseline_ends_the_loop_without_evaluating(tmp_path: Path) -> None:
    store, sandbox = MemoryStore(), Checks(failing)
    event = _started(store, tmp_path)
    store.request_stop("l1", "operator")
    out = baseline_step(event, _ports(tmp_path, store, sandbox, Agent(sandbox, {})))
    assert (out.action, out.outcome) == (NextAction.STOP, LoopOutcome.STOPPED)
    assert sandbox.calls == []


def test_without_the_flag_the_evaluate_lambda_evaluates_the_iteration(tmp_path: Path) -> None:
    store, sandbox = MemoryStore(), Checks(failing)
    event = _started(store, tmp_path).model_copy(update={"baseline": False})
    evaluation_step(event, _ports(tmp_path, store, sandbox, Agent(sandbox, {})))
    evaluated = store.list_events("l1", types=[EV.EXIT_CONDITIONS_EVALUATED])
    assert len(evaluated) == 1 and "baseline" not in evaluated[0].data


# ----------------------------------------------------------------------------- compact variant
def test_compact_run_iteration_completes_a_green_repository_at_the_baseline(tmp_path: Path) -> None:
    store, sandbox = MemoryStore(), Checks(passing)
    agent = Agent(sandbox, {})
    built: list[CloudPorts] = []

    def work_ports(base: CloudPorts) -> CloudPorts:
        built.append(base)
        return base

    out = run_iteration_step(
        _started(store, tmp_path), _ports(tmp_path, store, sandbox, agent), work_ports=work_ports
    )
    assert (out.action, out.outcome, out.iteration) == (NextAction.COMPLETE, LoopOutcome.CONDITIONS_MET, 0)
    assert agent.requests == [] and len(built) == 1
    assert store.types("l1") == [
        EV.LOOP_STARTED,
        EV.CHECKS_PINNED,
        EV.EXIT_CONDITIONS_EVALUATED,
        EV.VERIFICATION_PASSED,
        EV.LOOP_COMPLETED,
    ]


def test_compact_run_iteration_runs_iteration_1_after_the_baseline_with_its_failures(
    tmp_path: Path,
) -> None:
    store, sandbox = MemoryStore(), Checks(failing)
    agent = Agent(sandbox, {1: passing})
    built: list[CloudPorts] = []

    def work_ports(base: CloudPorts) -> CloudPorts:
        built.append(base)
        return base

    out = run_iteration_step(
        _started(store, tmp_path), _ports(tmp_path, store, sandbox, agent), work_ports=work_ports
    )
    # One invocation: the baseline, then iteration 1 (told the baseline's failures), then decide
    assert (out.action, out.outcome, out.iteration) == (NextAction.COMPLETE, LoopOutcome.CONDITIONS_MET, 1)
    assert agent.requests[0].failing_conditions == ["a"]
    assert len(built) == 1  # the loop's work ports are built once for both
    reference = Checks(failing)
    assert store.types("l1") == _engine_types(tmp_path, reference, Agent(reference, {1: passing}))
