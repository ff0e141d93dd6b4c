"""The plan operations over the ports: inspect, create, generate, verify (dispatch is the
engine's: :mod:`loopwright.engine.plan_dispatch` locally, a Step Functions Map state in AWS).

Each function loads what it needs from the store, applies one or more transitions of
:mod:`loopwright.plans.transitions` and saves the plan with the transition's events in one
write, so the evidence trail never misses a stored change.
"""

from __future__ import annotations

from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models.plans import InspectionPacket, Plan, PlanDraft, PlanStatus
from loopwright.plans.dag import sink_tasks
from loopwright.plans.errors import MergeConflictError, PlanConflictError, PlanGenerationError
from loopwright.plans.inspect import build_packet
from loopwright.plans.ports import Planner, PlanStore, PlanWorkspace
from loopwright.plans.transitions import begin_verify, failed_plan, finish_verify, new_plan
from loopwright.plans.validation import validate_draft
from loopwright.plans.verify import (
    integration_check,
    interrupted_check,
    run_gates,
    skipped_check,
    tasks_check,
)
from loopwright.ports import LoopStore, Sandbox

#: Events of the inspected loop read for its packet (the packet keeps the last 20).
_EVENTS_READ = 20


def inspect_loop(
    loops: LoopStore, plans: PlanStore, workspace: PlanWorkspace, project: str, loop_id: str
) -> InspectionPacket:
    """Build and store the inspection packet of the ended loop ``loop_id`` of ``project``.

    Raises :class:`LoopNotFoundError` when there is no such loop in ``project`` (a loop of
    another project is not found either), :class:`~loopwright.plans.errors.PlanValidationError`
    when it has not ended.
    """
    state = loops.get_state(loop_id)
    if state.project != project:
        raise LoopNotFoundError(f"no loop {loop_id!r} in project {project!r}")
    events = loops.list_events(loop_id, limit=_EVENTS_READ, newest_first=True)
    events.reverse()
    packet = build_packet(state, events, workspace.changed_files(state.base_commit, state.head_commit))
    return plans.save_packet(project, packet)


def create_plan(
    plans: PlanStore,
    project: str,
    draft: PlanDraft,
    *,
    source_loop_id: str | None = None,
    packet_id: str | None = None,
) -> Plan:
    """Store a DRAFT plan from a draft a user wrote (a plan file, a request body).

    The draft is input at the edge: an invalid one raises
    :class:`~loopwright.plans.errors.PlanValidationError` naming the field, and nothing is stored.
    """
    validate_draft(draft, project)
    change = new_plan(draft, project=project, source_loop_id=source_loop_id, packet_id=packet_id)
    return plans.create_plan(project, change.plan, change.events)


def generate_plan(
    plans: PlanStore, planner: Planner, packet: InspectionPacket, *, model: str | None = None
) -> Plan:
    """Ask ``planner`` for a plan of ``packet`` and store it: DRAFT when its draft is valid,
    otherwise FAILED with a ``plan_generation`` check saying why (the planner failed, or its draft
    has a cycle, an unknown dependency, no task, too many tasks ...; seed 003)."""
    try:
        draft = planner.plan(packet, model=model)
    except PlanGenerationError as exc:
        change = failed_plan(
            packet.project, str(exc), source_loop_id=packet.loop_id, packet_id=packet.packet_id
        )
    else:
        change = new_plan(
            draft, project=packet.project, source_loop_id=packet.loop_id, packet_id=packet.packet_id
        )
    return plans.create_plan(packet.project, change.plan, change.events)


def verify_plan(
    plans: PlanStore, project: str, plan_id: str, sandbox: Sandbox, workspace: PlanWorkspace
) -> Plan:
    """gate:all: VERIFYING, then VERIFIED or FAILED with every check (seed 003 "Verify"):
    :func:`start_verify` then :func:`run_verify`, in the calling thread (the CLI's ``plan
    verify``). Raises :class:`~loopwright.plans.errors.PlanConflictError` when the plan is not
    RUNNING with every task ended."""
    plan = start_verify(plans, project, plan_id)
    return run_verify(plans, plan, sandbox, workspace)


def start_verify(plans: PlanStore, project: str, plan_id: str) -> Plan:
    """RUNNING with every task ended -> VERIFYING (event ``verify_started``), stored; what an
    asynchronous verification does before it answers (the gates run later: :func:`run_verify`).
    Raises :class:`~loopwright.plans.errors.PlanConflictError` for any other plan."""
    change = begin_verify(plans.get_plan(project, plan_id))
    return plans.save_plan(project, change.plan, change.events)


def run_verify(plans: PlanStore, plan: Plan, sandbox: Sandbox, workspace: PlanWorkspace) -> Plan:
    """Run gate:all on the VERIFYING ``plan`` and store it VERIFIED or FAILED with every check.

    The gates run on the merge of the completed tasks' results (see :class:`PlanWorkspace`);
    when those conflict, ``gate:integrate`` fails and the gates are recorded as SKIPPED.
    Raises :class:`~loopwright.plans.errors.PlanConflictError` when the plan is not VERIFYING.
    Interrupted (Ctrl-C), the plan is recorded FAILED before re-raising.
    """
    project = plan.project
    if plan.verify_run_id is None or plan.status is not PlanStatus.VERIFYING:
        raise PlanConflictError(
            f"plan {plan.plan_id} is {plan.status.value}; only a VERIFYING plan runs gates"
        )
    checks = [tasks_check(plan)]
    try:
        heads = [t.head_commit for t in sink_tasks(plan) if t.head_commit]
        try:
            folder = workspace.integrate(plan.verify_run_id, heads, isolated=plan.git_isolation)
        except LoopFrameworkError as exc:
            paths = exc.paths if isinstance(exc, MergeConflictError) else []
            checks.append(integration_check(str(exc), paths))
            checks.extend(
                skipped_check(g, "not run: the tasks' results could not be merged") for g in plan.gates
            )
        else:
            checks.extend(run_gates(plan.gates, sandbox, folder))
    except KeyboardInterrupt:
        checks.append(interrupted_check())
        change = finish_verify(plan, checks)
        plans.save_plan(project, change.plan, change.events)
        raise
    change = finish_verify(plan, checks)
    return plans.save_plan(project, change.plan, change.events)
