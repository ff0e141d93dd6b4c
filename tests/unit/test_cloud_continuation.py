"""Continuation modes on AWS (issue 12.8): schedule expressions, the loop's recurring schedule,
and what a firing, a continue event or a push does (loopwright.cloud.continuation)."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_lambda_powertools.utilities.parser import parse
from botocore.stub import Stubber
from pydantic import ValidationError

from loopwright.cloud.continuation import (
    CONTINUE_EVENT_DETAIL_TYPE,
    CONTINUE_EVENT_SOURCE,
    ContinueEventBridgeModel,
    ContinueLoopEvent,
    ContinueRequest,
    continue_loop,
    continue_stored,
    create_loop_schedule,
    delete_loop_schedule,
    loop_schedule_name,
    push_continuation,
)
from loopwright.cloud.schedule import RETRY_POLICY, ResumeScheduleSettings
from loopwright.exceptions import ControlConflictError, LoopNotFoundError
from loopwright.models import (
    ControlRequest,
    ControlResult,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    StartLoopRequest,
)
from tests.fakes import MemoryStore

BASE = {"goal": "g", "exit_conditions": [{"type": "CUSTOM", "command": "true"}]}
SETTINGS = ResumeScheduleSettings.model_validate(
    {
        "SCHEDULE_GROUP_NAME": "group",
        "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/scheduler",
        "RESUME_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:start",
        "RESUME_DEAD_LETTER_ARN": "arn:aws:sqs:us-east-1:123456789012:dlq",
    }
)


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 day)",
        "rate(15 minutes)",
        "cron(0 6 ? * MON-FRI *)",
        "cron(0/15 * * * ? *)",
        "cron(0 8 ? * 3#1 *)",
    ],
)
def test_recurring_expressions_are_accepted(expression: str) -> None:
    assert LoopConfig.model_validate({**BASE, "schedule": expression}).schedule == expression


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(1 days)", "singular"),
        ("rate(0 minutes)", "recurring"),
        ("rate(2 weeks)", "recurring"),
        ("at(2026-01-01T00:00:00)", "recurring"),
        ("cron(0 6 * * *)", "six fields"),
        ("cron(0 6 * * * *)", "'?'"),
        ("cron(61 6 ? * * *)", "minutes value 61"),
        ("cron(0 24 ? * * *)", "hours value 24"),
    ],
)
def test_invalid_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LoopConfig.model_validate({**BASE, "schedule": expression})
    error = caught.value.errors()[0]
    assert error["loc"] == ("schedule",)
    assert message in error["msg"]


def test_schedule_mode_is_continue_only() -> None:
    with pytest.raises(ValidationError) as caught:
        LoopConfig.model_validate({**BASE, "schedule": "rate(1 day)", "schedule_mode": "restart"})
    assert caught.value.errors()[0]["loc"] == ("schedule_mode",)


def _scheduler() -> tuple[object, Stubber]:
    client = boto3.client("scheduler", region_name="us-east-1")
    return client, Stubber(client)


def test_start_creates_the_recurring_schedule() -> None:
    config = LoopConfig.model_validate({**BASE, "schedule": "rate(1 day)"})
    client, stub = _scheduler()
    name = loop_schedule_name("loop-a")
    expected_input = ContinueLoopEvent(
        continue_loop=ContinueRequest(loop_id="loop-a", reason="schedule rate(1 day)", source="schedule")
    ).model_dump_json()
    stub.add_response(
        "create_schedule",
        {"ScheduleArn": "arn:aws:scheduler:us-east-1:123456789012:schedule/group/x"},
        {
            "Name": name,
            "GroupName": "group",
            "ScheduleExpression": "rate(1 day)",
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Description": "loopwright: continue loop loop-a (continue)",
            "Target": {
                "Arn": SETTINGS.target_arn,
                "RoleArn": SETTINGS.role_arn,
                "Input": expected_input,
                "RetryPolicy": RETRY_POLICY,
                "DeadLetterConfig": {"Arn": SETTINGS.dead_letter_arn},
            },
        },
    )
    with stub:
        assert create_loop_schedule("loop-a", config, SETTINGS, client) == name
    stub.assert_no_pending_responses()
    assert len(name) <= 64


def test_no_schedule_in_the_config_creates_none() -> None:
    client, stub = _scheduler()
    with stub:
        assert create_loop_schedule("loop-a", LoopConfig.model_validate(BASE), SETTINGS, client) is None


def test_a_retried_start_finds_its_schedule_created() -> None:
    config = LoopConfig.model_validate({**BASE, "schedule": "rate(1 day)"})
    client, stub = _scheduler()
    stub.add_client_error("create_schedule", service_error_code="ConflictException", http_status_code=409)
    with stub:
        assert create_loop_schedule("loop-a", config, SETTINGS, client) == loop_schedule_name("loop-a")


def test_the_end_deletes_the_schedule_once() -> None:
    client, stub = _scheduler()
    params = {"Name": loop_schedule_name("loop-a"), "GroupName": "group"}
    stub.add_response("delete_schedule", {}, params)
    stub.add_client_error(
        "delete_schedule", service_error_code="ResourceNotFoundException", http_status_code=404
    )
    with stub:
        assert delete_loop_schedule("loop-a", SETTINGS, client) is True
        assert delete_loop_schedule("loop-a", SETTINGS, client) is False


class _Submitter:
    def __init__(self, error: Exception | None = None) -> None:
        self.requests: list[ControlRequest] = []
        self.error = error

    def __call__(self, request: ControlRequest) -> ControlResult:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return ControlResult(
            control=request, status="applied", message="resuming", phase=LoopPhase.AUTHORIZING
        )


def _state(**fields: object) -> LoopState:
    config = LoopConfig.model_validate({**BASE, "schedule": "rate(1 day)"})
    return LoopState(loop_id="loop-a", project="default", config=config, workspace="", **fields)


def test_a_firing_continues_a_paused_loop_as_the_scheduler() -> None:
    # Given a loop paused between sessions
    submit = _Submitter()
    state = _state(phase=LoopPhase.PAUSED, is_active=False)
    # When its schedule fires
    outcome = continue_loop(ContinueRequest(loop_id="loop-a", source="schedule"), state, submit)
    # Then it is resumed, as a RESUME by Service::"scheduler" (Cedar decides)
    assert outcome.continued
    assert [(r.action.value, r.principal) for r in submit.requests] == [("RESUME", 'Service::"scheduler"')]


def test_a_continue_event_continues_a_limit_ended_loop() -> None:
    submit = _Submitter()
    state = _state(phase=LoopPhase.COMPLETED, is_active=False, outcome=LoopOutcome.ITERATION_LIMIT)
    outcome = continue_loop(ContinueRequest(loop_id="loop-a", reason="nightly"), state, submit)
    assert outcome.continued
    assert submit.requests[0].principal == 'Service::"events"'
    assert submit.requests[0].reason == "continued by event: nightly"


def test_a_firing_for_a_running_loop_is_a_recorded_no_op() -> None:
    submit = _Submitter()
    state = _state(phase=LoopPhase.ITERATING, is_active=True)
    outcome = continue_loop(ContinueRequest(loop_id="loop-a", source="schedule"), state, submit)
    assert not outcome.continued and not outcome.delete_schedule
    assert "running" in outcome.reason
    assert submit.requests == []


@pytest.mark.parametrize("ended", [LoopOutcome.CONDITIONS_MET, LoopOutcome.STOPPED])
def test_a_loop_ended_for_good_is_not_continued_and_its_schedule_goes(ended: LoopOutcome) -> None:
    submit = _Submitter()
    state = _state(phase=LoopPhase.COMPLETED, is_active=False, outcome=ended)
    outcome = continue_loop(ContinueRequest(loop_id="loop-a", source="schedule"), state, submit)
    assert not outcome.continued and outcome.delete_schedule
    assert submit.requests == []


def test_a_human_resuming_first_makes_the_firing_a_no_op() -> None:
    submit = _Submitter(ControlConflictError("loop 'loop-a' is running; nothing to resume"))
    state = _state(phase=LoopPhase.PAUSED, is_active=False)
    outcome = continue_loop(ContinueRequest(loop_id="loop-a", source="git-push"), state, submit)
    assert not outcome.continued
    assert json.loads(outcome.model_dump_json())["source"] == "git-push"


# ----------------------------------------------------------------------------- stored loops, pushes, events
def _stored(**fields: object) -> MemoryStore:
    store = MemoryStore()
    store.create_loop(_state(**fields))
    return store


def test_a_final_loop_with_a_schedule_has_it_deleted() -> None:
    store, deleted = _stored(phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET), []
    request = ContinueRequest(loop_id="loop-a", source="schedule")
    outcome = continue_stored(request, store, _Submitter(), lambda loop_id: deleted.append(loop_id) or True)
    assert (outcome.continued, outcome.schedule_deleted, deleted) == (False, True, ["loop-a"])


def test_a_final_loop_without_a_schedule_touches_no_schedule() -> None:
    store = MemoryStore()
    state = _state(phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED)
    state.config = state.config.model_copy(update={"schedule": None})
    store.create_loop(state)
    deleted: list[str] = []
    outcome = continue_stored(
        ContinueRequest(loop_id="loop-a"), store, _Submitter(), lambda i: deleted.append(i) or True
    )
    assert not outcome.continued and not outcome.schedule_deleted and deleted == []


def test_an_unknown_loop_is_not_found() -> None:
    with pytest.raises(LoopNotFoundError):
        continue_stored(ContinueRequest(loop_id="nope"), MemoryStore(), _Submitter(), lambda i: True)


def test_a_push_for_an_existing_loop_continues_it_and_a_new_one_starts() -> None:
    store = _stored(phase=LoopPhase.PAUSED, iteration=2, generation=1)
    pushed = push_continuation(StartLoopRequest(loop_id="loop-a", config=BASE), store)
    assert pushed == ContinueRequest(loop_id="loop-a", reason="git push", source="git-push")
    assert push_continuation(StartLoopRequest(loop_id="other", config=BASE), store) is None
    assert push_continuation(StartLoopRequest(config=BASE), store) is None


def test_a_push_for_a_loop_whose_start_failed_starts_it_again() -> None:
    store = _stored(phase=LoopPhase.INTERRUPTED, is_active=False)
    assert push_continuation(StartLoopRequest(loop_id="loop-a", config=BASE), store) is None


def _continue_event(detail: dict[str, object]) -> dict[str, object]:
    return {
        "version": "0",
        "id": "e1",
        "detail-type": CONTINUE_EVENT_DETAIL_TYPE,
        "source": CONTINUE_EVENT_SOURCE,
        "account": "123456789012",
        "time": "2026-12-07T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def test_a_continue_event_is_parsed_by_powertools() -> None:
    event = parse(
        event=_continue_event({"loop_id": "loop-a", "reason": "nightly"}), model=ContinueEventBridgeModel
    )
    assert event.request() == ContinueRequest(loop_id="loop-a", reason="nightly", source="event")


@pytest.mark.parametrize(
    ("detail", "field"),
    [
        ({"reason": "x"}, "loop_id"),
        ({"loop_id": "loop-a", "loopid": "x"}, "loopid"),
        ({"loop_id": "a b"}, "loop_id"),
    ],
)
def test_a_bad_continue_event_names_the_field(detail: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(event=_continue_event(detail), model=ContinueEventBridgeModel)
    assert caught.value.errors()[0]["loc"] == ("detail", field)
