"""Controls that continue a loop in AWS: approve (SendTaskSuccess to the parked execution, or a new
execution when it is gone), resume (a new execution with the next generation), stop of a loop
waiting for a human (its execution released). Step Functions is a botocore Stubber; the store is
in memory; Cedar runs the real policies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.cloud.resume import (
    AwsControls,
    StepFunctionsResumer,
    approval_output,
    execution_arn,
)
from loopwright.cloud.schedule import ResumeNotStartedError
from loopwright.controls import ControlService
from loopwright.exceptions import ControlConflictError, LoopFrameworkError
from loopwright.models import (
    DEFAULT_ITERATIONS_PER_EXECUTION,
    ControlAction,
    ControlRequest,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
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
LOOP = "loop-c"


def _execution(generation: int) -> str:
    return f"arn:aws:states:eu-west-1:123456789012:execution:Loopwright-loop:{LOOP}-g{generation}"


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


def _stored(store: MemoryStore, **fields: Any) -> LoopState:
    config = LoopConfig.model_validate(
        {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}], "max_iterations": 10}
    )
    base: dict[str, Any] = {"sessions_used": 1, "iteration": 4, "generation": 2}
    state = LoopState(loop_id=LOOP, config=config, **{**base, **fields})
    return store.create_loop(state)


def _request(action: ControlAction, **kw: Any) -> ControlRequest:
    return ControlRequest(loop_id=LOOP, action=action, principal=ALICE, groups=[OPERATORS], **kw)


def _service(store: MemoryStore, policy: CedarPolicyEngine, client: Any) -> AwsControls:
    resumer = StepFunctionsResumer(store, client, MACHINE)
    return AwsControls(ControlService(store, policy, resumer), resumer)


def _client_error(stubber: Stubber, method: str, code: str) -> None:
    stubber.add_client_error(method, service_error_code=code, service_message=f"{code} (test)")


def _start_input(generation: int, iteration: int = 4) -> str:
    return StepInput(
        loop_id=LOOP,
        iteration=iteration,
        generation=generation,
        iterations_per_execution=DEFAULT_ITERATIONS_PER_EXECUTION,
        first_iteration=iteration,
    ).model_dump_json()


def _expect_start(stubber: Stubber, generation: int) -> None:
    stubber.add_response(
        "start_execution",
        {"executionArn": _execution(generation), "startDate": datetime(2026, 1, 1, tzinfo=UTC)},
        {"stateMachineArn": MACHINE, "name": f"{LOOP}-g{generation}", "input": _start_input(generation)},
    )


def _types(store: MemoryStore) -> list[IterationEventType]:
    return store.types(LOOP)


# ----------------------------------------------------------------------------- approve
def test_approve_sends_the_task_token_and_the_loop_continues(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, task_token="tok-1", human_request="may I?")
    stubber.add_response("send_task_success", {}, {"taskToken": "tok-1", "output": ANY})

    result = _service(store, policy, client).submit(_request(ControlAction.APPROVE, response="yes"))

    assert result.status == "applied" and result.phase is LoopPhase.AUTHORIZING
    state = store.get_state(LOOP)
    assert state.human_response == "yes"  # the agent's next prompt has it
    assert (state.phase, state.is_active, state.task_token) == (LoopPhase.AUTHORIZING, True, None)
    assert _types(store) == [EV.CONTROL_APPLIED]


def test_a_second_approve_is_refused_once_the_first_was_sent(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, task_token="tok-1")
    stubber.add_response("send_task_success", {}, {"taskToken": "tok-1", "output": ANY})
    service = _service(store, policy, client)
    service.submit(_request(ControlAction.APPROVE))
    with pytest.raises(ControlConflictError, match="not waiting for an answer"):
        service.submit(_request(ControlAction.APPROVE))


def test_approve_of_a_loop_whose_execution_is_about_to_park_asks_to_retry(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    # Given a loop whose Decide asked for a human but whose AwaitHuman has not stored a token yet
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, task_token="old-token")
    _client_error(stubber, "send_task_success", "TaskTimedOut")  # the token of an earlier wait
    stubber.add_response(
        "describe_execution",
        {
            "executionArn": _execution(2),
            "stateMachineArn": MACHINE,
            "status": "RUNNING",
            "startDate": datetime(2026, 1, 1, tzinfo=UTC),
        },
        {"executionArn": _execution(2)},
    )
    # When an operator approves, Then they are asked to try again, and no execution is started
    with pytest.raises(ControlConflictError, match="again in a few seconds"):
        _service(store, policy, client).submit(_request(ControlAction.APPROVE))
    state = store.get_state(LOOP)
    assert (state.phase, state.is_active, state.task_token) == (LoopPhase.AWAITING_RESPONSE, False, None)


@pytest.mark.parametrize("gone", ["ABORTED", "missing"])
def test_approve_of_a_loop_whose_execution_is_gone_continues_it_in_a_new_one(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], gone: str
) -> None:
    # Given a loop awaiting an answer whose execution was stopped outside loopwright
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, task_token="tok-1")
    _client_error(stubber, "send_task_success", "TaskDoesNotExist")
    if gone == "missing":
        _client_error(stubber, "describe_execution", "ExecutionDoesNotExist")
    else:
        described = {
            "executionArn": _execution(2),
            "stateMachineArn": MACHINE,
            "status": gone,
            "startDate": datetime(2026, 1, 1, tzinfo=UTC),
        }
        stubber.add_response("describe_execution", described, {"executionArn": _execution(2)})
    _expect_start(stubber, 3)

    _service(store, policy, client).submit(_request(ControlAction.APPROVE, response="go on"))

    state = store.get_state(LOOP)
    assert state.generation == 3 and state.task_token is None and state.human_response == "go on"
    assert (state.phase, state.is_active) == (LoopPhase.AUTHORIZING, True)
    assert _types(store) == [EV.CONTROL_APPLIED, EV.CONTROL_APPLIED, EV.LOOP_RESUMED]


def test_an_approval_step_functions_refuses_puts_the_loop_back(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, task_token="tok-1")
    _client_error(stubber, "send_task_success", "AccessDeniedException")
    with pytest.raises(LoopFrameworkError, match=r"could not be sent.*AccessDeniedException"):
        _service(store, policy, client).submit(_request(ControlAction.APPROVE))
    state = store.get_state(LOOP)
    assert (state.phase, state.is_active, state.task_token) == (LoopPhase.AWAITING_RESPONSE, False, "tok-1")
    assert _types(store)[-1] is EV.ERROR


def test_the_approval_output_names_the_control_not_the_answer() -> None:
    request = _request(ControlAction.APPROVE, response="a long answer " * 100)
    output = json.loads(approval_output(request))
    assert output == {"control_id": request.control_id, "action": "APPROVE", "principal": ALICE}


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize(
    "fields",
    [
        {
            "phase": LoopPhase.COMPLETED,
            "outcome": LoopOutcome.STOPPED,
            "ended_at": datetime(2026, 1, 1, tzinfo=UTC),
        },
        {"phase": LoopPhase.COMPLETED, "outcome": LoopOutcome.ITERATION_LIMIT},
        {"phase": LoopPhase.PAUSED, "resume_at": datetime(2026, 1, 2, tzinfo=UTC)},
    ],
    ids=["stopped", "at-its-limit", "paused-until-a-reset"],
)
def test_resume_starts_the_next_generation_from_where_the_loop_is(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], fields: dict[str, Any]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, **fields)
    store.add_control(ControlRequest(loop_id=LOOP, action=ControlAction.STOP, principal=ALICE))
    _expect_start(stubber, 3)

    result = _service(store, policy, client).submit(_request(ControlAction.RESUME, reason="limits raised"))

    assert result.status == "applied"
    state = store.get_state(LOOP)
    assert (state.outcome, state.ended_at, state.resume_at) == (None, None, None)
    assert (state.phase, state.is_active, state.generation, state.sessions_used) == (
        LoopPhase.AUTHORIZING,
        True,
        3,
        2,
    )
    assert store.pending_controls(LOOP) == []  # a stop asked before does not end the resumed loop
    assert _types(store) == [EV.CONTROL_APPLIED, EV.LOOP_RESUMED]
    applied = store.list_events(LOOP)[0]
    assert applied.data["principal"] == ALICE and "limits raised" in applied.message


def test_a_loop_ended_by_agent_failures_is_resumed_counting_them_afresh(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.COMPLETED, outcome=LoopOutcome.AGENT_FAILING, consecutive_failures=5)
    _expect_start(stubber, 3)

    result = _service(store, policy, client).submit(_request(ControlAction.RESUME, reason="key fixed"))

    assert result.status == "applied"
    state = store.get_state(LOOP)
    assert (state.outcome, state.consecutive_failures) == (None, 0)


def test_a_loop_paused_by_a_condition_error_is_resumed_with_its_baseline_due(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    # Given a loop paused after iteration 4 because its required condition could not run
    client, stubber = sfn
    store = MemoryStore()
    error = ExitConditionStatus(
        name="lint",
        type=ExitConditionType.LINTING_CLEAN,
        status=ExitConditionStatusValue.ERROR,
        iteration=4,
        evaluated_at=datetime(2026, 1, 1, tzinfo=UTC),
        summary="could not run: command not found: ruff",
    )
    _stored(store, phase=LoopPhase.PAUSED, evaluated_iteration=4, exit_conditions=[error])
    baseline_input = json.loads(_start_input(3)) | {"baseline": True}
    stubber.add_response(
        "start_execution",
        {"executionArn": _execution(3), "startDate": datetime(2026, 1, 1, tzinfo=UTC)},
        {
            "stateMachineArn": MACHINE,
            "name": f"{LOOP}-g3",
            "input": json.dumps(baseline_input, separators=(",", ":")),
        },
    )
    # When a human resumes it
    result = _service(store, policy, client).submit(_request(ControlAction.RESUME))
    # Then its execution evaluates the conditions again before the agent runs (Baseline?)
    assert result.status == "applied"


def test_resume_skips_an_execution_name_that_exists(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.PAUSED)
    _client_error(stubber, "start_execution", "ExecutionAlreadyExists")
    stubber.add_response(
        "start_execution",
        {"executionArn": _execution(4), "startDate": datetime(2026, 1, 1, tzinfo=UTC)},
        {"stateMachineArn": MACHINE, "name": f"{LOOP}-g4", "input": _start_input(4)},
    )
    resumer = StepFunctionsResumer(store, client, MACHINE)
    state = store.get_state(LOOP)
    started = resumer.resume(state, _request(ControlAction.RESUME))
    assert started.generation == 4


def test_a_resume_whose_execution_does_not_start_leaves_the_loop_as_it_was(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED, outcome_reason="stopped: by bob")
    _client_error(stubber, "start_execution", "AccessDeniedException")
    with pytest.raises(ResumeNotStartedError, match=r"did not start.*AccessDeniedException"):
        _service(store, policy, client).submit(_request(ControlAction.RESUME))
    state = store.get_state(LOOP)
    assert (state.phase, state.outcome, state.outcome_reason, state.is_active) == (
        LoopPhase.COMPLETED,
        LoopOutcome.STOPPED,
        "stopped: by bob",
        False,
    )
    assert state.generation == 3  # that name may exist: the next resume takes the one after
    assert _types(store)[-1] is EV.ERROR


def test_a_final_loop_is_not_resumed(policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]) -> None:
    client, _ = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET)
    with pytest.raises(ControlConflictError, match="final"):
        _service(store, policy, client).submit(_request(ControlAction.RESUME))
    with pytest.raises(ControlConflictError, match="final"):
        StepFunctionsResumer(store, client, MACHINE).resume(
            store.get_state(LOOP), _request(ControlAction.RESUME)
        )


# ----------------------------------------------------------------------------- stop
def test_stopping_a_loop_that_waits_for_a_human_releases_its_execution(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, task_token="tok-1")
    stubber.add_response(
        "send_task_success",
        {},
        {"taskToken": "tok-1", "output": json.dumps({"action": "STOP", "loop_id": LOOP})},
    )
    result = _service(store, policy, client).submit(_request(ControlAction.STOP))
    assert result.status == "applied"
    assert store.get_state(LOOP).outcome is LoopOutcome.STOPPED


@pytest.mark.parametrize("code", ["TaskTimedOut", "ServiceUnavailable"])
def test_a_stop_is_done_even_when_the_execution_cannot_be_released(
    policy: CedarPolicyEngine, sfn: tuple[Any, Stubber], code: str
) -> None:
    client, stubber = sfn
    store = MemoryStore()
    _stored(store, phase=LoopPhase.AWAITING_RESPONSE, task_token="tok-1")
    _client_error(stubber, "send_task_success", code)
    result = _service(store, policy, client).submit(_request(ControlAction.STOP))
    assert result.status == "applied" and store.get_state(LOOP).outcome is LoopOutcome.STOPPED


def test_other_controls_pass_through_unchanged(policy: CedarPolicyEngine, sfn: tuple[Any, Stubber]) -> None:
    client, _ = sfn  # no Step Functions call expected
    store = MemoryStore()
    _stored(store, phase=LoopPhase.ITERATING, is_active=True)
    service = _service(store, policy, client)
    for action in (ControlAction.PAUSE, ControlAction.STOP):
        assert service.submit(_request(action)).status == "queued"
    assert {c.action for c in store.pending_controls(LOOP)} == {ControlAction.PAUSE, ControlAction.STOP}


def test_the_resumer_takes_only_approve_resume_and_fork(sfn: tuple[Any, Stubber]) -> None:
    client, _ = sfn
    store = MemoryStore()
    state = _stored(store)
    with pytest.raises(ValueError, match="APPROVE, RESUME or FORK"):
        StepFunctionsResumer(store, client, MACHINE)(state, _request(ControlAction.PAUSE))


def test_execution_arns_are_built_from_the_state_machine_arn() -> None:
    assert execution_arn(MACHINE, f"{LOOP}-g2") == _execution(2)
    for bad in ("arn:aws:lambda:eu-west-1:1:function:f", "not an arn"):
        with pytest.raises(ValueError, match="not a state machine ARN"):
            execution_arn(bad, "x")
