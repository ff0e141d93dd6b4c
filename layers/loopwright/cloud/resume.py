"""Continuing a loop in AWS on an operator's control: the :data:`~loopwright.controls.Resumer` of
the dashboard's control Lambda (``functions/dashboard``, mode ``controls``).

:class:`ControlService` authorizes RESUME and APPROVE with Cedar, checks that they apply, and
hands the loop to :class:`StepFunctionsResumer`:

- **APPROVE** of a loop waiting for a human (AWAITING_RESPONSE, its execution parked in the
  ``AwaitHuman`` task): the loop is marked as continuing (phase AUTHORIZING, ``task_token``
  cleared, so a second approve is refused as "not waiting"), then ``SendTaskSuccess`` with the
  stored task token. ``AwaitHuman`` discards its result (``result_path`` DISCARD), so the output is
  only a record (:func:`approval_output`); the execution goes on to ``Authorize`` and the agent
  gets the answer (``LoopState.human_response``, saved by the service) in its next iteration.
  When the token is missing or stale (``InvalidToken``, ``TaskDoesNotExist``,
  ``TaskTimedOut``), the loop's execution ``<loop_id>-g<generation>`` is looked up
  (``DescribeExecution``): still RUNNING means it is about to park (its Decide has run, its
  AwaitHuman has not stored the token yet): :class:`ControlConflictError`, retry in a few
  seconds; otherwise (stopped or timed out outside loopwright) the loop continues in a new
  execution, like a resume.
- **RESUME** of a PAUSED, STOPPED, limit-ended or FAILED loop (the same path as a scheduled
  resume, :func:`loopwright.cloud.schedule.resume_scheduled`): its outcome is cleared, pending
  STOP/PAUSE controls are dropped (the human's resume supersedes them), a new session starts
  (CONTROL_APPLIED "resumed by", LOOP_RESUMED, one write) and a new execution
  ``<loop_id>-g<generation>`` with ``first_iteration`` = the loop's iteration, so it hands over
  after ``iterations_per_execution`` more iterations.

**Generation**: the next unused one is ``LoopState.generation + 1``. Every step stores the
generation of the execution it runs in (``max`` of the stored and its own), and this module stores
the new one in the same write as LOOP_RESUMED, so two resumes never pick the same name. Should the
name exist anyway (an execution started by hand), the next generation is tried, up to
:data:`MAX_NAME_ATTEMPTS` names.

**Checkpoints**: with a checkpoint store (AgentCore Memory), a RESUME continues from the checkpoint
the request names (``checkpoint_id``) or, for a loop that did not pause cleanly, from the newest
valid checkpoint when the stored state is not at it, as the in-process engine does
(:mod:`loopwright.cloud.resume_point`): the state is restored in the same write as LOOP_RESUMED
(CHECKPOINT_CORRUPT, CHECKPOINT_RECOVERED), and the new execution's first step moves the
session's clone back to the checkpoint's commit, later commits set aside. A named checkpoint that
is unknown or corrupt is refused before anything is written. Without a checkpoint store (or at
the stored state's own checkpoint) the execution continues from the stored state; a loop that
failed mid-iteration repeats that iteration.

- **FORK** (time travel, :mod:`loopwright.cloud.time_travel`): the child loop the service stored
  (INITIALIZING, at the parent's checkpoint) starts like a new loop (:meth:`StepFunctionsResumer.
  start_fork`): LOOP_STARTED, then execution ``<child>-g0`` with the baseline; its first step
  makes the child's branch from the checkpoint's commit. When the execution does not start, the
  child is INTERRUPTED with an ERROR event and a RESUME starts it.

A STOP of a loop waiting for a human is applied by the service at once (the loop is idle); its
parked execution would wait for the AwaitHuman timeout (7 days,
``infrastructure.constants.AWAIT_HUMAN_TIMEOUT``) and then fail.
:class:`AwsControls` releases it right away with ``SendTaskSuccess``: the execution's Authorize
finds the loop ended and it ends in ``Done``.

IAM (the control function's role): ``states:SendTaskSuccess`` and ``states:StartExecution`` on the
loop state machine, ``states:DescribeExecution`` on its executions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loopwright import workflow
from loopwright.cloud.observability import logger
from loopwright.cloud.resume_point import ResumePoint, resume_point
from loopwright.cloud.schedule import ResumeNotStartedError
from loopwright.cloud.start import execution_name
from loopwright.cloud.steps import EventCollector
from loopwright.controls import RESUMABLE_OUTCOMES, ControlService
from loopwright.exceptions import ControlConflictError, LoopFrameworkError
from loopwright.models import (
    DEFAULT_ITERATIONS_PER_EXECUTION,
    ControlRequest,
    ControlResult,
    IterationEventType,
    LoopOutcome,
    LoopPhase,
    LoopState,
    StepInput,
)
from loopwright.models.enums import ControlAction
from loopwright.ports import CheckpointStore, LoopStore

#: SendTaskSuccess errors meaning the token no longer names a waiting task (Step Functions API
#: reference: the task ended, timed out, or the token is not one).
STALE_TOKEN_ERRORS = frozenset({"InvalidToken", "TaskDoesNotExist", "TaskTimedOut"})
#: Execution names tried by a resume when the next generation's name is taken.
MAX_NAME_ATTEMPTS = 3


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of execution ``name`` of ``state_machine_arn``
    (``arn:<partition>:states:<region>:<account>:execution:<state machine name>:<name>``).
    Raises ValueError for an ARN that is not a state machine's."""
    parts = state_machine_arn.split(":")
    if len(parts) != 7 or parts[2] != "states" or parts[5] != "stateMachine":
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return ":".join([*parts[:5], "execution", parts[6], name])


def approval_output(request: ControlRequest) -> str:
    """The JSON ``output`` of the SendTaskSuccess of an approval (at most a few hundred bytes; the
    answer itself is on the loop, not here): ``{"control_id", "action", "principal"}``."""
    return json.dumps(
        {"control_id": request.control_id, "action": request.action.value, "principal": request.principal}
    )


@dataclass
class _Snapshot:
    """The fields a resume changes, to put back when its execution cannot start."""

    phase: LoopPhase
    outcome: LoopOutcome | None
    outcome_reason: str | None
    ended_at: datetime | None
    is_active: bool
    resume_at: datetime | None
    human_request: str | None
    task_token: str | None

    @classmethod
    def of(cls, state: LoopState) -> _Snapshot:
        return cls(
            state.phase,
            state.outcome,
            state.outcome_reason,
            state.ended_at,
            state.is_active,
            state.resume_at,
            state.human_request,
            state.task_token,
        )

    def restore(self, state: LoopState) -> None:
        state.phase, state.outcome, state.outcome_reason = self.phase, self.outcome, self.outcome_reason
        state.ended_at, state.is_active, state.resume_at = self.ended_at, self.is_active, self.resume_at
        state.human_request, state.task_token = self.human_request, self.task_token


@dataclass
class StepFunctionsResumer:
    """The AWS :data:`~loopwright.controls.Resumer` (see the module docstring).

    Args:
        store: the loop store (DynamoDB).
        client: a boto3 Step Functions client.
        state_machine_arn: the loop state machine.
        iterations_per_execution: of a resumed execution (the default of a started one).
        checkpoints: the loop's checkpoints (AgentCore Memory); None: resumes continue from the
            stored state and refuse a named checkpoint.
    """

    store: LoopStore
    client: Any
    state_machine_arn: str
    iterations_per_execution: int = DEFAULT_ITERATIONS_PER_EXECUTION
    checkpoints: CheckpointStore | None = None

    def __call__(self, state: LoopState, request: ControlRequest) -> None:
        """Continue ``state``'s loop for ``request`` (APPROVE or RESUME), or start the loop a FORK
        created.

        Raises :class:`ControlConflictError` (the loop is about to wait for an answer: retry),
        :class:`ResumeNotStartedError` (no execution could be started; the loop is as before, a
        forked one INTERRUPTED), :class:`LoopFrameworkError` (a Step Functions or store error),
        ValueError for another action.
        """
        if request.action is ControlAction.APPROVE:
            self.approve(state, request)
        elif request.action is ControlAction.RESUME:
            self.resume(state, request)
        elif request.action is ControlAction.FORK:
            self.start_fork(state, request)
        else:
            raise ValueError(
                f"the resumer continues loops on APPROVE, RESUME or FORK, not {request.action.value}"
            )

    def start_fork(self, child: LoopState, request: ControlRequest) -> StepInput:
        """Start the first execution (``<child>-g0``, with the baseline) of ``child``, a loop a
        FORK stored and nothing started yet; its input. Raises :class:`ResumeNotStartedError`
        when the execution did not start (the child is INTERRUPTED, not active, with an ERROR
        event: a RESUME starts it)."""
        record = EventCollector(child)
        workflow.start_session(child, record, principal=request.principal)
        saved = self.store.save_state(child, record.events)
        event = StepInput(loop_id=saved.loop_id, baseline=workflow.baseline_due(saved))
        try:
            return self._start(event)
        except ResumeNotStartedError as exc:
            saved.phase, saved.is_active = LoopPhase.INTERRUPTED, False
            self.store.save_state(saved, self._error(saved, str(exc)))
            raise

    # ----------------------------------------------------------------------------- approve
    def approve(self, state: LoopState, request: ControlRequest) -> None:
        """Send the approval to the parked execution, or continue the loop in a new one when
        that execution is gone (see the module docstring)."""
        token = state.task_token
        if token:
            before = _Snapshot.of(state)
            state.task_token, state.phase, state.is_active = None, LoopPhase.AUTHORIZING, True
            saved = self.store.save_state(state)
            try:
                self.client.send_task_success(taskToken=token, output=approval_output(request))
                return
            except ClientError as exc:
                if _code(exc) not in STALE_TOKEN_ERRORS:
                    self._put_back(saved, before, f"approval not delivered: {_code(exc)}")
                    raise LoopFrameworkError(
                        f"loop {state.loop_id!r}: the approval could not be sent to its execution "
                        f"({_code(exc)}); try again"
                    ) from exc
            except BotoCoreError as exc:
                self._put_back(saved, before, f"approval not delivered: {exc}")
                raise LoopFrameworkError(
                    f"loop {state.loop_id!r}: Step Functions could not be reached ({exc}); try again"
                ) from exc
            before.task_token = None  # stale: it names no waiting task
            state = self._put_back(saved, before, None)
        if self.execution_running(state):
            raise ControlConflictError(
                f"loop {state.loop_id!r} is about to wait for the answer (its execution has not parked "
                "yet); approve it again in a few seconds"
            )
        logger.info(
            "approved loop has no waiting execution: continuing it in a new one",
            extra={"loop_id": state.loop_id, "generation": state.generation},
        )
        self.resume(state, request)

    def _put_back(self, saved: LoopState, before: _Snapshot, error: str | None) -> LoopState:
        before.restore(saved)
        if error is None:
            return self.store.save_state(saved)
        record = EventCollector(saved)
        record(IterationEventType.ERROR, error[:1000])
        return self.store.save_state(saved, record.events)

    def execution_running(self, state: LoopState) -> bool:
        """True when the loop's current execution ``<loop_id>-g<generation>`` is RUNNING.
        Raises :class:`LoopFrameworkError` when Step Functions cannot tell."""
        arn = execution_arn(self.state_machine_arn, execution_name(state.loop_id, state.generation))
        try:
            described = self.client.describe_execution(executionArn=arn)
        except ClientError as exc:
            if _code(exc) == "ExecutionDoesNotExist":
                return False
            raise LoopFrameworkError(
                f"loop {state.loop_id!r}: describing execution {arn} failed ({_code(exc)})"
            ) from exc
        except BotoCoreError as exc:
            raise LoopFrameworkError(
                f"loop {state.loop_id!r}: Step Functions could not be reached ({exc})"
            ) from exc
        return str(described.get("status")) == "RUNNING"

    # ----------------------------------------------------------------------------- resume
    def resume(self, state: LoopState, request: ControlRequest) -> StepInput:
        """Start a new session and execution of ``state``'s loop (see the module docstring); the
        execution's input. Raises :class:`ResumeNotStartedError` when no execution started (the
        loop is put back as it was, with an ERROR event), and, before anything is written,
        :class:`~loopwright.exceptions.CheckpointRecoveryError` for a named checkpoint that is
        unknown (:class:`~loopwright.exceptions.CheckpointNotFoundError`) or corrupt."""
        point = self.resume_point(state, request)
        stored = state.model_copy(deep=True)
        before = _Snapshot.of(state)
        if point.state is not None:
            state = point.state
        if stored.outcome is LoopOutcome.AGENT_FAILING:  # a human looked: failures count afresh
            state.consecutive_failures = 0
        if state.outcome is not None:
            if state.outcome not in RESUMABLE_OUTCOMES:  # ControlService checked it; never resume these
                raise ControlConflictError(
                    f"loop {state.loop_id!r} ended with {state.outcome.value}, which is final"
                )
            state.outcome, state.outcome_reason, state.ended_at = None, None, None
        state.task_token = None
        generation = state.generation + 1
        state.generation = generation
        record = EventCollector(state)
        record(
            IterationEventType.CONTROL_APPLIED,
            f"resumed by {request.principal}" + (f": {request.reason[:200]}" if request.reason else ""),
            control=request.action.value,
            principal=request.principal,
            generation=generation,
        )
        point.record(record)
        workflow.start_session(state, record)
        saved = self.store.save_state(state, record.events)
        self.store.clear_stop(state.loop_id)
        event = StepInput(
            loop_id=state.loop_id,
            iteration=saved.iteration,
            generation=generation,
            iterations_per_execution=self.iterations_per_execution,
            first_iteration=saved.iteration,
            baseline=workflow.baseline_due(saved),  # a loop paused by a condition ERROR checks again
        )
        try:
            return self._start(event)
        except ResumeNotStartedError as exc:
            if point.state is not None:  # the stored state comes back, not the checkpoint's
                saved = stored.model_copy(update={"version": saved.version, "generation": saved.generation})
            else:
                before.restore(saved)  # the generation stays: that name may exist now, never reuse it
            self.store.save_state(saved, self._error(saved, str(exc)))
            raise

    def resume_point(self, state: LoopState, request: ControlRequest) -> ResumePoint:
        """Where ``request`` continues ``state``'s loop (:func:`~loopwright.cloud.resume_point.
        resume_point`); the stored state without a checkpoint store. Nothing is written."""
        if self.checkpoints is None:
            if request.checkpoint_id is not None:
                raise ControlConflictError(
                    f"loop {state.loop_id!r}: this service reads no checkpoints, so it cannot resume "
                    f"from {request.checkpoint_id!r}"
                )
            return ResumePoint()
        return resume_point(state, self.checkpoints, request.checkpoint_id)

    def _error(self, state: LoopState, message: str) -> list[Any]:
        record = EventCollector(state)
        record(IterationEventType.ERROR, message[:1000])
        return record.events

    def _start(self, event: StepInput) -> StepInput:
        """StartExecution of ``event`` as ``<loop_id>-g<generation>``, trying the next generation
        when the name is taken. Raises :class:`ResumeNotStartedError`."""
        for _ in range(MAX_NAME_ATTEMPTS):
            name = execution_name(event.loop_id, event.generation)
            try:
                started = self.client.start_execution(
                    stateMachineArn=self.state_machine_arn, name=name, input=event.model_dump_json()
                )
            except ClientError as exc:
                if _code(exc) == "ExecutionAlreadyExists":
                    event = event.model_copy(update={"generation": event.generation + 1})
                    continue
                raise ResumeNotStartedError(
                    f"loop {event.loop_id}: execution {name} did not start ({_code(exc)}); resume it again"
                ) from exc
            except BotoCoreError as exc:
                raise ResumeNotStartedError(
                    f"loop {event.loop_id}: execution {name} did not start ({exc}); resume it again"
                ) from exc
            logger.info(
                "loop resumed", extra={"loop_id": event.loop_id, "execution": started.get("executionArn")}
            )
            return event
        last = execution_name(event.loop_id, event.generation - 1)
        raise ResumeNotStartedError(
            f"loop {event.loop_id}: the execution names up to {last} exist already; resume it again"
        )

    # ----------------------------------------------------------------------------- stop
    def release(self, state: LoopState) -> bool:
        """Let the execution parked for ``state``'s answer go on (after a STOP: it ends in
        ``Done``). True when a waiting task took the token; a stale token is False. Other errors
        are logged, not raised: the stop itself is done."""
        if not state.task_token:
            return False
        output = json.dumps({"action": ControlAction.STOP.value, "loop_id": state.loop_id})
        try:
            self.client.send_task_success(taskToken=state.task_token, output=output)
        except ClientError as exc:
            if _code(exc) not in STALE_TOKEN_ERRORS:
                logger.warning(
                    "stopped loop's execution not released",
                    extra={"loop_id": state.loop_id, "code": _code(exc)},
                )
            return False
        except BotoCoreError as exc:
            logger.warning(
                "stopped loop's execution not released", extra={"loop_id": state.loop_id, "error": str(exc)}
            )
            return False
        return True


class AwsControls:
    """The dashboard's :class:`~loopwright.dashboard.api.ControlSubmitter` in AWS: a
    :class:`ControlService` with :class:`StepFunctionsResumer`, which also releases the parked
    execution of a loop stopped while it waited for a human (see the module docstring)."""

    def __init__(self, service: ControlService, resumer: StepFunctionsResumer) -> None:
        self.service = service
        self.resumer = resumer

    def submit(self, request: ControlRequest) -> ControlResult:
        """:meth:`ControlService.submit`, then, for a STOP applied to a loop that waited for a
        human, :meth:`StepFunctionsResumer.release`. Raises what the service raises."""
        result = self.service.submit(request)
        if request.action is ControlAction.STOP and result.status == "applied":
            state = self.service.store.get_state(request.loop_id)
            if state.task_token and state.outcome is LoopOutcome.STOPPED:
                self.resumer.release(state)
        return result
