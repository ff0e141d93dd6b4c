"""Steps whose agent and checks run in the background (loopwright.cloud.deferral): a pending step
writes nothing, its replay polls instead of starting again, the wait follows the last run, a
stop during the checks cancels them, and the compact step continues where it was pending."""

from __future__ import annotations

from pathlib import Path

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.command_agent import CommandAgent
from loopwright.cloud.deferral import expected_seconds, run_deferred
from loopwright.cloud.steps import CloudPorts, authorize_step, evaluate_step, iterate_step, start_step
from loopwright.cloud.steps_compact import next_input, run_iteration_step
from loopwright.deferred import DeferringSandbox
from loopwright.models import (
    CommandAgentConfig,
    CommandResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEventType,
    LoopOutcome,
    NextAction,
    StepInput,
    StepOutput,
)
from tests.fakes import MemoryStore
from tests.unit.test_cloud_steps import FakeWorkspace, _config, _create
from tests.unit.test_deferred import Tasks

EV = IterationEventType


def _ports(tmp_path: Path, store: MemoryStore, tasks: Tasks, event: StepInput | None = None) -> CloudPorts:
    """The ports one invocation builds: a DeferringSandbox holding the event's tasks."""
    deferring = DeferringSandbox(
        tasks,
        event.commands if event else None,
        token=event.deferral_token if event else None,
        inline_seconds=0,
        min_wait_seconds=5,
        max_wait_seconds=600,
    )
    agent = CommandAgent(CommandAgentConfig(command=["agent"], timeout_seconds=300), deferring)
    return CloudPorts(
        store=store,
        checkpoints=store,
        policy=CedarPolicyEngine(),
        sandbox=deferring,
        agent=agent,
        workspace=FakeWorkspace(tmp_path),
        state_dir=tmp_path / "state",
        deferring=deferring,
    )


def _started(tmp_path: Path, store: MemoryStore, loop_id: str = "bg") -> StepInput:
    _create(store, _config(), loop_id, tmp_path)
    return next_input(start_step(StepInput(loop_id=loop_id), _ports(tmp_path, store, Tasks())))


def test_a_pending_evaluation_writes_nothing_and_its_replay_completes_it(tmp_path: Path) -> None:
    store, tasks = MemoryStore(), Tasks()
    event = _started(tmp_path, store)
    before = store.get_state("bg")
    events_before = len(store.list_events("bg"))

    pending = run_deferred(evaluate_step, event, _ports(tmp_path, store, tasks, event), "evaluate")

    assert pending.pending and pending.pending_step == "evaluate" and pending.polls == 1
    assert list(pending.commands) == ["condition:a#0"] and pending.deferral_token
    assert pending.wait_seconds == 5  # nothing to expect yet: the minimum
    assert store.get_state("bg").version == before.version  # nothing written
    assert len(store.list_events("bg")) == events_before

    # the next poll: still running -> pending again, polls counted up, nothing started again
    again_in = StepInput.model_validate(pending.model_dump())
    again = run_deferred(evaluate_step, again_in, _ports(tmp_path, store, tasks, again_in), "evaluate")
    assert again.pending and again.polls == 2 and again.deferral_token == pending.deferral_token
    assert tasks.started == [["check-a"]]

    tasks.finish("t1", exit_code=0)
    last_in = StepInput.model_validate(again.model_dump())
    done = run_deferred(evaluate_step, last_in, _ports(tmp_path, store, tasks, last_in), "evaluate")
    assert not done.pending and done.commands == {} and done.polls == 0 and done.pending_step is None
    state = store.get_state("bg")
    assert [s.status for s in state.exit_conditions] == [ExitConditionStatusValue.MET]
    assert tasks.started == [["check-a"]]


def test_the_wait_ends_just_after_the_last_run_of_the_same_check(tmp_path: Path) -> None:
    store, tasks = MemoryStore(), Tasks()
    event = _started(tmp_path, store)
    state = store.get_state("bg")
    state.exit_conditions = [
        ExitConditionStatus(
            name="a",
            type=ExitConditionType.CUSTOM,
            status=ExitConditionStatusValue.NOT_MET,
            iteration=0,
            duration_seconds=120.0,
        )
    ]
    state.agent_seconds = 300.0
    store.save_state(state, [])
    assert expected_seconds(state, "condition:a#0") == 120.0
    assert expected_seconds(state, "agent#0") == 300.0
    assert expected_seconds(state, "agent#1") is None  # reading the report: nothing to expect
    assert expected_seconds(state, "condition:other#0") is None

    pending = run_deferred(evaluate_step, event, _ports(tmp_path, store, tasks, event), "evaluate")
    assert 119 <= pending.wait_seconds <= 121


def test_a_stop_during_the_checks_ends_the_loop_and_cancels_them(tmp_path: Path) -> None:
    store, tasks = MemoryStore(), Tasks()
    event = _started(tmp_path, store)
    pending = run_deferred(evaluate_step, event, _ports(tmp_path, store, tasks, event), "evaluate")
    store.request_stop("bg", "enough")

    poll = StepInput.model_validate(pending.model_dump())
    out = run_deferred(evaluate_step, poll, _ports(tmp_path, store, tasks, poll), "evaluate")

    assert not out.pending and out.outcome is LoopOutcome.STOPPED
    assert tasks.cancelled == ["t1"]


def test_a_pending_iterate_runs_the_agent_once_and_counts_its_whole_time(tmp_path: Path) -> None:
    store, tasks = MemoryStore(), Tasks()
    event = next_input(authorize_step(_started(tmp_path, store), _ports(tmp_path, store, tasks)))
    pending = run_deferred(iterate_step, event, _ports(tmp_path, store, tasks, event), "iterate")
    assert pending.pending and list(pending.commands) == ["agent#0"] and pending.iteration == 0
    assert store.get_state("bg").iteration == 0

    tasks.finish("t1", stdout="did it")
    poll = StepInput.model_validate(pending.model_dump())
    done = run_deferred(iterate_step, poll, _ports(tmp_path, store, tasks, poll), "iterate")
    assert not done.pending and done.iteration == 1
    assert tasks.started == [["agent"]]  # the replay polled it, never started it again
    state = store.get_state("bg")
    assert state.iteration == 1 and state.agent_seconds is not None
    (completed,) = store.list_events("bg", types=[EV.AGENT_COMPLETED])
    assert completed.iteration == 1


def test_the_compact_step_continues_where_it_was_pending(tmp_path: Path) -> None:
    store, tasks = MemoryStore(), Tasks()
    event = _started(tmp_path, store)
    outputs: list[StepOutput] = []
    for _ in range(6):
        out = run_iteration_step(event, _ports(tmp_path, store, tasks, event))
        outputs.append(out)
        if not out.pending:
            break
        for number in range(1, len(tasks.started) + 1):
            tasks.results.setdefault(f"t{number}", CommandResult(command=[], exit_code=0))
        event = StepInput.model_validate(out.model_dump())
    assert [o.pending_step for o in outputs] == ["iterate", "evaluate", None]
    assert outputs[-1].action is NextAction.COMPLETE and outputs[-1].iteration == 1  # the check passed
    # each step's work is recorded once although the invocation ran three times
    types = [e.type for e in store.list_events("bg")]
    assert types.count(EV.ITERATION_STARTED) == 1 and types.count(EV.AGENT_COMPLETED) == 1
    assert types.count(EV.EXIT_CONDITIONS_EVALUATED) == 1
    assert tasks.started == [["agent"], ["check-a"]]
