"""The decide and verify steps, whole: every branch's action, outcome, reason and resume time, and
the gate's failing list (which conditions, in the config's order) and message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loopwright.models import (
    AgentResult,
    AuthorizationResult,
    Decision,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
    LoopOutcome,
    NextAction,
    VerificationResult,
)
from loopwright.steps.decide import decide
from loopwright.steps.verify import verify

S = ExitConditionStatusValue
RESET = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
PASSED = VerificationResult(passed=True, message="gate:all passed")
FAILED = VerificationResult(passed=False, failing=["a"], message="gate:all failed: a not met")
ALLOWED = AuthorizationResult(allowed=True, iteration=3)


# ----------------------------------------------------------------------------- decide


def test_a_denial_stops_with_the_policy_outcome_and_reason() -> None:
    denied = AuthorizationResult(
        allowed=False, iteration=3, outcome=LoopOutcome.TOKEN_BUDGET_EXHAUSTED, reason="over budget"
    )
    assert decide(authorization=denied, verification=PASSED, stop_reason="x") == Decision(
        action=NextAction.STOP, outcome=LoopOutcome.TOKEN_BUDGET_EXHAUSTED, reason="over budget"
    )


def test_a_denial_without_outcome_or_reason_is_policy_denied() -> None:
    denied = AuthorizationResult(allowed=False, iteration=3)
    assert decide(authorization=denied) == Decision(
        action=NextAction.STOP, outcome=LoopOutcome.POLICY_DENIED, reason="denied by policy"
    )


def test_an_allowed_authorization_decides_nothing_by_itself() -> None:
    assert decide(authorization=ALLOWED) == Decision(action=NextAction.CONTINUE, reason="")
    assert decide(authorization=ALLOWED, verification=PASSED).action is NextAction.COMPLETE


def test_passed_verification_completes_even_when_a_stop_or_pause_was_asked() -> None:
    decision = decide(
        verification=PASSED,
        stop_reason="s",
        pause_reason="p",
        condition_problem="c",
        agent=AgentResult(needs_human="?"),
        usage_limit_resets_at=RESET,
    )
    assert decision == Decision(
        action=NextAction.COMPLETE, outcome=LoopOutcome.CONDITIONS_MET, reason="gate:all passed"
    )


def test_a_stop_wins_over_pause_problem_usage_limit_and_question() -> None:
    decision = decide(
        verification=FAILED,
        stop_reason="by alice",
        pause_reason="p",
        condition_problem="c",
        usage_limit_resets_at=RESET,
        agent=AgentResult(needs_human="?"),
    )
    assert decision == Decision(
        action=NextAction.STOP, outcome=LoopOutcome.STOPPED, reason="stopped: by alice"
    )
    # an empty reason still stops
    assert decide(stop_reason="").action is NextAction.STOP


def test_a_pause_wins_over_a_condition_problem_and_the_usage_limit() -> None:
    decision = decide(pause_reason="lunch", condition_problem="c", usage_limit_resets_at=RESET)
    assert decision == Decision(action=NextAction.PAUSE, reason="paused: lunch")
    assert decision.outcome is None and decision.resume_at is None
    assert decide(pause_reason="").action is NextAction.PAUSE


def test_a_condition_problem_pauses_for_a_human_before_the_usage_limit() -> None:
    decision = decide(
        verification=FAILED, condition_problem="ruff is not installed", usage_limit_resets_at=RESET
    )
    assert decision == Decision(action=NextAction.PAUSE, reason="paused: ruff is not installed")
    assert decide(condition_problem="").action is NextAction.PAUSE


def test_a_usage_limit_pauses_until_it_resets() -> None:
    decision = decide(verification=FAILED, usage_limit_resets_at=RESET, agent=AgentResult(needs_human="?"))
    assert decision == Decision(
        action=NextAction.PAUSE,
        reason=f"usage limit reached; continues at {RESET.isoformat()}",
        resume_at=RESET,
    )


def test_the_agents_usage_limit_counts_when_none_is_given_and_the_given_one_wins() -> None:
    agent = AgentResult(usage_limit_resets_at=LATER)
    assert decide(agent=agent).resume_at == LATER
    assert decide(agent=agent).action is NextAction.PAUSE
    assert decide(agent=agent, usage_limit_resets_at=RESET).resume_at == RESET


def test_an_agents_question_awaits_a_human() -> None:
    decision = decide(verification=FAILED, agent=AgentResult(needs_human="which database?"))
    assert decision == Decision(action=NextAction.AWAIT_HUMAN, reason="agent asks: which database?")


def test_otherwise_the_loop_continues_with_the_gates_message() -> None:
    assert decide(verification=FAILED, agent=AgentResult()) == Decision(
        action=NextAction.CONTINUE, reason="gate:all failed: a not met"
    )
    assert decide() == Decision(action=NextAction.CONTINUE, reason="")
    assert decide(agent=AgentResult(needs_human="")).action is NextAction.CONTINUE


# ----------------------------------------------------------------------------- verify


def _config() -> LoopConfig:
    return LoopConfig.model_validate(
        {
            "goal": "g",
            "git_isolation": False,
            "exit_conditions": [
                {"type": "CUSTOM", "name": "a", "command": "a", "parser": "exit_code"},
                {"type": "CUSTOM", "name": "b", "command": "b", "parser": "exit_code"},
                {"type": "CUSTOM", "name": "opt", "command": "o", "parser": "exit_code", "required": False},
                {"type": "CUSTOM", "name": "c", "command": "c", "parser": "exit_code"},
            ],
        }
    )


def _status(name: str, status: ExitConditionStatusValue) -> ExitConditionStatus:
    return ExitConditionStatus(name=name, type=ExitConditionType.CUSTOM, status=status)


def test_the_gate_passes_when_every_required_condition_is_met() -> None:
    result = verify(_config(), [_status("c", S.MET), _status("a", S.MET), _status("b", S.MET)])
    assert result == VerificationResult(
        passed=True, failing=[], message="gate:all passed: every required exit condition holds"
    )


@pytest.mark.parametrize("status", [S.NOT_MET, S.ERROR, S.TIMEOUT, S.PENDING])
def test_the_gate_fails_on_each_status_but_met(status: ExitConditionStatusValue) -> None:
    result = verify(_config(), [_status("a", S.MET), _status("b", status), _status("c", S.MET)])
    assert result == VerificationResult(passed=False, failing=["b"], message="gate:all failed: b not met")


def test_the_gate_lists_unmet_and_missing_required_conditions_in_config_order() -> None:
    result = verify(_config(), [_status("c", S.NOT_MET), _status("opt", S.NOT_MET), _status("b", S.MET)])
    assert result == VerificationResult(
        passed=False, failing=["a", "c"], message="gate:all failed: a, c not met"
    )
    nothing = verify(_config(), [])
    assert nothing.failing == ["a", "b", "c"] and not nothing.passed


def test_an_optional_condition_neither_fails_nor_passes_the_gate() -> None:
    result = verify(
        _config(), [_status("a", S.MET), _status("b", S.MET), _status("c", S.MET), _status("opt", S.ERROR)]
    )
    assert result.passed and result.failing == []
