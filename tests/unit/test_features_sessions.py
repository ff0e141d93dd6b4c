"""Feature lists and agent sessions (issue 10.2, 10.3) through both engines: the in-process
engine and the Step Functions steps record the same events, features complete in order, and a
session is resumed while it fits and handed off with a summary after it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.python_agent import PythonAgent
from loopwright.controls import RESUMABLE_OUTCOMES, apply_limits, check_limits
from loopwright.engine import LoopFramework
from loopwright.exceptions import ControlConflictError
from loopwright.feature_progress import record_feature_progress
from loopwright.models import (
    AgentRequest,
    AgentResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    FeatureConfig,
    IterationEventType,
    IterationResult,
    LimitChange,
    LoopConfig,
    LoopOutcome,
    LoopResult,
    LoopState,
)
from loopwright.sessions import account_session, handoff_due, handoff_summary, open_session
from loopwright.steps.features import (
    all_conditions,
    broken_features,
    conditions_in_scope,
    current_feature,
    feature_conditions,
    feature_holds,
    newly_done,
)
from loopwright.steps.iterate import build_agent_request
from loopwright.steps.verify import verify
from tests.fakes import FakeWorkspace, MemoryStore, ScriptedSandbox
from tests.unit.test_cloud_steps import _cloud_ports, _create, run_state_machine

EV = IterationEventType
FEATURES = [
    {
        "name": name,
        "description": f"build {name}",
        "acceptance_conditions": [{"type": "CUSTOM", "name": "check", "command": f"check-{name}"}],
    }
    for name in ("signup", "login", "logout")
]


def _config(**kwargs: Any) -> LoopConfig:
    base: dict[str, Any] = {
        "goal": "build the app",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 6,
        "git_isolation": False,
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


class FeatureScenario:
    """Feature i's check passes once the agent ran i times (and keeps passing), unless it is in
    ``broken_at`` for that run; the exit condition always passes. Keeps every request."""

    def __init__(self, broken_at: dict[int, str] | None = None) -> None:
        self.runs = 0
        self.requests: list[AgentRequest] = []
        self.broken_at = broken_at or {}

    def work(self, request: AgentRequest) -> AgentResult:
        self.runs = request.iteration
        self.requests.append(request)
        return AgentResult(tokens_used=10, summary=f"worked on {request.feature and request.feature.name}")

    def responder(self, command: Sequence[str], call: int) -> tuple[int, str]:
        name = command[0].removeprefix("check-")
        if name == "a":
            return 0, ""
        position = [f["name"] for f in FEATURES].index(name) + 1
        broken = self.broken_at.get(self.runs) == name
        return (0 if self.runs >= position and not broken else 1), ""

    def sandbox(self) -> ScriptedSandbox:
        return ScriptedSandbox(self.responder)


def _local(tmp_path: Path, config: LoopConfig, scenario: Any, agent: Any, store: MemoryStore) -> LoopResult:
    return LoopFramework(
        config,
        workspace=tmp_path,
        loop_id="same",
        store=store,
        sandbox=scenario.sandbox(),
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
        agent=agent,
    ).run()


def test_a_three_feature_list_completes_in_order_in_both_engines(tmp_path: Path) -> None:
    # Given a loop with three features, each passing one iteration after the one before
    config = _config(features=FEATURES)
    engine_store, cloud_store = MemoryStore(), MemoryStore()
    local = FeatureScenario()
    result = _local(tmp_path, config, local, PythonAgent(local.work), engine_store)
    cloud = FeatureScenario()
    _create(cloud_store, config, "same", tmp_path)
    ports = _cloud_ports(tmp_path, cloud, cloud_store)  # type: ignore[arg-type]
    ports.sandbox, ports.agent = cloud.sandbox(), PythonAgent(cloud.work)
    decisions = run_state_machine(ports, "same")

    # Then both complete after three iterations, the features done 1, 2, 3 in order
    assert (
        result.outcome is LoopOutcome.CONDITIONS_MET and decisions[-1].outcome is LoopOutcome.CONDITIONS_MET
    )
    assert (result.iterations, result.features_completed, result.features_total) == (3, 3, 3)
    for store in (engine_store, cloud_store):
        done = store.list_events("same", types=[EV.FEATURE_COMPLETED])
        assert [(e.iteration, e.data["feature"], e.data["features_completed"]) for e in done] == [
            (1, "signup", 1),
            (2, "login", 2),
            (3, "logout", 3),
        ]
        assert done[-1].data["features_total"] == 3 and "all features are done" in done[-1].message
    assert cloud_store.types("same") == engine_store.types("same")
    assert LoopResult.from_state(cloud_store.get_state("same")).features_completed == 3
    # and each prompt named the feature to work on, with the ones done before
    for scenario in (local, cloud):
        briefs = [r.feature.name if r.feature else None for r in scenario.requests]
        assert briefs == ["signup", "login", "logout"]
        assert scenario.requests[2].feature is not None
        assert scenario.requests[2].feature.done == ["signup", "login"]
        assert scenario.requests[2].feature.position == 3


def test_a_feature_is_not_done_while_an_earlier_one_is_broken(tmp_path: Path) -> None:
    # Given feature 1 breaks in the iteration where feature 2 would first pass
    config = _config(features=FEATURES)
    store = MemoryStore()
    scenario = FeatureScenario(broken_at={2: "signup"})
    result = _local(tmp_path, config, scenario, PythonAgent(scenario.work), store)
    done = store.list_events("same", types=[EV.FEATURE_COMPLETED])
    # Then login is done only in iteration 3, once signup holds again, in the same evaluation
    assert [(e.iteration, e.data["feature"]) for e in done] == [(1, "signup"), (3, "login"), (3, "logout")]
    assert result.outcome is LoopOutcome.CONDITIONS_MET and result.features_completed == 3
    # and the agent was told signup broke, and shown its failure but not logout's
    third = scenario.requests[2]
    assert third.feature is not None and third.feature.broken == ["signup"]
    assert third.failing_conditions == ["signup:check"]  # login holds; logout fails, out of scope


def test_gate_all_needs_every_feature_and_names_the_open_ones() -> None:
    config = _config(features=FEATURES)
    state = LoopState(loop_id="l", config=config)
    assert [c.name for c in all_conditions(config)] == ["a", "signup:check", "login:check", "logout:check"]
    verification = verify(config, [])
    assert not verification.passed
    assert "features not done: signup, login, logout" in verification.message
    assert (
        newly_done(config, [], []) == [] and broken_features(config, state.exit_conditions, ["signup"]) == []
    )


class SessionAgent(PythonAgent):
    """A work function with sessions: reports a session id per session and a context use."""

    supports_sessions = True


class SessionScenario:
    """Never converges; the agent reports session ``s<k>`` (k counts fresh sessions) and the
    context use of ``context[iteration]`` (percent)."""

    def __init__(self, context: dict[int, float] | None = None) -> None:
        self.runs = 0
        self.fresh = 0
        self.requests: list[AgentRequest] = []
        self.context = context or {}

    def work(self, request: AgentRequest) -> AgentResult:
        self.runs = request.iteration
        self.requests.append(request)
        if request.session_id is None:
            self.fresh += 1
        return AgentResult(
            tokens_used=10,
            summary=f"step {request.iteration}",
            session_id=request.session_id or f"s{self.fresh}",
            context_percent=self.context.get(request.iteration),
        )

    def sandbox(self) -> ScriptedSandbox:
        return ScriptedSandbox(lambda command, call: (1, ""))


def test_a_session_is_resumed_while_it_fits_and_handed_off_after_in_both_engines(tmp_path: Path) -> None:
    # Given a session agent whose context is 85% full after iteration 2, a handoff at 80%
    config = _config(max_iterations=4, handoff_context_percent=80)
    context = {2: 85.0}
    engine_store, cloud_store = MemoryStore(), MemoryStore()
    local = SessionScenario(context)
    result = _local(tmp_path, config, local, SessionAgent(local.work), engine_store)
    cloud = SessionScenario(context)
    _create(cloud_store, config, "same", tmp_path)
    ports = _cloud_ports(tmp_path, cloud, cloud_store)  # type: ignore[arg-type]
    ports.sandbox, ports.agent = cloud.sandbox(), SessionAgent(cloud.work)
    run_state_machine(ports, "same")

    # Then iteration 2 resumed session s1, iteration 3 started fresh with a handoff summary,
    # iteration 4 resumed s2
    for scenario in (local, cloud):
        assert [r.session_id for r in scenario.requests] == [None, "s1", None, "s2"]
        assert [r.handoff is not None for r in scenario.requests] == [False, False, True, False]
        handoff = scenario.requests[2].handoff or ""
        assert "context 85% used" in handoff and "iteration 2: step 2" in handoff
    assert result.sessions_used == 2 and result.handoff_reason is not None
    assert "context 85% used" in result.handoff_reason
    for store in (engine_store, cloud_store):
        (event,) = store.list_events("same", types=[EV.SESSION_HANDOFF])
        assert event.iteration == 3 and event.data["previous_session"] == "s1"
        assert event.data["sessions_used"] == 2
    assert cloud_store.types("same") == engine_store.types("same")


def test_max_sessions_stops_the_loop_before_a_session_past_the_limit(tmp_path: Path) -> None:
    # Given a session agent handed off after every iteration (session_max_iterations 1), 2 sessions
    config = _config(max_iterations=9, session_max_iterations=1, max_sessions=2)
    store = MemoryStore()
    scenario = SessionScenario()
    result = _local(tmp_path, config, scenario, SessionAgent(scenario.work), store)
    # Then Cedar's session-limit stops it before a third session
    assert result.outcome is LoopOutcome.SESSION_LIMIT and result.iterations == 2
    assert result.sessions_used == 2
    (denied,) = store.list_events("same", types=[EV.POLICY_DENIED])
    assert denied.data["policy_ids"] == "session-limit"
    assert "agent session 3 of a limit of 2 sessions" in denied.message


def test_the_session_limit_can_be_raised_but_not_below_the_sessions_started(tmp_path: Path) -> None:
    state = LoopState(loop_id="l", config=_config(max_sessions=2), agent_sessions=2)
    with pytest.raises(ControlConflictError, match="max_sessions: 1 is below the 2 agent sessions"):
        check_limits(state, LimitChange(max_sessions=1))
    assert apply_limits(state, LimitChange(max_sessions=4)) == {"max_sessions": 4}
    assert state.config.max_sessions == 4 and LoopOutcome.SESSION_LIMIT in RESUMABLE_OUTCOMES


def test_an_agent_without_sessions_gets_a_fresh_call_every_iteration(tmp_path: Path) -> None:
    config = _config(max_iterations=3, session_max_iterations=1)
    store = MemoryStore()
    scenario = SessionScenario()
    result = _local(tmp_path, config, scenario, PythonAgent(scenario.work), store)
    assert [r.session_id for r in scenario.requests] == [None, None, None]
    assert [r.handoff for r in scenario.requests] == [None, None, None]
    assert result.sessions_used == 3 and result.handoff_reason is None
    assert store.list_events("same", types=[EV.SESSION_HANDOFF]) == []


@pytest.mark.parametrize(
    ("agent", "config", "reason"),
    [
        (AgentResult(handoff_requested="my context is muddled"), {}, "the agent asked for a fresh session"),
        (AgentResult(context_percent=79.9), {"handoff_context_percent": 80}, None),
        (AgentResult(context_percent=80), {"handoff_context_percent": 80}, "context 80% used"),
        (AgentResult(), {"session_max_iterations": 1}, "the session ran 1 iterations"),
        (AgentResult(), {}, None),
        (AgentResult(failed=True), {}, "the session's last run failed (CRASH)"),
        (AgentResult(failed=True, failure_cause="TIMEOUT"), {}, "failed (TIMEOUT)"),
        (AgentResult(failed=True, failure_cause="RATE_LIMIT"), {}, None),
        (AgentResult(failed=True, failure_cause="USAGE_LIMIT"), {}, None),
    ],
)
def test_handoff_triggers(agent: AgentResult, config: dict[str, Any], reason: str | None) -> None:
    state = LoopState(loop_id="l", config=_config(**config), session_iterations=1)
    found = handoff_due(state, IterationResult(iteration=1, agent=agent))
    assert (found is None) if reason is None else (found is not None and reason in found)


def test_the_handoff_summary_carries_the_history_failures_and_progress_notes(tmp_path: Path) -> None:
    (tmp_path / "PROGRESS.md").write_text("- login form done\n")
    state = LoopState(loop_id="l", config=_config(), worktree=str(tmp_path))
    recorded: list[tuple[Any, ...]] = []
    open_session(state, True, lambda *a, **k: recorded.append(a))
    assert state.agent_sessions == 1 and recorded == []  # the first session: no handoff
    account_session(
        state, IterationResult(iteration=1, agent=AgentResult(summary="x" * 500, session_id="s")), True
    )
    assert state.agent_session_id == "s" and state.pending_handoff is None
    assert handoff_summary(state) is None
    state.pending_handoff = "the agent asked"
    summary = handoff_summary(state) or ""
    assert "(the agent asked)" in summary and "iteration 1: " + "x" * 300 + " (0 file(s)" in summary
    assert "Progress notes (PROGRESS.md, tail):\n- login form done" in summary
    request = build_agent_request(state, tmp_path, handoff=summary)
    assert request.session_id == "s" and request.handoff == summary
    open_session(state, True, lambda *a, **k: recorded.append(a))
    assert state.agent_session_id is None and state.agent_sessions == 2 and len(recorded) == 1
    assert state.handoff_reason == "the agent asked"


def _status(name: str, met: bool) -> ExitConditionStatus:
    return ExitConditionStatus(
        name=name,
        type=ExitConditionType.CUSTOM,
        status=ExitConditionStatusValue.MET if met else ExitConditionStatusValue.NOT_MET,
        evaluated_at=datetime.now(UTC),
    )


def test_a_feature_holds_on_its_required_conditions_only() -> None:
    feature = FeatureConfig.model_validate(
        {
            "name": "f",
            "description": "d",
            "acceptance_conditions": [
                {"type": "CUSTOM", "name": "must", "command": "x"},
                {"type": "CUSTOM", "name": "nice", "command": "y", "required": False},
            ],
        }
    )
    config = _config(features=[feature.model_dump()])
    assert [c.name for c in feature_conditions(feature)] == ["f:must", "f:nice"]
    assert feature_holds(feature, [_status("f:must", True), _status("f:nice", False)])
    assert not feature_holds(feature, [_status("f:nice", True)])  # a missing condition does not hold
    assert not feature_holds(feature, [_status("f:must", False)])
    assert current_feature(config, []) is not None and current_feature(config, ["f"]) is None
    scope = conditions_in_scope(config, [], [])
    assert scope == {"a", "f:must", "f:nice"}
    assert conditions_in_scope(config, [], ["f"]) == {"a"}


def test_feature_completed_events_name_the_next_feature_and_the_counts(tmp_path: Path) -> None:
    state = LoopState(loop_id="l", config=_config(features=FEATURES))
    state.exit_conditions = [_status("signup:check", True), _status("login:check", True)]
    events: list[tuple[Any, str, dict[str, Any]]] = []
    names = record_feature_progress(state, lambda t, m="", **d: events.append((t, m, d)))
    assert names == ["signup", "login"] and state.features_done == ["signup", "login"]
    assert [e[1] for e in events] == [
        "feature 1 of 3 done: signup; next: login",
        "feature 2 of 3 done: login; next: logout",
    ]
    assert events[0][2] == {
        "feature": "signup",
        "features_completed": 1,
        "features_total": 3,
        "next_feature": "login",
    }
    assert record_feature_progress(state, lambda *a, **k: None) == []  # nothing new


def test_the_handoff_summary_prefers_the_notes_the_loop_keeps(tmp_path: Path) -> None:
    # progress memory (issue 10.1) keeps the agent's progress.md in the state, which both engines
    # have; a PROGRESS.md in the worktree is only read when the loop kept no notes
    (tmp_path / "PROGRESS.md").write_text("- from the worktree\n")
    state = LoopState(loop_id="l", config=_config(), worktree=str(tmp_path), pending_handoff="why")
    state.progress.notes = "- kept by the loop\n" + "k" * 5000
    summary = handoff_summary(state) or ""
    assert "Progress notes (progress.md, tail):" in summary and summary.endswith("k" * 4000)
    assert "from the worktree" not in summary and "kept by the loop" not in summary  # the tail only
    state.progress.notes = "   "
    assert "Progress notes (PROGRESS.md, tail):\n- from the worktree" in (handoff_summary(state) or "")


def test_the_session_history_and_notes_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "PROGRESS.md").write_text("old\n" + "n" * 5000)
    state = LoopState(loop_id="l", config=_config(), worktree=str(tmp_path), agent_session_id="s")
    for number in range(1, 26):
        result = IterationResult(iteration=number, agent=AgentResult(summary=f"did {number}\n  more"))
        account_session(state, result, False)
    assert len(state.session_history) == 20
    assert state.session_history[0] == "iteration 6: did 6 more (0 file(s) changed)"
    assert state.pending_handoff is None and state.session_iterations == 25
    state.pending_handoff = "why"
    summary = handoff_summary(state) or ""
    assert "old" not in summary and summary.endswith("n" * 4000)
    assert "Failing after the last evaluation: none" in summary
    no_notes = LoopState(loop_id="l", config=_config(), pending_handoff="why")
    assert "Progress notes" not in (handoff_summary(no_notes) or "")


def test_a_handoff_is_recorded_with_its_reason_and_the_session_it_ends() -> None:
    state = LoopState(
        loop_id="l",
        config=_config(session_max_iterations=2),
        iteration=3,
        agent_sessions=1,
        agent_session_id="s1",
        session_iterations=3,
        pending_handoff="why",
    )
    recorded: list[tuple[Any, ...]] = []
    open_session(state, True, lambda *a, **k: recorded.append((*a, k)))
    assert recorded == [
        (
            EV.SESSION_HANDOFF,
            "agent session 1 handed off after 3 iteration(s): why; session 2 starts with a handoff summary",
            {
                "iteration": 4,
                "reason": "why",
                "previous_session": "s1",
                "session_iterations": 3,
                "sessions_used": 2,
            },
        )
    ]
    assert state.agent_session_id is None and state.agent_sessions == 2 and state.pending_handoff == "why"
    # the fresh session counts its own iterations: one iteration does not reach the limit of 2
    account_session(state, IterationResult(iteration=4, agent=AgentResult(session_id="s2")), True)
    assert state.session_iterations == 1 and state.pending_handoff is None


def test_the_agents_reason_for_a_handoff_is_cut_to_300_characters() -> None:
    state = LoopState(loop_id="l", config=_config())
    agent = AgentResult(handoff_requested="  " + "m" * 400 + "  ")
    found = handoff_due(state, IterationResult(iteration=1, agent=agent))
    assert found == "the agent asked for a fresh session: " + "m" * 300


def test_the_handoff_summary_reads_reason_history_failures_and_notes_in_order() -> None:
    state = LoopState(loop_id="l", config=_config(), pending_handoff="why")
    for number in (1, 2):
        account_session(
            state, IterationResult(iteration=number, agent=AgentResult(summary=f"did {number}")), True
        )
    state.exit_conditions = [_status("a", False), _status("b", True), _status("c", False)]
    state.progress.notes = "- login form done\n"
    state.pending_handoff = "why"
    assert handoff_summary(state) == "\n".join(
        [
            "You continue the work of an earlier agent session (why).",
            "",
            "Recent iterations:",
            "- iteration 1: did 1 (0 file(s) changed)",
            "- iteration 2: did 2 (0 file(s) changed)",
            "Failing after the last evaluation: a, c",
            "",
            "Progress notes (progress.md, tail):",
            "- login form done",
        ]
    )


def test_a_worktree_without_progress_notes_adds_none_to_the_handoff_summary(tmp_path: Path) -> None:
    state = LoopState(loop_id="l", config=_config(), worktree=str(tmp_path), pending_handoff="why")
    summary = handoff_summary(state) or ""
    assert summary.endswith("\nFailing after the last evaluation: none")


def test_progress_notes_are_read_as_utf8_whatever_the_locale_and_bad_bytes_are_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a machine whose locale is Latin-1 (what ``open`` uses without an explicit encoding)
    text_encoding = io.text_encoding
    monkeypatch.setattr(io, "text_encoding", lambda encoding, *a: text_encoding(encoding or "latin-1"))
    (tmp_path / "PROGRESS.md").write_bytes("- café\n- cut mid-write: ".encode() + b"\xe2\x82")
    state = LoopState(loop_id="l", config=_config(), worktree=str(tmp_path), pending_handoff="why")
    summary = handoff_summary(state) or ""
    assert summary.endswith("Progress notes (PROGRESS.md, tail):\n- café\n- cut mid-write: \ufffd")
