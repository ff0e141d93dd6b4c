"""A plan's state transitions, one pure function each (seed 003).

Each function takes a :class:`~loopwright.models.plans.Plan` and returns a
:class:`PlanChange`: a changed copy and the :class:`~loopwright.models.plans.ActivityEvent` of
the transition, with its evidence. The argument is never modified; nothing is stored (the caller
saves the plan with its events in one write). A transition the plan's status does not allow
raises :class:`~loopwright.plans.errors.PlanConflictError`.

::

    new_plan ----------> DRAFT --begin_dispatch--> DISPATCHING --mark_running--> RUNNING
      '-> FAILED (plan_generation)                   start_task / finish_task per task (RUNNING)
    RUNNING (all tasks final) --begin_verify--> VERIFYING --finish_verify--> VERIFIED | FAILED
    DRAFT | RUNNING (no task running) --cancel_plan--> CANCELLED
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from loopwright.models import LoopResult, new_id, utcnow
from loopwright.models.plans import (
    PLAN_GENERATION_CHECK,
    TERMINAL_TASK_STATES,
    ActivityEvent,
    ActivityEventType,
    GateCheck,
    GateCheckStatus,
    GateResult,
    Plan,
    PlanDraft,
    PlanStatus,
    PlanTask,
    TaskRunRequest,
    TaskState,
    task_loop_id,
    verify_run_id,
)
from loopwright.plans.dag import compute_waves, dependents
from loopwright.plans.errors import PlanConflictError, PlanValidationError
from loopwright.plans.validation import default_gates, task_loop_config, validate_draft

_EV = ActivityEventType


class PlanChange(NamedTuple):
    """A transition's result: the changed plan and the events to store with it."""

    plan: Plan
    events: list[ActivityEvent]


def _event(
    plan: Plan,
    event_type: ActivityEventType,
    message: str,
    now: datetime,
    *,
    task: PlanTask | None = None,
    **evidence: Any,
) -> ActivityEvent:
    return ActivityEvent(
        project=plan.project,
        plan_id=plan.plan_id,
        type=event_type,
        timestamp=now,
        task_id=task.task_id if task else None,
        loop_id=task.loop_id if task else None,
        message=message,
        evidence={k: v for k, v in evidence.items() if v is not None},
    )


def _copy(plan: Plan, now: datetime) -> Plan:
    changed = plan.model_copy(deep=True)
    changed.updated_at = now
    return changed


def _require(plan: Plan, allowed: set[PlanStatus], action: str) -> None:
    if plan.status not in allowed:
        names = " or ".join(sorted(s.value for s in allowed))
        raise PlanConflictError(
            f"plan {plan.plan_id} is {plan.status.value}; only a {names} plan can be {action}"
        )


# ----------------------------------------------------------------------------- creation
def new_plan(
    draft: PlanDraft,
    *,
    project: str,
    plan_id: str | None = None,
    source_loop_id: str | None = None,
    packet_id: str | None = None,
    now: datetime | None = None,
) -> PlanChange:
    """A plan from ``draft``: DRAFT when it validates (:func:`validate_draft`), else FAILED with a
    failed ``plan_generation`` check naming the problem (seed 003 "Plan Generation Failure");
    such a plan can never be dispatched. Events: ``plan_created`` (and ``plan_failed``)."""
    now = now or utcnow()
    ids: dict[str, Any] = {
        "plan_id": plan_id or new_id("plan"),
        "source_loop_id": source_loop_id,
        "packet_id": packet_id,
    }
    try:
        validate_draft(draft, project)
        gates = default_gates(project, draft)
    except PlanValidationError as exc:
        return failed_plan(project, str(exc), draft=draft, now=now, **ids)
    plan = Plan(
        project=project,
        goal=draft.goal,
        tasks=[PlanTask.model_validate(task.model_dump()) for task in draft.tasks],
        defaults=dict(draft.defaults),
        gates=gates,
        created_at=now,
        updated_at=now,
        **ids,
    )
    waves = compute_waves(plan.tasks)
    event = _event(
        plan,
        _EV.PLAN_CREATED,
        f"{len(plan.tasks)} tasks in {len(waves)} waves, {len(gates)} gates",
        now,
        tasks=len(plan.tasks),
        waves=waves,
        gates=[g.key for g in gates],
        source_loop_id=source_loop_id,
        packet_id=packet_id,
    )
    return PlanChange(plan, [event])


def failed_plan(
    project: str,
    message: str,
    *,
    draft: PlanDraft | None = None,
    plan_id: str | None = None,
    source_loop_id: str | None = None,
    packet_id: str | None = None,
    now: datetime | None = None,
) -> PlanChange:
    """A FAILED plan whose ``gate_result`` holds one failed ``plan_generation`` check with
    ``message``; the draft's tasks, if any, are kept as evidence. Events: ``plan_created``,
    ``plan_failed``."""
    now = now or utcnow()
    check = GateCheck(
        name=PLAN_GENERATION_CHECK,
        status=GateCheckStatus.FAILED,
        passed=False,
        message=message,
        checked_at=now,
    )
    tasks = [PlanTask.model_validate(t.model_dump()) for t in draft.tasks] if draft else []
    plan = Plan(
        project=project,
        goal=draft.goal if draft else "",
        source_loop_id=source_loop_id,
        packet_id=packet_id,
        status=PlanStatus.FAILED,
        tasks=tasks,
        defaults=dict(draft.defaults) if draft else {},
        gates=list(draft.gates) if draft else [],
        gate_result=GateResult.of([check]),
        created_at=now,
        updated_at=now,
        plan_id=plan_id or new_id("plan"),
    )
    return PlanChange(
        plan,
        [
            _event(
                plan,
                _EV.PLAN_CREATED,
                f"{len(tasks)} tasks",
                now,
                source_loop_id=source_loop_id,
                packet_id=packet_id,
            ),
            _event(
                plan, _EV.PLAN_FAILED, f"{PLAN_GENERATION_CHECK}: {message}", now, check=PLAN_GENERATION_CHECK
            ),
        ],
    )


# ----------------------------------------------------------------------------- dispatch
def begin_dispatch(plan: Plan, *, now: datetime | None = None) -> PlanChange:
    """DRAFT -> DISPATCHING: every task gets its loop id (``<plan_id>.<task_id>``); ``executed_at``
    is set. Event ``plan_dispatched`` with the runs (task id, loop id) and the waves."""
    _require(plan, {PlanStatus.DRAFT}, "dispatched")
    now = now or utcnow()
    changed = _copy(plan, now)
    changed.status = PlanStatus.DISPATCHING
    changed.executed_at = now
    for task in changed.tasks:
        task.loop_id = task_loop_id(plan.plan_id, task.task_id)
    runs = [{"task_id": t.task_id, "loop_id": t.loop_id} for t in changed.tasks]
    event = _event(
        changed,
        _EV.PLAN_DISPATCHED,
        f"{len(runs)} loops",
        now,
        runs=runs,
        waves=compute_waves(changed.tasks),
    )
    return PlanChange(changed, [event])


def mark_running(plan: Plan, *, now: datetime | None = None) -> PlanChange:
    """DISPATCHING -> RUNNING, once the loops can start (no event: ``plan_dispatched`` tells)."""
    _require(plan, {PlanStatus.DISPATCHING}, "marked running")
    changed = _copy(plan, now or utcnow())
    changed.status = PlanStatus.RUNNING
    return PlanChange(changed, [])


def task_run_request(plan: Plan, task_id: str) -> TaskRunRequest:
    """What the task's loop needs: its config (the plan's defaults and the task's ``loop``) and
    the head commits of its dependencies' loops. Raises KeyError for an unknown task."""
    index = next(i for i, t in enumerate(plan.tasks) if t.task_id == task_id)
    task = plan.tasks[index]
    heads = [h for h in (plan.task(d).head_commit for d in task.depends_on) if h]
    return TaskRunRequest(
        project=plan.project,
        plan_id=plan.plan_id,
        task_id=task.task_id,
        loop_id=task.loop_id or task_loop_id(plan.plan_id, task.task_id),
        config=task_loop_config(plan.project, plan.defaults, task, index=index),
        dependency_heads=heads,
    )


def start_task(plan: Plan, task_id: str, *, now: datetime | None = None) -> PlanChange:
    """A CREATED task whose dependencies COMPLETED -> RUNNING. Event ``task_started`` with its
    loop id and its dependencies' commits."""
    _require(plan, {PlanStatus.RUNNING}, "running tasks")
    now = now or utcnow()
    changed = _copy(plan, now)
    task = changed.task(task_id)
    if task.status is not TaskState.CREATED:
        raise PlanConflictError(f"task {task_id} of plan {plan.plan_id} is {task.status.value}, not CREATED")
    waiting = [d for d in task.depends_on if changed.task(d).status is not TaskState.COMPLETED]
    if waiting:
        raise PlanConflictError(f"task {task_id} waits for {', '.join(waiting)}")
    task.status = TaskState.RUNNING
    task.started_at = now
    event = _event(
        changed,
        _EV.TASK_STARTED,
        task.description[:200],
        now,
        task=task,
        depends_on=list(task.depends_on) or None,
        dependency_commits=[changed.task(d).head_commit for d in task.depends_on] or None,
    )
    return PlanChange(changed, [event])


def finish_task(
    plan: Plan,
    task_id: str,
    *,
    result: LoopResult | None = None,
    error: str | None = None,
    now: datetime | None = None,
) -> PlanChange:
    """A task's loop ended (``result``) or could not run (``error``).

    COMPLETED when the loop met its conditions (event ``task_completed`` with its commit);
    otherwise ERROR (``task_failed``) and every task depending on it, directly or not, SKIPPED
    (``task_skipped``); the other tasks go on. When every task is final, ``completed_at`` is set
    and ``plan_completed`` recorded; the plan stays RUNNING (partial when some task did not
    complete, seed 003 "Dispatch Failure") until it is verified.
    """
    _require(plan, {PlanStatus.RUNNING}, "running tasks")
    now = now or utcnow()
    changed = _copy(plan, now)
    task = changed.task(task_id)
    if task.status not in (TaskState.CREATED, TaskState.RUNNING):
        raise PlanConflictError(f"task {task_id} of plan {plan.plan_id} already ended {task.status.value}")
    task.ended_at = now
    events: list[ActivityEvent] = []
    if result is not None:
        task.outcome = result.outcome
        task.iterations = result.iterations
        task.tokens_used = result.total_tokens
        task.branch = result.branch
        task.head_commit = result.head_commit
    evidence: dict[str, Any] = {
        "outcome": task.outcome.value if task.outcome else None,
        "iterations": task.iterations if result else None,
        "tokens_used": task.tokens_used if result else None,
        "duration_seconds": result.duration_seconds if result else None,
        "branch": task.branch,
        "commit": task.head_commit,
    }
    if result is not None and result.success and error is None:
        task.status = TaskState.COMPLETED
        events.append(_event(changed, _EV.TASK_COMPLETED, "conditions met", now, task=task, **evidence))
    else:
        task.status = TaskState.ERROR
        if error is not None:
            task.reason = error
        elif result is not None and result.outcome is None:
            task.reason = f"the loop paused ({result.phase.value}): {result.stop_reason or 'no reason given'}"
        elif result is not None:
            task.reason = (
                f"the loop ended {result.outcome.value if result.outcome else ''}: {result.stop_reason}"
            )
        else:
            task.reason = "the loop did not run"
        events.append(_event(changed, _EV.TASK_FAILED, task.reason, now, task=task, **evidence))
        for dependent_id in dependents(changed.tasks, task_id):
            dependent = changed.task(dependent_id)
            if dependent.status is TaskState.CREATED:
                dependent.status = TaskState.SKIPPED
                dependent.ended_at = now
                dependent.reason = f"not run: task {task_id}, which it depends on, ended ERROR"
                events.append(_event(changed, _EV.TASK_SKIPPED, dependent.reason, now, task=dependent))
    if all(t.status in TERMINAL_TASK_STATES for t in changed.tasks):
        changed.completed_at = now
        counts = {state.value.lower(): sum(t.status is state for t in changed.tasks) for state in TaskState}
        events.append(
            _event(
                changed,
                _EV.PLAN_COMPLETED,
                ("partial: " if changed.is_partial else "")
                + ", ".join(f"{n} {name}" for name, n in counts.items() if n),
                now,
                partial=changed.is_partial,
                counts={k: v for k, v in counts.items() if v},
                commits={t.task_id: t.head_commit for t in changed.tasks if t.head_commit},
            )
        )
    return PlanChange(changed, events)


# ----------------------------------------------------------------------------- verify
def begin_verify(plan: Plan, *, now: datetime | None = None) -> PlanChange:
    """RUNNING with every task final -> VERIFYING; ``verify_run_id`` is ``verify_<plan_id>``.
    Event ``verify_started`` with the gates' names. A FAILED plan is never verified again
    (seed 003: no automatic retry)."""
    _require(plan, {PlanStatus.RUNNING}, "verified")
    if plan.completed_at is None:
        running = [t.task_id for t in plan.tasks if t.status not in TERMINAL_TASK_STATES]
        raise PlanConflictError(
            f"plan {plan.plan_id} still runs tasks {', '.join(running)}; verify it when they end"
        )
    now = now or utcnow()
    changed = _copy(plan, now)
    changed.status = PlanStatus.VERIFYING
    changed.verify_run_id = verify_run_id(plan.plan_id)
    event = _event(
        changed,
        _EV.VERIFY_STARTED,
        f"gate:all: {len(plan.gates)} gates",
        now,
        verify_run_id=changed.verify_run_id,
        gates=[g.key for g in plan.gates],
    )
    return PlanChange(changed, [event])


def finish_verify(plan: Plan, checks: list[GateCheck], *, now: datetime | None = None) -> PlanChange:
    """VERIFYING -> VERIFIED when every check passed, else FAILED (no automatic retry).

    ``gate_result`` holds all ``checks``; ``verified_at`` is set. Events: one ``gate_checked``
    per check (status, exit code, duration in seconds, output SHA-256), then ``plan_verified``
    or ``plan_failed`` naming the failed checks.
    """
    _require(plan, {PlanStatus.VERIFYING}, "given a gate result")
    now = now or utcnow()
    changed = _copy(plan, now)
    changed.gate_result = GateResult.of(checks)
    changed.verified_at = now
    changed.status = PlanStatus.VERIFIED if changed.gate_result.passed else PlanStatus.FAILED
    events = [
        _event(
            changed,
            _EV.GATE_CHECKED,
            f"{check.name}: {check.status.value}" + (f": {check.message[:200]}" if check.message else ""),
            now,
            check=check.name,
            status=check.status.value,
            exit_code=check.exit_code,
            duration_seconds=check.duration_seconds,
            output_sha256=check.output_sha256,
            command=check.command or None,
        )
        for check in checks
    ]
    failed = [c.name for c in checks if not c.passed]
    if changed.status is PlanStatus.VERIFIED:
        events.append(_event(changed, _EV.PLAN_VERIFIED, f"gate:all passed ({len(checks)} checks)", now))
    else:
        message = f"gate:all failed: {', '.join(failed)}" if failed else "gate:all ran no check"
        events.append(_event(changed, _EV.PLAN_FAILED, message, now, failed_checks=failed))
    return PlanChange(changed, events)


# ----------------------------------------------------------------------------- cancel
def cancel_plan(plan: Plan, reason: str, *, now: datetime | None = None) -> PlanChange:
    """DRAFT, or RUNNING with no task running -> CANCELLED; tasks not started become CANCELLED.
    Event ``plan_cancelled`` with ``reason``."""
    _require(plan, {PlanStatus.DRAFT, PlanStatus.RUNNING}, "cancelled")
    running = [t.task_id for t in plan.tasks if t.status is TaskState.RUNNING]
    if running:
        raise PlanConflictError(
            f"plan {plan.plan_id} runs tasks {', '.join(running)}; stop their loops first"
        )
    now = now or utcnow()
    changed = _copy(plan, now)
    changed.status = PlanStatus.CANCELLED
    for task in changed.tasks:
        if task.status is TaskState.CREATED:
            task.status = TaskState.CANCELLED
            task.ended_at = now
    return PlanChange(changed, [_event(changed, _EV.PLAN_CANCELLED, reason, now)])
