"""A loop's pull request (issue 15, part 4): which loops qualify and what the body says."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.models import (
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
from loopwright.pull_request import (
    MAX_ATTACHED_EVIDENCE_CHARS,
    MAX_TITLE_GOAL_CHARS,
    EvidenceLink,
    baseline_statuses,
    compose_pull_request,
    pull_request_problem,
    pull_request_title,
)

MET, NOT_MET = ExitConditionStatusValue.MET, ExitConditionStatusValue.NOT_MET
HEAD, BASE = "a" * 40, "b" * 40


def _state(**update: Any) -> LoopState:
    config = LoopConfig.model_validate(
        {
            "goal": "Make the tests pass\nand keep lint clean",
            "max_iterations": 9,
            "exit_conditions": [
                {"type": "ALL_TESTS_PASS"},
                {"type": "CUSTOM", "name": "docs", "command": "true", "required": False},
            ],
        }
    )
    state = LoopState(
        loop_id="calc-1",
        config=config,
        phase=LoopPhase.COMPLETED,
        outcome=LoopOutcome.CONDITIONS_MET,
        outcome_reason="all 1 required exit conditions met",
        iteration=3,
        tokens_used=1234,
        cost_usd=0.5,
        branch="loopwright/calc-1",
        base_commit=BASE,
        head_commit=HEAD,
        exit_conditions=[
            ExitConditionStatus(
                name="all_tests_pass", type=ExitConditionType.ALL_TESTS_PASS, status=MET, summary="3 passed"
            ),
            ExitConditionStatus(name="docs", type=ExitConditionType.CUSTOM, status=NOT_MET, required=False),
        ],
    )
    return state.model_copy(update=update)


def _evaluated(
    iteration: int, statuses: dict[str, str], *, baseline: bool, summary: str = ""
) -> IterationEvent:
    return IterationEvent(
        loop_id="calc-1",
        iteration=iteration,
        type=IterationEventType.EXIT_CONDITIONS_EVALUATED,
        phase=LoopPhase.EVALUATING,
        data={
            "statuses": statuses,
            "summaries": dict.fromkeys(statuses, summary),
            "baseline": True if baseline else None,
        },
    )


def test_a_loop_that_met_its_conditions_with_changes_qualifies() -> None:
    assert pull_request_problem(_state()) is None


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"outcome": LoopOutcome.ITERATION_LIMIT}, "did not meet its exit conditions (ITERATION_LIMIT)"),
        (
            {"outcome": None, "phase": LoopPhase.PAUSED},
            "did not meet its exit conditions (not ended (PAUSED))",
        ),
        ({"branch": None}, "has no branch (it ran with git_isolation = false)"),
        ({"head_commit": None}, "has no branch"),
        ({"iteration": 0}, "changed nothing"),
        ({"head_commit": BASE}, "changed nothing"),
    ],
)
def test_a_loop_that_does_not_qualify_is_refused_with_the_reason(
    update: dict[str, Any], expected: str
) -> None:
    state = _state(**update)
    problem = pull_request_problem(state)
    assert problem is not None and expected in problem and "'calc-1'" in problem
    with pytest.raises(ValueError, match="calc-1"):
        compose_pull_request(state, [], base="main")


def test_the_body_shows_each_condition_before_and_after_and_the_run() -> None:
    events = [
        _evaluated(
            0, {"all_tests_pass": "NOT_MET", "docs": "MET"}, baseline=True, summary="1 failed | 2 passed"
        ),
        _evaluated(1, {"all_tests_pass": "MET", "docs": "NOT_MET"}, baseline=False, summary="later"),
    ]
    draft = compose_pull_request(_state(), events, base="main")
    assert (draft.branch, draft.base, draft.head_commit, draft.loop_id) == (
        "loopwright/calc-1",
        "main",
        HEAD,
        "calc-1",
    )
    assert draft.title == "loopwright: Make the tests pass"
    body = draft.body
    assert "> Make the tests pass\n> and keep lint clean\n" in body
    # before: the baseline event's status and summary ('|' escaped); after: the state's
    assert "| all_tests_pass | ALL_TESTS_PASS | NOT_MET: 1 failed \\| 2 passed | MET | 3 passed |" in body
    assert "| docs (optional) | CUSTOM | MET: 1 failed \\| 2 passed | NOT_MET |  |" in body
    assert "later" not in body
    assert "- iterations: 3 (limit 9)\n- tokens: 1234\n- cost: $0.5000 (US dollars)\n" in body
    assert "- outcome: CONDITIONS_MET: all 1 required exit conditions met\n" in body
    assert f"- commits: `{BASE[:12]}..{HEAD[:12]}` (head `{HEAD}`)" in body
    assert "No evidence bundle is attached" in body and "loopwright events calc-1" in body


def test_the_last_baseline_counts_and_a_loop_without_one_says_so() -> None:
    events = [
        _evaluated(0, {"all_tests_pass": "ERROR"}, baseline=True),
        _evaluated(0, {"all_tests_pass": "NOT_MET"}, baseline=True),
    ]
    assert baseline_statuses(events) == {"all_tests_pass": ("NOT_MET", "")}
    assert baseline_statuses([_evaluated(1, {"x": "MET"}, baseline=False)]) == {}
    body = compose_pull_request(_state(), [], base="main").body
    assert "| all_tests_pass | ALL_TESTS_PASS | not recorded | MET | 3 passed |" in body


def test_the_evidence_bundle_is_linked_when_there_is_one() -> None:
    evidence = EvidenceLink(
        location="evidence/calc-1.json", sha256="c" * 64, verify_command="loopwright verify x"
    )
    body = compose_pull_request(_state(), [], base="main", evidence=evidence).body
    assert (
        "- bundle: evidence/calc-1.json\n- SHA-256: `" + "c" * 64 + "`\n- verify: `loopwright verify x`"
        in body
    )
    assert "No evidence bundle" not in body and "<details>" not in body
    with pytest.raises(ValidationError, match="sha256"):
        EvidenceLink(location="x", sha256="not-hex")


def test_a_small_bundle_is_attached_to_the_body_and_a_big_one_is_refused() -> None:
    evidence = EvidenceLink(location="e.json", content='{"bundle": {}}\n')
    body = compose_pull_request(_state(), [], base="main", evidence=evidence).body
    assert '<details><summary>evidence.json</summary>\n\n```json\n{"bundle": {}}\n```\n\n</details>' in body
    assert "loopwright evidence verify evidence.json --public-key SIGNER.pem" in body
    with pytest.raises(ValidationError, match="content"):
        EvidenceLink(location="e.json", content="x" * (MAX_ATTACHED_EVIDENCE_CHARS + 1))


def test_unpriced_models_are_named_with_the_cost() -> None:
    body = compose_pull_request(_state(unpriced_models=["my-model"]), [], base="main").body
    assert "- cost: $0.5000 (no price for my-model) (US dollars)" in body


def test_the_title_is_the_goals_first_non_empty_line_cut_to_its_limit() -> None:
    assert pull_request_title("\n  fix it  \nmore") == "loopwright: fix it"
    long = pull_request_title("x" * 200)
    assert long == "loopwright: " + "x" * (MAX_TITLE_GOAL_CHARS - 1) + "…"
    assert pull_request_title("x" * MAX_TITLE_GOAL_CHARS) == "loopwright: " + "x" * MAX_TITLE_GOAL_CHARS


def test_on_complete_accepts_none_and_pr_only() -> None:
    base = {"goal": "g", "exit_conditions": [{"type": "ALL_TESTS_PASS"}]}
    assert LoopConfig.model_validate(base).on_complete == "none"
    assert LoopConfig.model_validate({**base, "on_complete": "pr"}).on_complete == "pr"
    with pytest.raises(ValidationError, match="on_complete\n  Input should be 'none' or 'pr'"):
        LoopConfig.model_validate({**base, "on_complete": "merge"})
