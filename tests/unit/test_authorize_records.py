"""The authorize step's records to the character: each denial's and warning's sentence (every
limit, with and without the limit set, with and without a message), the outcome a denial's
@outcome names, the fail-closed result, and the money and percentage helpers at their edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopwright.models import (
    AuthorizationRequest,
    AuthorizationResult,
    LoopConfig,
    LoopOutcome,
    LoopState,
    PolicyDecision,
)
from loopwright.ports import PolicyEngine
from loopwright.steps.authorize import (
    CONTINUE_ITERATION,
    EVALUATE_WARNINGS,
    MAX_CEDAR_MICRO_USD,
    _outcome,
    _percent,
    _usd,
    authorize,
    build_authorization_request,
    loop_principal,
    micro_usd,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
OUT = LoopOutcome


class Fixed(PolicyEngine):
    """One decision for ContinueIteration, one for EvaluateWarnings; records the requests."""

    def __init__(self, decision: PolicyDecision, warnings: PolicyDecision | None = None) -> None:
        self.answers = {
            CONTINUE_ITERATION: decision,
            EVALUATE_WARNINGS: warnings or PolicyDecision(allowed=False),
        }
        self.requests: list[AuthorizationRequest] = []

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        self.requests.append(request)
        return self.answers[request.action]


def _state(
    done: int = 7, *, tokens: int = 850, cost: float = 4.25, elapsed: float = 500.7, **limits: Any
) -> LoopState:
    config = LoopConfig.model_validate(
        {
            "goal": "g",
            "git_isolation": False,
            "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "a", "parser": "exit_code"}],
            "max_iterations": 10,
            **limits,
        }
    )
    return LoopState(
        loop_id="loop-a",
        config=config,
        iteration=done,
        tokens_used=tokens,
        cost_usd=cost,
        started_at=START,
        ended_at=START + timedelta(seconds=elapsed),
    )


ALL_LIMITS = {"token_budget": 1000, "cost_budget_usd": 5.0, "max_duration_seconds": 600}


def _denied(outcome: str | None, message: str | None = None, **limits: Any) -> AuthorizationResult:
    annotations: dict[str, str] = {}
    if outcome is not None:
        annotations["outcome"] = outcome
    if message is not None:
        annotations["message"] = message
    decision = PolicyDecision(allowed=False, policy_ids=["p"], annotations={"p": annotations})
    return authorize(_state(**limits), Fixed(decision))


# ----------------------------------------------------------------------------- helpers


def test_loop_principal_is_the_loops_agent() -> None:
    assert loop_principal("loop-a") == 'Agent::"loop-a"'
    assert build_authorization_request(_state()).principal == 'Agent::"loop-a"'


@pytest.mark.parametrize(
    ("usd", "micro"),
    [
        (0.3, 300_000),
        (0.1 + 0.2, 300_000),
        (0.0, 0),
        (-1.0, 0),
        (0.0000026, 3),
        (10_000_000_000.0, MAX_CEDAR_MICRO_USD),
        (10_000_000_000.000001, MAX_CEDAR_MICRO_USD),
        (1e12, MAX_CEDAR_MICRO_USD),
        (9_999_999_999.0, MAX_CEDAR_MICRO_USD - 1_000_000),
    ],
)
def test_micro_usd_rounds_to_whole_micro_dollars_within_cedars_range(usd: float, micro: int) -> None:
    assert micro_usd(usd) == micro


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (4_250_000, "$4.25"),
        (4_999_999, "$4.999999"),
        (1_234, "$0.001234"),
        (0, "$0.00"),
        (100_000, "$0.10"),
        (1_000_000, "$1.00"),
        (1_234_567_890_000, "$1,234,567.89"),
    ],
)
def test_usd_is_exact_and_at_least_to_the_cent(micro: int, text: str) -> None:
    assert _usd(micro) == text


@pytest.mark.parametrize(
    ("used", "limit", "percent"), [(8, 10, 80), (1, 3, 33), (3, 3, 100), (0, 10, 0), (5, 0, 100), (5, 1, 500)]
)
def test_percent_is_rounded_down_and_100_without_a_limit(used: int, limit: int, percent: int) -> None:
    assert _percent(used, limit) == percent


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        ("ITERATION_LIMIT", OUT.ITERATION_LIMIT),
        ("TOKEN_BUDGET_EXHAUSTED", OUT.TOKEN_BUDGET_EXHAUSTED),
        ("COST_BUDGET_EXHAUSTED", OUT.COST_BUDGET_EXHAUSTED),
        ("TIME_LIMIT", OUT.TIME_LIMIT),
        ("POLICY_DENIED", OUT.POLICY_DENIED),
        ("CONDITIONS_MET", OUT.POLICY_DENIED),
        ("STOPPED", OUT.POLICY_DENIED),
        ("FAILED", OUT.POLICY_DENIED),
        ("iteration_limit", OUT.POLICY_DENIED),
        ("", OUT.POLICY_DENIED),
        (None, OUT.POLICY_DENIED),
    ],
)
def test_only_a_denial_outcome_is_taken_from_the_annotation(value: str | None, outcome: LoopOutcome) -> None:
    assert _outcome(value) is outcome


# ----------------------------------------------------------------------------- denials


@pytest.mark.parametrize(
    ("outcome", "sentence"),
    [
        ("ITERATION_LIMIT", "policy 'p' denied iteration 8: limit is 10 iterations"),
        (
            "TOKEN_BUDGET_EXHAUSTED",
            "policy 'p' denied iteration 8: 850 tokens used of a budget of 1000 tokens",
        ),
        ("COST_BUDGET_EXHAUSTED", "policy 'p' denied iteration 8: $4.25 spent of a budget of $5.00"),
        ("TIME_LIMIT", "policy 'p' denied iteration 8: 500 s elapsed of a limit of 600 s"),
        ("POLICY_DENIED", "policy 'p' denied iteration 8: says so"),
    ],
)
def test_each_denial_names_the_policy_and_its_figures(outcome: str, sentence: str) -> None:
    result = _denied(outcome, "says so", **ALL_LIMITS)
    assert result == AuthorizationResult(
        allowed=False, iteration=8, denied_by=["p"], outcome=LoopOutcome(outcome), reason=sentence
    )


@pytest.mark.parametrize("outcome", ["TOKEN_BUDGET_EXHAUSTED", "COST_BUDGET_EXHAUSTED", "TIME_LIMIT"])
def test_a_denial_for_an_unset_limit_gives_the_policys_message_or_nothing_more(outcome: str) -> None:
    assert _denied(outcome, "custom words").reason == "policy 'p' denied iteration 8: custom words"
    assert _denied(outcome).reason == "policy 'p' denied iteration 8"
    assert _denied(outcome, "").reason == "policy 'p' denied iteration 8"
    assert _denied(outcome).outcome is LoopOutcome(outcome)


def test_several_denials_are_joined_and_the_first_names_the_outcome() -> None:
    decision = PolicyDecision(
        allowed=False,
        policy_ids=["time", "tokens", "other"],
        annotations={
            "time": {"outcome": "TIME_LIMIT"},
            "tokens": {"outcome": "TOKEN_BUDGET_EXHAUSTED"},
        },
    )
    engine = Fixed(decision, PolicyDecision(allowed=True, policy_ids=["iteration-warning"]))
    result = authorize(_state(**ALL_LIMITS), engine)
    assert result == AuthorizationResult(
        allowed=False,
        iteration=8,
        denied_by=["time", "tokens", "other"],
        outcome=LoopOutcome.TIME_LIMIT,
        reason=(
            "policy 'time' denied iteration 8: 500 s elapsed of a limit of 600 s; "
            "policy 'tokens' denied iteration 8: 850 tokens used of a budget of 1000 tokens; "
            "policy 'other' denied iteration 8"
        ),
    )
    assert [r.action for r in engine.requests] == [CONTINUE_ITERATION, EVALUATE_WARNINGS]


def test_a_default_deny_is_policy_denied() -> None:
    assert authorize(_state(), Fixed(PolicyDecision(allowed=False))) == AuthorizationResult(
        allowed=False,
        iteration=8,
        denied_by=[],
        outcome=LoopOutcome.POLICY_DENIED,
        reason="no policy permits iteration 8 (Cedar denies by default)",
    )


def test_evaluation_errors_deny_even_an_allowed_decision() -> None:
    decision = PolicyDecision(allowed=True, policy_ids=["continue"], errors=["e1", "e2"])
    assert authorize(_state(), Fixed(decision)) == AuthorizationResult(
        allowed=False,
        iteration=8,
        denied_by=["continue"],
        outcome=LoopOutcome.POLICY_DENIED,
        reason="Cedar could not evaluate the policies for iteration 8, so it is denied (fail closed): e1; e2",
    )


# ----------------------------------------------------------------------------- warnings

ALLOW = PolicyDecision(allowed=True, policy_ids=["continue"])


def _warned(warns: str | None, message: str | None = None, **limits: Any) -> list[str]:
    annotations: dict[str, str] = {}
    if warns is not None:
        annotations["warns"] = warns
    if message is not None:
        annotations["message"] = message
    warnings = PolicyDecision(allowed=True, policy_ids=["w"], annotations={"w": annotations})
    result = authorize(_state(**limits), Fixed(ALLOW, warnings))
    assert result.allowed and result.iteration == 8 and result.warnings == ["w"]
    assert result.denied_by == [] and result.outcome is None and result.reason is None
    return result.warning_messages


@pytest.mark.parametrize(
    ("warns", "sentence"),
    [
        ("ITERATION_LIMIT", "iteration 8 of 10 (80% of the iteration limit, SC-008)"),
        ("TOKEN_BUDGET_EXHAUSTED", "850 of 1000 tokens used (85% of the token budget, SC-008)"),
        ("COST_BUDGET_EXHAUSTED", "$4.25 of $5.00 spent (85% of the cost budget, SC-008)"),
        ("TIME_LIMIT", "500 of 600 s elapsed (83% of the time limit, SC-008)"),
        ("POLICY_DENIED", "policy 'w': careful"),
    ],
)
def test_each_warning_gives_the_figures_of_its_limit(warns: str, sentence: str) -> None:
    assert _warned(warns, "careful", **ALL_LIMITS) == [sentence]


@pytest.mark.parametrize("warns", ["TOKEN_BUDGET_EXHAUSTED", "COST_BUDGET_EXHAUSTED", "TIME_LIMIT", None])
def test_a_warning_for_an_unset_limit_gives_its_message_or_says_it_applies(warns: str | None) -> None:
    assert _warned(warns, "careful") == ["policy 'w': careful"]
    assert _warned(warns) == ["policy 'w' applies"]
    assert _warned(warns, "") == ["policy 'w' applies"]


def test_warning_errors_come_first_and_the_warnings_that_apply_still_count() -> None:
    warnings = PolicyDecision(
        allowed=True,
        policy_ids=["a", "b"],
        annotations={"a": {"message": "one"}, "b": {"warns": "ITERATION_LIMIT"}},
        errors=["x", "y"],
    )
    result = authorize(_state(), Fixed(ALLOW, warnings))
    assert result == AuthorizationResult(
        allowed=True,
        iteration=8,
        warnings=["a", "b"],
        warning_messages=[
            "warning policies could not be evaluated: x; y",
            "policy 'a': one",
            "iteration 8 of 10 (80% of the iteration limit, SC-008)",
        ],
    )


def test_no_warning_applies_when_the_warnings_question_is_denied() -> None:
    warnings = PolicyDecision(allowed=False, policy_ids=["a"], annotations={"a": {"message": "one"}})
    result = authorize(_state(), Fixed(ALLOW, warnings))
    assert result == AuthorizationResult(allowed=True, iteration=8, warnings=[], warning_messages=[])


def test_the_warnings_question_is_the_same_request_with_another_action() -> None:
    engine = Fixed(ALLOW)
    authorize(_state(**ALL_LIMITS), engine, principal='User::"bob"')
    first, second = engine.requests
    assert first.action == CONTINUE_ITERATION and second.action == EVALUATE_WARNINGS
    assert first.model_dump(exclude={"action"}) == second.model_dump(exclude={"action"})
    assert first.principal == 'User::"bob"'
    assert first.context == {
        "iteration": 8,
        "tokens_used": 850,
        "cost_micro_usd": 4_250_000,
        "elapsed_seconds": 500,
        "consecutive_failures": 0,
        "sessions_used": 0,
        "starts_session": True,
        "iterations_without_change": 0,
        "repeated_failure_count": 0,
        "tree_seen_before": False,
        "failing_count": 0,
        "best_failing_count": 0,
        "changed_paths": [],
    }
    assert first.resource_attributes["cost_budget_micro_usd"] == 5_000_000
    assert first.resource_attributes["max_duration_seconds"] == 600


def test_policies_without_annotations_deny_and_warn_by_their_id() -> None:
    denial = authorize(_state(), Fixed(PolicyDecision(allowed=False, policy_ids=["bare"])))
    assert (denial.outcome, denial.reason, denial.denied_by) == (
        LoopOutcome.POLICY_DENIED,
        "policy 'bare' denied iteration 8",
        ["bare"],
    )
    warned = authorize(_state(), Fixed(ALLOW, PolicyDecision(allowed=True, policy_ids=["bare"])))
    assert (warned.warnings, warned.warning_messages) == (["bare"], ["policy 'bare' applies"])
