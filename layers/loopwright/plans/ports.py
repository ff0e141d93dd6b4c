"""Ports of plans: where plans live, who writes them, who runs their tasks, where gates run.

Local adapters: :class:`~loopwright.adapters.local.sqlite_plan_store.SqlitePlanStore`,
:class:`~loopwright.adapters.local.file_planner.FilePlanner`,
:class:`~loopwright.plans.decompose.ConditionPlanner`,
:class:`~loopwright.engine.plan_dispatch.LocalTaskRunner` and
:class:`~loopwright.adapters.local.plan_workspace.GitPlanWorkspace`. AWS adapters (a DynamoDB
plan store, a Bedrock Converse planner, a Step Functions Map state over
:class:`~loopwright.models.plans.TaskRunRequest` items) implement the same contracts.

**Project isolation** (seed 003 "State Directory Isolation"): every :class:`PlanStore` call takes
the project id, and a store keys everything by (project, id). A plan, its events or a packet of
project A is never returned, changed or appended to through project B: such a call behaves as if
the id did not exist (:class:`~loopwright.plans.errors.PlanNotFoundError`), and an object whose
own ``project`` differs from the call's is refused with
:class:`~loopwright.plans.errors.PlanValidationError` before anything is written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from loopwright.models import LoopResult
from loopwright.models.plans import (
    ActivityEvent,
    ActivityEventType,
    InspectionPacket,
    Plan,
    PlanDraft,
    TaskRunRequest,
)
from loopwright.plans.errors import PlanValidationError


def check_project(project: str, owner: str, what: str) -> None:
    """Raise :class:`PlanValidationError` when ``what`` (of project ``owner``) is given for
    another ``project``: the guard every store method applies before writing."""
    if owner != project:
        raise PlanValidationError(
            "project", f"{what} belongs to project {owner!r}, not {project!r}; plans never cross projects"
        )


class PlanStore(ABC):
    """Durable store of plans, their activity events and inspection packets, per project.

    Errors: :class:`~loopwright.plans.errors.PlanNotFoundError` for an id unknown in the project;
    :class:`~loopwright.plans.errors.PlanConflictError` when a conditional write loses (the stored
    ``version`` is not the expected one) or a plan id exists; ``PlanValidationError`` for an
    object of another project (see the module docstring).
    """

    @abstractmethod
    def create_plan(self, project: str, plan: Plan, events: Sequence[ActivityEvent] = ()) -> Plan:
        """Store a new plan of ``project`` with ``events`` (atomically); returns it with version 1."""

    @abstractmethod
    def get_plan(self, project: str, plan_id: str) -> Plan:
        """The stored plan ``plan_id`` of ``project``."""

    @abstractmethod
    def save_plan(self, project: str, plan: Plan, events: Sequence[ActivityEvent] = ()) -> Plan:
        """Store ``plan`` if its stored version equals ``plan.version``, with ``events``
        atomically (all or nothing); returns the plan with version + 1."""

    @abstractmethod
    def list_plans(self, project: str, limit: int = 100) -> list[Plan]:
        """Up to ``limit`` plans of ``project``, newest first."""

    @abstractmethod
    def append_events(self, project: str, events: Sequence[ActivityEvent]) -> None:
        """Store events of plans of ``project`` atomically (all or none)."""

    @abstractmethod
    def list_events(
        self,
        project: str,
        plan_id: str,
        *,
        types: Sequence[ActivityEventType] | None = None,
        limit: int | None = None,
    ) -> list[ActivityEvent]:
        """Events of plan ``plan_id`` of ``project`` in order of recording (the oldest ``limit``),
        optionally of some types; an unknown plan has none."""

    @abstractmethod
    def save_packet(self, project: str, packet: InspectionPacket) -> InspectionPacket:
        """Store an inspection packet of ``project`` (a packet id is written once)."""

    @abstractmethod
    def get_packet(self, project: str, packet_id: str) -> InspectionPacket:
        """The stored packet ``packet_id`` of ``project``."""


class Planner(ABC):
    """Decomposes an inspection packet into a plan draft (seed 003 "Plan").

    The draft need not be a valid DAG: the core validates it and records an invalid one as a
    FAILED plan with a ``plan_generation`` check.
    """

    @abstractmethod
    def plan(self, packet: InspectionPacket, *, model: str | None = None) -> PlanDraft:
        """A draft for ``packet``; ``model`` names the model to use (None: the planner's default).

        Raises :class:`~loopwright.plans.errors.PlanGenerationError` when no draft can be made
        (its message becomes the ``plan_generation`` check's message).
        """


class TaskRunner(ABC):
    """Runs one task's loop to its end (locally a thread of the dispatcher; in AWS one iteration
    of the dispatch Map state, whose items are :class:`TaskRunRequest` JSON)."""

    @abstractmethod
    def run_task(self, request: TaskRunRequest) -> LoopResult:
        """Run the loop ``request.loop_id`` with ``request.config``, started from the merge of
        ``request.dependency_heads``; returns its result (``success`` false when it ended without
        meeting its conditions). Raises :class:`~loopwright.exceptions.LoopFrameworkError` when
        the loop cannot be started (the task then ends ERROR)."""

    def request_stop(self, loop_id: str, reason: str) -> None:  # noqa: B027 - optional hook
        """Ask a running task's loop to stop after its current step (default: not supported)."""


class PlanWorkspace(ABC):
    """Where a plan's gates run: the merge of the results of its tasks' loops."""

    @abstractmethod
    def integrate(self, run_id: str, heads: Sequence[str], *, isolated: bool = True) -> Path:
        """A folder holding the merge of the commits ``heads`` (the workspace's HEAD when empty),
        named after ``run_id`` (``verify_<plan_id>``); the workspace itself when the tasks' loops
        did not work in isolation (``git_isolation = false``: their changes are already there).

        Raises :class:`~loopwright.plans.errors.MergeConflictError` when they conflict.
        """

    @abstractmethod
    def changed_files(self, base: str | None, head: str | None) -> list[str]:
        """Paths changed between commits ``base`` and ``head`` (empty when either is None)."""


class PlanExecutor(ABC):
    """The operations the plan API needs beyond the store (locally
    :class:`~loopwright.engine.plan_dispatch.LocalPlans`; in AWS the Step Functions dispatch and a
    verification Lambda). Errors as :class:`PlanStore`, plus
    :class:`~loopwright.plans.errors.PlanConflictError` for a transition the status forbids."""

    @abstractmethod
    def inspect_loop(self, project: str, loop_id: str) -> InspectionPacket:
        """Build and store the inspection packet of the ended loop ``loop_id`` of ``project``.
        Raises :class:`~loopwright.exceptions.LoopNotFoundError` for a loop not in ``project``."""

    @abstractmethod
    def dispatch(self, project: str, plan_id: str, *, concurrency: int) -> Plan:
        """Start the DRAFT plan's tasks, at most ``concurrency`` loops at a time; returns the plan
        once RUNNING (it may return before the tasks end)."""

    @abstractmethod
    def verify(self, project: str, plan_id: str) -> Plan:
        """Start gate:all on the plan whose tasks all ended; returns it VERIFYING when the gates
        run after the call (the API's executors: a thread, a state machine), or VERIFIED or FAILED
        when they ran in it. Raises :class:`~loopwright.plans.errors.PlanConflictError` (nothing
        started) when the plan cannot be verified."""
