"""Human controls, what they record: each control's event (type, iteration, phase and data), the
loop's bookkeeping after it (is_active, ended_at, resume_at, outcome_reason), the exact limit
boundaries of a raised limit (equal to what was used is allowed) and every part of a denial's
reason (the policies' messages, Cedar's errors, changed policy files)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.controls import (
    ControlService,
    authorization_request,
    cedar_action,
    check_limits,
    policy_files_changed,
)
from loopwright.exceptions import ControlConflictError, ControlDeniedError
from loopwright.models import (
    ControlAction,
    ControlRequest,
    IterationEventType,
    LimitChange,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)
from loopwright.models.steps import AuthorizationRequest, PolicyDecision
from loopwright.ports import PolicyEngine
from tests.fakes import MemoryStore

EV = IterationEventType
ALICE = 'User::"alice"'
OPERATORS = 'Group::"default-operators"'
START = datetime(2026, 1, 1, tzinfo=UTC)


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "make the checks pass",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 10,
        "git_isolation": False,
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


def _state(**fields: object) -> LoopState:
    return LoopState(loop_id="loop-c", config=_config(), **fields)  # type: ignore[arg-type]


def _stored(store: MemoryStore, **fields: object) -> LoopState:
    return store.create_loop(_state(**fields))


def _request(
    action: ControlAction, principal: str = ALICE, groups: Sequence[str] = (OPERATORS,), **kw: object
) -> ControlRequest:
    return ControlRequest(loop_id="loop-c", action=action, principal=principal, groups=list(groups), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def policy() -> CedarPolicyEngine:
    return CedarPolicyEngine()


class Scripted(PolicyEngine):
    """Answers every request with ``decision``; records the requests; reports ``files``."""

    def __init__(self, decision: PolicyDecision, files: dict[str, str] | None = None) -> None:
        self.decision = decision
        self.files = files
        self.requests: list[AuthorizationRequest] = []

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        self.requests.append(request)
        return self.decision

    def policy_files(self) -> dict[str, str] | None:
        return self.files


ALLOW = PolicyDecision(allowed=True, policy_ids=["p-allow"])


# ----------------------------------------------------------------------------- helpers


def test_policy_files_changed_names_added_removed_and_changed_files_sorted() -> None:
    before = {"a.cedar": "1", "b.cedar": "2", "c.cedar": "3"}
    now = {"a.cedar": "1", "c.cedar": "9", "d.cedar": "4"}
    assert policy_files_changed(before, now) == ["b.cedar", "c.cedar", "d.cedar"]
    assert policy_files_changed(before, dict(before)) == []
    assert policy_files_changed(None, now) == []
    assert policy_files_changed(before, None) == []


@pytest.mark.parametrize(
    ("action", "uid"),
    [
        (ControlAction.PAUSE, 'Action::"PauseLoop"'),
        (ControlAction.RESUME, 'Action::"ResumeLoop"'),
        (ControlAction.STOP, 'Action::"StopLoop"'),
        (ControlAction.APPROVE, 'Action::"ApproveGate"'),
        (ControlAction.RAISE_LIMIT, 'Action::"RaiseLimit"'),
    ],
)
def test_cedar_action_names_each_control(action: ControlAction, uid: str) -> None:
    assert cedar_action(action) == uid


def test_the_authorization_request_carries_principal_groups_action_and_the_loop() -> None:
    state = _state(project="shop")
    request = ControlRequest(
        loop_id="loop-c",
        action=ControlAction.PAUSE,
        principal=ALICE,
        groups=['Group::"shop-operators"', 'Group::"x"'],
    )
    built = authorization_request(request, state)
    assert built.principal == ALICE
    assert built.principal_parents == ['Group::"shop-operators"', 'Group::"x"']
    assert built.action == 'Action::"PauseLoop"'
    assert built.resource == 'Loop::"loop-c"'
    assert built.resource_attributes["project"] == "shop"
    assert built.resource_attributes["max_iterations"] == 10


# ----------------------------------------------------------------------------- limit boundaries


@pytest.mark.parametrize(
    ("fields", "limits"),
    [
        ({"iteration": 6}, LimitChange(max_iterations=6)),
        ({"tokens_used": 500}, LimitChange(token_budget=500)),
        ({"cost_usd": 1.5}, LimitChange(cost_budget_usd=1.5)),
        ({"ended_at": START + timedelta(seconds=100)}, LimitChange(max_duration_seconds=100)),
        # elapsed seconds are counted whole: 100.9 s used allows a limit of 100
        ({"ended_at": START + timedelta(seconds=100.9)}, LimitChange(max_duration_seconds=100)),
    ],
)
def test_a_limit_equal_to_what_was_used_is_allowed(fields: dict[str, object], limits: LimitChange) -> None:
    check_limits(_state(started_at=START, **fields), limits)


@pytest.mark.parametrize(
    ("fields", "limits", "message"),
    [
        (
            {"iteration": 6},
            LimitChange(max_iterations=5),
            "^max_iterations: 5 is below the 6 iterations already run; give a larger value$",
        ),
        (
            {"tokens_used": 500},
            LimitChange(token_budget=499),
            "^token_budget: 499 is below the 500 tokens already spent; give a larger value$",
        ),
        (
            {"cost_usd": 1.5},
            LimitChange(cost_budget_usd=1.49),
            r"^cost_budget_usd: 1.49 is below the \$1.5000 already spent; give a larger value$",
        ),
        (
            {"ended_at": START + timedelta(seconds=100)},
            LimitChange(max_duration_seconds=99),
            "max_duration_seconds: 99 is below the 100 s already elapsed",
        ),
    ],
)
def test_a_limit_below_what_was_used_is_refused(
    fields: dict[str, object], limits: LimitChange, message: str
) -> None:
    with pytest.raises(ControlConflictError, match=message):
        check_limits(_state(started_at=START, **fields), limits)


def test_only_the_given_limits_are_checked() -> None:
    # Each check looks at its own field only: a state that used a lot, a change of one field.
    state = _state(started_at=START, ended_at=START + timedelta(seconds=50), iteration=6, tokens_used=500)
    state.cost_usd = 2.0
    check_limits(state, LimitChange(max_iterations=7))
    check_limits(state, LimitChange(token_budget=501))
    check_limits(state, LimitChange(cost_budget_usd=2.5))
    check_limits(state, LimitChange(max_duration_seconds=51))


def test_raising_a_limit_through_the_service_to_exactly_what_was_used_is_applied(
    policy: CedarPolicyEngine,
) -> None:
    store = MemoryStore()
    _stored(store, iteration=4, tokens_used=300, phase=LoopPhase.PAUSED)
    result = ControlService(store, policy).submit(
        _request(ControlAction.RAISE_LIMIT, limits=LimitChange(max_iterations=4, token_budget=300))
    )
    assert result.status == "applied"
    assert store.get_state("loop-c").config.max_iterations == 4


# ----------------------------------------------------------------------------- records


def test_raising_a_limit_records_the_changed_fields_and_says_them(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, iteration=4, phase=LoopPhase.PAUSED)
    request = _request(ControlAction.RAISE_LIMIT, limits=LimitChange(max_iterations=40, token_budget=9000))
    result = ControlService(store, policy).submit(request)
    assert (result.status, result.message, result.phase) == (
        "applied",
        "limits changed: max_iterations=40, token_budget=9000",
        LoopPhase.PAUSED,
    )
    assert result.control == request and result.policy_ids == ["operators-control-loop"]
    state = store.get_state("loop-c")
    assert state.config.max_iterations == 40 and state.config.token_budget == 9000
    assert state.config.cost_budget_usd is None  # not given, not changed
    [event] = store.events
    assert (event.loop_id, event.iteration, event.type, event.phase) == (
        "loop-c",
        4,
        EV.CONTROL_APPLIED,
        LoopPhase.PAUSED,
    )
    assert event.message == f"limits changed by {ALICE}: max_iterations=40, token_budget=9000"
    assert event.data == {
        "control": "RAISE_LIMIT",
        "principal": ALICE,
        "max_iterations": 40,
        "token_budget": 9000,
    }


def test_a_limit_raised_for_a_running_loop_is_queued_unapplied(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, is_active=True, phase=LoopPhase.ITERATING)
    request = _request(ControlAction.RAISE_LIMIT, limits=LimitChange(max_iterations=30))
    result = ControlService(store, policy).submit(request)
    assert (result.status, result.message, result.phase) == (
        "queued",
        "the new limits apply from the loop's next iteration",
        LoopPhase.ITERATING,
    )
    assert store.pending_controls("loop-c") == [request]
    assert store.get_state("loop-c").config.max_iterations == 10 and store.events == []


def test_a_limit_below_what_was_used_is_refused_even_for_a_running_loop(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, is_active=True, phase=LoopPhase.ITERATING, iteration=5)
    with pytest.raises(ControlConflictError, match="max_iterations: 4"):
        ControlService(store, policy).submit(
            _request(ControlAction.RAISE_LIMIT, limits=LimitChange(max_iterations=4))
        )
    assert store.controls == {}


@pytest.mark.parametrize(("reason", "recorded"), [("not needed", "not needed"), ("", f"by {ALICE}")])
def test_stopping_an_idle_loop_records_its_end(policy: CedarPolicyEngine, reason: str, recorded: str) -> None:
    store = MemoryStore()
    _stored(
        store,
        phase=LoopPhase.PAUSED,
        iteration=3,
        tokens_used=700,
        is_active=True,
        outcome=None,
        resume_at=START,
    )
    before = datetime.now(UTC)
    # is_active is stale (the engine died): the caller's is_running says the loop does not run
    result = ControlService(store, policy, is_running=lambda s: False).submit(
        _request(ControlAction.STOP, reason=reason)
    )
    after = datetime.now(UTC)
    assert (result.status, result.message, result.phase) == (
        "applied",
        "the loop is stopped",
        LoopPhase.COMPLETED,
    )
    state = store.get_state("loop-c")
    assert state.phase is LoopPhase.COMPLETED and state.outcome is LoopOutcome.STOPPED
    assert state.outcome_reason == f"stopped: {recorded}"
    assert state.is_active is False and state.resume_at is None
    assert state.ended_at is not None and before <= state.ended_at <= after
    [event] = store.events
    assert (event.loop_id, event.iteration, event.type, event.phase) == (
        "loop-c",
        3,
        EV.LOOP_COMPLETED,
        LoopPhase.COMPLETED,
    )
    assert event.message == f"STOPPED: stopped: {recorded}"
    assert event.data == {
        "control": "STOP",
        "principal": ALICE,
        "outcome": "STOPPED",
        "iterations": 3,
        "tokens_used": 700,
    }


def test_stopping_a_running_loop_is_queued_and_nothing_else_changes(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, is_active=True, phase=LoopPhase.ITERATING)
    request = _request(ControlAction.STOP)
    result = ControlService(store, policy).submit(request)
    assert (result.status, result.message, result.phase) == (
        "queued",
        "the loop stops after its current step",
        LoopPhase.ITERATING,
    )
    assert store.pending_controls("loop-c") == [request]
    state = store.get_state("loop-c")
    assert state.outcome is None and state.is_active and state.version == 1 and store.events == []


def test_pausing_a_running_loop_is_queued(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, is_active=True, phase=LoopPhase.VERIFYING)
    request = _request(ControlAction.PAUSE)
    result = ControlService(store, policy).submit(request)
    assert (result.status, result.message, result.phase) == (
        "queued",
        "the loop pauses after its current step",
        LoopPhase.VERIFYING,
    )
    assert store.pending_controls("loop-c") == [request] and store.events == []


def test_a_loop_marked_active_with_an_outcome_is_not_running(policy: CedarPolicyEngine) -> None:
    # The default is_running: is_active and no outcome yet.
    store = MemoryStore()
    _stored(store, is_active=True, phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED)
    resumed: list[LoopState] = []
    service = ControlService(store, policy, resumer=lambda s, r: resumed.append(s))
    with pytest.raises(ControlConflictError) as info:
        service.submit(_request(ControlAction.PAUSE))
    assert str(info.value) == "loop 'loop-c' is not running (phase COMPLETED); nothing to pause"
    result = service.submit(_request(ControlAction.RESUME))
    assert result.status == "applied" and len(resumed) == 1


def test_the_callers_is_running_decides_over_the_stored_flag(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, is_active=False, phase=LoopPhase.ITERATING)
    seen: list[str] = []

    def running(state: LoopState) -> bool:
        seen.append(state.loop_id)
        return True

    result = ControlService(store, policy, is_running=running).submit(_request(ControlAction.PAUSE))
    assert result.status == "queued" and seen == ["loop-c"]


def test_approving_records_the_answer_and_hands_over_the_saved_loop(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, iteration=2, human_request="may I?")
    resumed: list[tuple[LoopState, ControlRequest]] = []
    request = _request(ControlAction.APPROVE, response="y" * 300)
    result = ControlService(store, policy, resumer=lambda s, r: resumed.append((s, r))).submit(request)
    assert (result.status, result.message, result.phase) == (
        "applied",
        "approved; the loop continues",
        LoopPhase.AWAITING_RESPONSE,
    )
    [(state, given)] = resumed
    assert given is request
    assert state.version == 2 and state.human_response == "y" * 300
    assert store.get_state("loop-c").human_response == "y" * 300
    [event] = store.events
    assert (event.loop_id, event.iteration, event.type, event.phase) == (
        "loop-c",
        2,
        EV.CONTROL_APPLIED,
        LoopPhase.AWAITING_RESPONSE,
    )
    assert event.message == f"approved by {ALICE}: {'y' * 200}"
    assert event.data == {"control": "APPROVE", "principal": ALICE}


def test_approving_without_an_answer_records_approved(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE)
    resumed: list[LoopState] = []
    ControlService(store, policy, resumer=lambda s, r: resumed.append(s)).submit(
        _request(ControlAction.APPROVE)
    )
    assert resumed[0].human_response == "approved"
    assert store.events[0].message == f"approved by {ALICE}: approved"


def test_approving_a_loop_that_asked_nothing_is_a_conflict(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.PAUSED)
    with pytest.raises(ControlConflictError) as info:
        ControlService(store, policy, resumer=lambda s, r: None).submit(_request(ControlAction.APPROVE))
    assert str(info.value) == (
        "loop 'loop-c' is not waiting for an answer (phase PAUSED); nothing to approve"
    )
    assert store.get_state("loop-c").version == 1 and store.events == []


def test_approving_without_an_engine_is_a_conflict_and_writes_nothing(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE)
    with pytest.raises(ControlConflictError, match="cannot approve loops: no engine"):
        ControlService(store, policy).submit(_request(ControlAction.APPROVE))
    assert store.get_state("loop-c").version == 1 and store.events == []


@pytest.mark.parametrize(
    "outcome",
    [
        None,
        LoopOutcome.STOPPED,
        LoopOutcome.ITERATION_LIMIT,
        LoopOutcome.TOKEN_BUDGET_EXHAUSTED,
        LoopOutcome.COST_BUDGET_EXHAUSTED,
        LoopOutcome.TIME_LIMIT,
        LoopOutcome.POLICY_DENIED,
        LoopOutcome.FAILED,
    ],
)
def test_resume_hands_a_resumable_loop_to_the_resumer(
    policy: CedarPolicyEngine, outcome: LoopOutcome | None
) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.COMPLETED if outcome else LoopPhase.PAUSED, outcome=outcome)
    resumed: list[tuple[LoopState, ControlRequest]] = []
    request = _request(ControlAction.RESUME)
    result = ControlService(store, policy, resumer=lambda s, r: resumed.append((s, r))).submit(request)
    assert (result.status, result.message) == ("applied", "the loop is resuming")
    [(state, given)] = resumed
    assert state.loop_id == "loop-c" and state.outcome is outcome and given is request
    assert store.get_state("loop-c").version == 1 and store.events == []  # the resumer writes


def test_resume_without_an_engine_names_the_verb(policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    _stored(store, phase=LoopPhase.PAUSED)
    with pytest.raises(ControlConflictError, match="cannot resume loops: no engine"):
        ControlService(store, policy).submit(_request(ControlAction.RESUME))


# ----------------------------------------------------------------------------- denials


def test_a_denial_names_each_policy_with_its_message_and_cedars_errors() -> None:
    store = MemoryStore()
    _stored(store)
    engine = Scripted(
        PolicyDecision(
            allowed=False,
            policy_ids=["p1", "p2"],
            annotations={"p1": {"message": "no stopping on Fridays"}, "p2": {"outcome": "x"}},
            errors=["e1", "e2"],
        )
    )
    bare = Scripted(PolicyDecision(allowed=False, policy_ids=["p3"]))  # no annotations at all
    with pytest.raises(ControlDeniedError, match=r"loop 'loop-c': p3 \(policy p3\)$"):
        ControlService(store, bare).submit(_request(ControlAction.STOP))
    with pytest.raises(ControlDeniedError) as info:
        ControlService(store, engine).submit(_request(ControlAction.STOP))
    assert str(info.value) == (
        f"{ALICE} may not STOP loop 'loop-c': no stopping on Fridays (policy p1); p2 (policy p2); "
        "errors: e1; e2"
    )
    assert info.value.policy_ids == ["p1", "p2"]
    assert store.get_state("loop-c").version == 1 and store.events == []


def test_a_denial_without_policies_names_the_operators_group() -> None:
    store = MemoryStore()
    _stored(store, project="shop")
    engine = Scripted(PolicyDecision(allowed=False))
    with pytest.raises(ControlDeniedError) as info:
        ControlService(store, engine).submit(_request(ControlAction.PAUSE))
    assert str(info.value) == (
        f"{ALICE} may not PAUSE loop 'loop-c': no policy permits it: only members of the project's "
        'operators group (Group::"shop-operators") may control its loops'
    )
    assert info.value.policy_ids == []


def test_changed_policy_files_deny_every_control_until_accepted() -> None:
    store = MemoryStore()
    _stored(store, policy_files={"a.cedar": "1", "b.cedar": "2"}, phase=LoopPhase.PAUSED)
    engine = Scripted(ALLOW, files={"a.cedar": "1", "b.cedar": "3", "c.cedar": "4"})
    service = ControlService(store, engine)
    with pytest.raises(ControlDeniedError) as info:
        service.submit(_request(ControlAction.STOP))
    assert "(b.cedar, c.cedar)" in str(info.value)
    assert "loopwright resume loop-c --accept-policy-change" in str(info.value)
    assert info.value.policy_ids == [] and engine.requests == []
    with pytest.raises(ControlDeniedError):
        service.authorize(_request(ControlAction.RESUME))
    decision = service.authorize(_request(ControlAction.RESUME), accepting_policy_change=True)
    assert decision == ALLOW
    [asked] = engine.requests
    assert asked.action == 'Action::"ResumeLoop"' and asked.principal == ALICE
    assert store.get_state("loop-c").version == 1 and store.events == []


def test_unchanged_policy_files_decide_as_usual() -> None:
    store = MemoryStore()
    _stored(store, policy_files={"a.cedar": "1"}, phase=LoopPhase.PAUSED)
    engine = Scripted(ALLOW, files={"a.cedar": "1"})
    result = ControlService(store, engine).submit(_request(ControlAction.STOP))
    assert result.status == "applied" and result.policy_ids == ["p-allow"]
    assert engine.requests[0].action == 'Action::"StopLoop"'
