"""Hard limits (issue 10 point 8): the agent's remaining limits, what ends a run mid-way
(deadline, streamed budgets, stop --now), the partial work set aside, active time."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.agents.claude_code import ClaudeStreamParser
from loopwright.adapters.local.agents.codex import CodexJsonParser
from loopwright.adapters.local.hard_limits import RunLimits, UsageSoFar, ended_summary
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.hard_limits import set_aside_partial_work
from loopwright.models import (
    AgentRequest,
    AgentResult,
    Checkpoint,
    CommandResult,
    ControlAction,
    ControlRequest,
    HardLimit,
    IterationEventType,
    IterationResult,
    LoopConfig,
    LoopState,
)
from loopwright.models.workspace import SavedWork
from loopwright.ports import Workspace
from loopwright.steps.iterate import limits_left
from loopwright.steps.restore import restored_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _config(**fields: Any) -> LoopConfig:
    return LoopConfig.model_validate(
        {"goal": "g", "exit_conditions": [{"type": "CUSTOM", "name": "c", "command": "check"}], **fields}
    )


def _request(**fields: Any) -> AgentRequest:
    base: dict[str, Any] = {
        "loop_id": "l",
        "iteration": 1,
        "goal": "g",
        "worktree": "/w",
        "state_dir": "/s",
        "max_iterations": 5,
        "tokens_used": 0,
    }
    return AgentRequest(**(base | fields))


# ----------------------------------------------------------------------------- limits left
def test_limits_left_gives_what_remains_of_each_limit_and_none_without_one() -> None:
    state = LoopState(
        loop_id="l",
        config=_config(max_duration_seconds=100, token_budget=1000, cost_budget_usd=2.0),
        tokens_used=400,
        cost_usd=0.5,
        active_seconds=30.0,
        active_since=datetime.now(UTC),
    )
    left = limits_left(state)
    assert 69.0 < left["time_left_seconds"] <= 70.0
    assert left["tokens_left"] == 600 and left["cost_left_usd"] == pytest.approx(1.5)
    assert limits_left(LoopState(loop_id="l", config=_config())) == {
        "time_left_seconds": None,
        "tokens_left": None,
        "cost_left_usd": None,
        "prices": {},
    }


def test_limits_left_never_goes_below_zero() -> None:
    state = LoopState(
        loop_id="l",
        config=_config(max_duration_seconds=10, token_budget=100, cost_budget_usd=1.0),
        tokens_used=500,
        cost_usd=3.0,
        started_at=datetime.now(UTC) - timedelta(seconds=50),
    )
    assert limits_left(state) | {"prices": {}} == {
        "time_left_seconds": 0.0,
        "tokens_left": 0,
        "cost_left_usd": 0.0,
        "prices": {},
    }


# ----------------------------------------------------------------------------- active time
def test_paused_time_does_not_count_unless_configured() -> None:
    state = LoopState(loop_id="l", config=_config(), started_at=T0)
    state.open_active_time(T0)
    state.close_active_time(T0 + timedelta(seconds=10))  # ran 10 s, then waited for a human
    state.open_active_time(T0 + timedelta(seconds=100))  # resumed 90 s later
    now = T0 + timedelta(seconds=105)
    assert state.elapsed_at(now) == 15.0
    counted = state.model_copy(update={"config": _config(count_paused_time=True)})
    assert counted.elapsed_at(now) == 105.0


def test_a_killed_session_counts_up_to_its_last_write() -> None:
    state = LoopState(loop_id="l", config=_config(), started_at=T0, updated_at=T0 + timedelta(seconds=7))
    state.active_since = T0  # the session died (kill -9) without closing its time
    state.open_active_time(T0 + timedelta(seconds=60))
    assert state.active_seconds == 7.0 and state.active_since == T0 + timedelta(seconds=60)
    state.close_active_time(T0 + timedelta(seconds=61))
    state.close_active_time(T0 + timedelta(seconds=99))  # no session runs: nothing added
    assert state.active_seconds == 8.0 and state.active_since is None


def test_a_restore_from_a_checkpoint_keeps_the_time_the_loop_really_ran() -> None:
    # the checkpoint was taken 5 s into a session; the stored state ran 30 s more, then died
    checkpointed = LoopState(loop_id="l", config=_config(), started_at=T0, active_since=T0, iteration=1)
    ckpt = Checkpoint.from_loop_state(checkpointed, "a" * 40)
    stored = checkpointed.model_copy(
        update={"iteration": 2, "active_seconds": 4.0, "updated_at": T0 + timedelta(seconds=35)}
    )
    state = restored_state(stored, ckpt)
    assert state.active_seconds == 39.0 and state.active_since is None  # closed at its last write
    state.open_active_time(T0 + timedelta(hours=1))  # an hour later: the gap does not count
    assert state.elapsed_at(T0 + timedelta(hours=1, seconds=1)) == 40.0


def test_a_loop_that_never_kept_its_active_time_counts_wall_clock() -> None:
    state = LoopState(loop_id="l", config=_config(), started_at=T0, ended_at=T0 + timedelta(seconds=42))
    assert state.elapsed_at(T0 + timedelta(days=1)) == 42.0


def test_count_paused_time_refuses_what_is_not_a_boolean() -> None:
    with pytest.raises(ValidationError, match="count_paused_time"):
        _config(count_paused_time="yes")


# ----------------------------------------------------------------------------- run limits
def test_the_deadline_shortens_the_timeout_only_when_it_comes_first() -> None:
    soon = RunLimits(_request(time_left_seconds=3.0, max_duration_seconds=60), 1800.0)
    assert soon.deadline_first and soon.timeout_seconds == 3.0
    late = RunLimits(_request(time_left_seconds=5000.0), 1800.0)
    assert not late.deadline_first and late.timeout_seconds == 1800.0
    spent = RunLimits(_request(time_left_seconds=0.0), 1800.0)
    assert spent.timeout_seconds > 0  # never a zero timeout
    assert RunLimits(_request(), 1800.0).timeout_seconds == 1800.0
    timed_out = CommandResult(command=["a"], exit_code=None, timed_out=True)
    assert soon.ended_by(timed_out) is HardLimit.DEADLINE
    assert late.ended_by(timed_out) is None  # its own timeout: a TIMEOUT failure, as before


def test_a_streamed_token_budget_is_crossed_at_what_is_left() -> None:
    usage: list[UsageSoFar | None] = [None]
    limits = RunLimits(_request(tokens_left=1000, token_budget=5000), 60.0, usage=lambda: usage[0])
    assert limits.watches and not limits.check()
    usage[0] = UsageSoFar(tokens=999)
    assert not limits.check()
    usage[0] = UsageSoFar(tokens=1000)
    assert limits.check() and limits.check()  # stays crossed
    stopped = CommandResult(command=["a"], exit_code=None, stopped=True)
    assert limits.ended_by(stopped) is HardLimit.TOKEN_BUDGET


def test_a_streamed_cost_budget_uses_the_cli_figure_else_priced_tokens() -> None:
    request = _request(cost_left_usd=1.0, prices={"m": {"input": 1.0, "cached_input": 0.1, "output": 10.0}})
    priced = RunLimits(
        request, 60.0, usage=lambda: UsageSoFar(tokens=200_000, output_tokens=100_000, model="m")
    )
    assert priced.crossed() is HardLimit.COST_BUDGET  # 100k output tokens at $10/M = $1.00
    cheap = RunLimits(request, 60.0, usage=lambda: UsageSoFar(tokens=10, output_tokens=10, model="m"))
    assert cheap.crossed() is None
    own = RunLimits(request, 60.0, usage=lambda: UsageSoFar(tokens=1, cost_usd=1.5))
    assert own.crossed() is HardLimit.COST_BUDGET
    unpriced = RunLimits(request, 60.0, usage=lambda: UsageSoFar(tokens=10**9, output_tokens=10**9))
    assert unpriced.crossed() is None  # no model, no price: only checked between iterations
    configured = RunLimits(
        request, 60.0, usage=lambda: UsageSoFar(tokens=10**6, output_tokens=10**6), model="m"
    )
    assert configured.crossed() is HardLimit.COST_BUDGET


def test_without_budgets_nor_a_stop_check_nothing_is_watched() -> None:
    limits = RunLimits(_request(), 60.0, usage=lambda: UsageSoFar(tokens=10**9))
    assert not limits.watches and not limits.check()
    assert limits.ended_by(CommandResult(command=["a"], exit_code=0)) is None


def test_the_engines_stop_check_is_stop_now() -> None:
    asked = [False]
    limits = RunLimits(_request(), 60.0, should_stop=lambda: asked[0])
    assert limits.watches and not limits.check()
    asked[0] = True
    assert limits.check()
    assert limits.ended_by(CommandResult(command=["a"], exit_code=None, stopped=True)) is HardLimit.STOP_NOW


@pytest.mark.parametrize(
    ("limit", "words"),
    [
        (HardLimit.DEADLINE, "deadline (max_duration_seconds = 60 s)"),
        (HardLimit.TOKEN_BUDGET, "the 10 tokens left of the token budget (100 tokens)"),
        (HardLimit.COST_BUDGET, "$0.2500 left of the cost budget"),
        (HardLimit.STOP_NOW, "loopwright stop --now"),
    ],
)
def test_each_end_is_said_with_its_figures(limit: HardLimit, words: str) -> None:
    request = _request(max_duration_seconds=60, tokens_left=10, token_budget=100, cost_left_usd=0.25)
    assert words in ended_summary(limit, request, [])
    assert "2 of its processes could not be ended" in ended_summary(limit, request, ["pid 1: a", "pid 2: b"])


# ----------------------------------------------------------------------------- streamed usage
def test_claude_usage_so_far_counts_each_message_once_then_the_result() -> None:
    parser = ClaudeStreamParser()
    assert parser.usage_so_far() is None
    message = {
        "id": "m1",
        "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}],
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 20,
            "output_tokens": 7,
        },
    }
    for _ in range(3):  # one event per content block, same usage
        parser.on_event({"type": "assistant", "message": message})
    parser.on_event({"type": "assistant", "message": {**message, "id": "m2", "usage": {"output_tokens": 3}}})
    assert parser.usage_so_far() == UsageSoFar(
        tokens=45, input_tokens=35, cached_input_tokens=20, output_tokens=10, model="claude-x"
    )
    parser.on_event(
        {"type": "result", "total_cost_usd": 0.5, "usage": {"input_tokens": 100, "output_tokens": 50}}
    )
    assert parser.usage_so_far() == UsageSoFar(
        tokens=150, input_tokens=100, cached_input_tokens=0, output_tokens=50, cost_usd=0.5, model="claude-x"
    )


def test_codex_usage_so_far_is_the_last_turns_total() -> None:
    parser = CodexJsonParser()
    assert parser.usage_so_far() is None
    parser.on_event(
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 100, "cached_input_tokens": 500, "output_tokens": 9},
        }
    )
    assert parser.usage_so_far() == UsageSoFar(
        tokens=109, input_tokens=100, cached_input_tokens=100, output_tokens=9
    )


# ----------------------------------------------------------------------------- sandbox
def test_should_stop_ends_a_sleeping_command_at_once(tmp_path: Path) -> None:
    asked_at: list[float] = []

    def stop() -> bool:
        if not asked_at:
            asked_at.append(time.monotonic() + 0.3)
        return time.monotonic() >= asked_at[0]

    began = time.monotonic()
    outcome = SubprocessSandbox().run(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        cwd=tmp_path,
        timeout_seconds=60,
        should_stop=stop,
    )
    assert outcome.stopped and outcome.exit_code is None and not outcome.timed_out
    assert time.monotonic() - began < 5 and outcome.left_running == []


def test_a_stop_check_that_raises_never_stops_the_command(tmp_path: Path) -> None:
    def broken() -> bool:
        raise RuntimeError("store gone")

    sandbox = SubprocessSandbox()
    sandbox.watch_stop(broken)
    outcome = sandbox.run(
        [sys.executable, "-c", "import time; time.sleep(0.4)"], cwd=tmp_path, timeout_seconds=30
    )
    assert outcome.exit_code == 0 and not outcome.stopped


def test_watch_stop_applies_to_every_command_until_detached(tmp_path: Path) -> None:
    sandbox = SubprocessSandbox()
    sandbox.watch_stop(lambda: True)
    ended = sandbox.run(
        [sys.executable, "-c", "import time; time.sleep(30)"], cwd=tmp_path, timeout_seconds=30
    )
    assert ended.stopped
    sandbox.detach()
    ran = sandbox.run([sys.executable, "-c", "pass"], cwd=tmp_path, timeout_seconds=30)
    assert ran.exit_code == 0 and not ran.stopped


# ----------------------------------------------------------------------------- set aside
class _Workspace(Workspace):
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        return Path("/w"), None, None

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        return None, []

    def reset(self, loop_id: str, commit: str) -> None:
        self.calls.append(("reset", loop_id, commit))

    def head(self, loop_id: str) -> str | None:
        return None

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        self.calls.append(("set_aside", loop_id, commit, label))
        return SavedWork(ref=f"refs/loopwright/{loop_id}/set-aside/{label}", commit="c2")


def _ended(
    ended_by: HardLimit | None, commit: str | None = "c2", summary: str = "ended at the deadline"
) -> IterationResult:
    agent = AgentResult(tokens_used=1200, summary=summary, ended_by=ended_by)
    return IterationResult(iteration=3, agent=agent, commit=commit, changed_files=["a.py"] if commit else [])


def test_an_agent_a_hard_limit_ended_has_its_work_set_aside_and_is_not_evaluated() -> None:
    state = LoopState(loop_id="l", config=_config(), iteration=3, evaluated_iteration=2, head_commit="c2")
    workspace, events = _Workspace(), []
    limit = set_aside_partial_work(
        state, _ended(HardLimit.DEADLINE), "c1", workspace, lambda *a, **k: events.append((a, k))
    )
    assert limit is HardLimit.DEADLINE
    assert workspace.calls == [("set_aside", "l", "c1", "deadline-iteration-3"), ("reset", "l", "c1")]
    assert state.head_commit == "c1" and state.evaluated_iteration == 3
    [((kind, message), data)] = events
    assert kind is IterationEventType.AGENT_ENDED_AT_LIMIT
    assert message == (
        "iteration 3: ended at the deadline; its partial work is kept on "
        "refs/loopwright/l/set-aside/deadline-iteration-3"
    )
    assert data == {
        "iteration": 3,
        "limit": "DEADLINE",
        "ref": "refs/loopwright/l/set-aside/deadline-iteration-3",
        "commit": "c2",
        "reverted_to": "c1",
        "tokens_used": 1200,
        "changed_files": 1,
    }


def test_an_ended_agent_whose_branch_did_not_move_keeps_no_ref_and_reverts_nothing() -> None:
    # the agent committed nothing new: its iteration's commit is the branch's commit before it
    state = LoopState(loop_id="l", config=_config(), iteration=3, head_commit="c1")
    workspace, events = _Workspace(), []
    limit = set_aside_partial_work(
        state,
        _ended(HardLimit.TOKEN_BUDGET, commit="c1", summary="s" * 400),
        "c1",
        workspace,
        lambda *a, **k: events.append((a, k)),
    )
    assert limit is HardLimit.TOKEN_BUDGET and workspace.calls == [] and state.head_commit == "c1"
    [((_, message), data)] = events
    assert message == "iteration 3: " + "s" * 300 + "; it had changed nothing"  # the summary is cut
    assert data["ref"] is None and data["commit"] is None and data["reverted_to"] is None
    assert data["limit"] == "TOKEN_BUDGET" and data["iteration"] == 3 and data["changed_files"] == 1


def test_an_agent_that_ended_by_itself_is_left_alone() -> None:
    state = LoopState(loop_id="l", config=_config(), iteration=3, evaluated_iteration=2)
    workspace = _Workspace()
    assert set_aside_partial_work(state, _ended(None), "c1", workspace, lambda *a, **k: None) is None
    assert workspace.calls == [] and state.evaluated_iteration == 2


def test_an_ended_agent_that_changed_nothing_keeps_no_ref() -> None:
    state = LoopState(loop_id="l", config=_config(), iteration=3)
    workspace, events = _Workspace(), []
    set_aside_partial_work(
        state, _ended(HardLimit.STOP_NOW, commit=None), "c1", workspace, lambda *a, **k: events.append(k)
    )
    assert workspace.calls == [] and events[0]["ref"] is None and events[0]["limit"] == "STOP_NOW"


# ----------------------------------------------------------------------------- controls
def test_only_stop_takes_now() -> None:
    request = ControlRequest(loop_id="l", action=ControlAction.STOP, principal='User::"a"', now=True)
    assert request.now
    with pytest.raises(ValidationError, match="only STOP"):
        ControlRequest(loop_id="l", action=ControlAction.PAUSE, principal='User::"a"', now=True)
    with pytest.raises(ValidationError, match="now"):
        ControlRequest(loop_id="l", action=ControlAction.STOP, principal='User::"a"', now="yes")
