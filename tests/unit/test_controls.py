"""Human controls: ControlService over the in-memory store and the real Cedar policies, and the
in-process engine applying queued controls (pause, raise a limit) and pausing at a usage limit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.controls import ControlService
from loopwright.engine import LoopFramework
from loopwright.exceptions import ControlConflictError, ControlDeniedError, LoopNotFoundError
from loopwright.models import (
    AgentRequest,
    AgentResult,
    ControlAction,
    ControlRequest,
    IterationEventType,
    LimitChange,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)
from tests.fakes import FakeWorkspace, MemoryStore, ScriptedSandbox

EV = IterationEventType
ALICE = 'User::"alice"'
OPERATORS = 'Group::"default-operators"'


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "make the checks pass",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 10,
        "git_isolation": False,
        "max_stuck_iterations": None,  # scripted agents that change nothing: not about stuck loops
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


def _stored(store: MemoryStore, **fields: object) -> LoopState:
    state = LoopState(loop_id="loop-c", config=_config(), **fields)  # type: ignore[arg-type]
    return store.create_loop(state)


def _request(
    action: ControlAction, principal: str = ALICE, groups: Sequence[str] = (OPERATORS,), **kw: object
) -> ControlRequest:
    return ControlRequest(loop_id="loop-c", action=action, principal=principal, groups=list(groups), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def policy() -> CedarPolicyEngine:
    return CedarPolicyEngine()


def _unchanged(store: MemoryStore, version: int) -> None:
    assert store.get_state("loop-c").version == version
    assert store.events == [] and store.controls == {}


def test_an_operator_raises_the_limit_of_an_idle_loop(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, iteration=4, phase=LoopPhase.PAUSED)
    result = ControlService(store, policy).submit(
        _request(ControlAction.RAISE_LIMIT, limits=LimitChange(max_iterations=40, token_budget=9000))
    )
    assert result.status == "applied" and result.policy_ids == ["operators-control-loop"]
    state = store.get_state("loop-c")
    assert state.config.max_iterations == 40 and state.config.token_budget == 9000 and state.version == 2
    [event] = store.events
    assert event.type is EV.CONTROL_APPLIED and event.data["max_iterations"] == 40
    assert event.data["principal"] == ALICE


def test_a_user_outside_the_operators_group_is_refused_and_nothing_is_written(
    policy: CedarPolicyEngine,
) -> None:
    store = MemoryStore()
    _stored(store, is_active=True)
    service = ControlService(store, policy)
    with pytest.raises(ControlDeniedError, match=r'User::"mallory" may not STOP.*Group::"default-operators"'):
        service.submit(
            _request(ControlAction.STOP, principal='User::"mallory"', groups=['Group::"other-operators"'])
        )
    _unchanged(store, 1)


def test_an_agent_may_not_raise_its_own_limit(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store)
    with pytest.raises(ControlDeniedError, match="an agent may not raise the limits") as info:
        ControlService(store, policy).submit(
            _request(
                ControlAction.RAISE_LIMIT,
                principal='Agent::"loop-c"',
                groups=[],
                limits=LimitChange(max_iterations=99),
            )
        )
    assert info.value.policy_ids == ["agent-cannot-raise-limit"]
    _unchanged(store, 1)


def test_a_limit_below_what_was_used_is_a_conflict(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, iteration=6, tokens_used=500)
    service = ControlService(store, policy)
    with pytest.raises(ControlConflictError, match=r"max_iterations: 5 is below the 6 iterations"):
        service.submit(_request(ControlAction.RAISE_LIMIT, limits=LimitChange(max_iterations=5)))
    with pytest.raises(ControlConflictError, match=r"token_budget: 100 is below the 500 tokens"):
        service.submit(_request(ControlAction.RAISE_LIMIT, limits=LimitChange(token_budget=100)))
    _unchanged(store, 1)


def test_controls_of_a_running_loop_are_queued(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, is_active=True, phase=LoopPhase.ITERATING)
    service = ControlService(store, policy)
    paused = service.submit(_request(ControlAction.PAUSE, reason="lunch"))
    raised = service.submit(_request(ControlAction.RAISE_LIMIT, limits=LimitChange(max_iterations=30)))
    assert (paused.status, raised.status) == ("queued", "queued")
    assert [c.action for c in store.pending_controls("loop-c")] == [
        ControlAction.PAUSE,
        ControlAction.RAISE_LIMIT,
    ]
    assert store.get_state("loop-c").version == 1  # the engine applies them, not the service
    with pytest.raises(ControlConflictError, match="is running; nothing to resume"):
        service.submit(_request(ControlAction.RESUME))


def test_stopping_an_idle_loop_ends_it_at_once(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.PAUSED, iteration=3)
    result = ControlService(store, policy).submit(_request(ControlAction.STOP, reason="not needed"))
    state = store.get_state("loop-c")
    assert result.status == "applied" and state.outcome is LoopOutcome.STOPPED
    assert state.phase is LoopPhase.COMPLETED and "not needed" in (state.outcome_reason or "")
    assert [e.type for e in store.events] == [EV.LOOP_COMPLETED]
    with pytest.raises(ControlConflictError, match="already ended with STOPPED"):
        ControlService(store, policy).submit(_request(ControlAction.STOP))


@pytest.mark.parametrize(
    ("fields", "action", "message"),
    [
        ({"phase": LoopPhase.INTERRUPTED}, ControlAction.PAUSE, "is not running"),
        ({"phase": LoopPhase.PAUSED}, ControlAction.APPROVE, "is not waiting for an answer"),
        ({"phase": LoopPhase.AWAITING_RESPONSE}, ControlAction.RESUME, "approve it instead"),
        (
            {"phase": LoopPhase.COMPLETED, "outcome": LoopOutcome.CONDITIONS_MET},
            ControlAction.RESUME,
            "final",
        ),
    ],
)
def test_controls_that_do_not_apply_are_conflicts(
    policy: CedarPolicyEngine, fields: dict[str, object], action: ControlAction, message: str
) -> None:
    store = MemoryStore()
    _stored(store, **fields)
    with pytest.raises(ControlConflictError, match=message):
        ControlService(store, policy, resumer=lambda state, request: None).submit(_request(action))
    _unchanged(store, 1)


def test_approve_records_the_answer_and_hands_the_loop_to_the_resumer(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, human_request="may I?")
    resumed: list[tuple[LoopState, ControlRequest]] = []
    result = ControlService(store, policy, resumer=lambda s, r: resumed.append((s, r))).submit(
        _request(ControlAction.APPROVE, response="yes, go ahead")
    )
    assert result.status == "applied"
    [(state, request)] = resumed
    assert state.human_response == "yes, go ahead" and state.version == 2
    assert request.action is ControlAction.APPROVE
    assert [e.type for e in store.events] == [EV.CONTROL_APPLIED]


def test_resume_needs_an_engine_and_an_unknown_loop_is_not_found(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.PAUSED)
    with pytest.raises(ControlConflictError, match="no engine"):
        ControlService(store, policy).submit(_request(ControlAction.RESUME))
    with pytest.raises(LoopNotFoundError):
        ControlService(store, policy).submit(
            ControlRequest(loop_id="loop-x", action=ControlAction.STOP, principal=ALICE)
        )


def test_bad_control_requests_name_the_field() -> None:
    with pytest.raises(ValueError, match="limits: required for RAISE_LIMIT"):
        _request(ControlAction.RAISE_LIMIT)
    with pytest.raises(ValueError, match="only RAISE_LIMIT takes limits"):
        _request(ControlAction.STOP, limits=LimitChange(max_iterations=3))
    with pytest.raises(ValueError, match="at least one of max_iterations"):
        LimitChange()
    with pytest.raises(ValueError, match="principal"):
        _request(ControlAction.STOP, principal="alice")


# ----------------------------------------------------------------------------- the engine
def _framework(
    tmp_path: Path,
    store: MemoryStore,
    config: LoopConfig,
    passes_at: int,
    counter: dict[str, int],
    **kw: object,
) -> LoopFramework:
    def respond(command: Sequence[str], _call: int) -> tuple[int, str]:
        return (0, "ok") if counter["iteration"] >= passes_at else (1, "failed")

    return LoopFramework(
        config,
        workspace=tmp_path,
        store=store,
        sandbox=ScriptedSandbox(respond),
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
        **kw,  # type: ignore[arg-type]
    )


def test_a_paused_loop_stops_without_an_outcome_and_resumes_where_it_was(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    store = MemoryStore()
    loop = _framework(tmp_path, store, _config(), 4, counter)

    def work(request: AgentRequest) -> None:
        counter["iteration"] = request.iteration
        if request.iteration == 2:
            loop.request_pause("coffee")

    first = loop.run(work_function=work)
    state = loop.get_state()
    assert first.outcome is None and first.phase is LoopPhase.PAUSED and first.iterations == 2
    assert "coffee" in (state.outcome_reason or "")
    assert store.list_events(loop.loop_id, types=[EV.LOOP_PAUSED])
    second = loop.run(work_function=work)
    assert second.outcome is LoopOutcome.CONDITIONS_MET and second.iterations == 4
    started = [e.iteration for e in store.list_events(loop.loop_id, types=[EV.ITERATION_STARTED])]
    assert started == [1, 2, 3, 4]
    assert store.pending_controls(loop.loop_id) == []


def test_a_limit_raised_while_the_loop_runs_applies_before_the_next_iteration(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    store = MemoryStore()
    loop = _framework(tmp_path, store, _config(max_iterations=3), 99, counter)
    service = ControlService(store, CedarPolicyEngine(), is_running=lambda state: True)

    def work(request: AgentRequest) -> None:
        counter["iteration"] = request.iteration
        if request.iteration == 2:
            service.submit(_request_for(loop.loop_id, LimitChange(max_iterations=5)))

    result = loop.run(work_function=work)
    assert result.outcome is LoopOutcome.ITERATION_LIMIT and result.iterations == 5
    assert loop.get_state().config.max_iterations == 5
    assert [
        e.data["max_iterations"] for e in store.list_events(loop.loop_id, types=[EV.CONTROL_APPLIED])
    ] == [5]
    assert store.pending_controls(loop.loop_id) == []


def _request_for(loop_id: str, limits: LimitChange) -> ControlRequest:
    return ControlRequest(
        loop_id=loop_id, action=ControlAction.RAISE_LIMIT, principal=ALICE, groups=[OPERATORS], limits=limits
    )


def test_a_loop_at_its_limit_continues_after_the_limit_is_raised(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    store = MemoryStore()
    loop = _framework(tmp_path, store, _config(max_iterations=2), 99, counter)

    def work(request: AgentRequest) -> None:
        counter["iteration"] = request.iteration

    assert loop.run(work_function=work).outcome is LoopOutcome.ITERATION_LIMIT
    ControlService(store, CedarPolicyEngine()).submit(
        _request_for(loop.loop_id, LimitChange(max_iterations=4))
    )
    result = loop.run(work_function=work)
    assert result.outcome is LoopOutcome.ITERATION_LIMIT and result.iterations == 4


def test_a_usage_limit_pauses_the_loop_until_it_resets(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    store = MemoryStore()
    loop = _framework(tmp_path, store, _config(), 3, counter)
    resets = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)

    def work(request: AgentRequest) -> AgentResult:
        counter["iteration"] = request.iteration
        return AgentResult(usage_limit_resets_at=resets if request.iteration == 1 else None)

    first = loop.run(work_function=work)
    state = loop.get_state()
    assert first.outcome is None and state.phase is LoopPhase.PAUSED and state.resume_at == resets
    [paused] = store.list_events(loop.loop_id, types=[EV.LOOP_PAUSED])
    assert paused.data["resume_at"] == resets.isoformat()
    second = loop.run(work_function=work)
    assert second.outcome is LoopOutcome.CONDITIONS_MET and loop.get_state().resume_at is None


# ----------------------------------------------------------------------------- the cloud steps
def test_the_state_machine_steps_pause_at_a_usage_limit_and_on_a_pause_control(tmp_path: Path) -> None:
    from loopwright.adapters.local.python_agent import PythonAgent
    from loopwright.cloud.steps import CloudPorts
    from tests.unit.test_cloud_steps import run_state_machine

    counter = {"iteration": 0}
    resets = datetime(2030, 1, 1, 12, tzinfo=UTC)

    def work(request: AgentRequest) -> AgentResult:
        counter["iteration"] = request.iteration
        if request.iteration == 3:  # a human pauses the loop while its agent works
            store.add_control(ControlRequest(loop_id="cloud-p", action=ControlAction.PAUSE, principal=ALICE))
        return AgentResult(usage_limit_resets_at=resets if request.iteration == 2 else None)

    def respond(command: Sequence[str], _call: int) -> tuple[int, str]:
        return (0, "ok") if counter["iteration"] >= 4 else (1, "failed")

    store = MemoryStore()
    store.create_loop(LoopState(loop_id="cloud-p", config=_config(), worktree=str(tmp_path)))
    ports = CloudPorts(
        store=store,
        checkpoints=store,
        policy=CedarPolicyEngine(),
        sandbox=ScriptedSandbox(respond),
        agent=PythonAgent(work),
        workspace=FakeWorkspace(tmp_path),
        state_dir=tmp_path / "state",
    )
    decisions = run_state_machine(ports, "cloud-p")
    assert decisions[-1].action.value == "PAUSE" and decisions[-1].resume_at == resets
    assert store.get_state("cloud-p").phase is LoopPhase.PAUSED
    decisions = run_state_machine(ports, "cloud-p")  # resumed; paused by the human in iteration 3
    assert decisions[-1].action.value == "PAUSE" and decisions[-1].resume_at is None
    assert store.get_state("cloud-p").iteration == 3
    decisions = run_state_machine(ports, "cloud-p")
    assert decisions[-1].outcome is LoopOutcome.CONDITIONS_MET and store.get_state("cloud-p").iteration == 4


def test_stop_now_of_a_running_loop_is_queued_with_now_and_an_agent_may_not(
    policy: CedarPolicyEngine,
) -> None:
    store = MemoryStore()
    _stored(store, iteration=2, is_active=True, phase=LoopPhase.ITERATING)
    service = ControlService(store, policy)
    with pytest.raises(ControlDeniedError):
        service.submit(_request(ControlAction.STOP, principal='Agent::"loop-c"', groups=(), now=True))
    assert store.controls == {}
    result = service.submit(_request(ControlAction.STOP, now=True, reason="runaway"))
    assert result.status == "queued" and "ended now" in result.message
    [queued] = store.pending_controls("loop-c")
    assert queued.now and queued.reason == "runaway"


def test_stopping_a_killed_loop_counts_its_session_up_to_its_last_write(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    start = datetime.now(UTC) - timedelta(hours=1)
    stored = _stored(store, phase=LoopPhase.ITERATING, active_since=start)
    store.save_state(stored.model_copy(update={"updated_at": start + timedelta(seconds=30)}))
    ControlService(store, policy).submit(_request(ControlAction.STOP, now=True))
    state = store.get_state("loop-c")
    assert state.active_since is None and 29 <= state.active_seconds <= 31  # not the hour since
