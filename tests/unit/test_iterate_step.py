"""The iterate step to the field: the request handed to the agent, the commit it makes, an agent
that cannot start, a worktree tampered with, the files withheld and the iteration's duration."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loopwright import deferred
from loopwright.deferred import replaying
from loopwright.exceptions import AgentError, WorkspaceError, WorkspaceIntegrityError
from loopwright.models import (
    AgentRequest,
    AgentResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
    LoopState,
    utcnow,
)
from loopwright.ports import Agent, OutputCallback, StopCheck, Workspace
from loopwright.steps import iterate as iterate_module
from loopwright.steps.iterate import build_agent_request, iterate


class RecordingAgent(Agent):
    """Returns ``result`` (or raises ``error``) and keeps what it was given."""

    def __init__(self, result: AgentResult | None = None, error: Exception | None = None) -> None:
        self.result = result or AgentResult(summary="did it", tokens_used=3)
        self.error = error
        self.calls: list[tuple[AgentRequest, StopCheck | None, OutputCallback | None]] = []
        self.deferral_keys: list[str] = []

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        self.calls.append((request, should_stop, on_output))
        self.deferral_keys.append(deferred._KEY.get())
        if self.error is not None:
            raise self.error
        return self.result


class RecordingWorkspace(Workspace):
    """Commits as 'sha-<n>'; keeps every commit message; may raise instead; withholds files."""

    def __init__(self, *, error: Exception | None = None, withheld: Sequence[str] = ()) -> None:
        self.messages: list[tuple[str, str]] = []
        self.error = error
        self.withheld_files = list(withheld)
        self.withheld_asked: list[str] = []

    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        return Path("/tmp/wt"), None, None

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        self.messages.append((loop_id, message))
        if self.error is not None:
            raise self.error
        return f"sha-{len(self.messages)}", ["a.py", "b.py"]

    def reset(self, loop_id: str, commit: str) -> None:  # pragma: no cover - not used here
        pass

    def head(self, loop_id: str) -> str | None:  # pragma: no cover - not used here
        return None

    def withheld(self, loop_id: str) -> list[str]:
        self.withheld_asked.append(loop_id)
        return list(self.withheld_files)


def _config(**changes: Any) -> LoopConfig:
    data: dict[str, Any] = {
        "goal": "make the checks pass",
        "exit_conditions": [
            {"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"},
            {"type": "CUSTOM", "name": "b", "command": "check-b", "parser": "exit_code"},
            {"type": "CUSTOM", "name": "c", "command": "check-c", "parser": "exit_code"},
        ],
        "max_iterations": 7,
        "git_isolation": False,
    }
    data.update(changes)
    return LoopConfig.model_validate(data)


def _status(name: str, value: ExitConditionStatusValue, failures: Sequence[str] = ()) -> ExitConditionStatus:
    return ExitConditionStatus(
        name=name,
        type=ExitConditionType.CUSTOM,
        status=value,
        command=[f"check-{name}"],
        exit_code=0 if value is ExitConditionStatusValue.MET else 1,
        summary=f"{name} summary",
        details={"k": name},
        failures=list(failures),
        stdout="out",
        stderr="err",
        duration_seconds=1.5,
        iteration=2,
    )


def _state(**changes: Any) -> LoopState:
    state = LoopState(
        loop_id="it-1",
        config=_config(token_budget=5000, max_duration_seconds=600, max_failures_for_agent=3),
        iteration=2,
        tokens_used=1234,
        worktree="/tmp/wt",
        exit_conditions=[
            _status("a", ExitConditionStatusValue.MET),
            _status("b", ExitConditionStatusValue.NOT_MET, ["b1", "b2", "b3"]),
            _status("c", ExitConditionStatusValue.NOT_MET, ["c1"]),
        ],
        pending_warnings=["close to the budget"],
        human_response="yes, go on",
    )
    for name, value in changes.items():
        setattr(state, name, value)
    return state


# ------------------------------------------------------------------------------------ the request
def test_the_request_carries_the_loop_its_limits_its_failures_warnings_and_the_human_answer() -> None:
    state = _state()
    state.started_at = utcnow() - timedelta(seconds=12.3456789)
    request = build_agent_request(state, Path("/tmp/state"))

    assert request.loop_id == "it-1"
    assert request.iteration == 3
    assert request.goal == "make the checks pass"
    assert request.worktree == "/tmp/wt"
    assert request.state_dir == "/tmp/state"
    assert request.max_iterations == 7
    assert request.tokens_used == 1234
    assert request.token_budget == 5000
    assert request.max_duration_seconds == 600
    assert 12.345 <= request.elapsed_seconds < 13 and request.elapsed_seconds == round(
        request.elapsed_seconds, 3
    )
    # at most 3 failure lines, shared fairly between the two failing conditions
    assert request.failures == ["CUSTOM (b): b1", "CUSTOM (b): b2", "CUSTOM (c): c1"]
    assert request.failing_conditions == ["b", "c"]
    assert request.conditions == [
        {
            "name": name,
            "type": "CUSTOM",
            "status": "NOT_MET",
            "summary": f"{name} summary",
            "details": {"k": name},
            "failures": failures,
            "command": [f"check-{name}"],
            "exit_code": 1,
        }
        for name, failures in (("b", ["b1", "b2", "b3"]), ("c", ["c1"]))
    ]
    assert request.warnings == ["close to the budget"]
    assert request.human_response == "yes, go on"


def test_the_request_of_a_fresh_loop_has_no_failures_warnings_or_answer() -> None:
    state = _state(exit_conditions=[], pending_warnings=[], human_response=None, iteration=0, tokens_used=0)
    request = build_agent_request(state, Path("/s"))
    assert request.iteration == 1
    assert (request.failures, request.failing_conditions, request.conditions) == ([], [], [])
    assert request.warnings == [] and request.human_response is None


def test_iterate_hands_the_request_the_stop_check_and_the_output_callback_to_the_agent() -> None:
    agent = RecordingAgent()

    def stop() -> bool:
        return False

    def output(stream: str, text: str) -> None:
        return None

    iterate(
        _state(), agent, RecordingWorkspace(), state_dir=Path("/tmp/s"), should_stop=stop, on_output=output
    )

    [(request, should_stop, on_output)] = agent.calls
    assert request == build_agent_request(_state(), Path("/tmp/s")).model_copy(
        update={"elapsed_seconds": request.elapsed_seconds, "time_left_seconds": request.time_left_seconds}
    )
    assert should_stop is stop and on_output is output


# --------------------------------------------------------------------------------------- the commit
def test_iterate_commits_with_the_iteration_number_and_the_stripped_summary() -> None:
    agent = RecordingAgent(AgentResult(summary="  fixed b and c \n", tokens_used=9))
    workspace = RecordingWorkspace()
    result = iterate(_state(), agent, workspace, state_dir=Path("/s"))

    assert workspace.messages == [("it-1", "loopwright: iteration 3\n\nfixed b and c")]
    assert result.iteration == 3
    assert result.agent is agent.result
    assert result.commit == "sha-1"
    assert result.changed_files == ["a.py", "b.py"]
    assert result.withheld_files == []
    assert result.workspace_problem is None


def test_the_commit_message_keeps_2000_characters_of_the_summary() -> None:
    workspace = RecordingWorkspace()
    iterate(_state(), RecordingAgent(AgentResult(summary="x" * 2500)), workspace, state_dir=Path("/s"))
    [(_, message)] = workspace.messages
    assert message == "loopwright: iteration 3\n\n" + "x" * 2000


@pytest.mark.parametrize(("failed", "said"), [(False, "agent finished"), (True, "agent failed")])
def test_an_empty_summary_is_committed_as_what_the_agent_did(failed: bool, said: str) -> None:
    workspace = RecordingWorkspace()
    iterate(
        _state(), RecordingAgent(AgentResult(summary="  ", failed=failed)), workspace, state_dir=Path("/s")
    )
    assert workspace.messages == [("it-1", f"loopwright: iteration 3\n\n{said}")]


def test_an_agent_that_cannot_start_yields_a_failed_result_and_the_iteration_is_still_committed() -> None:
    agent = RecordingAgent(error=AgentError("no such program: claude"))
    workspace = RecordingWorkspace()
    result = iterate(_state(), agent, workspace, state_dir=Path("/s"))

    assert len(agent.calls) == 1
    assert result.agent == AgentResult(failed=True, summary="agent error: no such program: claude")
    assert workspace.messages == [("it-1", "loopwright: iteration 3\n\nagent error: no such program: claude")]
    assert result.commit == "sha-1" and result.iteration == 3


def test_other_errors_of_the_agent_propagate() -> None:
    with pytest.raises(RuntimeError, match="bug"):
        iterate(
            _state(), RecordingAgent(error=RuntimeError("bug")), RecordingWorkspace(), state_dir=Path("/s")
        )


def test_a_tampered_worktree_commits_nothing_and_says_why() -> None:
    workspace = RecordingWorkspace(error=WorkspaceIntegrityError("HEAD moved off loopwright/it-1"))
    result = iterate(_state(), RecordingAgent(), workspace, state_dir=Path("/s"))

    assert result.commit is None
    assert result.changed_files == []
    assert result.workspace_problem == "HEAD moved off loopwright/it-1"
    assert result.iteration == 3 and not result.agent.failed


def test_other_workspace_errors_propagate() -> None:
    with pytest.raises(WorkspaceError, match="disk full"):
        iterate(
            _state(),
            RecordingAgent(),
            RecordingWorkspace(error=WorkspaceError("disk full")),
            state_dir=Path("/s"),
        )


def test_the_files_withheld_by_the_workspace_are_in_the_result() -> None:
    workspace = RecordingWorkspace(withheld=[".env", "id_rsa"])
    result = iterate(_state(), RecordingAgent(), workspace, state_dir=Path("/s"))
    assert result.withheld_files == [".env", "id_rsa"]
    assert workspace.withheld_asked == ["it-1"]


# ------------------------------------------------------------------------------------- the duration
def test_the_duration_is_the_agent_and_commit_time_to_the_microsecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = iter([100.0, 101.23456789])
    monkeypatch.setattr(iterate_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    result = iterate(_state(), RecordingAgent(), RecordingWorkspace(), state_dir=Path("/s"))
    assert result.duration_seconds == 1.234568


def test_a_replayed_iteration_counts_from_its_first_start(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.0, 101.0])
    monkeypatch.setattr(iterate_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    with replaying(utcnow() - timedelta(seconds=50)):
        result = iterate(_state(), RecordingAgent(), RecordingWorkspace(), state_dir=Path("/s"))
    assert 50 <= result.duration_seconds < 60


def test_the_agent_runs_under_its_own_deferral_key_so_a_replayed_step_finds_its_task_again() -> None:
    agent = RecordingAgent()
    iterate(_state(), agent, RecordingWorkspace(), state_dir=Path("/s"))
    assert agent.deferral_keys == ["agent"]
    assert deferred._KEY.get() == "command"


def test_the_failing_conditions_reach_the_agent_as_json() -> None:
    state = _state()
    state.exit_conditions[1].details = {"since": datetime(2026, 3, 1, 12, 30, tzinfo=UTC), "files": ("x.py",)}
    request = build_agent_request(state, Path("/s"))
    assert request.conditions[0]["details"] == {"since": "2026-03-01T12:30:00Z", "files": ["x.py"]}
    assert type(request.conditions[0]["type"]) is str and type(request.conditions[0]["status"]) is str
