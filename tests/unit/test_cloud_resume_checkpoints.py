"""A cloud resume continues from the AgentCore Memory checkpoint as the in-process engine does
(issue 12, point 6): the state restored (checksum verified, corrupt ones skipped and recorded), an
explicit checkpoint id honoured, an unknown one refused before anything is written, and the
session's clone moved back to the checkpoint's commit with later commits set aside.

Memory is moto's data plane behind the real MemoryCheckpointStore; Step Functions a botocore
Stubber; the loop store in memory; Cedar runs the real policies; git runs for real in the
session fake (tests/unit/aws_session_fake.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from pydantic import ValidationError

from loopwright.adapters.aws.memory_checkpoints import MemoryCheckpointStore, memory_client
from loopwright.adapters.aws.session_workspace import SessionWorkspace
from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.cloud.resume import AwsControls, StepFunctionsResumer
from loopwright.cloud.runtime_aws import rewind_workspace
from loopwright.cloud.steps import EventCollector
from loopwright.controls import ControlService
from loopwright.exceptions import CheckpointNotFoundError, CheckpointRecoveryError
from loopwright.models import (
    Checkpoint,
    ControlAction,
    ControlRequest,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    RepositoryConfig,
    StepInput,
)
from tests.fakes import MemoryStore
from tests.integration.aws_moto import REGION, fake_credentials
from tests.unit.aws_session_fake import git, local_sandbox, make_remote

EV = IterationEventType
ALICE = 'User::"alice"'
OPERATORS = 'Group::"default-operators"'
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:Loopwright-loop"
MEMORY_ID = "loopwright_checkpoints-abcdefghij"
LOOP = "loop-c"
C3, C4, C5 = "a3" * 20, "a4" * 20, "a5" * 20


@pytest.fixture(scope="module")
def policy() -> CedarPolicyEngine:
    return CedarPolicyEngine()


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryCheckpointStore]:
    fake_credentials(monkeypatch)
    with mock_aws():
        yield MemoryCheckpointStore(MEMORY_ID, client=memory_client(REGION, max_attempts=2))


@pytest.fixture
def sfn() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "stepfunctions", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _config(max_iterations: int = 10) -> LoopConfig:
    return LoopConfig.model_validate(
        {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}], "max_iterations": max_iterations}
    )


def _progress(iteration: int, commit: str) -> LoopState:
    """The loop as it was after ``iteration`` (what a checkpoint snapshots)."""
    return LoopState(
        loop_id=LOOP,
        config=_config(),
        phase=LoopPhase.CHECKPOINTING,
        iteration=iteration,
        tokens_used=100 * iteration,
        head_commit=commit,
        sessions_used=1,
        generation=1,
        is_active=True,
    )


def _checkpoint(memory: MemoryCheckpointStore, iteration: int, commit: str, *, corrupt: bool = False) -> str:
    ckpt = Checkpoint.from_loop_state(_progress(iteration, commit), commit)
    if corrupt:  # content changed after the checksum was taken
        ckpt = ckpt.model_copy(update={"state": ckpt.state.model_copy(update={"tokens_used": 1})})
        assert not ckpt.is_valid()
    memory.save(ckpt, retention=5)
    return ckpt.checkpoint_id


def _failed_loop(store: MemoryStore, **fields: Any) -> LoopState:
    """Stored FAILED at iteration 5 (a step failed after its retries), generation 2; the human
    raised max_iterations to 20 after the checkpoints were taken."""
    base: dict[str, Any] = {
        "config": _config(max_iterations=20),
        "phase": LoopPhase.COMPLETED,
        "outcome": LoopOutcome.FAILED,
        "outcome_reason": "Iterate failed",
        "iteration": 5,
        "tokens_used": 500,
        "head_commit": C5,
        "sessions_used": 1,
        "generation": 2,
        "sandbox_session_id": "session-7",
        "branch": f"loopwright/{LOOP}",
    }
    return store.create_loop(LoopState(loop_id=LOOP, **{**base, **fields}))


def _service(store: MemoryStore, policy: CedarPolicyEngine, client: Any, memory: Any) -> AwsControls:
    resumer = StepFunctionsResumer(store, client, MACHINE, checkpoints=memory)
    return AwsControls(ControlService(store, policy, resumer), resumer)


def _resume(checkpoint_id: str | None = None) -> ControlRequest:
    return ControlRequest(
        loop_id=LOOP,
        action=ControlAction.RESUME,
        principal=ALICE,
        groups=[OPERATORS],
        checkpoint_id=checkpoint_id,
    )


def _expect_start(stubber: Stubber, generation: int) -> None:
    stubber.add_response(
        "start_execution",
        {"executionArn": f"{MACHINE}:{LOOP}-g{generation}", "startDate": datetime(2026, 1, 1, tzinfo=UTC)},
        {"stateMachineArn": MACHINE, "name": f"{LOOP}-g{generation}", "input": ANY},
    )


# ----------------------------------------------------------------------------- the resume
def test_resume_skips_a_corrupt_newest_checkpoint_and_restores_the_older_one(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    # Given a FAILED loop stored at iteration 5, a valid checkpoint of iteration 3 and a corrupt
    # newer one of iteration 4
    client, stubber = sfn
    store = MemoryStore()
    _failed_loop(store)
    older = _checkpoint(memory, 3, C3)
    corrupt = _checkpoint(memory, 4, C4, corrupt=True)
    _expect_start(stubber, 3)

    # When a human resumes it
    result = _service(store, policy, client, memory).submit(_resume())

    # Then it continues from iteration 3 in execution g3, limits and AWS run fields kept
    assert result.status == "applied"
    state = store.get_state(LOOP)
    assert (state.iteration, state.tokens_used, state.head_commit) == (3, 300, C3)
    assert state.last_checkpoint_id == older
    assert state.config.max_iterations == 20
    assert (state.generation, state.sandbox_session_id) == (3, "session-7")
    assert state.branch == f"loopwright/{LOOP}"
    assert (state.outcome, state.phase, state.is_active, state.sessions_used) == (
        None,
        LoopPhase.AUTHORIZING,
        True,
        2,
    )
    types = store.types(LOOP)
    assert types[-4:] == [EV.CONTROL_APPLIED, EV.CHECKPOINT_CORRUPT, EV.CHECKPOINT_RECOVERED, EV.LOOP_RESUMED]
    events = {e.type: e for e in store.events}
    assert events[EV.CHECKPOINT_CORRUPT].data["checkpoint_id"] == corrupt
    recovered = events[EV.CHECKPOINT_RECOVERED]
    assert recovered.data == {"checkpoint_id": older, "commit": C3, "skipped_corrupt": 1}
    assert recovered.iteration == 3


def test_the_execution_input_starts_at_the_restored_iteration(
    sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, _ = sfn
    store = MemoryStore()
    stored = _failed_loop(store)
    _checkpoint(memory, 3, C3)
    started: list[dict[str, Any]] = []
    client.start_execution = lambda **kw: started.append(kw) or {"executionArn": "arn"}  # type: ignore[method-assign]

    event = StepFunctionsResumer(store, client, MACHINE, checkpoints=memory).resume(stored, _resume())

    assert (event.iteration, event.first_iteration, event.generation) == (3, 3, 3)
    assert StepInput.model_validate_json(started[0]["input"]) == event
    assert started[0]["name"] == f"{LOOP}-g3"


def test_an_explicit_checkpoint_id_is_restored_even_behind_the_newest(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _failed_loop(store, iteration=4, head_commit=C4)
    wanted = _checkpoint(memory, 3, C3)
    _checkpoint(memory, 4, C4)  # the stored state's own: without an id, resume continues as before
    _expect_start(stubber, 3)

    _service(store, policy, client, memory).submit(_resume(wanted))

    state = store.get_state(LOOP)
    assert (state.iteration, state.head_commit, state.last_checkpoint_id) == (3, C3, wanted)
    assert EV.CHECKPOINT_RECOVERED in store.types(LOOP)
    assert EV.CHECKPOINT_CORRUPT not in store.types(LOOP)


def test_an_unknown_checkpoint_id_is_refused_and_nothing_is_written(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, _ = sfn  # no StartExecution expected: the Stubber fails any call
    store = MemoryStore()
    stored = _failed_loop(store)
    _checkpoint(memory, 3, C3)

    with pytest.raises(CheckpointNotFoundError, match="no checkpoint 'ckpt_000000000000'"):
        _service(store, policy, client, memory).submit(_resume("ckpt_000000000000"))

    assert store.get_state(LOOP) == stored
    assert store.types(LOOP) == []


def test_a_named_corrupt_checkpoint_is_refused_and_nothing_is_written(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, _ = sfn
    store = MemoryStore()
    stored = _failed_loop(store)
    corrupt = _checkpoint(memory, 4, C4, corrupt=True)

    with pytest.raises(CheckpointRecoveryError, match="no valid checkpoint") as caught:
        _service(store, policy, client, memory).submit(_resume(corrupt))

    assert not isinstance(caught.value, CheckpointNotFoundError)
    assert store.get_state(LOOP) == stored
    assert store.types(LOOP) == []


def test_at_the_stored_states_own_checkpoint_resume_is_as_before(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _failed_loop(store)
    _checkpoint(memory, 3, C3)
    _checkpoint(memory, 5, C5)
    _expect_start(stubber, 3)

    _service(store, policy, client, memory).submit(_resume())

    state = store.get_state(LOOP)
    assert (state.iteration, state.tokens_used, state.head_commit) == (5, 500, C5)
    assert store.types(LOOP) == [EV.CONTROL_APPLIED, EV.LOOP_RESUMED]


def test_a_cleanly_paused_loop_continues_from_its_stored_state(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _failed_loop(store, phase=LoopPhase.PAUSED, outcome=None, is_active=False)
    _checkpoint(memory, 3, C3)
    _expect_start(stubber, 3)

    _service(store, policy, client, memory).submit(_resume())

    assert store.get_state(LOOP).iteration == 5
    assert EV.CHECKPOINT_RECOVERED not in store.types(LOOP)


def test_without_a_valid_checkpoint_the_stored_state_continues_and_the_error_is_recorded(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _failed_loop(store)
    _checkpoint(memory, 4, C4, corrupt=True)
    _expect_start(stubber, 3)

    _service(store, policy, client, memory).submit(_resume())

    assert store.get_state(LOOP).iteration == 5
    errors = [e for e in store.events if e.type is EV.ERROR]
    assert len(errors) == 1 and "continuing from the stored state" in errors[0].message


def test_a_resume_that_cannot_start_puts_the_stored_state_back(
    sfn: tuple[Any, Stubber], memory: MemoryCheckpointStore
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    stored = _failed_loop(store)
    _checkpoint(memory, 3, C3)
    stubber.add_client_error("start_execution", service_error_code="ThrottlingException")

    from loopwright.cloud.schedule import ResumeNotStartedError

    with pytest.raises(ResumeNotStartedError):
        StepFunctionsResumer(store, client, MACHINE, checkpoints=memory).resume(stored, _resume())

    state = store.get_state(LOOP)
    assert (state.iteration, state.head_commit, state.outcome) == (5, C5, LoopOutcome.FAILED)
    assert state.generation == 3  # that name may exist now: never reused
    assert store.types(LOOP)[-1] is EV.ERROR


def test_a_resumer_without_checkpoints_refuses_a_named_one(sfn: tuple[Any, Stubber]) -> None:
    client, _ = sfn
    store = MemoryStore()
    stored = _failed_loop(store)
    from loopwright.exceptions import ControlConflictError

    with pytest.raises(ControlConflictError, match="reads no checkpoints"):
        StepFunctionsResumer(store, client, MACHINE).resume(stored, _resume("ckpt_0123456789ab"))
    assert store.types(LOOP) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": ControlAction.STOP, "checkpoint_id": "ckpt_0123456789ab"}, "only RESUME takes"),
        ({"action": ControlAction.RESUME, "checkpoint_id": "../etc"}, "checkpoint_id"),
    ],
)
def test_checkpoint_ids_are_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ControlRequest(loop_id=LOOP, principal=ALICE, **fields)


# ----------------------------------------------------------------------------- the workspace
def test_the_first_step_moves_the_clone_back_to_the_restored_commit(tmp_path: Path) -> None:
    # Given a session whose clone has two commits after the checkpoint's (iteration 3)
    remote = make_remote(tmp_path, {"app.py": "x = 1\n"})
    sandbox, _ = local_sandbox(tmp_path / "session")
    repository = RepositoryConfig(url=f"file://{remote}", push=True)
    ws = SessionWorkspace(sandbox, repository, root=PurePosixPath(tmp_path / "session" / "wt"))
    path, _, _ = ws.prepare(LOOP)
    heads = []
    for n in (3, 4, 5):
        (path / "app.py").write_text(f"x = {n}\n")
        head, _ = ws.commit(LOOP, f"iteration {n}")
        heads.append(head)
    checkpoint_commit, latest = heads[0], heads[2]
    state = _progress(3, checkpoint_commit).model_copy(update={"sessions_used": 2})
    ws.prepare(LOOP)  # what the step's ports do: the clone is reopened

    # When the step prepares the workspace of the restored state
    record = EventCollector(state)
    assert rewind_workspace(state, ws, record) is True

    # Then the branch is at the checkpoint's commit (locally and on the remote), and the later
    # commits stay reachable on a pushed set-aside ref
    assert ws.head(LOOP) == checkpoint_commit
    assert git("rev-parse", f"refs/heads/loopwright/{LOOP}", cwd=remote).strip() == checkpoint_commit
    assert (path / "app.py").read_text() == "x = 3\n"
    [aside] = record.events
    assert aside.type is EV.COMMITS_SET_ASIDE
    ref = aside.data["ref"]
    assert ref == f"refs/loopwright/{LOOP}/set-aside/session-2"
    assert aside.data["commit"] == latest and len(aside.data["commits"]) == 2
    assert git("rev-parse", ref, cwd=remote).strip() == latest

    # A second step finds the clone where the state says: nothing more happens
    again = EventCollector(state)
    assert rewind_workspace(state, ws, again) is True
    assert again.events == []


def test_a_clone_without_the_states_commit_is_left_to_the_lost_work_check(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"app.py": "x = 1\n"})
    sandbox, _ = local_sandbox(tmp_path / "session")
    repository = RepositoryConfig(url=f"file://{remote}", push=False)
    ws = SessionWorkspace(sandbox, repository, root=PurePosixPath(tmp_path / "session" / "wt"))
    ws.prepare(LOOP)
    state = _progress(3, "b" * 40)
    record = EventCollector(state)
    assert rewind_workspace(state, ws, record) is False
    assert record.events == []
