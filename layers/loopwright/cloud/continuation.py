"""Continuation modes on AWS (issue 12.8): a loop's recurring schedule, ``loopwright.continue``
events, and a git push for a loop that exists.

- **The loop's schedule**: a loop whose config has ``schedule = "rate(...)"`` or ``"cron(...)"``
  (:attr:`loopwright.models.LoopConfig.schedule`, checked against Scheduler's syntax) gets a
  recurring EventBridge Scheduler schedule when ``start_loop`` starts it
  (:func:`create_loop_schedule`): in the stack's schedule group, run as the scheduler role, target
  ``start_loop`` with a :class:`ContinueLoopEvent` as input, Scheduler's maximum retries and the
  resume dead-letter queue: the same pattern as the one-time resume (:mod:`loopwright.cloud.schedule`).
  Expressions are evaluated in UTC.
- **Each firing, event or push** asks :func:`continue_loop`. A loop that is PAUSED or ended at a
  limit (:data:`CONTINUABLE_OUTCOMES`) is resumed through the control service, as a human's RESUME
  is: Cedar decides (``policies/continuation.cedar`` permits ``Service::"scheduler"`` and
  ``Service::"events"`` to ``ResumeLoop``), then a new session and execution start
  (:class:`loopwright.cloud.resume.StepFunctionsResumer`). A loop that runs (or waits for a human)
  is left alone: the firing is a no-op, logged with its reason and returned. A loop that met its
  conditions or was stopped is never continued: its schedule is deleted
  (:func:`delete_loop_schedule`) by that firing. A FAILED loop is left for a human.
- **A ``loopwright.continue`` event** on the default bus (source :data:`CONTINUE_EVENT_SOURCE`,
  detail-type :data:`CONTINUE_EVENT_DETAIL_TYPE`, detail :class:`ContinueDetail`: ``loop_id`` and an
  optional ``reason``) reaches ``start_loop`` through a rule (``infrastructure/continuation.py``)
  and is parsed with Powertools Parser (:class:`ContinueEventBridgeModel`).
- **A git push** (``loopwright.git``/``push``, detail a ``StartLoopRequest``) naming a loop that
  exists continues it (:func:`push_continuation`) instead of a 409; the pushed config is ignored
  (the stored loop keeps its own). A loop whose first execution never started is started again
  instead (:func:`loopwright.cloud.start.restartable`), as before.
- ``schedule_mode`` has one value, ``"continue"``: the loop goes on from its stored state (and its
  checkpoint). A mode that restarts from the branch head is not built.

A loop limit-ended and continued by its schedule meets the same Cedar limits at its first
Authorize: unless an operator raised the limit, it ends again at once (recorded). Time limits are
counted from the loop's start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field

from loopwright.cloud.schedule import (
    SCHEDULE_NAME_MAX_CHARS,
    ResumeScheduleSettings,
    create_start_loop_schedule,
    error_code,
)
from loopwright.cloud.start import restartable
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
from loopwright.models.enums import ControlAction
from loopwright.models.types import LoopId
from loopwright.ports import LoopStore

#: The EventBridge source and detail-type of a continue event (the rule's pattern,
#: ``infrastructure/continuation.py``; ``aws events put-events``, README "Continuation modes").
CONTINUE_EVENT_SOURCE = "loopwright.continue"
CONTINUE_EVENT_DETAIL_TYPE = "continue"

#: Outcomes a schedule, event or push continues: the limits. STOPPED and CONDITIONS_MET are final
#: for them (the schedule is deleted); FAILED waits for a human.
CONTINUABLE_OUTCOMES = frozenset(
    {
        LoopOutcome.ITERATION_LIMIT,
        LoopOutcome.TOKEN_BUDGET_EXHAUSTED,
        LoopOutcome.COST_BUDGET_EXHAUSTED,
        LoopOutcome.TIME_LIMIT,
        LoopOutcome.POLICY_DENIED,
    }
)
#: Outcomes after which the loop's schedule is deleted.
FINAL_OUTCOMES = frozenset({LoopOutcome.CONDITIONS_MET, LoopOutcome.STOPPED})
#: The Cedar principal of each source of a continuation (policies/continuation.cedar).
PRINCIPALS = {
    "schedule": 'Service::"scheduler"',
    "event": 'Service::"events"',
    "git-push": 'Service::"events"',
}

ContinueSource = Literal["schedule", "event", "git-push"]
#: Submits a control (authorize with Cedar, then apply): ``AwsControls.submit``.
ControlSubmitter = Callable[[ControlRequest], ControlResult]


class ContinueRequest(BaseModel):
    """Continue loop ``loop_id`` if it is paused or ended at a limit."""

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId
    reason: str = Field(default="", max_length=500)
    source: ContinueSource = "event"


class ContinueLoopEvent(BaseModel):
    """What a loop's recurring schedule delivers to ``start_loop``: ``{"continue_loop": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    continue_loop: ContinueRequest


class ContinueDetail(BaseModel):
    """The detail of a ``loopwright.continue`` event: ``{"loop_id": "...", "reason": "..."}``."""

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId
    reason: str = Field(default="", max_length=500)


class ContinueEventBridgeModel(EventBridgeModel):
    """A ``loopwright.continue`` event as EventBridge delivers it (Powertools Parser's envelope
    fields: ``source``, ``detail-type``, ``time``...; ``detail`` checked by :class:`ContinueDetail`)."""

    detail: ContinueDetail

    def request(self) -> ContinueRequest:
        """The continuation this event asks for (source ``event``)."""
        return ContinueRequest(loop_id=self.detail.loop_id, reason=self.detail.reason, source="event")


class ContinueOutcome(BaseModel):
    """What :func:`continue_loop` did: ``continued``, or why not; ``delete_schedule`` when the loop
    ended for good (its schedule should go); ``schedule_deleted`` once :func:`continue_stored`
    deleted it."""

    loop_id: str
    continued: bool
    reason: str
    source: ContinueSource
    delete_schedule: bool = False
    schedule_deleted: bool = False


def loop_schedule_name(loop_id: str) -> str:
    """``<loop_id prefix>-continue-<hash>``: the one recurring schedule of a loop (at most
    :data:`SCHEDULE_NAME_MAX_CHARS` characters of ``[0-9a-zA-Z-_.]``)."""
    digest = hashlib.sha256(loop_id.encode()).hexdigest()[:8]
    room = SCHEDULE_NAME_MAX_CHARS - len("-continue-") - len(digest)
    return f"{loop_id[:room]}-continue-{digest}"


def create_loop_schedule(
    loop_id: str, config: LoopConfig, settings: ResumeScheduleSettings, scheduler: Any
) -> str | None:
    """Create the recurring schedule of a loop whose config has one; its name (None without one).
    An existing schedule of that name (a retried start) counts as created; other ``ClientError``
    are raised."""
    if config.schedule is None:
        return None
    name = loop_schedule_name(loop_id)
    payload = ContinueLoopEvent(
        continue_loop=ContinueRequest(
            loop_id=loop_id, reason=f"schedule {config.schedule}", source="schedule"
        )
    )
    create_start_loop_schedule(
        scheduler,
        settings,
        name=name,
        expression=config.schedule,
        payload=payload,
        description=f"loopwright: continue loop {loop_id} ({config.schedule_mode})",
    )
    return name


def delete_loop_schedule(loop_id: str, settings: ResumeScheduleSettings, scheduler: Any) -> bool:
    """Delete the loop's recurring schedule; False when there is none (already deleted)."""
    try:
        scheduler.delete_schedule(Name=loop_schedule_name(loop_id), GroupName=settings.group_name)
    except Exception as exc:  # botocore's ClientError; a missing schedule is done already
        if error_code(exc) != "ResourceNotFoundException":
            raise
        return False
    return True


def _not_continued(state: LoopState) -> tuple[str, bool] | None:
    """Why ``state`` is not continued (and whether its schedule should go), or None to continue."""
    if state.outcome in FINAL_OUTCOMES:
        return f"the loop ended with {state.outcome.value}", True
    if state.outcome is not None and state.outcome not in CONTINUABLE_OUTCOMES:
        return f"the loop ended with {state.outcome.value}; a human resumes it", False
    if state.phase is LoopPhase.AWAITING_RESPONSE:
        return "the loop waits for a human's answer", False
    if state.outcome is None and (state.is_active or state.phase is not LoopPhase.PAUSED):
        return f"the loop is running ({state.phase.value})", False
    return None


def continue_loop(request: ContinueRequest, state: LoopState, submit: ControlSubmitter) -> ContinueOutcome:
    """Continue ``state``'s loop (read just before) when it is paused or ended at a limit, as a
    RESUME by the source's service principal (Cedar decides); otherwise a no-op saying why.

    Raises :class:`~loopwright.exceptions.ControlDeniedError` when Cedar denies it and what the
    resumer raises when the execution did not start (the loop is put back, a retry continues it).
    A concurrent change (a human resumed it meanwhile) is a no-op.
    """
    why = _not_continued(state)
    if why is not None:
        reason, final = why
        return ContinueOutcome(
            loop_id=request.loop_id,
            continued=False,
            reason=reason,
            source=request.source,
            delete_schedule=final,
        )
    control = ControlRequest(
        loop_id=request.loop_id,
        action=ControlAction.RESUME,
        principal=PRINCIPALS[request.source],
        reason=f"continued by {request.source}" + (f": {request.reason}" if request.reason else ""),
    )
    try:
        submit(control)
    except ControlConflictError as exc:
        return ContinueOutcome(
            loop_id=request.loop_id, continued=False, reason=str(exc), source=request.source
        )
    return ContinueOutcome(loop_id=request.loop_id, continued=True, reason="resumed", source=request.source)


def continue_stored(
    request: ContinueRequest,
    store: LoopStore,
    submit: ControlSubmitter,
    delete_schedule: Callable[[str], bool],
) -> ContinueOutcome:
    """Read the loop and :func:`continue_loop` it; when it ended for good and its config has a
    ``schedule``, delete that schedule (``delete_schedule(loop_id)``, :func:`delete_loop_schedule`;
    a loop without one touches no schedule).

    Raises :class:`~loopwright.exceptions.LoopNotFoundError` for an unknown loop and what
    :func:`continue_loop` raises.
    """
    state = store.get_state(request.loop_id)
    outcome = continue_loop(request, state, submit)
    if outcome.delete_schedule and state.config.schedule is not None:
        outcome.schedule_deleted = delete_schedule(request.loop_id)
    return outcome


def push_continuation(request: StartLoopRequest, store: LoopStore) -> ContinueRequest | None:
    """The continuation a git push asks for when it names a loop that exists: source ``git-push``.
    None when it names no loop id, an unknown loop, or a loop whose first execution never started
    (:func:`~loopwright.cloud.start.restartable` with its own config): those are started."""
    if request.loop_id is None:
        return None
    try:
        state = store.get_state(request.loop_id)
    except LoopNotFoundError:
        return None
    if restartable(state, state.config):
        return None
    return ContinueRequest(loop_id=request.loop_id, reason="git push", source="git-push")
