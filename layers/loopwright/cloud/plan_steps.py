"""The steps of the PlanDispatch state machine (``infrastructure/plans.py``), one function each.

Shape (Standard workflow; its execution is named after the plan, see :func:`dispatch_execution_name`)::

    Begin -> More? -yes-> Wave (Map over $.ready, MaxConcurrency $.concurrency) -> Next -> More?
                  '-no-> Done
    Wave iteration: StartTask -> Started? -ended-> Finished
                                  '-> Wait ($.wait_seconds) -> CheckTask -> Ended? -no-> Wait
                                                                         '-yes-> FinishTask -> Finished
    StartTask or CheckTask failing after their retries -> FinishTask with the error (the task ends
    ERROR, the other tasks go on: seed 003 "Dispatch Failure"); Begin, Next or the Wave failing ->
    RecordFailure (the plan FAILED, with the error as evidence) -> Failed.

Each function takes its payload and a :class:`PlanStepPorts` (tested without AWS), loads the plan,
applies one transition of :mod:`loopwright.plans.transitions` and saves it with the transition's
events in one conditional write. The Map's iterations write the same plan concurrently, so a write
that loses the version race is reloaded and applied again (:data:`WRITE_ATTEMPTS` times). Every
step is idempotent, so Step Functions may retry it: a task already RUNNING is not started twice (its
loop is created once and ``StartExecution`` with the same name and input returns the running
execution), a task already ended is not finished twice.

A task's loop runs in its own executions of the loop state machine, which hand over to new ones
(continue-as-new): the dispatch does not wait on the execution (no ``.sync``) but polls the loop's
stored state (``outcome`` set) with a growing interval: ``poll_seconds``, then x1.5 per poll up to
:data:`MAX_POLL_SECONDS` (15 minutes). History budget (Step Functions quota: 25,000 events per
execution): a poll costs 9 events (Wait, the Lambda task, the Choice; measured on the local run of
the synthesized definition: 47 events for a one-task plan polled once, 74 polled four times), a
task about 20 more; from 30 s, a task running 8 hours is polled about 39 times (about 370 events),
so a plan of 50 such tasks stays under the quota (about 19,000).

Unlike the local dispatcher (:mod:`loopwright.engine.plan_dispatch`), which starts a task as soon
as its dependencies complete, the Map runs in waves: the next wave starts when every task of this
one has ended.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from loopwright import workflow
from loopwright.cloud.start import ExecutionStarter, execution_name
from loopwright.cloud.steps import EventCollector
from loopwright.exceptions import ConfigError, LoopFrameworkError, LoopNotFoundError
from loopwright.models import LoopResult, LoopState, StepInput, utcnow
from loopwright.models.plans import (
    DEFAULT_PLAN_CONCURRENCY,
    MAX_PLAN_CONCURRENCY,
    TERMINAL_TASK_STATES,
    ActivityEvent,
    ActivityEventType,
    GateCheck,
    GateCheckStatus,
    GateResult,
    Plan,
    PlanId,
    PlanStatus,
    TaskId,
    TaskRunRequest,
    TaskState,
)
from loopwright.models.types import LoopId, ProjectId
from loopwright.plans import transitions
from loopwright.plans.dag import ready_tasks
from loopwright.plans.errors import MergeConflictError, PlanConflictError
from loopwright.plans.ports import PlanStore, PlanWorkspace
from loopwright.plans.verify import verify_error_check
from loopwright.ports import LoopStore, Sandbox

#: Default seconds between two polls of a task's loop (the dispatch input's ``poll_seconds``).
DEFAULT_POLL_SECONDS = 30
#: Longest wait between two polls, seconds (the interval grows by :data:`POLL_GROWTH` per poll):
#: a task's end is noticed at most 15 minutes late, and only once it has run about 40 minutes.
MAX_POLL_SECONDS = 900
POLL_GROWTH = 1.5
#: Attempts of a plan write that loses the version race to a concurrent writer (another task).
WRITE_ATTEMPTS = 20
#: Name of the check recorded when the dispatch itself failed (beside ``plan_generation``).
DISPATCH_CHECK = "plan_dispatch"
#: Characters of a Step Functions error's cause kept in the evidence.
MAX_CAUSE_CHARS = 1_000


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DispatchInput(_Payload):
    """The execution input of PlanDispatch (what :class:`AwsPlanExecutor` starts it with).

    ``repository``: where the tasks' loops get their workspace when their config has no
    ``repository``: with ``LOOPWRIGHT_ADAPTERS=local`` the workspace folder (required), with
    ``aws`` a git URL (optional: a plan's ``defaults.repository`` is the usual place).
    """

    project: ProjectId
    plan_id: PlanId
    concurrency: int = Field(default=DEFAULT_PLAN_CONCURRENCY, ge=1, le=MAX_PLAN_CONCURRENCY)
    poll_seconds: int = Field(default=DEFAULT_POLL_SECONDS, ge=1, le=MAX_POLL_SECONDS)
    repository: str | None = Field(default=None, max_length=4096)
    error: dict[str, Any] | None = Field(default=None, description="set by a Catch: Error and Cause")
    execution: str | None = Field(default=None, description="the dispatch execution's id (RecordFailure)")


class TaskItem(_Payload):
    """One item of the Map (a task of the wave) and the state of its iteration."""

    project: ProjectId
    plan_id: PlanId
    task_id: TaskId
    poll_seconds: int = Field(default=DEFAULT_POLL_SECONDS, ge=1, le=MAX_POLL_SECONDS)
    repository: str | None = Field(default=None, max_length=4096)
    loop_id: LoopId | None = None
    wait_seconds: int = Field(default=DEFAULT_POLL_SECONDS, ge=0, description="the next Wait, seconds")
    polls: int = Field(default=0, ge=0)
    ended: bool = False
    error: dict[str, Any] | None = Field(default=None, description="set by a Catch: Error and Cause")


class DispatchState(DispatchInput):
    """The output of Begin and Next: the tasks of the next wave (``ready``) and whether there is one."""

    ready: list[TaskItem] = Field(default_factory=list)
    more: bool = False


class TaskBranches(Protocol):
    """Prepares a task loop's branch from the merge of its dependencies' results."""

    def prepare_task(self, loop_id: str, heads: Sequence[str]) -> dict[str, Any]:
        """Create the branch ``loopwright/<loop_id>`` at the merge of ``heads`` (kept when it
        exists); the :class:`LoopState` fields the loop starts with (``worktree``, ``branch``,
        ``base_commit``, ``head_commit``), empty when the loop prepares its own workspace (AWS:
        its Code Interpreter session clones the pushed branch). Raises
        :class:`~loopwright.plans.errors.MergeConflictError`."""
        ...


#: (the task's run request, the dispatch's ``repository``) -> where its branch is made (None:
#: the loop starts from the repository's head or ``repository.ref`` by itself).
BranchesFactory = Callable[[TaskRunRequest, str | None], TaskBranches | None]
#: (the task's loop config, the dispatch's ``repository``): raises ConfigError when the loop
#: cannot run with these adapters (:func:`loopwright.cloud.runtime.check_agent_for_adapters`).
LoopCheck = Callable[[Any, str | None], None]


#: (the VERIFYING plan, the verify input's ``repository``) -> a context giving the sandbox and
#: workspace gate:all runs in, released at its end (AWS: a Code Interpreter session,
#: :func:`loopwright.adapters.aws.session_plan_workspace.session_gates`; locally the subprocess
#: sandbox and the workspace's git repository). Raises ConfigError when none can be given.
GateFactory = Callable[[Plan, str | None], AbstractContextManager[tuple[Sandbox, PlanWorkspace]]]


@dataclass
class PlanStepPorts:
    """What the plan steps use: the plan and loop stores, the loop state machine's starter, the
    task branches, the check of a task's loop config and where gate:all runs (the Verify step)."""

    plans: PlanStore
    loops: LoopStore
    start_execution: ExecutionStarter
    branches: BranchesFactory
    check_loop: LoopCheck
    gates: GateFactory | None = None


def dispatch_execution_name(project: str, plan_id: str) -> str:
    """The PlanDispatch execution of a plan: ``<plan_id>-<8 hex digits of SHA-256(project)>``
    (plan ids are unique per project; the digest keeps two projects' plans apart; at most 32
    characters, Step Functions allows 80)."""
    return f"{plan_id}-{hashlib.sha256(project.encode()).hexdigest()[:8]}"


# ----------------------------------------------------------------------------- writes
def _update(
    ports: PlanStepPorts, project: str, plan_id: str, change: Callable[[Plan], transitions.PlanChange | None]
) -> Plan:
    """Load the plan, apply ``change`` (None: nothing to do) and save it with its events; a save
    that lost the version race is reloaded and applied again. Errors of ``change`` propagate."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        plan = ports.plans.get_plan(project, plan_id)
        made = change(plan)
        if made is None:
            return plan
        try:
            return ports.plans.save_plan(project, made.plan, made.events)
        except PlanConflictError:
            if attempt == WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _item(plan: Plan, task_id: str, state: DispatchInput) -> TaskItem:
    return TaskItem(
        project=plan.project,
        plan_id=plan.plan_id,
        task_id=task_id,
        poll_seconds=state.poll_seconds,
        repository=state.repository,
        loop_id=plan.task(task_id).loop_id,
        wait_seconds=state.poll_seconds,
    )


def _wave(plan: Plan, state: DispatchInput) -> DispatchState:
    """The next wave: tasks RUNNING (a resumed dispatch polls them again) and ready tasks.
    Raises :class:`PlanConflictError` for a RUNNING plan with no task to run that has not ended
    (its dependencies can never complete: a stuck plan)."""
    carried = state.model_dump(exclude={"error", "execution"})
    if plan.status is not PlanStatus.RUNNING:
        return DispatchState.model_validate({**carried, "ready": [], "more": False})
    running = [t.task_id for t in plan.tasks if t.status is TaskState.RUNNING]
    ids = running + [t.task_id for t in ready_tasks(plan)]
    if not ids and plan.completed_at is None:
        waiting = [t.task_id for t in plan.tasks if t.status not in TERMINAL_TASK_STATES]
        raise PlanConflictError(
            f"plan {plan.plan_id}: tasks {', '.join(waiting)} wait for tasks that will never complete"
        )
    items = [_item(plan, task_id, state) for task_id in ids]
    return DispatchState.model_validate({**carried, "ready": items, "more": bool(items)})


# ----------------------------------------------------------------------------- steps
def begin(event: DispatchInput, ports: PlanStepPorts) -> DispatchState:
    """DRAFT -> DISPATCHING -> RUNNING (``plan_dispatched``), or DISPATCHING -> RUNNING when the
    executor already began the dispatch; a RUNNING plan is resumed. Returns the first wave.
    Raises :class:`PlanConflictError` for a plan in another status."""

    def change(plan: Plan) -> transitions.PlanChange | None:
        if plan.status is PlanStatus.DRAFT:
            dispatched = transitions.begin_dispatch(plan)
            running = transitions.mark_running(dispatched.plan)
            return transitions.PlanChange(running.plan, dispatched.events + running.events)
        if plan.status is PlanStatus.DISPATCHING:
            return transitions.mark_running(plan)
        if plan.status is PlanStatus.RUNNING:
            return None
        raise PlanConflictError(
            f"plan {plan.plan_id} is {plan.status.value}; only a DRAFT plan can be dispatched"
        )

    plan = _update(ports, event.project, event.plan_id, change)
    return _wave(plan, event)


def next_wave(event: DispatchState, ports: PlanStepPorts) -> DispatchState:
    """The wave after this one (``more`` false when every task has ended or the plan is no
    longer RUNNING). Raises :class:`PlanConflictError` for a stuck plan (see :func:`_wave`)."""
    return _wave(ports.plans.get_plan(event.project, event.plan_id), event)


def start_task(item: TaskItem, ports: PlanStepPorts) -> TaskItem:
    """CREATED -> RUNNING (``task_started``), then the task's loop: its branch from its
    dependencies' results, the loop stored with LOOP_STARTED and its first execution
    (``<loop_id>-g0``) started. A task whose loop cannot start (its config, a merge conflict of
    its dependencies) ends ERROR here (``ended``); AWS errors propagate (Step Functions retries,
    then its Catch ends the task ERROR)."""

    def change(plan: Plan) -> transitions.PlanChange | None:
        if plan.task(item.task_id).status is TaskState.CREATED:
            return transitions.start_task(plan, item.task_id)
        return None

    plan = _update(ports, item.project, item.plan_id, change)
    task = plan.task(item.task_id)
    started = item.model_copy(update={"loop_id": task.loop_id, "wait_seconds": item.poll_seconds})
    if task.status in TERMINAL_TASK_STATES:
        return started.model_copy(update={"ended": True})
    try:
        request = transitions.task_run_request(plan, item.task_id)
        ports.check_loop(request.config, item.repository)
        _start_loop(request, item.repository, ports)
    except (ConfigError, MergeConflictError) as exc:
        _finish(item, ports, error=f"the task's loop could not start: {exc}")
        return started.model_copy(update={"loop_id": task.loop_id, "ended": True})
    return started.model_copy(update={"loop_id": request.loop_id})


def _start_loop(request: TaskRunRequest, repository: str | None, ports: PlanStepPorts) -> None:
    """Create the loop (once) as ``start_loop`` does, on its branch made from its dependencies'
    results, and start its first execution."""
    try:
        ports.loops.get_state(request.loop_id)
    except LoopNotFoundError:
        branches = ports.branches(request, repository)
        prepared = branches.prepare_task(request.loop_id, request.dependency_heads) if branches else {}
        state = LoopState(
            loop_id=request.loop_id,
            project=request.project,
            config=request.config,
            workspace=repository or "",
            **prepared,
        )
        state = ports.loops.create_loop(state)
        record = EventCollector(state)
        workflow.start_session(state, record, agent_name=f"plan {request.plan_id} task {request.task_id}")
        ports.loops.save_state(state, record.events)
    # A new loop's first execution asks for its baseline; always, so a retried start sends the same
    # input (the baseline step skips a baseline no longer due).
    ports.start_execution(
        execution_name(request.loop_id, 0),
        StepInput(loop_id=request.loop_id, baseline=True).model_dump_json(),
    )


def check_task(item: TaskItem, ports: PlanStepPorts) -> TaskItem:
    """Read the task's loop: ``ended`` once it has an outcome; otherwise the next wait, grown by
    :data:`POLL_GROWTH` up to :data:`MAX_POLL_SECONDS` (a loop paused for a human or a usage
    limit is still running). Raises LoopNotFoundError when the loop does not exist."""
    if item.loop_id is None:
        raise LoopNotFoundError(f"task {item.task_id} of plan {item.plan_id} has no loop")
    state = ports.loops.get_state(item.loop_id)
    grown = min(MAX_POLL_SECONDS, max(item.poll_seconds, math.ceil(item.wait_seconds * POLL_GROWTH)))
    return item.model_copy(
        update={"ended": state.outcome is not None, "polls": item.polls + 1, "wait_seconds": grown}
    )


def _error_text(error: dict[str, Any]) -> str:
    return f"{error.get('Error', 'error')}: {str(error.get('Cause', ''))[:MAX_CAUSE_CHARS]}"


def _finish(item: TaskItem, ports: PlanStepPorts, *, error: str | None) -> Plan:
    def change(plan: Plan) -> transitions.PlanChange | None:
        task = plan.task(item.task_id)
        if task.status in TERMINAL_TASK_STATES:
            return None
        if error is not None:
            return transitions.finish_task(plan, item.task_id, error=error)
        loop_id = item.loop_id or task.loop_id
        assert loop_id is not None
        result = LoopResult.from_state(ports.loops.get_state(loop_id))
        return transitions.finish_task(plan, item.task_id, result=result)

    return _update(ports, item.project, item.plan_id, change)


def finish_task(item: TaskItem, ports: PlanStepPorts) -> TaskItem:
    """The task's loop ended: COMPLETED or ERROR with its result (``task_completed`` /
    ``task_failed``, dependents SKIPPED, ``plan_completed`` after the last task). With
    ``item.error`` (a Catch), the task ends ERROR with that error and its loop, if any, is asked
    to stop. A task already ended is left alone."""
    error = (
        None if item.error is None else f"the dispatch could not follow its loop: {_error_text(item.error)}"
    )
    if error is not None and item.loop_id is not None:
        with contextlib.suppress(LoopNotFoundError):  # the loop was never created
            ports.loops.request_stop(item.loop_id, f"plan {item.plan_id}: {error}")
    _finish(item, ports, error=error)
    return item.model_copy(update={"ended": True, "error": None})


def record_failure(event: DispatchInput, ports: PlanStepPorts) -> DispatchState:
    """The dispatch failed after its retries (``event.error``): the plan ends FAILED with a failed
    :data:`DISPATCH_CHECK` check and a ``plan_failed`` event holding the error, the execution and
    the loops asked to stop; running tasks end ERROR (their loops are asked to stop), tasks not
    started end SKIPPED. A VERIFYING plan (its verify execution failed) ends FAILED with a
    ``plan_verify`` ERROR check holding the error. A plan in another status is left alone."""
    error = event.error or {"Error": "DispatchFailed", "Cause": "no error was given"}
    message = f"the dispatch failed: {_error_text(error)}"
    stopped: list[str] = []

    def change(plan: Plan) -> transitions.PlanChange | None:
        if plan.status is PlanStatus.VERIFYING:
            text = f"the verification failed: {_error_text(error)}"
            check = verify_error_check(text, execution=event.execution)
            return transitions.finish_verify(plan, [check])
        if plan.status not in (PlanStatus.DISPATCHING, PlanStatus.RUNNING):
            return None
        return dispatch_failed(plan, message, error=error, execution=event.execution, stopped=stopped)

    plan = _update(ports, event.project, event.plan_id, change)
    for task in plan.tasks:
        if task.loop_id in stopped:
            with contextlib.suppress(LoopFrameworkError):  # best effort: the failure is recorded
                ports.loops.request_stop(task.loop_id, f"plan {plan.plan_id}: {message}")
    carried = event.model_dump(exclude={"error", "execution"})
    return DispatchState.model_validate({**carried, "ready": [], "more": False})


def dispatch_failed(
    plan: Plan,
    message: str,
    *,
    error: dict[str, Any],
    execution: str | None = None,
    stopped: list[str] | None = None,
    now: datetime | None = None,
) -> transitions.PlanChange:
    """DISPATCHING or RUNNING -> FAILED because the dispatch itself failed (pure: the plan is
    copied). ``stopped`` receives the loop ids of the tasks that were RUNNING."""
    now = now or utcnow()
    changed = plan.model_copy(deep=True)
    changed.updated_at = now
    changed.status = PlanStatus.FAILED
    events: list[ActivityEvent] = []

    def event(kind: ActivityEventType, text: str, task_id: str | None = None, **evidence: Any) -> None:
        loop_id = changed.task(task_id).loop_id if task_id else None
        events.append(
            ActivityEvent(
                project=plan.project,
                plan_id=plan.plan_id,
                type=kind,
                timestamp=now,
                task_id=task_id,
                loop_id=loop_id,
                message=text,
                evidence={k: v for k, v in evidence.items() if v is not None},
            )
        )

    running: list[str] = []
    for task in changed.tasks:
        if task.status is TaskState.RUNNING:
            task.status, task.ended_at, task.reason = TaskState.ERROR, now, message
            running.append(task.loop_id or "")
            event(ActivityEventType.TASK_FAILED, message, task.task_id)
        elif task.status is TaskState.CREATED:
            task.status, task.ended_at = TaskState.SKIPPED, now
            task.reason = "not run: the plan's dispatch failed"
            event(ActivityEventType.TASK_SKIPPED, task.reason, task.task_id)
    if stopped is not None:
        stopped[:] = [loop_id for loop_id in running if loop_id]
    changed.completed_at = changed.completed_at or now
    check = GateCheck(
        name=DISPATCH_CHECK, status=GateCheckStatus.ERROR, passed=False, message=message, checked_at=now
    )
    changed.gate_result = GateResult.of([check])
    event(
        ActivityEventType.PLAN_FAILED,
        message,
        check=DISPATCH_CHECK,
        error=str(error.get("Error", "")),
        cause=str(error.get("Cause", ""))[:MAX_CAUSE_CHARS],
        execution=execution,
        stopped_loops=[loop_id for loop_id in running if loop_id] or None,
    )
    return transitions.PlanChange(changed, events)
