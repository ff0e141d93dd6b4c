"""What a restore keeps from the stored state, and what it records: CHECKPOINT_CORRUPT,
CHECKPOINT_RECOVERED, WORK_SALVAGED and COMMITS_SET_ASIDE, each with its data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopwright.models import (
    Checkpoint,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEventType,
    LoopConfig,
    LoopState,
)
from loopwright.models.workspace import SavedWork
from loopwright.steps.restore import keep_work, record_corrupt, record_recovered, restored_state
from tests.fakes import FakeWorkspace

_EV = IterationEventType


class Recorded:
    """A Recorder that keeps (type, message, data) of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[IterationEventType, str, dict[str, Any]]] = []

    def __call__(
        self, event_type: IterationEventType, message: str = "", *, iteration: int | None = None, **data: Any
    ) -> None:
        if iteration is not None:
            data["iteration"] = iteration
        self.calls.append((event_type, message, data))


def _config(max_iterations: int = 20) -> LoopConfig:
    return LoopConfig.model_validate(
        {"goal": "g", "exit_conditions": [{"type": "ALL_TESTS_PASS"}], "max_iterations": max_iterations}
    )


def _status(value: ExitConditionStatusValue, iteration: int) -> ExitConditionStatus:
    return ExitConditionStatus(
        name="all_tests_pass", type=ExitConditionType.ALL_TESTS_PASS, status=value, iteration=iteration
    )


def _checkpoint(iteration: int = 4) -> Checkpoint:
    state = LoopState(
        loop_id="l",
        config=_config(),
        iteration=iteration,
        tokens_used=400,
        version=7,
        sessions_used=1,
        errors_recovered=0,
        policy_files={"base.cedar": "old"},
        exit_conditions=[_status(ExitConditionStatusValue.NOT_MET, iteration)],
        evaluated_iteration=iteration,
        head_commit="c4",
    )
    return Checkpoint.from_loop_state(state, "c4")


def _stored(iteration: int, evaluated: int) -> LoopState:
    return LoopState(
        loop_id="l",
        config=_config(max_iterations=50),
        iteration=iteration,
        tokens_used=900,
        version=12,
        sessions_used=3,
        agent_sessions=5,
        errors_recovered=2,
        policy_files={"base.cedar": "new"},
        exit_conditions=[_status(ExitConditionStatusValue.MET, evaluated)],
        evaluated_iteration=evaluated,
        features_done=["signup"],
        head_commit="c9",
    )


def test_restored_state_takes_progress_from_the_checkpoint_and_keeps_what_changed_since() -> None:
    ckpt = _checkpoint()
    state = restored_state(_stored(iteration=6, evaluated=6), ckpt)
    # the checkpoint's progress
    assert (state.iteration, state.tokens_used, state.head_commit) == (4, 400, "c4")
    assert state.last_checkpoint_id == ckpt.checkpoint_id
    # what stays as stored
    assert state.config.max_iterations == 50
    assert state.version == 12
    assert state.sessions_used == 3
    assert state.agent_sessions == 5  # agent sessions started count against max_sessions
    assert state.errors_recovered == 2
    assert state.policy_files == {"base.cedar": "new"}
    # conditions evaluated after iteration 6, not 4: the checkpoint's (and its features done)
    assert [c.status for c in state.exit_conditions] == [ExitConditionStatusValue.NOT_MET]
    assert state.evaluated_iteration == 4 and state.features_done == []


def test_restored_state_keeps_the_stored_conditions_evaluated_at_the_checkpoints_iteration() -> None:
    state = restored_state(_stored(iteration=4, evaluated=4), _checkpoint(iteration=4))
    assert [c.status for c in state.exit_conditions] == [ExitConditionStatusValue.MET]
    assert state.evaluated_iteration == 4
    assert state.features_done == ["signup"]  # the features that evaluation marked done


@pytest.mark.parametrize(("iteration", "evaluated"), [(4, 3), (5, 4), (4, 0)])
def test_restored_state_keeps_the_checkpoints_conditions_unless_both_iterations_match(
    iteration: int, evaluated: int
) -> None:
    state = restored_state(_stored(iteration=iteration, evaluated=evaluated), _checkpoint(iteration=4))
    assert [c.status for c in state.exit_conditions] == [ExitConditionStatusValue.NOT_MET]
    assert state.evaluated_iteration == 4 and state.features_done == []


def test_record_corrupt_names_each_skipped_checkpoint_and_the_one_used() -> None:
    record = Recorded()
    used = _checkpoint(iteration=4)
    record_corrupt(record, ["ckpt_b", "ckpt_a"], used)
    assert record.calls == [
        (
            _EV.CHECKPOINT_CORRUPT,
            f"checkpoint ckpt_b is corrupt (checksum mismatch); using {used.checkpoint_id} of iteration 4",
            {"checkpoint_id": "ckpt_b"},
        ),
        (
            _EV.CHECKPOINT_CORRUPT,
            f"checkpoint ckpt_a is corrupt (checksum mismatch); using {used.checkpoint_id} of iteration 4",
            {"checkpoint_id": "ckpt_a"},
        ),
    ]


def test_record_corrupt_without_a_usable_checkpoint_continues_from_the_stored_state() -> None:
    record = Recorded()
    record_corrupt(record, ["ckpt_a"], None)
    assert record.calls == [
        (
            _EV.CHECKPOINT_CORRUPT,
            "checkpoint ckpt_a is corrupt (checksum mismatch); continuing from the stored state",
            {"checkpoint_id": "ckpt_a"},
        )
    ]
    record_corrupt(record, [], None)
    assert len(record.calls) == 1


def test_record_recovered_names_the_checkpoint_its_commit_and_the_skipped_count() -> None:
    record = Recorded()
    ckpt = _checkpoint(iteration=4)
    record_recovered(record, ckpt, 2)
    assert record.calls == [
        (
            _EV.CHECKPOINT_RECOVERED,
            f"restored checkpoint {ckpt.checkpoint_id} of iteration 4",
            {"checkpoint_id": ckpt.checkpoint_id, "commit": "c4", "skipped_corrupt": 2},
        )
    ]


class KeepingWorkspace(FakeWorkspace):
    """Answers salvage and set_aside with the given SavedWork, noting the calls."""

    def __init__(self, saved: SavedWork | None, aside: SavedWork | None) -> None:
        super().__init__(Path("/w"))
        self.saved, self.aside = saved, aside
        self.salvaged: list[tuple[str, str]] = []
        self.set_asides: list[tuple[str, str, str]] = []

    def salvage(self, loop_id: str, label: str) -> SavedWork | None:
        self.salvaged.append((loop_id, label))
        return self.saved

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        self.set_asides.append((loop_id, commit, label))
        return self.aside


def _state() -> LoopState:
    return LoopState(loop_id="l", config=_config(), iteration=5, sessions_used=2)


def test_keep_work_records_salvaged_changes_and_commits_set_aside() -> None:
    files = [f"f{i}.py" for i in range(101)]
    saved = SavedWork(ref="refs/loopwright/l/salvage/6", commit="s1", files=files)
    aside = SavedWork(ref="refs/loopwright/l/set-aside/session-3", commit="a1", commits=["a1 x", "a0 y"])
    workspace = KeepingWorkspace(saved, aside)
    record = Recorded()
    keep_work(_state(), workspace, record, "0123456789abcdef")
    assert workspace.salvaged == [("l", "6")]
    assert workspace.set_asides == [("l", "0123456789abcdef", "session-3")]
    assert record.calls == [
        (
            _EV.WORK_SALVAGED,
            "uncommitted changes of interrupted iteration 6 (101 file(s)) kept on "
            "refs/loopwright/l/salvage/6",
            {"iteration": 6, "ref": "refs/loopwright/l/salvage/6", "commit": "s1", "files": files[:100]},
        ),
        (
            _EV.COMMITS_SET_ASIDE,
            "2 commit(s) after 0123456789ab are not in the state being restored; the branch moves "
            "back and they stay reachable on refs/loopwright/l/set-aside/session-3",
            {"ref": "refs/loopwright/l/set-aside/session-3", "commit": "a1", "commits": ["a1 x", "a0 y"]},
        ),
    ]


def test_keep_work_without_a_target_keeps_only_the_uncommitted_changes() -> None:
    saved = SavedWork(ref="r", commit="s1", files=["a.py"])
    workspace = KeepingWorkspace(saved, SavedWork(ref="x", commit="y"))
    record = Recorded()
    keep_work(_state(), workspace, record, None)
    assert workspace.set_asides == []
    assert [c[0] for c in record.calls] == [_EV.WORK_SALVAGED]


def test_keep_work_records_nothing_when_nothing_is_kept() -> None:
    record = Recorded()
    keep_work(_state(), KeepingWorkspace(None, None), record, "c1")
    assert record.calls == []


def test_keep_work_records_changes_an_earlier_attempt_kept_only_when_not_yet_recorded() -> None:
    saved = SavedWork(ref="r6", commit="s1", files=["a.py"], earlier=True)
    asked: list[str] = []

    def recorded(ref: str) -> bool:
        asked.append(ref)
        return ref == "r6"

    record = Recorded()
    keep_work(_state(), KeepingWorkspace(saved, None), record, None, recorded=recorded)
    assert (asked, record.calls) == (["r6"], [])
    # not yet recorded (the attempt died between keeping and recording): recorded now
    keep_work(_state(), KeepingWorkspace(saved, None), record, None)
    assert [c[0] for c in record.calls] == [_EV.WORK_SALVAGED]


def test_keep_work_records_changes_kept_now_without_asking_whether_they_were_recorded() -> None:
    saved = SavedWork(ref="r6", commit="s1", files=["a.py"])
    record = Recorded()
    keep_work(_state(), KeepingWorkspace(saved, None), record, None, recorded=lambda ref: True)
    assert [c[0] for c in record.calls] == [_EV.WORK_SALVAGED]
