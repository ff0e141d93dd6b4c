"""LoopFramework over in-memory fakes (store, sandbox, workspace) and the real Cedar policies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.engine import LoopFramework
from loopwright.exceptions import LoopAlreadyRunningError, LoopFrameworkError
from loopwright.models import (
    AgentRequest,
    AgentResult,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
)
from tests.fakes import FakeWorkspace, MemoryStore, ScriptedSandbox

EV = IterationEventType


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "make the checks pass",
        "exit_conditions": [
            {"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"},
            {"type": "CUSTOM", "name": "b", "command": "check-b", "parser": "exit_code"},
        ],
        "max_iterations": 10,
        "git_isolation": False,
        "max_stuck_iterations": None,  # scripted agents that change nothing: not about stuck loops
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


def _passing_from(iteration: int, state: dict[str, int]) -> ScriptedSandbox:
    """Checks fail until the agent has run ``iteration`` times."""

    def respond(command: Sequence[str], _call: int) -> tuple[int, str]:
        return (0, "ok") if state["iteration"] >= iteration else (1, f"{command[0]} failed")

    return ScriptedSandbox(respond)


def _framework(
    tmp_path: Path,
    config: LoopConfig,
    sandbox: ScriptedSandbox,
    store: MemoryStore | None = None,
    **kwargs: object,
) -> LoopFramework:
    return LoopFramework(
        config,
        workspace=tmp_path,
        store=store or MemoryStore(),
        sandbox=sandbox,
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
        **kwargs,  # type: ignore[arg-type]
    )


def test_loop_runs_until_conditions_met_and_reports_the_seed_result_fields(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    seen: list[AgentRequest] = []

    def work(request: AgentRequest) -> AgentResult:
        seen.append(request)
        counter["iteration"] = request.iteration
        return AgentResult(tokens_used=100, summary=f"did {request.iteration}")

    store = MemoryStore()
    loop = _framework(tmp_path, _config(), _passing_from(3, counter), store)
    result = loop.run(work_function=work)

    assert result.outcome is LoopOutcome.CONDITIONS_MET and result.success
    # a work function has no sessions: each iteration is a fresh agent session (issue 10.3)
    assert (result.iterations, result.total_tokens, result.sessions_used) == (3, 300, 3)
    assert loop.get_state().sessions_used == 1  # engine runs
    assert (result.features_completed, result.features_total) == (2, 2)
    # the failures of the last evaluation reach the agent in the next iteration: iteration 1's
    # are the baseline's (evaluated before the agent first ran)
    assert seen[0].failing_conditions == ["a", "b"]
    assert any("check-a failed" in f for f in seen[0].failures)
    assert seen[1].failing_conditions == ["a", "b"]
    assert any("check-a failed" in f for f in seen[1].failures)
    types = store.types(loop.loop_id)
    assert types[0] is EV.LOOP_STARTED and types[-1] is EV.LOOP_COMPLETED
    assert types.count(EV.ITERATION_STARTED) == 3
    assert types.count(EV.EXIT_CONDITIONS_EVALUATED) == 1 + 3
    assert types.count(EV.CHECKPOINT_SAVED) == 3
    assert loop.get_state().phase is LoopPhase.COMPLETED
    assert loop.load_checkpoint().iteration == 3


def test_iteration_limit_is_enforced_by_cedar_with_a_warning_at_80_percent(tmp_path: Path) -> None:
    store = MemoryStore()
    loop = _framework(tmp_path, _config(max_iterations=5), _passing_from(99, {"iteration": 0}), store)
    result = loop.run(work_function=lambda request: None)

    assert result.outcome is LoopOutcome.ITERATION_LIMIT
    assert result.iterations == 5
    assert result.stop_reason is not None and "iteration" in result.stop_reason
    warnings = store.list_events(loop.loop_id, types=[EV.POLICY_WARNING])
    assert [w.iteration for w in warnings] == [4, 5]  # 80% of 5 iterations: 4 and 5 warn
    denied = store.list_events(loop.loop_id, types=[EV.POLICY_DENIED])
    assert len(denied) == 1 and denied[0].data["outcome"] == "ITERATION_LIMIT"


def test_token_budget_stops_the_loop(tmp_path: Path) -> None:
    loop = _framework(tmp_path, _config(token_budget=250), _passing_from(99, {"iteration": 0}))
    result = loop.run(work_function=lambda request: 100)
    assert result.outcome is LoopOutcome.TOKEN_BUDGET_EXHAUSTED
    assert result.iterations == 3 and result.total_tokens == 300


def test_reentry_is_refused(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    loop = _framework(tmp_path, _config(), _passing_from(1, counter))
    errors: list[Exception] = []

    def work(request: AgentRequest) -> None:
        counter["iteration"] = request.iteration
        try:
            loop.run(work_function=work)
        except LoopAlreadyRunningError as exc:
            errors.append(exc)

    loop.run(work_function=work)
    assert len(errors) == 1 and "already running" in str(errors[0])


def test_stop_ends_after_the_current_step_and_resume_continues(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    store = MemoryStore()
    loop = _framework(tmp_path, _config(), _passing_from(4, counter), store)

    def work(request: AgentRequest) -> None:
        counter["iteration"] = request.iteration
        if request.iteration == 2:
            loop.request_stop("operator asked")

    first = loop.run(work_function=work)
    assert first.outcome is LoopOutcome.STOPPED and first.iterations == 2
    assert "operator asked" in (first.stop_reason or "")

    again = _framework(tmp_path, _config(), _passing_from(4, counter), store, loop_id=loop.loop_id)
    second = again.run(work_function=work)
    assert second.outcome is LoopOutcome.CONDITIONS_MET
    assert second.iterations == 4 and second.sessions_used == 4  # agent sessions: one per call
    assert again.get_state().sessions_used == 2  # engine runs: the first and the resume
    started = [e.iteration for e in store.list_events(loop.loop_id, types=[EV.ITERATION_STARTED])]
    assert started == [1, 2, 3, 4]  # each iteration ran once


def test_agent_question_pauses_awaiting_response_and_resume_goes_on(tmp_path: Path) -> None:
    counter = {"iteration": 0}
    store = MemoryStore()
    loop = _framework(tmp_path, _config(), _passing_from(2, counter), store)

    def work(request: AgentRequest) -> AgentResult:
        counter["iteration"] = request.iteration
        return AgentResult(needs_human="may I delete the legacy API?" if request.iteration == 1 else None)

    paused = loop.run(work_function=work)
    assert paused.outcome is None and paused.phase is LoopPhase.AWAITING_RESPONSE
    assert "legacy API" in (loop.get_state().human_request or "")
    done = _framework(tmp_path, _config(), _passing_from(2, counter), store, loop_id=loop.loop_id).run(
        work_function=work
    )
    assert done.outcome is LoopOutcome.CONDITIONS_MET and done.iterations == 2


def test_crash_after_checkpoint_resumes_with_evaluation_not_a_second_agent_run(
    tmp_path: Path,
) -> None:
    # Given a loop whose process died right after the checkpoint of iteration 1 (before evaluate)
    counter = {"iteration": 0}
    store = MemoryStore()
    calls: list[int] = []

    class Crash(Exception):
        pass

    def crashing_sandbox(command: Sequence[str], call: int) -> tuple[int, str]:
        if counter["iteration"] == 0:  # the baseline: the checks fail
            return 1, "not yet"
        raise Crash

    loop = _framework(tmp_path, _config(), ScriptedSandbox(crashing_sandbox), store)

    def work(request: AgentRequest) -> None:
        calls.append(request.iteration)
        counter["iteration"] = request.iteration

    with pytest.raises(Crash):
        loop.run(work_function=work)
    # When a new process resumes it, with checks that now pass
    resumed = _framework(tmp_path, _config(), _passing_from(1, counter), store, loop_id=loop.loop_id)
    result = resumed.run(work_function=work)
    # Then iteration 1 is evaluated without running the agent again
    assert result.outcome is LoopOutcome.CONDITIONS_MET
    assert calls == [1]
    assert EV.CHECKPOINT_RECOVERED in store.types(loop.loop_id)


def test_events_are_span_events_of_the_loop_and_iteration_spans(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    counter = {"iteration": 0}
    loop = _framework(tmp_path, _config(), _passing_from(1, counter))
    loop.run(work_function=lambda request: counter.update(iteration=request.iteration))
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    loop_span = spans["loopwright.loop"]
    assert loop_span.attributes is not None and loop_span.attributes["loopwright.loop_id"] == loop.loop_id
    loop_events = [e.name for e in loop_span.events]
    assert loop_events[0] == "LOOP_STARTED" and loop_events[-1] == "LOOP_COMPLETED"
    iteration_events = [e.name for e in spans["loopwright.iteration"].events]
    assert "ITERATION_STARTED" in iteration_events and "EXIT_CONDITIONS_EVALUATED" in iteration_events


def test_an_ended_loop_cannot_run_again(tmp_path: Path) -> None:
    store = MemoryStore()
    loop = _framework(tmp_path, _config(), _passing_from(1, {"iteration": 1}), store)
    loop.run(work_function=lambda request: None)
    again = _framework(tmp_path, _config(), _passing_from(1, {"iteration": 1}), store, loop_id=loop.loop_id)
    with pytest.raises(LoopFrameworkError, match="already ended with CONDITIONS_MET"):
        again.run(work_function=lambda request: None)
