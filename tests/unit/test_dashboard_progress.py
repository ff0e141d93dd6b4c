"""The dashboard's pure parts: progress figures and ETA, condition history, cursors, identities."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopwright.dashboard.identity import (
    CognitoIdentityResolver,
    IdentityError,
    LocalIdentityResolver,
    load_operators,
)
from loopwright.dashboard.ports import InvalidCursorError, LoopSummary, decode_cursor, encode_cursor
from loopwright.dashboard.progress import (
    build_progress,
    condition_history,
    estimate_eta,
    iteration_durations,
    loop_series,
    shown_phase,
)
from loopwright.exceptions import ConfigError
from loopwright.models import (
    ExitConditionConfig,
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
from loopwright.models.progress import IterationDigest, LoopProgress

EV = IterationEventType
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _state(
    *, token_budget: int | None = None, max_duration_seconds: int | None = None, **changes: object
) -> LoopState:
    """Loop l1 of project demo: 10 iterations at most, a required condition (MET) and an
    optional one (NOT_MET); ``changes`` are set on the state."""
    config = LoopConfig(
        goal="make it pass",
        project="demo",
        max_iterations=10,
        token_budget=token_budget,
        max_duration_seconds=max_duration_seconds,
        exit_conditions=[
            ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS),
            ExitConditionConfig(type=ExitConditionType.LINTING_CLEAN, required=False),
        ],
    )
    state = LoopState(
        loop_id="l1",
        project="demo",
        config=config,
        phase=LoopPhase.ITERATING,
        started_at=T0,
        updated_at=T0,
        exit_conditions=[
            ExitConditionStatus(
                name="all_tests_pass",
                type=ExitConditionType.ALL_TESTS_PASS,
                status=ExitConditionStatusValue.MET,
            ),
            ExitConditionStatus(
                name="linting_clean",
                type=ExitConditionType.LINTING_CLEAN,
                status=ExitConditionStatusValue.NOT_MET,
                required=False,
            ),
        ],
    )
    for key, value in changes.items():
        setattr(state, key, value)
    return state


def _timing(seconds: list[float], *, in_progress_since: float | None = None) -> list[IterationEvent]:
    """STARTED/COMPLETED pairs, iterations 1..n, each lasting ``seconds[i]``, 1 s apart."""
    events: list[IterationEvent] = []
    clock = T0
    for number, length in enumerate(seconds, start=1):
        events.append(
            IterationEvent(
                loop_id="l1",
                iteration=number,
                type=EV.ITERATION_STARTED,
                phase=LoopPhase.ITERATING,
                timestamp=clock,
            )
        )
        clock += timedelta(seconds=length)
        events.append(
            IterationEvent(
                loop_id="l1",
                iteration=number,
                type=EV.ITERATION_COMPLETED,
                phase=LoopPhase.DECIDING,
                timestamp=clock,
            )
        )
        clock += timedelta(seconds=1)
    if in_progress_since is not None:
        events.append(
            IterationEvent(
                loop_id="l1",
                iteration=len(seconds) + 1,
                type=EV.ITERATION_STARTED,
                phase=LoopPhase.ITERATING,
                timestamp=clock + timedelta(seconds=in_progress_since),
            )
        )
    return list(reversed(events))  # the queries give newest first


def test_iteration_durations_pair_each_completion_with_its_start() -> None:
    assert [(n, s) for n, _, s in iteration_durations(_timing([4, 6]))] == [(1, 4.0), (2, 6.0)]


def test_eta_is_mean_iteration_times_iterations_left() -> None:
    state = _state(iteration=2)
    now = T0 + timedelta(seconds=20)
    mean, eta, basis = estimate_eta(state, _timing([4, 6]), running=True, now=now)
    assert mean == 5.0
    assert eta == 40.0  # 8 iterations left x 5 s
    assert basis is not None and "8 iteration(s) left to max_iterations 10" in basis


def test_eta_discounts_the_iteration_in_progress() -> None:
    state = _state(iteration=2)
    events = _timing([4, 6], in_progress_since=0)
    started = events[0].timestamp
    _, eta, _ = estimate_eta(state, events, running=True, now=started + timedelta(seconds=3))
    assert eta == 37.0  # iterations 3..10 (8 x 5 s) less the 3 s iteration 3 has run


def test_eta_is_capped_by_the_time_limit_and_by_the_token_budget() -> None:
    timed = _state(iteration=2, max_duration_seconds=100)
    now = T0 + timedelta(seconds=90)
    _, eta, basis = estimate_eta(timed, _timing([4, 6]), running=True, now=now)
    assert eta is not None and eta <= 10.0 and basis is not None and "max_duration_seconds" in basis

    budget = _state(iteration=2, tokens_used=200, token_budget=500)
    _, eta, basis = estimate_eta(budget, _timing([4, 6]), running=True, now=T0)
    assert eta == 15.0  # 300 tokens left at 100 per iteration: 3 iterations x 5 s
    assert basis is not None and "token_budget 500" in basis


@pytest.mark.parametrize(
    ("phase", "running"),
    [(LoopPhase.COMPLETED, None), (LoopPhase.AWAITING_RESPONSE, None), (LoopPhase.ITERATING, False)],
)
def test_no_eta_for_a_loop_that_does_not_run(phase: LoopPhase, running: bool | None) -> None:
    mean, eta, basis = estimate_eta(
        _state(iteration=2, phase=phase), _timing([4, 6]), running=running, now=T0
    )
    assert mean == 5.0 and eta is None and basis is None


def test_no_eta_before_an_iteration_completed() -> None:
    assert estimate_eta(_state(), [], running=True, now=T0) == (None, None, None)


def test_progress_figures() -> None:
    state = _state(
        iteration=4,
        tokens_used=250,
        token_budget=1000,
        phase=LoopPhase.AWAITING_RESPONSE,
        human_request="may I ship?",
        pending_warnings=["80% of the iterations used"],
    )
    progress = build_progress(
        state, [], running=None, stop_requested="by alice", now=T0 + timedelta(seconds=30)
    )
    assert (progress.iteration, progress.max_iterations, progress.percent_iterations) == (4, 10, 40.0)
    assert (progress.tokens_used, progress.token_budget, progress.percent_tokens) == (250, 1000, 25.0)
    assert progress.awaiting_response == "may I ship?"
    assert progress.stop_requested == "by alice"
    assert progress.conditions_met == 1 and progress.conditions_required == 1  # linting is optional
    assert [c.status for c in progress.conditions] == [
        ExitConditionStatusValue.MET,
        ExitConditionStatusValue.NOT_MET,
    ]
    assert progress.finished is False and progress.shown_phase == "AWAITING_RESPONSE"
    assert progress.warnings == ["80% of the iterations used"]


def test_the_progress_line_and_the_stuck_reason_reach_the_page() -> None:
    memory = LoopProgress(
        history=[
            IterationDigest(iteration=1, failing_count=1),
            IterationDigest(iteration=2, failing_count=1),
        ],
        baseline_failing_count=1,
        iterations_without_change=2,
        stuck_reason="2 iterations in a row without a change",
    )
    state = _state(iteration=2, phase=LoopPhase.PAUSED, progress=memory)
    progress = build_progress(state, [], running=False, stop_requested=None, now=T0)
    assert progress.progress_summary == "failing 1 -> 1 -> 1 · 2 iterations without change (pauses at 3)"
    assert progress.stuck_reason == "2 iterations in a row without a change"
    fresh = build_progress(_state(), [], running=False, stop_requested=None, now=T0)
    assert (fresh.progress_summary, fresh.stuck_reason) == (None, None)


def test_shown_phase_marks_an_active_loop_without_a_process_interrupted() -> None:
    assert shown_phase(LoopPhase.ITERATING, False) == "INTERRUPTED"
    assert shown_phase(LoopPhase.ITERATING, None) == "ITERATING"
    assert shown_phase(LoopPhase.PAUSED, False) == "PAUSED"


def _evaluated(iteration: int, statuses: dict[str, str]) -> IterationEvent:
    return IterationEvent(
        loop_id="l1",
        iteration=iteration,
        type=EV.EXIT_CONDITIONS_EVALUATED,
        phase=LoopPhase.EVALUATING,
        timestamp=T0 + timedelta(seconds=iteration),
        data={"statuses": statuses, "summaries": {"all_tests_pass": f"run {iteration}"}},
    )


def test_condition_history_counts_statuses_per_condition() -> None:
    events = [
        _evaluated(2, {"all_tests_pass": "MET", "linting_clean": "NOT_MET"}),
        _evaluated(1, {"all_tests_pass": "NOT_MET", "linting_clean": "NOT_MET", "gone": "BOGUS"}),
    ]
    history = condition_history(_state(), events, next_cursor="c")
    assert history.conditions == ["all_tests_pass", "linting_clean"]
    assert [(e.iteration, e.met) for e in history.evaluations] == [(2, 1), (1, 0)]
    assert history.totals == {
        "all_tests_pass": {"MET": 1, "NOT_MET": 1},
        "linting_clean": {"NOT_MET": 2},
    }
    assert history.evaluations[0].summaries == {"all_tests_pass": "run 2"}
    assert history.next_cursor == "c"


def test_loop_series_per_iteration() -> None:
    events = [*_timing([4, 6]), _evaluated(1, {"all_tests_pass": "MET"})]
    events.append(
        IterationEvent(
            loop_id="l1",
            iteration=1,
            type=EV.AGENT_COMPLETED,
            phase=LoopPhase.ITERATING,
            timestamp=T0,
            data={"tokens_used": 120},
        )
    )
    series = {s.name: s.values for s in loop_series(_state(), events).series}
    assert series == {"iteration_seconds": [4.0, 6.0], "tokens": [120.0], "conditions_met": [1.0]}


def test_summary_matches_a_phase_or_an_outcome() -> None:
    summary = LoopSummary.from_state(_state(phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED))
    assert summary.matches(LoopPhase.COMPLETED) and summary.matches(LoopOutcome.STOPPED)
    assert not summary.matches(LoopOutcome.CONDITIONS_MET) and summary.matches(None)


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor(encode_cursor({"seq": 12}), "seq") == {"seq": 12}
    for bad in ("zzz", "e30", encode_cursor({"other": 1})):
        with pytest.raises(InvalidCursorError, match="cursor"):
            decode_cursor(bad, "seq")


def test_cognito_identity_from_the_authorizer_claims() -> None:
    resolve = CognitoIdentityResolver()
    event = {
        "headers": {"X-Loopwright-User": "root"},
        "requestContext": {
            "authorizer": {"claims": {"cognito:username": "alice", "cognito:groups": "demo-operators,ops"}}
        },
    }
    identity = resolve(event)
    assert identity.principal == 'User::"alice"'  # the header is never read in AWS
    assert identity.groups == ('Group::"demo-operators"', 'Group::"ops"')
    listed = {"requestContext": {"authorizer": {"claims": {"username": "bob", "cognito:groups": ["a"]}}}}
    assert resolve(listed).groups == ('Group::"a"',)
    with pytest.raises(IdentityError) as missing:
        resolve({"requestContext": {}})
    assert missing.value.status == 401


def test_local_identity_without_an_operators_file(tmp_path: Path) -> None:
    resolve = LocalIdentityResolver(user="alice", operators_path=tmp_path / "operators.toml")
    me = resolve({"headers": {}})
    assert me.principal == 'User::"alice"' and me.operates_all_projects
    other = resolve({"headers": {"x-loopwright-user": "mallory"}})
    assert other.principal == 'User::"mallory"' and not other.operates_all_projects and other.groups == ()
    with pytest.raises(IdentityError) as bad:
        resolve({"headers": {"X-Loopwright-User": 'x"y'}})
    assert bad.value.status == 400 and bad.value.field == "X-Loopwright-User"
    no_header = LocalIdentityResolver(
        user="alice", operators_path=tmp_path / "o.toml", allow_impersonation=False
    )
    assert no_header({"headers": {}}).principal == 'User::"alice"'
    with pytest.raises(IdentityError) as refused:  # off loopback the header is refused, not ignored
        no_header({"headers": {"X-Loopwright-User": "mallory"}})
    assert refused.value.status == 400 and refused.value.field == "X-Loopwright-User"


def test_local_identity_with_an_operators_file(tmp_path: Path) -> None:
    path = tmp_path / "operators.toml"
    path.write_text('[projects.demo]\noperators = ["bob"]\n[projects.other]\noperators = ["alice", "bob"]\n')
    resolve = LocalIdentityResolver(user="alice", operators_path=path)
    assert resolve({}).groups == ('Group::"other-operators"',) and not resolve({}).operates_all_projects
    bob = resolve({"headers": {"X-Loopwright-User": "bob"}})
    assert bob.groups == ('Group::"demo-operators"', 'Group::"other-operators"')
    path.write_text("[projects.demo]\nadmins = []\n")
    with pytest.raises(ConfigError, match=re.escape("operators.toml: projects.demo.admins")):
        load_operators(path)
