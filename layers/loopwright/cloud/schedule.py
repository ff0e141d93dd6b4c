"""A loop paused until its agent's usage limit resets, and resumed then (seed 002: scheduled
continuation, one-time).

When Decide returns PAUSE with ``resume_at`` (the agent reported ``usage_limit_resets_at``), the state
machine's ScheduleResume task (``functions/schedule_resume``) calls :func:`schedule_resume`: a
one-time EventBridge Scheduler schedule ``at(<resume time>)`` in UTC, in the stack's schedule group,
deleted once it has fired, whose target is the ``start_loop`` function with a
:class:`ScheduledResumeEvent` as input. The execution then ends in its ``Paused`` state. At that
time ``start_loop`` calls :func:`resume_scheduled`: if the loop is still PAUSED until that time, a new
session starts (LOOP_RESUMED) and a new execution ``<loop_id>-g<generation + 1>`` continues it.

Retries: the schedule's name comes from the loop id and the reset time (:func:`schedule_name`), so a
retried task gets ``ConflictException`` (the schedule exists) and succeeds. A second delivery of the
schedule finds the loop no longer PAUSED and does nothing; so does a schedule whose loop a human
resumed, stopped or paused again meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright import workflow
from loopwright.cloud.start import ExecutionStarter, execution_name
from loopwright.cloud.steps import CloudPorts, EventCollector
from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import (
    DEFAULT_ITERATIONS_PER_EXECUTION,
    IterationEventType,
    LoopPhase,
    StepInput,
    StepOutput,
)
from loopwright.models.types import LoopId

#: EventBridge Scheduler invokes targets with 60-second precision ("Schedule types on EventBridge
#: Scheduler", User Guide); a reset time closer than this is scheduled this many seconds from now,
#: so the schedule is never created in the past.
MIN_LEAD_SECONDS = 60
#: CreateSchedule ``Name``: 1 to 64 characters of ``[0-9a-zA-Z-_.]`` (Scheduler API reference).
SCHEDULE_NAME_MAX_CHARS = 64
#: The target's retry policy: Scheduler's maxima, 185 attempts within 24 hours (Target.RetryPolicy).
RETRY_POLICY = {"MaximumEventAgeInSeconds": 86_400, "MaximumRetryAttempts": 185}


class ScheduledResume(BaseModel):
    """Resume PAUSED loop ``loop_id``, paused until ``resume_at``, in execution ``generation``."""

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId
    resume_at: datetime = Field(description="the pause this schedule ends (the loop's resume_at), UTC")
    generation: int = Field(ge=0, description="the new execution's generation: the paused one's + 1")
    iterations_per_execution: int = Field(default=DEFAULT_ITERATIONS_PER_EXECUTION, ge=1)


class ScheduledResumeEvent(BaseModel):
    """What a resume schedule delivers to ``start_loop``: ``{"scheduled_resume": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    scheduled_resume: ScheduledResume


class ResumeScheduleSettings(BaseModel):
    """The ``schedule_resume`` function's environment (set by ``infrastructure/continuation.py``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    group_name: str = Field(alias="SCHEDULE_GROUP_NAME", min_length=1)
    role_arn: str = Field(alias="SCHEDULER_ROLE_ARN", min_length=1)
    target_arn: str = Field(alias="RESUME_FUNCTION_ARN", min_length=1, description="start_loop's ARN")
    dead_letter_arn: str | None = Field(default=None, alias="RESUME_DEAD_LETTER_ARN")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ResumeScheduleSettings:
        """Parse ``environ`` (default ``os.environ``). Raises :class:`ConfigError` naming the variable."""
        try:
            return cls.model_validate(dict(environ if environ is not None else os.environ))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"environment variable {name}: {first['msg']}") from exc


class ResumeNotStartedError(LoopFrameworkError):
    """The resumed loop's execution could not be started; the loop is PAUSED again (retry it)."""


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def schedule_name(loop_id: str, resume_at: datetime) -> str:
    """``<loop_id prefix>-<resume time, UTC>-<hash>``: the same for the same loop and reset time
    (a retried task), at most :data:`SCHEDULE_NAME_MAX_CHARS` characters."""
    moment = f"{_utc(resume_at):%Y%m%dT%H%M%S}"
    digest = hashlib.sha256(f"{loop_id}|{_utc(resume_at).isoformat()}".encode()).hexdigest()[:8]
    room = SCHEDULE_NAME_MAX_CHARS - len(moment) - len(digest) - 2
    return f"{loop_id[:room]}-{moment}-{digest}"


def _ceil_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) + timedelta(seconds=1) if moment.microsecond else moment


def schedule_time(resume_at: datetime, now: datetime) -> datetime:
    """When the schedule fires: ``resume_at`` rounded up to the second (never before the reset),
    or :data:`MIN_LEAD_SECONDS` from ``now`` if that is later. UTC."""
    earliest = _utc(now) + timedelta(seconds=MIN_LEAD_SECONDS)
    return max(_ceil_second(_utc(resume_at)), _ceil_second(earliest))


def at_expression(moment: datetime) -> str:
    """``at(yyyy-mm-ddThh:mm:ss)`` of ``moment`` in UTC (with ``ScheduleExpressionTimezone`` UTC)."""
    return f"at({_utc(moment):%Y-%m-%dT%H:%M:%S})"


def _conflict(exc: Exception) -> bool:
    return error_code(exc) == "ConflictException"


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for any other exception)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def create_start_loop_schedule(
    scheduler: Any,
    settings: ResumeScheduleSettings,
    *,
    name: str,
    expression: str,
    payload: BaseModel,
    description: str,
    one_time: bool = False,
) -> None:
    """``CreateSchedule`` in the stack's group: ``expression`` (``at(...)``, ``rate(...)`` or
    ``cron(...)``, UTC) invokes ``start_loop`` with ``payload`` as its input, as the scheduler role,
    with Scheduler's retries and the dead-letter queue; a ``one_time`` schedule deletes itself once
    it fired. An existing schedule of that name (a retried step) counts as created; other errors
    are raised (botocore's ``ClientError``)."""
    target: dict[str, Any] = {
        "Arn": settings.target_arn,
        "RoleArn": settings.role_arn,
        "Input": payload.model_dump_json(),
        "RetryPolicy": RETRY_POLICY,
    }
    if settings.dead_letter_arn:
        target["DeadLetterConfig"] = {"Arn": settings.dead_letter_arn}
    extra = {"ActionAfterCompletion": "DELETE"} if one_time else {}
    try:
        scheduler.create_schedule(
            Name=name,
            GroupName=settings.group_name,
            ScheduleExpression=expression,
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            Description=description[:512],
            Target=target,
            **extra,
        )
    except Exception as exc:  # botocore's ClientError; only a conflict is success
        if not _conflict(exc):
            raise


def schedule_resume(
    output: StepOutput, settings: ResumeScheduleSettings, scheduler: Any, *, now: datetime | None = None
) -> str:
    """Create the one-time schedule that resumes the paused loop of ``output`` (Decide's PAUSE with
    ``resume_at``); its name. An existing schedule of that name (a retried task) counts as created.

    ``scheduler``: a boto3 EventBridge Scheduler client. Raises ``ValueError`` when ``output`` has no
    ``resume_at``, and the client's ``ClientError`` for any other failure.
    """
    if output.resume_at is None:
        raise ValueError(f"loop {output.loop_id}: resume_at is required to schedule a resume")
    name = schedule_name(output.loop_id, output.resume_at)
    payload = ScheduledResumeEvent(
        scheduled_resume=ScheduledResume(
            loop_id=output.loop_id,
            resume_at=output.resume_at,
            generation=output.generation + 1,
            iterations_per_execution=output.iterations_per_execution,
        )
    )
    create_start_loop_schedule(
        scheduler,
        settings,
        name=name,
        expression=at_expression(schedule_time(output.resume_at, now or datetime.now(UTC))),
        payload=payload,
        description=f"loopwright: resume loop {output.loop_id} when its usage limit resets",
        one_time=True,
    )
    return name


def resume_scheduled(
    request: ScheduledResume, ports: CloudPorts, start_execution: ExecutionStarter
) -> StepInput | None:
    """Resume ``request.loop_id`` if it is still PAUSED until ``request.resume_at``: a new session
    (LOOP_RESUMED) and execution ``<loop_id>-g<generation>``; its input. None when the loop is no
    longer paused by that pause (resumed, stopped or paused again meanwhile): nothing is written.

    A pending STOP control is kept: the resumed loop's first Authorize ends it STOPPED. Raises
    :class:`~loopwright.exceptions.LoopNotFoundError` for an unknown loop,
    :class:`~loopwright.exceptions.LoopFrameworkError` when a concurrent write wins, and
    :class:`ResumeNotStartedError` when the execution cannot start (the loop is PAUSED again, so a
    retry of the same request resumes it).
    """
    state = ports.store.get_state(request.loop_id)
    if state.phase is not LoopPhase.PAUSED or state.outcome is not None or state.resume_at is None:
        return None
    if _utc(state.resume_at) != _utc(request.resume_at):
        return None
    record = EventCollector(state)
    workflow.start_session(state, record)
    state = ports.store.save_state(state, record.events)
    event = StepInput(
        loop_id=request.loop_id,
        iteration=state.iteration,
        generation=request.generation,
        iterations_per_execution=request.iterations_per_execution,
        first_iteration=state.iteration,
        baseline=workflow.baseline_due(state),
    )
    name = execution_name(request.loop_id, request.generation)
    try:
        start_execution(name, event.model_dump_json())
    except Exception as exc:  # re-raised below as ResumeNotStartedError once the pause is restored
        state.phase, state.resume_at, state.is_active = LoopPhase.PAUSED, request.resume_at, False
        undo = EventCollector(state)
        undo(IterationEventType.ERROR, f"scheduled resume: execution {name} did not start: {exc}"[:1000])
        ports.store.save_state(state, undo.events)
        raise ResumeNotStartedError(f"loop {request.loop_id}: execution {name} did not start: {exc}") from exc
    return event


def resume_summary(event: StepInput | None, request: ScheduledResume) -> dict[str, Any]:
    """A JSON-able line for the log and the Lambda's result."""
    if event is None:
        return {"loop_id": request.loop_id, "resumed": False, "reason": "the loop is no longer paused by it"}
    return {
        "loop_id": request.loop_id,
        "resumed": True,
        "execution": execution_name(event.loop_id, event.generation),
        "input": json.loads(event.model_dump_json()),
    }
