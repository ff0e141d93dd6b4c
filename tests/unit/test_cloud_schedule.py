"""A loop paused until a usage limit resets: the one-time schedule and the resumption it triggers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loopwright.cloud.schedule import (
    MIN_LEAD_SECONDS,
    SCHEDULE_NAME_MAX_CHARS,
    ResumeNotStartedError,
    ResumeScheduleSettings,
    ScheduledResume,
    ScheduledResumeEvent,
    at_expression,
    resume_scheduled,
    schedule_name,
    schedule_resume,
    schedule_time,
)
from loopwright.cloud.start import start_loop
from loopwright.cloud.steps import CloudPorts
from loopwright.exceptions import ConfigError
from loopwright.models import IterationEventType, LoopPhase, NextAction, StartLoopRequest, StepOutput
from tests.fakes import MemoryStore

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
RESETS = datetime(2026, 3, 1, 17, 30, 0, 250_000, tzinfo=UTC)
SETTINGS = ResumeScheduleSettings.model_validate(
    {
        "SCHEDULE_GROUP_NAME": "group-1",
        "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/scheduler",
        "RESUME_FUNCTION_ARN": "arn:aws:lambda:eu-west-1:123456789012:function:start-loop",
        "RESUME_DEAD_LETTER_ARN": "arn:aws:sqs:eu-west-1:123456789012:resume-dlq",
    }
)
CONFIG = {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}]}


class FakeScheduler:
    """CreateSchedule recorded; raises ``error`` (a ClientError code) when set."""

    def __init__(self, error: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def create_schedule(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "CreateSchedule")
        return {"ScheduleArn": "arn"}


def _paused_output(**fields: Any) -> StepOutput:
    base: dict[str, Any] = {
        "loop_id": "loop-1",
        "iteration": 2,
        "generation": 3,
        "iterations_per_execution": 50,
        "action": NextAction.PAUSE,
        "resume_at": RESETS,
    }
    return StepOutput.model_validate(base | fields)


# ----------------------------------------------------------------------------- the schedule
def test_schedule_name_is_deterministic_short_and_valid() -> None:
    name = schedule_name("x" * 72, RESETS)
    assert name == schedule_name("x" * 72, RESETS)  # a retried task finds the same schedule
    assert len(name) <= SCHEDULE_NAME_MAX_CHARS and re.fullmatch(r"[0-9a-zA-Z_.-]+", name)
    assert "20260301T173000" in name
    assert schedule_name("x" * 72, RESETS + timedelta(hours=1)) != name
    assert schedule_name("loop-2", RESETS) != schedule_name("loop-1", RESETS)


def test_schedule_time_never_fires_before_the_reset_nor_in_the_past() -> None:
    # Rounded up to the second: at(...) has no fraction, and must not be before the reset
    assert schedule_time(RESETS, NOW) == datetime(2026, 3, 1, 17, 30, 1, tzinfo=UTC)
    # A reset already past, or closer than the lead time: MIN_LEAD_SECONDS from now
    assert schedule_time(NOW - timedelta(hours=1), NOW) == NOW + timedelta(seconds=MIN_LEAD_SECONDS)
    # A naive time is UTC
    assert schedule_time(RESETS.replace(tzinfo=None), NOW) == schedule_time(RESETS, NOW)
    assert at_expression(datetime(2026, 3, 1, 17, 30, 1, tzinfo=UTC)) == "at(2026-03-01T17:30:01)"


def test_schedule_resume_creates_a_one_time_schedule_for_start_loop() -> None:
    scheduler = FakeScheduler()
    name = schedule_resume(_paused_output(), SETTINGS, scheduler, now=NOW)
    (call,) = scheduler.calls
    assert call["Name"] == name and call["GroupName"] == "group-1"
    assert call["ScheduleExpression"] == "at(2026-03-01T17:30:01)"
    assert call["ScheduleExpressionTimezone"] == "UTC"
    assert call["ActionAfterCompletion"] == "DELETE"
    assert call["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = call["Target"]
    assert target["Arn"] == SETTINGS.target_arn and target["RoleArn"] == SETTINGS.role_arn
    assert target["DeadLetterConfig"] == {"Arn": SETTINGS.dead_letter_arn}
    # The input resumes the loop in the next generation, the one after the paused execution's
    resume = ScheduledResumeEvent.model_validate_json(target["Input"]).scheduled_resume
    assert (resume.loop_id, resume.generation, resume.iterations_per_execution) == ("loop-1", 4, 50)
    assert resume.resume_at == RESETS


def test_a_retried_task_finds_the_schedule_and_succeeds() -> None:
    assert schedule_resume(_paused_output(), SETTINGS, FakeScheduler("ConflictException"), now=NOW)
    with pytest.raises(ClientError, match="ValidationException"):
        schedule_resume(_paused_output(), SETTINGS, FakeScheduler("ValidationException"), now=NOW)


def test_a_pause_without_a_time_is_not_scheduled() -> None:
    scheduler = FakeScheduler()
    with pytest.raises(ValueError, match="resume_at is required"):
        schedule_resume(_paused_output(resume_at=None), SETTINGS, scheduler, now=NOW)
    assert scheduler.calls == []


def test_missing_schedule_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="SCHEDULE_GROUP_NAME"):
        ResumeScheduleSettings.from_environ({"SCHEDULER_ROLE_ARN": "r", "RESUME_FUNCTION_ARN": "f"})


# ----------------------------------------------------------------------------- the resumption
def _paused_loop(store: MemoryStore, resume_at: datetime = RESETS) -> None:
    start_loop(StartLoopRequest(loop_id="loop-1", config=CONFIG), CloudPorts(store=store), lambda n, p: "arn")
    state = store.get_state("loop-1")
    state.phase, state.resume_at, state.is_active, state.iteration = LoopPhase.PAUSED, resume_at, False, 2
    store.save_state(state)


def _request(**fields: Any) -> ScheduledResume:
    return ScheduledResume.model_validate(
        {"loop_id": "loop-1", "resume_at": RESETS, "generation": 4, "iterations_per_execution": 50} | fields
    )


def test_a_paused_loop_resumes_in_a_new_execution() -> None:
    store, started = MemoryStore(), []
    _paused_loop(store)
    event = resume_scheduled(
        _request(), CloudPorts(store=store), lambda n, p: started.append((n, p)) or "arn"
    )
    assert event is not None and (event.iteration, event.generation) == (2, 4)
    assert started == [("loop-1-g4", event.model_dump_json())]
    state = store.get_state("loop-1")
    assert (state.phase, state.resume_at, state.sessions_used) == (LoopPhase.AUTHORIZING, None, 2)
    assert store.types("loop-1")[-1] is IterationEventType.LOOP_RESUMED
    # A second delivery of the same schedule does nothing
    assert (
        resume_scheduled(_request(), CloudPorts(store=store), lambda n, p: started.append((n, p)) or "x")
        is None
    )
    assert len(started) == 1


@pytest.mark.parametrize("case", ["another pause", "not paused"])
def test_a_stale_schedule_does_nothing(case: str) -> None:
    store, started = MemoryStore(), []
    _paused_loop(store, RESETS + timedelta(hours=1) if case == "another pause" else RESETS)
    if case == "not paused":  # a human resumed it meanwhile
        state = store.get_state("loop-1")
        state.phase = LoopPhase.ITERATING
        store.save_state(state)
    before = (store.get_state("loop-1").version, len(store.events))
    assert (
        resume_scheduled(_request(), CloudPorts(store=store), lambda n, p: started.append(n) or "x") is None
    )
    assert started == [] and (store.get_state("loop-1").version, len(store.events)) == before


def test_an_execution_that_does_not_start_leaves_the_loop_paused_for_a_retry() -> None:
    store = MemoryStore()
    _paused_loop(store)

    def refused(name: str, payload: str) -> str:
        raise RuntimeError("ThrottlingException")

    with pytest.raises(ResumeNotStartedError, match="loop-1-g4 did not start"):
        resume_scheduled(_request(), CloudPorts(store=store), refused)
    state = store.get_state("loop-1")
    assert (state.phase, state.resume_at, state.is_active) == (LoopPhase.PAUSED, RESETS, False)
    assert store.types("loop-1")[-1] is IterationEventType.ERROR
    # The retry resumes it
    started: list[str] = []
    assert resume_scheduled(_request(), CloudPorts(store=store), lambda n, p: started.append(n) or "a")
    assert started == ["loop-1-g4"]


def test_the_schedule_input_round_trips_as_json() -> None:
    payload = ScheduledResumeEvent(scheduled_resume=_request()).model_dump_json()
    assert json.loads(payload)["scheduled_resume"]["generation"] == 4
    with pytest.raises(ValueError, match="extra"):
        ScheduledResumeEvent.model_validate({"scheduled_resume": _request().model_dump(), "x": 1})
