"""Rollback and fork through the AWS control service (issue 10, loopwright.cloud.time_travel):
only the stored state moves (the loop's next run moves its branch), a fork's child starts its
first execution, and what AWS cannot apply is refused before anything is written. Step Functions
is a botocore Stubber; the store and checkpoints are in memory; Cedar runs the real policies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.cloud.resume import AwsControls, StepFunctionsResumer
from loopwright.cloud.schedule import ResumeNotStartedError
from loopwright.cloud.time_travel import session_time_travel
from loopwright.controls import ControlService
from loopwright.exceptions import ControlConflictError
from loopwright.models import (
    Checkpoint,
    ControlAction,
    ControlRequest,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    StepInput,
)
from tests.fakes import MemoryStore

EV = IterationEventType
ALICE = 'User::"alice"'
OPERATORS = 'Group::"default-operators"'
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:Loopwright-loop"
LOOP, CHILD = "loop-t", "loop-child"
COMMITS = {1: "a" * 40, 2: "b" * 40, 3: "c" * 40}


@pytest.fixture(scope="module")
def policy() -> CedarPolicyEngine:
    return CedarPolicyEngine()


@pytest.fixture
def sfn() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "stepfunctions", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _loop(store: MemoryStore, *, push: bool = True, **fields: Any) -> LoopState:
    """A loop that ran 3 iterations on AWS (a pushed clone), checkpointed after each."""
    config = LoopConfig.model_validate(
        {
            "goal": "g",
            "exit_conditions": [{"type": "LINTING_CLEAN"}],
            "max_iterations": 10,
            "repository": {"url": "https://example.com/r.git", "push": push},
        }
    )
    state = LoopState(loop_id=LOOP, config=config, branch=f"loopwright/{LOOP}", worktree="/s/w")
    state = store.create_loop(state)
    for iteration, commit in COMMITS.items():
        state.iteration, state.head_commit = iteration, commit
        store.save(Checkpoint.from_loop_state(state, commit), retention=10)
    base = {
        "phase": LoopPhase.COMPLETED,
        "outcome": LoopOutcome.ITERATION_LIMIT,
        "sessions_used": 1,
        "generation": 0,
    }
    return store.save_state(state.model_copy(update={**base, **fields}))


def _service(store: MemoryStore, policy: CedarPolicyEngine, client: Any) -> AwsControls:
    resumer = StepFunctionsResumer(store, client, MACHINE, checkpoints=store)
    service = ControlService(store, policy, resumer, travel=session_time_travel(store, store))
    return AwsControls(service, resumer)


def _request(action: ControlAction, **kw: Any) -> ControlRequest:
    return ControlRequest(loop_id=LOOP, action=action, principal=ALICE, groups=[OPERATORS], **kw)


def test_a_rollback_moves_the_stored_state_and_leaves_the_branch_to_the_next_run(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, _ = sfn  # no Step Functions call: the loop is only paused at the checkpoint
    store = MemoryStore()
    _loop(store)

    result = _service(store, policy, client).submit(_request(ControlAction.ROLLBACK, iteration=1))

    assert result.status == "applied" and result.phase is LoopPhase.PAUSED
    state = store.get_state(LOOP)
    assert (state.iteration, state.head_commit, state.outcome) == (1, COMMITS[1], None)
    assert state.branch == f"loopwright/{LOOP}"  # the branch is not touched here
    (rolled,) = store.list_events(LOOP, types=[EV.LOOP_ROLLED_BACK])
    assert rolled.data["commit"] == COMMITS[1] and "set_aside_ref" not in rolled.data
    assert "moves back when the loop next runs" in rolled.message
    # and the newest checkpoint is the rolled-back state, so a resume continues from there
    newest = store.list_checkpoints(LOOP)[0]
    assert isinstance(newest, Checkpoint) and (newest.iteration, newest.commit) == (1, COMMITS[1])


def test_a_fork_stores_the_child_at_the_checkpoint_and_starts_its_first_execution(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _loop(store)
    stubber.add_response(
        "start_execution",
        {"executionArn": f"{MACHINE}:{CHILD}-g0", "startDate": datetime(2026, 1, 1, tzinfo=UTC)},
        {
            "stateMachineArn": MACHINE,
            "name": f"{CHILD}-g0",
            "input": StepInput(loop_id=CHILD, baseline=True).model_dump_json(),
        },
    )

    result = _service(store, policy, client).submit(
        _request(ControlAction.FORK, iteration=2, new_loop_id=CHILD, goal="another way")
    )

    assert (result.status, result.new_loop_id) == ("applied", CHILD)
    child = store.get_state(CHILD)
    assert (child.parent_loop_id, child.forked_from_iteration) == (LOOP, 2)
    assert (child.head_commit, child.base_commit, child.branch) == (
        COMMITS[2],
        COMMITS[2],
        f"loopwright/{CHILD}",
    )
    assert (child.phase, child.is_active, child.sessions_used, child.iteration) == (
        LoopPhase.AUTHORIZING,
        True,
        1,
        0,
    )
    assert child.config.goal == "another way"
    assert store.types(CHILD) == [EV.LOOP_FORKED, EV.LOOP_STARTED]
    assert store.types(LOOP)[-1] is EV.LOOP_FORKED
    assert store.get_state(LOOP).outcome is LoopOutcome.ITERATION_LIMIT  # the parent is untouched


def test_a_fork_whose_execution_does_not_start_leaves_the_child_interrupted(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _loop(store)
    stubber.add_client_error("start_execution", service_error_code="AccessDeniedException")
    with pytest.raises(ResumeNotStartedError, match="did not start"):
        _service(store, policy, client).submit(_request(ControlAction.FORK, iteration=2, new_loop_id=CHILD))
    child = store.get_state(CHILD)
    assert (child.phase, child.is_active) == (LoopPhase.INTERRUPTED, False)
    assert store.types(CHILD)[-1] is EV.ERROR


def test_a_fork_of_a_loop_that_does_not_push_is_refused_before_anything_is_written(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, _ = sfn
    store = MemoryStore()
    _loop(store, push=False)
    before = store.types(LOOP)
    with pytest.raises(ControlConflictError, match=r"repository\.push is off"):
        _service(store, policy, client).submit(_request(ControlAction.FORK, iteration=2, new_loop_id=CHILD))
    assert CHILD not in store.states and store.types(LOOP) == before


def test_a_rollback_of_a_loop_parked_for_a_human_is_refused_until_it_is_stopped(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, _ = sfn
    store = MemoryStore()
    _loop(store, phase=LoopPhase.AWAITING_RESPONSE, outcome=None, task_token="tok-1")
    with pytest.raises(ControlConflictError, match="stop it"):
        _service(store, policy, client).submit(_request(ControlAction.ROLLBACK, iteration=1))
    state = store.get_state(LOOP)
    assert (state.iteration, state.head_commit, state.task_token) == (3, COMMITS[3], "tok-1")


def test_an_unknown_checkpoint_is_refused_naming_those_there_are(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, _ = sfn
    store = MemoryStore()
    _loop(store)
    with pytest.raises(ControlConflictError, match=r"iterations: 1, 2, 3"):
        _service(store, policy, client).submit(_request(ControlAction.ROLLBACK, iteration=7))
    assert store.get_state(LOOP).iteration == 3
