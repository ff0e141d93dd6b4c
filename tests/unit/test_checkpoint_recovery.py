"""Which checkpoint a resume recovers, and which it lists as corrupt: an unparsable newest one
skipped, a named one recovered (or refused when corrupt, unparsable or not stored), a checkpoint
of another loop never used, and the error naming every corrupt one."""

from __future__ import annotations

import pytest

from loopwright.exceptions import CheckpointNotFoundError, CheckpointRecoveryError
from loopwright.models import Checkpoint, LoopConfig, LoopState
from loopwright.steps.checkpoint import checkpoint, checkpoint_due, recover
from tests.fakes import MemoryStore


def _state(loop_id: str = "l", **kwargs: object) -> LoopState:
    config = LoopConfig.model_validate(
        {"goal": "g", "exit_conditions": [{"type": "ALL_TESTS_PASS"}], **kwargs}
    )
    return LoopState(loop_id=loop_id, config=config)


def _store(iterations: int = 3) -> tuple[MemoryStore, list[str]]:
    """Checkpoints of loop 'l' at iterations 1..n; their ids, newest first."""
    store = MemoryStore()
    state = _state(checkpoint_retention=10)
    for i in range(1, iterations + 1):
        state.iteration = i
        checkpoint(state, store, f"c{i}")
    return store, [row[0] for row in store.checkpoint_rows["l"]]


def _tamper(store: MemoryStore, index: int) -> None:
    checkpoint_id, payload = store.checkpoint_rows["l"][index]
    store.checkpoint_rows["l"][index] = (checkpoint_id, payload.replace('"commit":"c', '"commit":"x', 1))


def test_checkpoint_stores_the_state_at_the_commit_and_returns_it() -> None:
    store = MemoryStore()
    state = _state()
    state.iteration = 2
    ckpt = checkpoint(state, store, "abc")
    assert (ckpt.loop_id, ckpt.iteration, ckpt.commit) == ("l", 2, "abc")
    assert ckpt.is_valid()
    assert store.list_checkpoints("l") == [ckpt]


def test_checkpoint_due_never_before_the_first_iteration() -> None:
    state = _state()
    assert checkpoint_due(state) is False
    state.iteration = 1
    assert checkpoint_due(state) is True


def test_an_unparsable_newest_checkpoint_is_skipped_and_listed() -> None:
    store, ids = _store(2)
    store.checkpoint_rows["l"].insert(0, ("ckpt_bad", "{not json"))
    recovery = recover("l", store)
    assert recovery.checkpoint.checkpoint_id == ids[0]
    assert recovery.checkpoint.commit == "c2"
    assert recovery.corrupt == ["ckpt_bad"]


def test_every_corrupt_checkpoint_before_the_valid_one_is_listed_newest_first() -> None:
    store, ids = _store(3)
    _tamper(store, 0)
    store.checkpoint_rows["l"].insert(1, ("ckpt_bad", "{not json"))
    recovery = recover("l", store)
    assert recovery.checkpoint.checkpoint_id == ids[1]
    assert recovery.corrupt == [ids[0], "ckpt_bad"]


def test_a_checkpoint_of_another_loop_is_never_used() -> None:
    store, ids = _store(1)
    other = Checkpoint.from_loop_state(_state("other"), "o1")
    store.checkpoint_rows["l"].insert(0, (other.checkpoint_id, other.payload_json()))
    recovery = recover("l", store)
    assert recovery.checkpoint.checkpoint_id == ids[0]
    assert recovery.corrupt == [other.checkpoint_id]


def test_a_named_checkpoint_is_recovered_even_when_newer_ones_are_valid() -> None:
    store, ids = _store(3)
    recovery = recover("l", store, ids[1])
    assert recovery.checkpoint.checkpoint_id == ids[1]
    assert recovery.checkpoint.commit == "c2"
    assert recovery.corrupt == []


def test_a_named_checkpoint_after_an_unparsable_one() -> None:
    store, ids = _store(2)
    store.checkpoint_rows["l"].insert(0, ("ckpt_bad", "{not json"))
    recovery = recover("l", store, ids[1])
    assert recovery.checkpoint.checkpoint_id == ids[1]
    assert recovery.corrupt == ["ckpt_bad"]


def test_a_corrupt_named_checkpoint_is_refused_and_no_older_one_is_used() -> None:
    store, ids = _store(3)
    _tamper(store, 1)
    with pytest.raises(CheckpointRecoveryError) as raised:
        recover("l", store, ids[1])
    assert not isinstance(raised.value, CheckpointNotFoundError)
    assert str(raised.value) == f"loop 'l' has no valid checkpoint to resume from (1 corrupt: {ids[1]})"


def test_an_unparsable_named_checkpoint_is_refused_as_corrupt() -> None:
    store, _ = _store(1)
    store.checkpoint_rows["l"].insert(0, ("ckpt_bad", "{not json"))
    with pytest.raises(CheckpointRecoveryError) as raised:
        recover("l", store, "ckpt_bad")
    assert not isinstance(raised.value, CheckpointNotFoundError)
    assert "(1 corrupt: ckpt_bad)" in str(raised.value)


def test_a_named_checkpoint_that_is_not_stored_is_not_found() -> None:
    store, _ = _store(2)
    with pytest.raises(CheckpointNotFoundError) as raised:
        recover("l", store, "ckpt_x")
    assert str(raised.value) == (
        "loop 'l' has no checkpoint 'ckpt_x'; "
        "list them with `loopwright events LOOP_ID --type CHECKPOINT_SAVED`"
    )


def test_without_any_valid_checkpoint_the_error_names_every_corrupt_one() -> None:
    store, ids = _store(2)
    _tamper(store, 0)
    _tamper(store, 1)
    with pytest.raises(CheckpointRecoveryError) as raised:
        recover("l", store)
    assert not isinstance(raised.value, CheckpointNotFoundError)
    assert str(raised.value) == (
        f"loop 'l' has no valid checkpoint to resume from (2 corrupt: {ids[0]}, {ids[1]})"
    )


def test_without_any_checkpoint_the_error_names_none() -> None:
    with pytest.raises(CheckpointRecoveryError) as raised:
        recover("l", MemoryStore())
    assert not isinstance(raised.value, CheckpointNotFoundError)
    assert str(raised.value) == "loop 'l' has no valid checkpoint to resume from"
