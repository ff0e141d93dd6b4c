"""verify (gate:all), decide and checkpoint recovery: pure functions over models and fakes."""

from __future__ import annotations

import pytest

from loopwright.exceptions import CheckpointRecoveryError
from loopwright.models import (
    AgentResult,
    AuthorizationResult,
    Checkpoint,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
    LoopOutcome,
    LoopState,
    NextAction,
)
from loopwright.steps.checkpoint import checkpoint, checkpoint_due, recover
from loopwright.steps.decide import decide
from loopwright.steps.verify import verify
from tests.fakes import MemoryStore

MET, NOT_MET = ExitConditionStatusValue.MET, ExitConditionStatusValue.NOT_MET


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "g",
        "exit_conditions": [
            {"type": "ALL_TESTS_PASS"},
            {"type": "LINTING_CLEAN"},
            {"type": "CUSTOM", "name": "docs", "command": "true", "required": False},
        ],
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


def _status(name: str, value: ExitConditionStatusValue) -> ExitConditionStatus:
    return ExitConditionStatus(name=name, type=ExitConditionType.CUSTOM, status=value)


def test_verify_passes_when_every_required_condition_is_met_even_if_optional_fails() -> None:
    result = verify(
        _config(),
        [_status("all_tests_pass", MET), _status("linting_clean", MET), _status("docs", NOT_MET)],
    )
    assert result.passed
    assert result.failing == []


def test_verify_fails_naming_the_unmet_and_the_missing_required_conditions() -> None:
    result = verify(_config(), [_status("all_tests_pass", NOT_MET)])
    assert not result.passed
    assert result.failing == ["all_tests_pass", "linting_clean"]
    assert "linting_clean" in result.message


def test_decide_denial_wins_and_carries_the_policy_outcome() -> None:
    auth = AuthorizationResult(
        allowed=False,
        iteration=11,
        denied_by=["iteration-limit"],
        outcome=LoopOutcome.ITERATION_LIMIT,
        reason="limit",
    )
    decision = decide(authorization=auth, stop_reason="x")
    assert (decision.action, decision.outcome, decision.reason) == (
        NextAction.STOP,
        LoopOutcome.ITERATION_LIMIT,
        "limit",
    )


def test_decide_orders_completion_before_stop_before_human_before_continue() -> None:
    passed = verify(_config(), [_status("all_tests_pass", MET), _status("linting_clean", MET)])
    failed = verify(_config(), [])
    asking = AgentResult(needs_human="which API version?")
    assert decide(verification=passed, stop_reason="s").outcome is LoopOutcome.CONDITIONS_MET
    assert decide(verification=failed, stop_reason="s", agent=asking).outcome is LoopOutcome.STOPPED
    assert decide(verification=failed, agent=asking).action is NextAction.AWAIT_HUMAN
    assert decide(verification=failed).action is NextAction.CONTINUE


@pytest.mark.parametrize(("interval", "due"), [(1, [1, 2, 3, 4]), (2, [2, 4]), (3, [3])])
def test_checkpoint_due_every_interval(interval: int, due: list[int]) -> None:
    state = LoopState(loop_id="l", config=_config(checkpoint_interval=interval))
    got = []
    for i in range(5):
        state.iteration = i
        if checkpoint_due(state):
            got.append(i)
    assert got == due


def test_checkpoint_retention_keeps_newest_and_recover_returns_newest_valid() -> None:
    store = MemoryStore()
    state = LoopState(loop_id="l", config=_config(checkpoint_retention=2))
    for i in range(1, 4):
        state.iteration = i
        checkpoint(state, store, f"c{i}")
    assert [c.iteration for c in store.list_checkpoints("l") if isinstance(c, Checkpoint)] == [3, 2]
    recovery = recover("l", store)
    assert (recovery.checkpoint.iteration, recovery.checkpoint.commit, recovery.corrupt) == (
        3,
        "c3",
        [],
    )
    assert recovery.checkpoint.state.last_checkpoint_id == recovery.checkpoint.checkpoint_id


def test_recover_skips_a_checkpoint_whose_checksum_does_not_match() -> None:
    # Given two checkpoints, the newest tampered with (its iteration changed, checksum kept)
    store = MemoryStore()
    state = LoopState(loop_id="l", config=_config())
    for i in (1, 2):
        state.iteration = i
        checkpoint(state, store, f"c{i}")
    newest_id, payload = store.checkpoint_rows["l"][0]
    store.checkpoint_rows["l"][0] = (
        newest_id,
        payload.replace('"iteration":2', '"iteration":7', 1),
    )
    # When recovering
    recovery = recover("l", store)
    # Then the older one is used and the corrupt one is named
    assert recovery.checkpoint.iteration == 1
    assert recovery.corrupt == [newest_id]


def test_recover_reports_unparsable_checkpoints_and_fails_when_none_is_usable() -> None:
    store = MemoryStore()
    store.checkpoint_rows["l"] = [("ckpt_bad", "{not json")]
    with pytest.raises(CheckpointRecoveryError, match="ckpt_bad"):
        recover("l", store)
    with pytest.raises(CheckpointRecoveryError, match="no checkpoint 'ckpt_x'"):
        recover("l", store, "ckpt_x")
