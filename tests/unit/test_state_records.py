"""The loop's records themselves (models/state.py): defaults and bounds of each field, the derived
properties (is_met, elapsed_seconds, failing_conditions), ids, the checkpoint's checksum and
stored JSON, its round trip to a LoopState, and a LoopResult summarising a state."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from loopwright.models import (
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)
from loopwright.models.progress import LoopProgress
from loopwright.models.state import Checkpoint, IterationEvent, LoopResult, new_id, utcnow

S = ExitConditionStatusValue
START = datetime(2026, 1, 1, tzinfo=UTC)


def _config(conditions: int = 1, optional: int = 0) -> LoopConfig:
    exit_conditions = [
        {"type": "CUSTOM", "name": f"c{i}", "command": "check", "parser": "exit_code"}
        for i in range(conditions)
    ] + [
        {"type": "CUSTOM", "name": f"o{i}", "command": "check", "parser": "exit_code", "required": False}
        for i in range(optional)
    ]
    return LoopConfig.model_validate(
        {"goal": "g", "exit_conditions": exit_conditions, "git_isolation": False}
    )


def _cond(name: str, status: ExitConditionStatusValue, required: bool = True) -> ExitConditionStatus:
    return ExitConditionStatus(name=name, type=ExitConditionType.CUSTOM, status=status, required=required)


# ----------------------------------------------------------------------------- small pieces


def test_utcnow_is_timezone_aware_utc() -> None:
    before = datetime.now(UTC)
    now = utcnow()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)


def test_new_id_is_the_prefix_and_12_hex_digits_and_differs_each_time() -> None:
    first, second = new_id("loop"), new_id("loop")
    assert re.fullmatch(r"loop_[0-9a-f]{12}", first)
    assert first != second


def test_an_exit_condition_status_starts_pending_and_empty() -> None:
    status = ExitConditionStatus(name="tests", type=ExitConditionType.ALL_TESTS_PASS)
    assert status.model_dump() == {
        "name": "tests",
        "type": ExitConditionType.ALL_TESTS_PASS,
        "status": S.PENDING,
        "required": True,
        "iteration": 0,
        "command": [],
        "exit_code": None,
        "duration_seconds": 0.0,
        "summary": "",
        "details": {},
        "failures": [],
        "stdout": "",
        "stderr": "",
        "output_truncated": False,
        "evaluated_at": None,
    }
    assert status.is_met is False


@pytest.mark.parametrize("field", [{"iteration": -1}, {"duration_seconds": -0.1}, {"unknown": 1}])
def test_an_exit_condition_status_refuses_negative_counts_and_unknown_fields(
    field: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        ExitConditionStatus(name="t", type=ExitConditionType.ALL_TESTS_PASS, **field)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "met"),
    [(S.MET, True), (S.NOT_MET, False), (S.ERROR, False), (S.TIMEOUT, False), (S.PENDING, False)],
)
def test_only_met_is_met(status: ExitConditionStatusValue, met: bool) -> None:
    assert _cond("a", status).is_met is met


def test_a_loop_state_starts_at_zero_and_idle() -> None:
    before = datetime.now(UTC)
    state = LoopState(loop_id="l", config=_config())
    after = datetime.now(UTC)
    dumped = state.model_dump(exclude={"config", "started_at", "updated_at"})
    assert dumped == {
        "loop_id": "l",
        "project": "default",
        "phase": LoopPhase.INITIALIZING,
        "iteration": 0,
        "tokens_used": 0,
        "cost_usd": 0.0,
        "unpriced_models": [],
        "ended_at": None,
        "exit_conditions": [],
        "evaluated_iteration": 0,
        "outcome": None,
        "outcome_reason": None,
        "is_active": False,
        "sessions_used": 0,
        "errors_recovered": 0,
        "last_checkpoint_id": None,
        "checkpointed_iteration": 0,
        "workspace": "",
        "worktree": "",
        "branch": None,
        "base_commit": None,
        "head_commit": None,
        "pending_warnings": [],
        "human_request": None,
        "policy_files": None,
        "workspace_problem": None,
        "pinned_hold": None,
        "sandbox_session_id": None,
        "agent_seconds": None,
        "task_token": None,
        "human_response": None,
        "generation": 0,
        "resume_at": None,
        "consecutive_failures": 0,
        "last_failure_cause": None,
        "uncounted_iterations": 0,
        "features_done": [],
        "agent_sessions": 0,
        "agent_session_id": None,
        "session_iterations": 0,
        "pending_handoff": None,
        "handoff_reason": None,
        "session_history": [],
        "parent_loop_id": None,
        "forked_from_iteration": None,
        "evaluation_cache": [],
        "progress": LoopProgress().model_dump(),
        "active_seconds": 0.0,
        "active_since": None,
        "version": 0,
    }
    assert before <= state.started_at <= after and before <= state.updated_at <= after


@pytest.mark.parametrize(
    "field",
    [
        "iteration",
        "tokens_used",
        "cost_usd",
        "evaluated_iteration",
        "sessions_used",
        "errors_recovered",
        "checkpointed_iteration",
        "agent_seconds",
        "generation",
        "version",
    ],
)
def test_a_loop_state_refuses_negative_counts(field: str) -> None:
    LoopState(loop_id="l", config=_config(), **{field: 0})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=field):
        LoopState(loop_id="l", config=_config(), **{field: -1})  # type: ignore[arg-type]


def test_a_loop_state_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="colour"):
        LoopState(loop_id="l", config=_config(), colour="red")  # type: ignore[call-arg]


# ----------------------------------------------------------------------------- derived properties


def test_elapsed_seconds_runs_from_start_to_end() -> None:
    state = LoopState(
        loop_id="l", config=_config(), started_at=START, ended_at=START + timedelta(seconds=90.5)
    )
    assert state.elapsed_seconds == 90.5


def test_elapsed_seconds_of_a_running_loop_runs_to_now() -> None:
    state = LoopState(loop_id="l", config=_config(), started_at=datetime.now(UTC) - timedelta(seconds=30))
    assert 30 <= state.elapsed_seconds < 40


def test_elapsed_seconds_is_never_negative() -> None:
    state = LoopState(loop_id="l", config=_config(), started_at=START, ended_at=START - timedelta(seconds=5))
    assert state.elapsed_seconds == 0.0
    future = LoopState(loop_id="l", config=_config(), started_at=datetime.now(UTC) + timedelta(hours=1))
    assert future.elapsed_seconds == 0.0


def test_failing_conditions_are_the_evaluated_ones_that_do_not_hold_in_order() -> None:
    state = LoopState(
        loop_id="l",
        config=_config(),
        exit_conditions=[
            _cond("met", S.MET),
            _cond("error", S.ERROR),
            _cond("pending", S.PENDING),
            _cond("not-met", S.NOT_MET, required=False),
            _cond("timeout", S.TIMEOUT),
        ],
    )
    assert [c.name for c in state.failing_conditions] == ["error", "not-met", "timeout"]
    assert LoopState(loop_id="l", config=_config()).failing_conditions == []


def test_an_event_gets_an_id_a_timestamp_and_empty_data() -> None:
    before = datetime.now(UTC)
    event = IterationEvent(loop_id="l", iteration=2, type="LOOP_STARTED", phase=LoopPhase.ITERATING)  # type: ignore[arg-type]
    assert re.fullmatch(r"evt_[0-9a-f]{12}", event.event_id)
    assert before <= event.timestamp <= datetime.now(UTC)
    assert (event.message, event.data) == ("", {})
    with pytest.raises(ValidationError):
        IterationEvent(loop_id="l", iteration=-1, type="LOOP_STARTED", phase=LoopPhase.ITERATING)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        IterationEvent(loop_id="l", iteration=0, type="LOOP_STARTED", phase=LoopPhase.ITERATING, x=1)  # type: ignore[arg-type, call-arg]


# ----------------------------------------------------------------------------- checkpoints


def _progress() -> LoopState:
    return LoopState(
        loop_id="l",
        config=_config(),
        iteration=3,
        tokens_used=1200,
        phase=LoopPhase.CHECKPOINTING,
        pending_warnings=["w"],
        exit_conditions=[_cond("c0", S.NOT_MET)],
    )


def test_a_checkpoint_of_a_state_names_itself_in_its_snapshot() -> None:
    state = _progress()
    ckpt = Checkpoint.from_loop_state(state, "abc123")
    assert re.fullmatch(r"ckpt_[0-9a-f]{12}", ckpt.checkpoint_id)
    assert (ckpt.loop_id, ckpt.iteration, ckpt.commit) == ("l", 3, "abc123")
    assert ckpt.state.last_checkpoint_id == ckpt.checkpoint_id
    assert ckpt.state.checkpointed_iteration == 3
    assert ckpt.state.tokens_used == 1200 and ckpt.state.pending_warnings == ["w"]
    # the state given is not changed
    assert state.last_checkpoint_id is None and state.checkpointed_iteration == 0
    assert Checkpoint.from_loop_state(state).commit is None


def test_a_new_checkpoint_has_a_valid_checksum_and_its_stored_json_is_its_content() -> None:
    ckpt = Checkpoint.from_loop_state(_progress(), "abc")
    assert ckpt.checksum == ckpt.compute_checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", ckpt.checksum)
    assert ckpt.is_valid()
    stored = ckpt.payload_json()
    assert json.loads(stored) == json.loads(ckpt.model_dump_json())
    assert stored == ckpt.model_dump_json()
    again = Checkpoint.model_validate_json(stored)
    assert again == ckpt and again.is_valid()
    assert again.payload_json() == stored


def test_a_later_change_to_the_state_in_place_does_not_reach_the_stored_json() -> None:
    state = _progress()
    ckpt = Checkpoint.from_loop_state(state, "abc")
    state.pending_warnings.append("later")  # the snapshot is a shallow copy: it shares the list
    assert json.loads(ckpt.payload_json())["state"]["pending_warnings"] == ["w"]
    assert json.loads(ckpt.payload_json())["checksum"] == ckpt.checksum


def test_a_changed_checkpoint_is_invalid_and_stores_its_new_content() -> None:
    ckpt = Checkpoint.from_loop_state(_progress(), "abc")
    ckpt.commit = "other"
    assert not ckpt.is_valid()
    assert json.loads(ckpt.payload_json())["commit"] == "other"
    tampered = Checkpoint.model_validate_json(Checkpoint.from_loop_state(_progress()).payload_json())
    tampered.state.tokens_used = 1
    assert not tampered.is_valid()


def test_a_checkpoint_without_a_checksum_is_invalid() -> None:
    ckpt = Checkpoint(loop_id="l", iteration=0, state=_progress())
    assert ckpt.checksum == "" and not ckpt.is_valid()
    assert re.fullmatch(r"ckpt_[0-9a-f]{12}", ckpt.checkpoint_id)
    assert ckpt.commit is None
    ckpt.checksum = ckpt.compute_checksum()
    assert ckpt.is_valid()
    with pytest.raises(ValidationError):
        Checkpoint(loop_id="l", iteration=-1, state=_progress())


def test_a_checkpoint_copy_forgets_the_stored_json() -> None:
    ckpt = Checkpoint.from_loop_state(_progress(), "abc")
    copy = ckpt.model_copy(update={"commit": "def"})
    assert copy.commit == "def"
    assert json.loads(copy.payload_json())["commit"] == "def"
    assert copy != ckpt and not copy.is_valid()
    deep = ckpt.model_copy(deep=True)
    assert deep == ckpt and deep.state is not ckpt.state
    shallow = ckpt.model_copy()
    assert shallow.state is ckpt.state


def test_checkpoints_are_equal_by_content_only_and_unhashable() -> None:
    ckpt = Checkpoint.from_loop_state(_progress(), "abc")
    same = Checkpoint.model_validate_json(ckpt.payload_json())
    assert ckpt == same
    assert ckpt != ckpt.model_dump()
    with pytest.raises(TypeError):
        hash(ckpt)


def test_to_loop_state_is_a_deep_copy_of_the_snapshot() -> None:
    ckpt = Checkpoint.from_loop_state(_progress(), "abc")
    restored = ckpt.to_loop_state()
    assert restored == ckpt.state and restored is not ckpt.state
    restored.pending_warnings.append("more")
    restored.exit_conditions[0].failures.append("x")
    assert ckpt.state.pending_warnings == ["w"] and ckpt.state.exit_conditions[0].failures == []
    assert ckpt.is_valid()


# ----------------------------------------------------------------------------- results


def test_a_result_summarises_a_finished_state() -> None:
    state = LoopState(
        loop_id="l",
        config=_config(conditions=2),
        phase=LoopPhase.COMPLETED,
        outcome=LoopOutcome.ITERATION_LIMIT,
        outcome_reason="limit of 5",
        iteration=5,
        tokens_used=900,
        cost_usd=0.25,
        sessions_used=2,
        agent_sessions=3,
        handoff_reason="context 85% used",
        errors_recovered=1,
        started_at=START,
        ended_at=START + timedelta(seconds=12.34567),
        exit_conditions=[_cond("c0", S.MET), _cond("c1", S.NOT_MET), _cond("opt", S.MET, required=False)],
        branch="loop/l",
        head_commit="abc",
    )
    result = LoopResult.from_state(state)
    assert result.model_dump() == {
        "loop_id": "l",
        "success": False,
        "outcome": LoopOutcome.ITERATION_LIMIT,
        "phase": LoopPhase.COMPLETED,
        "iterations": 5,
        "features_completed": 1,
        "features_total": 2,
        "sessions_used": 3,
        "total_tokens": 900,
        "total_cost_usd": 0.25,
        "errors_recovered": 1,
        "duration_seconds": 12.346,
        "elapsed_seconds": 12.346,
        "handoff_reason": "context 85% used",
        "stop_reason": "limit of 5",
        "exit_conditions": [c.model_dump() for c in state.exit_conditions],
        "branch": "loop/l",
        "head_commit": "abc",
    }


def test_a_result_of_met_conditions_is_a_success_without_a_handoff_reason() -> None:
    state = LoopState(
        loop_id="l",
        config=_config(),
        outcome=LoopOutcome.CONDITIONS_MET,
        outcome_reason="all met",
        exit_conditions=[_cond("c0", S.MET)],
    )
    result = LoopResult.from_state(state)
    assert result.success is True and result.handoff_reason is None and result.stop_reason is None
    assert (result.features_completed, result.features_total) == (1, 1)


def test_before_any_evaluation_the_result_counts_the_configured_required_conditions() -> None:
    state = LoopState(loop_id="l", config=_config(conditions=3, optional=2))
    result = LoopResult.from_state(state)
    assert (result.features_completed, result.features_total) == (0, 3)
    assert result.success is False and result.outcome is None and result.total_cost_usd == 0.0
