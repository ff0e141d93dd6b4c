"""The authorize step with the real Cedar policies (``policies/``) and with fake engines."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.exceptions import ConfigError
from loopwright.models import (
    AuthorizationRequest,
    ExitConditionConfig,
    ExitConditionType,
    LoopConfig,
    LoopOutcome,
    LoopState,
    PolicyDecision,
    utcnow,
)
from loopwright.ports import PolicyEngine
from loopwright.steps.authorize import (
    CONTINUE_ITERATION,
    EVALUATE_WARNINGS,
    authorize,
    build_authorization_request,
)

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine(POLICY_DIR)


def make_state(done: int = 0, *, tokens: int = 0, elapsed: float = 0.0, **limits: Any) -> LoopState:
    """A loop that has finished ``done`` iterations (so it asks for ``done + 1``)."""
    settings: dict[str, Any] = {"max_iterations": 10} | limits
    config = LoopConfig(
        goal="make the tests pass",
        exit_conditions=[ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS)],
        **settings,
    )
    return LoopState(
        loop_id="loop-test",
        config=config,
        iteration=done,
        tokens_used=tokens,
        started_at=utcnow() - timedelta(seconds=elapsed),
    )


class FakeEngine(PolicyEngine):
    """Returns fixed decisions per action and records the requests."""

    def __init__(self, decisions: dict[str, PolicyDecision]) -> None:
        self.decisions = decisions
        self.requests: list[AuthorizationRequest] = []

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        self.requests.append(request)
        # An action the test did not script (the warnings question) is denied: no warning applies.
        return self.decisions.get(request.action, PolicyDecision(allowed=False))


def test_allowed_within_limits(engine: CedarPolicyEngine) -> None:
    state = make_state(2, tokens=100, elapsed=60, token_budget=1000, max_duration_seconds=3600)

    result = authorize(state, engine)

    assert result.allowed
    assert result.iteration == 3
    assert result.outcome is None and result.denied_by == [] and result.reason is None
    assert result.warnings == [] and result.warning_messages == []


def test_last_iteration_is_allowed(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(9), engine)

    assert result.allowed and result.iteration == 10


def test_iteration_after_the_limit_is_denied(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(10), engine)

    assert not result.allowed
    assert result.iteration == 11
    assert result.outcome is LoopOutcome.ITERATION_LIMIT
    assert result.denied_by == ["iteration-limit"]
    assert result.reason == "policy 'iteration-limit' denied iteration 11: limit is 10 iterations"
    assert result.warnings == []


def test_spent_token_budget_is_denied(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(3, tokens=1000, token_budget=1000), engine)

    assert not result.allowed
    assert result.outcome is LoopOutcome.TOKEN_BUDGET_EXHAUSTED
    assert result.denied_by == ["token-budget"]
    assert result.reason == (
        "policy 'token-budget' denied iteration 4: 1000 tokens used of a budget of 1000 tokens"
    )


def test_tokens_below_budget_are_allowed(engine: CedarPolicyEngine) -> None:
    assert authorize(make_state(3, tokens=999, token_budget=1000), engine).allowed


def test_no_budget_means_no_token_denial(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(3, tokens=10**12), engine)

    assert result.allowed
    assert result.warnings == []


def test_time_limit_is_denied(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(3, elapsed=3600, max_duration_seconds=3600), engine)

    assert not result.allowed
    assert result.outcome is LoopOutcome.TIME_LIMIT
    assert result.denied_by == ["time-limit"]
    assert result.reason is not None
    assert result.reason.startswith("policy 'time-limit' denied iteration 4: 3600 s elapsed")
    assert result.reason.endswith("of a limit of 3600 s")


def test_several_limits_name_every_denying_policy(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(10, tokens=2000, token_budget=1000), engine)

    assert result.denied_by == ["iteration-limit", "token-budget"]
    assert result.outcome is LoopOutcome.ITERATION_LIMIT  # the first denying policy
    assert result.reason is not None and "'token-budget'" in result.reason


def test_iteration_warning_at_80_percent(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(7), engine)

    assert result.allowed and result.iteration == 8
    assert result.warnings == ["iteration-warning"]
    assert result.warning_messages == ["iteration 8 of 10 (80% of the iteration limit, SC-008)"]


def test_no_iteration_warning_below_80_percent(engine: CedarPolicyEngine) -> None:
    result = authorize(make_state(6), engine)

    assert result.allowed and result.iteration == 7
    assert result.warnings == []


def test_token_and_time_warnings(engine: CedarPolicyEngine) -> None:
    state = make_state(1, tokens=850, elapsed=500, token_budget=1000, max_duration_seconds=600)

    result = authorize(state, engine)

    assert result.allowed
    assert result.warnings == ["token-budget-warning", "time-limit-warning"]
    assert result.warning_messages[0] == "850 of 1000 tokens used (85% of the token budget, SC-008)"
    assert result.warning_messages[1].startswith("500 of 600 s elapsed (83% of the time limit")


def test_warning_threshold_follows_the_config(engine: CedarPolicyEngine) -> None:
    assert authorize(make_state(4, warning_threshold_percent=50), engine).warnings == ["iteration-warning"]
    assert authorize(make_state(3, warning_threshold_percent=50), engine).warnings == []


def test_request_shape() -> None:
    state = make_state(4, tokens=12, elapsed=7.9, token_budget=100)

    request = build_authorization_request(state)

    assert request.principal == 'Agent::"loop-test"'
    assert request.action == CONTINUE_ITERATION
    assert request.resource == 'Loop::"loop-test"'
    assert request.resource_attributes == {
        "project": "default",
        "operators": {"__entity": {"type": "Group", "id": "default-operators"}},
        "max_iterations": 10,
        "warning_threshold_percent": 80,
        "max_consecutive_failures": 5,
        "token_budget": 100,
        "max_stuck_iterations": 3,
    }
    assert request.context == {
        "iteration": 5,
        "tokens_used": 12,
        "cost_micro_usd": 0,
        "elapsed_seconds": 7,
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


def test_principal_override_and_warning_request_reuse_the_counters() -> None:
    fake = FakeEngine(
        {
            CONTINUE_ITERATION: PolicyDecision(allowed=True, policy_ids=["continue-iteration"]),
            EVALUATE_WARNINGS: PolicyDecision(allowed=False),
        }
    )

    result = authorize(make_state(2), fake, principal='Agent::"someone"')

    assert result.allowed and result.warnings == []
    assert [r.action for r in fake.requests] == [CONTINUE_ITERATION, EVALUATE_WARNINGS]
    assert {r.principal for r in fake.requests} == {'Agent::"someone"'}
    assert fake.requests[0].context == fake.requests[1].context


def test_evaluation_errors_fail_closed() -> None:
    fake = FakeEngine(
        {
            CONTINUE_ITERATION: PolicyDecision(
                allowed=True,
                policy_ids=["continue-iteration"],
                errors=["error while evaluating policy `iteration-limit`: boom"],
            ),
        }
    )

    result = authorize(make_state(2), fake)

    assert not result.allowed
    assert result.outcome is LoopOutcome.POLICY_DENIED
    assert result.reason is not None
    assert "fail closed" in result.reason and "boom" in result.reason
    assert result.warnings == [] and result.warning_messages == []  # none for a denied iteration


def test_default_deny_without_determining_policy() -> None:
    fake = FakeEngine({CONTINUE_ITERATION: PolicyDecision(allowed=False)})

    result = authorize(make_state(), fake)

    assert not result.allowed
    assert result.outcome is LoopOutcome.POLICY_DENIED
    assert result.denied_by == []
    assert result.reason == "no policy permits iteration 1 (Cedar denies by default)"


def test_unknown_outcome_annotation_maps_to_policy_denied() -> None:
    fake = FakeEngine(
        {
            CONTINUE_ITERATION: PolicyDecision(
                allowed=False,
                policy_ids=["freeze"],
                annotations={"freeze": {"id": "freeze", "outcome": "CONDITIONS_MET"}},
            )
        }
    )

    result = authorize(make_state(), fake)

    assert result.outcome is LoopOutcome.POLICY_DENIED
    assert result.reason == "policy 'freeze' denied iteration 1"


def test_warning_errors_are_reported_without_denying() -> None:
    fake = FakeEngine(
        {
            CONTINUE_ITERATION: PolicyDecision(allowed=True, policy_ids=["continue-iteration"]),
            EVALUATE_WARNINGS: PolicyDecision(allowed=False, errors=["overflow"]),
        }
    )

    result = authorize(make_state(), fake)

    assert result.allowed
    assert result.warnings == []
    assert result.warning_messages == ["warning policies could not be evaluated: overflow"]


# -- with custom policy folders ----------------------------------------------------------------


def _policy_copy(tmp_path: Path, extra: str) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, folder, ignore=shutil.ignore_patterns("tests"))
    (folder / "extra.cedar").write_text(extra, encoding="utf-8")
    return folder


def test_custom_policy_without_outcome_is_policy_denied(tmp_path: Path) -> None:
    folder = _policy_copy(
        tmp_path,
        '@id("freeze")\n@message("the project is frozen")\n'
        'forbid (principal, action == Action::"ContinueIteration", resource is Loop)\n'
        'when { resource.project == "default" };\n',
    )

    result = authorize(make_state(), CedarPolicyEngine(folder))

    assert not result.allowed
    assert result.outcome is LoopOutcome.POLICY_DENIED
    assert result.denied_by == ["freeze"]
    assert result.reason == "policy 'freeze' denied iteration 1: the project is frozen"


def test_real_evaluation_error_fails_closed(tmp_path: Path) -> None:
    # Cedar skips a forbid that errors (here: 64-bit overflow), so the permit alone would allow.
    folder = _policy_copy(
        tmp_path,
        '@id("overflowing-limit")\n@outcome("TOKEN_BUDGET_EXHAUSTED")\n'
        'forbid (principal, action == Action::"ContinueIteration", resource is Loop)\n'
        "when { context.tokens_used * 1000 > 5 };\n",
    )
    engine = CedarPolicyEngine(folder)
    state = make_state(tokens=2**62)

    decision = engine.is_authorized(build_authorization_request(state))
    result = authorize(state, engine)

    assert decision.allowed  # what Cedar alone says
    assert not result.allowed
    assert result.outcome is LoopOutcome.POLICY_DENIED
    assert result.reason is not None and "`overflowing-limit`" in result.reason


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("permit (principal, action, resource) when { 1 > };", "extra.cedar: cannot parse"),
        (
            '@id("bad-attr") permit (principal, action == Action::"ContinueIteration", resource)'
            " when { resource.no_such_limit > 1 };",
            "extra.cedar: Cedar policies do not match the schema: policy bad-attr",
        ),
        ("permit (principal, action, resource);", 'extra.cedar: policy policy0 has no @id("...")'),
        (
            '@id("iteration-limit") permit (principal, action, resource);',
            "iteration_limit.cedar: @id 'iteration-limit' is already used in",
        ),
    ],
    ids=["syntax", "schema", "missing-id", "duplicate-id"],
)
def test_malformed_policy_folder_raises_config_error(tmp_path: Path, extra: str, expected: str) -> None:
    folder = _policy_copy(tmp_path, extra)

    with pytest.raises(ConfigError) as caught:
        CedarPolicyEngine(folder)

    assert expected in str(caught.value)
