"""Starting a loop in AWS: validation, storage and the idempotent execution name."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from loopwright.cloud.runtime import check_agent_for_adapters
from loopwright.cloud.start import (
    ExecutionStarter,
    LoopNotStartedError,
    await_human,
    execution_name,
    restartable,
    start_loop,
)
from loopwright.cloud.steps import CloudPorts
from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import (
    AgentResult,
    IterationEventType,
    LoopConfig,
    LoopPhase,
    LoopState,
    StartLoopRequest,
    StepInput,
)
from tests.fakes import MemoryStore

CONFIG = {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}]}


def test_start_stores_the_loop_and_starts_generation_0() -> None:
    store, started = MemoryStore(), []
    event = start_loop(
        StartLoopRequest(loop_id="l1", config=CONFIG),
        CloudPorts(store=store),
        lambda name, payload: started.append((name, payload)) or "arn",
    )
    assert event.loop_id == "l1"
    # The first execution asks for the baseline: a new loop evaluates its conditions before the agent
    assert started == [("l1-g0", StepInput(loop_id="l1", baseline=True).model_dump_json())]
    assert store.types("l1") == [IterationEventType.LOOP_STARTED, IterationEventType.CHECKS_PINNED]
    assert store.get_state("l1").sessions_used == 1


def test_bad_config_names_the_field_and_stores_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(ConfigError, match="config: exit_conditions: required field is missing"):
        start_loop(StartLoopRequest(config={"goal": "g"}), CloudPorts(store=store), lambda n, p: "arn")
    assert store.states == {}


def test_an_agent_the_adapters_cannot_run_is_refused_before_anything_is_stored() -> None:
    store, started = MemoryStore(), []
    config = {**CONFIG, "agent": {"kind": "python", "function": "pkg.mod:work"}}
    with pytest.raises(ConfigError, match=r"agent\.kind"):
        start_loop(
            StartLoopRequest(config=config, repository="https://example.com/r.git"),
            CloudPorts(store=store),
            lambda name, payload: started.append((name, payload)) or "arn",
            check_agent=lambda c: check_agent_for_adapters(c, "aws", repository="https://example.com/r.git"),
        )
    assert store.states == {} and started == []


def test_an_agent_s_reset_time_without_a_zone_is_utc() -> None:
    result = AgentResult(usage_limit_resets_at=datetime(2030, 1, 1, 12))
    assert result.usage_limit_resets_at == datetime(2030, 1, 1, 12, tzinfo=UTC)


def test_a_second_start_with_the_same_id_is_refused() -> None:
    store = MemoryStore()
    request = StartLoopRequest(loop_id="l1", config=CONFIG)
    start_loop(request, CloudPorts(store=store), lambda n, p: "arn")
    with pytest.raises(LoopFrameworkError):
        start_loop(request, CloudPorts(store=store), lambda n, p: "arn")


def test_await_human_keeps_the_task_token() -> None:
    store = MemoryStore()
    start_loop(StartLoopRequest(loop_id="l1", config=CONFIG), CloudPorts(store=store), lambda n, p: "arn")
    await_human(StepInput(loop_id="l1", task_token="tok-123"), CloudPorts(store=store))
    state = store.get_state("l1")
    assert (state.task_token, state.phase) == ("tok-123", LoopPhase.AWAITING_RESPONSE)


def test_execution_names_fit_the_80_character_quota() -> None:
    assert len(execution_name("x" * 72, 99_999)) <= 80
    with pytest.raises(ValueError, match="loop_id"):
        StartLoopRequest(loop_id="x" * 73, config=CONFIG)


# ----------------------------------------------------------------------------- a start that fails
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:loop"


def _stubbed_starter() -> tuple[Stubber, ExecutionStarter]:
    """A Step Functions client behind botocore's Stubber, called like the start_loop handler does."""
    client = boto3.client(
        "stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )

    def start(name: str, payload: str) -> str:
        started = client.start_execution(stateMachineArn=STATE_MACHINE_ARN, name=name, input=payload)
        return str(started["executionArn"])

    return Stubber(client), start


def test_a_throttled_start_execution_leaves_the_loop_interrupted_and_a_retry_starts_it() -> None:
    # Given StartExecution throttled once, then accepted
    store = MemoryStore()
    stubber, start = _stubbed_starter()
    payload = StepInput(loop_id="l1", baseline=True).model_dump_json()
    expected = {"stateMachineArn": STATE_MACHINE_ARN, "name": "l1-g0", "input": payload}
    stubber.add_client_error(
        "start_execution",
        service_error_code="ThrottlingException",
        http_status_code=400,
        expected_params=expected,
    )
    stubber.add_response(
        "start_execution",
        {"executionArn": f"{STATE_MACHINE_ARN}:l1-g0", "startDate": datetime(2030, 1, 1, tzinfo=UTC)},
        expected_params=expected,
    )
    request = StartLoopRequest(loop_id="l1", config=CONFIG)
    with stubber:
        # When the loop is stored and its execution does not start
        with pytest.raises(LoopNotStartedError, match=r"l1-g0 did not start.*ThrottlingException") as raised:
            start_loop(request, CloudPorts(store=store), start)
        # Then the loop is not "running": INTERRUPTED, not active, an ERROR event names the failure
        assert raised.value.loop_id == "l1"
        state = store.get_state("l1")
        assert (state.phase, state.is_active, state.outcome) == (LoopPhase.INTERRUPTED, False, None)
        errors = [e for e in store.events if e.type is IterationEventType.ERROR]
        assert (
            len(errors) == 1 and "l1-g0" in errors[0].message and "ThrottlingException" in errors[0].message
        )
        assert restartable(state, state.config)
        # When the same request is retried
        event = start_loop(request, CloudPorts(store=store), start)
        stubber.assert_no_pending_responses()
    # Then the same execution name and input were asked for, and the loop runs in a second session
    assert event == StepInput(loop_id="l1", baseline=True)
    state = store.get_state("l1")
    assert (state.phase, state.is_active, state.sessions_used) == (LoopPhase.AUTHORIZING, True, 2)
    assert store.types("l1") == [
        IterationEventType.LOOP_STARTED,
        IterationEventType.CHECKS_PINNED,
        IterationEventType.ERROR,
        IterationEventType.LOOP_RESUMED,
    ]


def test_a_retry_with_another_config_or_of_a_loop_that_ran_is_refused() -> None:
    store = MemoryStore()

    def fail(name: str, payload: str) -> str:
        raise RuntimeError("unreachable")

    with pytest.raises(LoopNotStartedError):
        start_loop(StartLoopRequest(loop_id="l1", config=CONFIG), CloudPorts(store=store), fail)
    other = {**CONFIG, "goal": "another goal"}
    with pytest.raises(LoopFrameworkError, match="same config"):
        start_loop(StartLoopRequest(loop_id="l1", config=other), CloudPorts(store=store), lambda n, p: "arn")
    state = store.get_state("l1")
    state.iteration = 1  # an iteration ran: a resume's business, not a start's
    store.save_state(state)
    with pytest.raises(LoopFrameworkError, match="INTERRUPTED"):
        start_loop(StartLoopRequest(loop_id="l1", config=CONFIG), CloudPorts(store=store), lambda n, p: "arn")


def test_a_loop_stored_but_never_opened_may_be_started_again() -> None:
    # Given a loop stored as INITIALIZING (the function ended before it opened the session)
    store = MemoryStore()
    config = LoopConfig.model_validate(CONFIG)
    store.create_loop(LoopState(loop_id="l1", project=config.project, config=config))
    started: list[str] = []
    start_loop(
        StartLoopRequest(loop_id="l1", config=CONFIG),
        CloudPorts(store=store),
        lambda name, payload: started.append(name) or "arn",
    )
    assert started == ["l1-g0"] and store.get_state("l1").is_active


# ----------------------------------------------------------------------------- recurring schedule
SCHEDULED = {**CONFIG, "schedule": "rate(1 hour)"}


def test_a_loop_with_a_schedule_gets_it_before_its_execution_starts() -> None:
    store, calls = MemoryStore(), []
    start_loop(
        StartLoopRequest(loop_id="s1", config=SCHEDULED),
        CloudPorts(store=store),
        lambda name, payload: calls.append(("execution", name)) or "arn",
        create_schedule=lambda loop_id, config: calls.append(("schedule", config.schedule)) or "s",
    )
    assert calls == [("schedule", "rate(1 hour)"), ("execution", "s1-g0")]


def test_a_loop_without_a_schedule_creates_none() -> None:
    created: list[str] = []
    start_loop(
        StartLoopRequest(loop_id="s2", config=CONFIG),
        CloudPorts(store=MemoryStore()),
        lambda name, payload: "arn",
        create_schedule=lambda loop_id, config: created.append(loop_id) or None,
    )
    assert created == []


def test_a_schedule_not_created_fails_the_start_with_an_error_event_and_no_execution() -> None:
    store, started = MemoryStore(), []

    def denied(loop_id: str, config: LoopConfig) -> str:
        raise RuntimeError("AccessDeniedException: not authorized to perform scheduler:CreateSchedule")

    with pytest.raises(LoopNotStartedError, match="schedule rate\\(1 hour\\) was not created") as caught:
        start_loop(
            StartLoopRequest(loop_id="s3", config=SCHEDULED),
            CloudPorts(store=store),
            lambda name, payload: started.append(name) or "arn",
            create_schedule=denied,
        )
    assert caught.value.loop_id == "s3" and started == []
    state = store.get_state("s3")
    assert (state.phase, state.is_active) == (LoopPhase.INTERRUPTED, False)
    error = [e for e in store.events if e.type is IterationEventType.ERROR][-1]
    assert "recurring schedule rate(1 hour) was not created" in error.message
    assert "AccessDeniedException" in error.message
    # The same request, once Scheduler answers, starts it
    start_loop(
        StartLoopRequest(loop_id="s3", config=SCHEDULED),
        CloudPorts(store=store),
        lambda name, payload: started.append(name) or "arn",
        create_schedule=lambda loop_id, config: "s",
    )
    assert started == ["s3-g0"]
