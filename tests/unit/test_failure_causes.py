"""Failure causes told apart (issue 15.3), in the core: how a cause is read from an AgentResult,
the backoff, what run_iteration counts and records, what decide does with each cause, and
Cedar's consecutive-failures policy with its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.models import (
    FAILURE_CAUSE_EVENTS,
    AgentFailureCause,
    AgentResult,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    NextAction,
    VerificationResult,
)
from loopwright.steps.authorize import authorize, build_authorization_request
from loopwright.steps.decide import decide
from loopwright.steps.failures import (
    BASE_BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    counts_as_failure,
    failure_cause,
    is_transient,
    retry_backoff_seconds,
)
from tests.unit.test_authorize import make_state
from tests.unit.test_policies_engine import POLICY_DIR
from tests.unit.test_workflow_records import _run, _state

C = AgentFailureCause
_EV = IterationEventType
NOT_MET = VerificationResult(passed=False, failing=["tests"], message="0/1 met")


# ----------------------------------------------------------------------------- failure_cause
@pytest.mark.parametrize(
    ("result", "cause"),
    [
        (AgentResult(summary="done"), None),
        (AgentResult(failed=True), C.CRASH),
        (AgentResult(usage_limit_resets_at=datetime(2030, 1, 1, tzinfo=UTC)), C.USAGE_LIMIT),
        (AgentResult(failed=True, failure_cause=C.IDLE), C.IDLE),
        (  # an explicit cause wins over the usage-limit time
            AgentResult(failure_cause=C.RATE_LIMIT, usage_limit_resets_at=datetime(2030, 1, 1, tzinfo=UTC)),
            C.RATE_LIMIT,
        ),
    ],
)
def test_the_cause_is_the_agents_else_read_from_its_result(result: AgentResult, cause: C | None) -> None:
    assert failure_cause(result) is cause


def test_which_causes_count_and_which_are_retried() -> None:
    assert {c for c in C if counts_as_failure(c)} == {
        C.RATE_LIMIT,
        C.PROVIDER_OUTAGE,
        C.CRASH,
        C.TIMEOUT,
        C.IDLE,
    }
    assert not counts_as_failure(None)
    assert {c for c in C if is_transient(c)} == {C.RATE_LIMIT, C.PROVIDER_OUTAGE}
    assert not is_transient(None)
    assert set(FAILURE_CAUSE_EVENTS) == set(C)  # every cause is an event type
    assert len(set(FAILURE_CAUSE_EVENTS.values())) == len(C)


def test_backoff_doubles_up_to_its_cap_and_the_providers_delay_wins() -> None:
    plain = AgentResult(failed=True)
    assert [retry_backoff_seconds(plain, n) for n in (1, 2, 3, 5, 6, 100)] == [
        BASE_BACKOFF_SECONDS,
        2 * BASE_BACKOFF_SECONDS,
        4 * BASE_BACKOFF_SECONDS,
        16 * BASE_BACKOFF_SECONDS,
        MAX_BACKOFF_SECONDS,
        MAX_BACKOFF_SECONDS,
    ]
    assert retry_backoff_seconds(AgentResult(retry_after_seconds=7.5), 3) == 7.5
    assert retry_backoff_seconds(AgentResult(retry_after_seconds=5000), 1) == MAX_BACKOFF_SECONDS
    with pytest.raises(ValueError, match="attempt must be 1 or more"):
        retry_backoff_seconds(plain, 0)


def test_bad_retry_after_and_max_consecutive_failures_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="retry_after_seconds"):
        AgentResult(retry_after_seconds=-1)
    with pytest.raises(ValidationError, match="failure_cause"):
        AgentResult.model_validate({"failure_cause": "BORED"})
    with pytest.raises(ValidationError, match="max_consecutive_failures"):
        LoopConfig.model_validate(
            {"goal": "g", "exit_conditions": [{"type": "ALL_TESTS_PASS"}], "max_consecutive_failures": 0}
        )
    assert (
        LoopConfig.model_validate(
            {"goal": "g", "exit_conditions": [{"type": "ALL_TESTS_PASS"}]}
        ).max_consecutive_failures
        == 5
    )


# ----------------------------------------------------------------------------- run_iteration
def test_a_crash_counts_an_iteration_and_a_failure_and_is_recorded_after_agent_failed() -> None:
    state = _state(iteration=3, consecutive_failures=1)
    record = _run(state, AgentResult(failed=True, summary="segfault"))
    assert record.types == [_EV.AGENT_FAILED, _EV.AGENT_CRASHED]
    crashed = record.one(_EV.AGENT_CRASHED)
    assert crashed.message == "CRASH: segfault (2 of 5 failures in a row)"
    assert crashed.data == {"cause": "CRASH", "consecutive_failures": 2, "retry_at": None}
    assert crashed.iteration == 4
    assert (state.iteration, state.consecutive_failures, state.uncounted_iterations) == (4, 2, 0)
    assert state.last_failure_cause is C.CRASH and state.resume_at is None


def test_an_iteration_that_worked_resets_the_failures() -> None:
    state = _state(iteration=3, consecutive_failures=4, last_failure_cause=C.TIMEOUT)
    record = _run(state, AgentResult(summary="fixed"))
    assert record.types == [_EV.AGENT_COMPLETED]
    assert (state.consecutive_failures, state.last_failure_cause) == (0, None)


@pytest.mark.parametrize("cause", [C.RATE_LIMIT, C.PROVIDER_OUTAGE])
def test_a_transient_failure_is_not_counted_and_sets_the_retry_time(cause: C) -> None:
    state = _state(iteration=3, consecutive_failures=1, uncounted_iterations=2)
    before = datetime.now(UTC)
    record = _run(state, AgentResult(failed=True, failure_cause=cause, summary="429"))
    event = record.one(FAILURE_CAUSE_EVENTS[cause])
    assert state.resume_at is not None
    wait = (state.resume_at - before).total_seconds()
    assert 2 * BASE_BACKOFF_SECONDS - 1 <= wait <= 2 * BASE_BACKOFF_SECONDS + 1  # second in a row
    assert (state.consecutive_failures, state.uncounted_iterations) == (2, 3)
    assert event.data["retry_at"] == state.resume_at.isoformat()
    assert "not counted" in event.message
    # Cedar sees the counted iteration: 4 done, 3 of them retries -> the 2nd counted one is next
    assert build_authorization_request(state).context["iteration"] == 2


@pytest.mark.parametrize("cause", [C.USAGE_LIMIT, C.AUTHENTICATION])
def test_a_pausing_cause_is_recorded_but_not_counted(cause: C) -> None:
    state = _state(iteration=3, consecutive_failures=2)
    result = AgentResult(failure_cause=cause, summary="limit", failed=cause is C.AUTHENTICATION)
    record = _run(state, result)
    event = record.one(FAILURE_CAUSE_EVENTS[cause])
    assert event.data["consecutive_failures"] == 2 and "in a row" not in event.message
    assert (state.consecutive_failures, state.uncounted_iterations, state.last_failure_cause) == (2, 0, cause)


# ----------------------------------------------------------------------------- decide
def test_an_authentication_error_pauses_for_a_human_without_a_resume_time() -> None:
    decision = decide(verification=NOT_MET, failure_cause=C.AUTHENTICATION)
    assert decision.action is NextAction.PAUSE and decision.resume_at is None
    assert "could not authenticate" in decision.reason and "resume" in decision.reason
    # gate:all passing still completes, a human's stop still stops
    assert decide(verification=VerificationResult(passed=True), failure_cause=C.AUTHENTICATION).action is (
        NextAction.COMPLETE
    )
    assert decide(verification=NOT_MET, stop_reason="x", failure_cause=C.AUTHENTICATION).outcome is (
        LoopOutcome.STOPPED
    )


@pytest.mark.parametrize(
    ("cause", "what"), [(C.RATE_LIMIT, "rate limit"), (C.PROVIDER_OUTAGE, "provider outage")]
)
def test_a_transient_failure_pauses_until_its_retry(cause: C, what: str) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    decision = decide(verification=NOT_MET, usage_limit_resets_at=at, failure_cause=cause)
    assert decision.action is NextAction.PAUSE and decision.resume_at == at
    assert (
        decision.reason == f"{what}: the agent is retried at {at.isoformat()} (not counted as an iteration)"
    )


@pytest.mark.parametrize("cause", [None, C.CRASH, C.TIMEOUT, C.IDLE])
def test_other_causes_continue_and_a_usage_limit_keeps_its_message(cause: C | None) -> None:
    assert decide(verification=NOT_MET, failure_cause=cause).action is NextAction.CONTINUE
    at = datetime(2030, 1, 1, tzinfo=UTC)
    usage = decide(verification=NOT_MET, usage_limit_resets_at=at, failure_cause=C.USAGE_LIMIT)
    assert usage.reason == f"usage limit reached; continues at {at.isoformat()}"


# ----------------------------------------------------------------------------- Cedar
@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine(POLICY_DIR)


def test_cedar_stops_the_loop_at_max_consecutive_failures_with_the_cause(engine: CedarPolicyEngine) -> None:
    state = make_state(6, max_consecutive_failures=3)
    state.consecutive_failures, state.last_failure_cause = 3, C.TIMEOUT
    denied = authorize(state, engine)
    assert not denied.allowed and denied.outcome is LoopOutcome.AGENT_FAILING
    assert denied.denied_by == ["consecutive-failures"]
    assert denied.reason == (
        "policy 'consecutive-failures' denied iteration 7: the agent failed 3 iterations in a row "
        "(limit 3); last cause: TIMEOUT"
    )
    state.consecutive_failures = 2
    assert authorize(state, engine).allowed


def test_uncounted_retries_do_not_reach_the_iteration_limit(engine: CedarPolicyEngine) -> None:
    state = make_state(10)  # 10 iterations done of 10
    assert authorize(state, engine).outcome is LoopOutcome.ITERATION_LIMIT
    state.uncounted_iterations = 1  # one of them a retry after a rate limit
    assert authorize(state, engine).allowed


def test_the_counted_iteration_is_never_below_one_and_no_cause_is_left_out() -> None:
    state = make_state(1)
    state.uncounted_iterations = 5
    context = build_authorization_request(state).context
    assert context["iteration"] == 1
    assert context["consecutive_failures"] == 0 and "last_failure_cause" not in context
