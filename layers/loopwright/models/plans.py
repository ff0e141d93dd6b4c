"""Plans (seed 003, issue 5): Inspect -> Plan -> Dispatch -> Verify -> Record.

An :class:`InspectionPacket` describes a finished or failed loop; a planner decomposes it into a
:class:`PlanDraft`, a DAG of tasks; the stored :class:`Plan` dispatches each :class:`PlanTask`
as a loop (in parallel where dependencies allow), verifies the integrated result with
``gate:all`` (one :class:`GateCheck` per gate) and records every transition as an
:class:`ActivityEvent`. Names and status values are the seed's; fields are snake_case like the
rest of loopwright (the seed's ``runId`` of a task is its ``loop_id`` here).

Every plan belongs to one project (``project``); stores key plans, events and packets by
(project, id), so a plan of project A is never read or written through project B.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from loopwright.models.config import ExitConditionConfig, LoopConfig
from loopwright.models.enums import ExitConditionType, LoopOutcome
from loopwright.models.state import ExitConditionStatus, IterationEvent, new_id, utcnow
from loopwright.models.types import LoopId, ProjectId

#: Most tasks in one plan. Each task's :class:`TaskRunRequest` and result pass through a Step
#: Functions state's input/output, limited to 256 KiB (AWS Step Functions quotas page, "Maximum
#: input or output size for a task, state, or execution"): 50 tasks of about 4 KiB each stay
#: well under it. A plan that needs more should be split into several plans.
MAX_PLAN_TASKS = 50
#: Most bytes of a plan's JSON (tasks, defaults, gates). A plan is one DynamoDB item in AWS,
#: limited to 400 KB (DynamoDB quotas page, "Item size"); 300,000 bytes leave room for the
#: results, checks and evidence written while it runs.
MAX_PLAN_BYTES = 300_000
#: Most characters of a plan's goal and of a task's goal: the same bound as ``LoopConfig.goal``.
MAX_GOAL_CHARS = 20_000
#: Most characters of a task's description (it is shown in tables and is the default goal).
MAX_DESCRIPTION_CHARS = 4_000
#: Most gates of a plan (the same bound as a loop's exit conditions).
MAX_PLAN_GATES = 32
#: Most characters of a gate's output kept in its :class:`GateCheck` (the end holds the summary).
MAX_GATE_TAIL_CHARS = 4_000
#: Recent loop events and changed files kept in an :class:`InspectionPacket` (it goes into a
#: model's prompt and a DynamoDB item, so it is bounded).
MAX_PACKET_EVENTS = 20
MAX_PACKET_FILES = 500

#: Task loops of one plan running at the same time by default (a laptop or CI runner has 2 to 8
#: cores, and each loop runs its exit conditions concurrently as well).
DEFAULT_PLAN_CONCURRENCY = 4
#: Most task loops of one plan running at the same time (locally: threads of one process; in AWS:
#: the dispatch Map state's MaxConcurrency).
MAX_PLAN_CONCURRENCY = 32

#: Name of the check recorded when a plan cannot be generated (seed 003, "Plan Generation Failure").
PLAN_GENERATION_CHECK = "plan_generation"
#: Name of the check that every task of the plan completed (the seed's ``gate:task``).
TASKS_CHECK = "gate:tasks"
#: Name of the check that the tasks' branches merge into one tree for verification.
INTEGRATION_CHECK = "gate:integrate"

#: A plan id: ``plan_<12 hex digits>`` when generated. At most 23 characters without '.', so the
#: loop id of a task, ``<plan_id>.<task_id>``, fits :data:`~loopwright.models.types.LoopId` (72).
PlanId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,22}$"),
    Field(description="plan id: letters, digits, '_' or '-', at most 23 characters"),
]
#: A task id, unique in its plan: at most 48 characters without '.' (see :data:`PlanId`).
TaskId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"),
    Field(description="task id: letters, digits, '_' or '-', at most 48 characters"),
]


def task_loop_id(plan_id: str, task_id: str) -> str:
    """The loop id of a task: ``<plan_id>.<task_id>`` (at most 72 characters)."""
    return f"{plan_id}.{task_id}"


def verify_run_id(plan_id: str) -> str:
    """The id of a plan's verification run, ``verify_<plan_id>`` (the seed's ``taskRunId``)."""
    return f"verify_{plan_id}"


class PlanStatus(StrEnum):
    """A plan's status (seed 003 ``PlanStatus``)."""

    DRAFT = "DRAFT"  # created, not dispatched
    DISPATCHING = "DISPATCHING"  # its loops are being created
    RUNNING = "RUNNING"  # its loops run (or ran: see Plan.completed_at); partial when a task failed
    VERIFYING = "VERIFYING"  # gate:all runs
    VERIFIED = "VERIFIED"  # gate:all passed
    FAILED = "FAILED"  # gate:all failed, or the plan could not be generated
    CANCELLED = "CANCELLED"  # a user cancelled it


class TaskState(StrEnum):
    """A task's status (seed 003 ``TaskState``)."""

    CREATED = "CREATED"  # waits for its dependencies or for dispatch
    RUNNING = "RUNNING"  # its loop runs
    COMPLETED = "COMPLETED"  # its loop met its exit conditions
    ERROR = "ERROR"  # its loop could not start or ended without meeting its conditions
    SKIPPED = "SKIPPED"  # never run: a task it depends on (directly or not) ended ERROR or SKIPPED
    CANCELLED = "CANCELLED"  # never run: the plan was cancelled


#: Task states after which a task never changes again.
TERMINAL_TASK_STATES = frozenset(
    {TaskState.COMPLETED, TaskState.ERROR, TaskState.SKIPPED, TaskState.CANCELLED}
)


class GateCheckStatus(StrEnum):
    """How one gate check ended."""

    PASSED = "PASSED"  # exit code 0 / the parsed result holds
    FAILED = "FAILED"  # the tool ran and reported failures
    ERROR = "ERROR"  # the tool could not run, or its output was not understood
    TIMEOUT = "TIMEOUT"  # the tool exceeded its timeout and its process tree was killed
    SKIPPED = "SKIPPED"  # not run (an earlier check made it meaningless)


class ActivityEventType(StrEnum):
    """Types of a plan's evidence trail (seed 003 ``ActivityEventType``; its names, snake_case)."""

    PLAN_CREATED = "plan_created"
    PLAN_DISPATCHED = "plan_dispatched"
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_SKIPPED = "task_skipped"
    PLAN_COMPLETED = "plan_completed"  # every task reached a final state (partial: some did not complete)
    VERIFY_STARTED = "verify_started"
    GATE_CHECKED = "gate_checked"
    PLAN_VERIFIED = "plan_verified"
    PLAN_FAILED = "plan_failed"
    PLAN_CANCELLED = "plan_cancelled"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GateConfig(ExitConditionConfig):
    """One gate of ``gate:all``: an exit condition run once on the plan's integrated result.

    Same fields as :class:`~loopwright.models.ExitConditionConfig`; ``type`` defaults to
    CUSTOM, so ``{name = "gate:web", command = "npm run gate:web"}`` is a gate. The seed's
    ``npm run gate:tier0 | web | agent | spec`` are written that way.
    """

    type: ExitConditionType = ExitConditionType.CUSTOM


class PlanTaskDraft(_Model):
    """A task as a planner or a user writes it.

    ``loop`` holds :class:`~loopwright.models.LoopConfig` fields for the task's loop (``goal``,
    ``exit_conditions``, ``agent``, ``max_iterations`` ...); they override the plan's
    ``defaults``. ``goal`` defaults to ``description``; ``project`` and ``git_isolation`` are
    the plan's. ``priority``: among ready tasks, a lower number starts first (seed: 1).
    """

    task_id: TaskId = Field(default_factory=lambda: new_id("ptask"))
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION_CHARS)
    priority: int = Field(default=1, ge=0, le=1_000)
    depends_on: list[TaskId] = Field(default_factory=list, description="task ids this task waits for")
    loop: dict[str, Any] = Field(default_factory=dict, description="LoopConfig fields of the task's loop")

    @field_validator("depends_on")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        repeated = sorted({d for d in value if value.count(d) > 1})
        if repeated:
            raise ValueError(f"lists {repeated[0]!r} more than once")
        return value


class PlanDraft(_Model):
    """A plan before it is stored: what a planner returns and what a plan file holds.

    ``defaults`` are LoopConfig fields shared by every task's loop (an ``agent``, limits,
    ``exit_conditions``, ``git_isolation``). ``gates`` is gate:all; when empty, the exit
    conditions of the tasks' loops become the gates (``gate:<name>``). Shapes only: the DAG and
    the size limits are checked by :func:`loopwright.plans.dag.validate_draft`.
    """

    goal: str = Field(default="", max_length=MAX_GOAL_CHARS)
    tasks: list[PlanTaskDraft] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(default_factory=dict)
    gates: list[GateConfig] = Field(default_factory=list, max_length=MAX_PLAN_GATES)


class PlanTask(PlanTaskDraft):
    """A stored task with its progress (seed 003 ``PlanTask``). Times are UTC."""

    status: TaskState = TaskState.CREATED
    loop_id: LoopId | None = Field(default=None, description="the task's loop (seed runId), set at dispatch")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: LoopOutcome | None = None
    reason: str | None = Field(default=None, description="why the task ended ERROR or SKIPPED")
    iterations: int = Field(default=0, ge=0)
    tokens_used: int = Field(default=0, ge=0)
    branch: str | None = None
    head_commit: str | None = Field(default=None, description="git commit of the loop's result")


class GateCheck(_Model):
    """One check of gate:all, or the ``plan_generation`` check of a plan that could not be made.

    ``passed`` is the seed's field and always equals ``status == PASSED``. ``duration_seconds``
    is wall clock (the seed's ``duration`` is milliseconds). ``output_sha256`` is the SHA-256 of
    the tool's kept stdout, a NUL byte, and its kept stderr (UTF-8); ``output_tail`` the last
    :data:`MAX_GATE_TAIL_CHARS` characters of stdout then stderr.
    """

    name: str = Field(min_length=1, max_length=128)
    status: GateCheckStatus
    passed: bool
    message: str = ""
    command: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    duration_seconds: float = Field(default=0.0, ge=0)
    output_sha256: str | None = None
    output_tail: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    checked_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _passed_from_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "passed" not in data and "status" in data:
            return {**data, "passed": GateCheckStatus(data["status"]) is GateCheckStatus.PASSED}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> GateCheck:
        if self.passed != (self.status is GateCheckStatus.PASSED):
            raise ValueError(f"passed={self.passed} contradicts status {self.status.value}")
        return self


class GateResult(_Model):
    """The result of gate:all (seed 003 ``gateResult``): passed when every check passed."""

    passed: bool
    checks: list[GateCheck]

    @classmethod
    def of(cls, checks: list[GateCheck]) -> GateResult:
        """The result of ``checks`` (no check: not passed)."""
        return cls(passed=bool(checks) and all(c.passed for c in checks), checks=checks)


class Plan(_Model):
    """A stored plan (seed 003 ``Plan``). Times are UTC; ``version`` increases on every stored
    write (stores use it for conditional writes). The seed's ``runId`` is ``source_loop_id``,
    ``packetId`` is ``packet_id``, ``verifyRunId`` is ``verify_run_id``."""

    plan_id: PlanId = Field(default_factory=lambda: new_id("plan"))
    project: ProjectId
    goal: str = Field(default="", max_length=MAX_GOAL_CHARS)
    source_loop_id: LoopId | None = None
    packet_id: str | None = None
    status: PlanStatus = PlanStatus.DRAFT
    tasks: list[PlanTask] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(default_factory=dict)
    gates: list[GateConfig] = Field(default_factory=list)
    verify_run_id: str | None = None
    gate_result: GateResult | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    executed_at: datetime | None = Field(default=None, description="when dispatch was triggered")
    completed_at: datetime | None = Field(default=None, description="when every task reached a final state")
    verified_at: datetime | None = Field(default=None, description="when gate:all finished")
    version: int = Field(default=0, ge=0)

    def task(self, task_id: str) -> PlanTask:
        """The task ``task_id``. Raises KeyError when the plan has none."""
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise KeyError(task_id)

    @property
    def git_isolation(self) -> bool:
        """Whether the tasks' loops work in git worktrees (``defaults.git_isolation``, default true)."""
        return bool(self.defaults.get("git_isolation", True))

    @property
    def is_partial(self) -> bool:
        """True when some task ended without completing (the seed's "RUNNING (partial)")."""
        return any(t.status in (TaskState.ERROR, TaskState.SKIPPED) for t in self.tasks)


class ActivityEvent(_Model):
    """One entry of a plan's evidence trail (seed 003 ``ActivityEvent``).

    ``evidence`` holds what proves the transition: loop ids and git commits of the tasks, gate
    output digests, exit codes, durations (seconds).
    """

    event_id: str = Field(default_factory=lambda: new_id("act"))
    project: ProjectId
    plan_id: PlanId
    type: ActivityEventType
    timestamp: datetime = Field(default_factory=utcnow)
    task_id: TaskId | None = None
    loop_id: LoopId | None = None
    message: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)


class InspectionPacket(_Model):
    """What a planner sees of a finished or failed loop (seed 003 "Inspection Packet").

    ``failing_conditions`` are the loop's last evaluation's conditions that do not hold, without
    their raw stdout/stderr (their parsed ``failures`` and ``summary`` stay); ``recent_events``
    the last :data:`MAX_PACKET_EVENTS` events; ``changed_files`` the paths the loop's branch
    changed since its base commit (at most :data:`MAX_PACKET_FILES`).
    """

    packet_id: str = Field(default_factory=lambda: new_id("pkt"))
    project: ProjectId
    loop_id: LoopId
    workspace: str = ""
    goal: str
    loop_config: LoopConfig
    outcome: LoopOutcome | None = None
    outcome_reason: str | None = None
    iterations: int = Field(default=0, ge=0)
    failing_conditions: list[ExitConditionStatus] = Field(default_factory=list)
    recent_events: list[IterationEvent] = Field(default_factory=list, max_length=MAX_PACKET_EVENTS)
    changed_files: list[str] = Field(default_factory=list, max_length=MAX_PACKET_FILES)
    branch: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class TaskRunRequest(_Model):
    """Everything needed to run one task's loop: the item of the dispatch Map state in AWS, the
    argument of :meth:`loopwright.plans.ports.TaskRunner.run_task` locally.

    ``dependency_heads`` are the head commits of the loops of the tasks this one depends on, in
    ``depends_on`` order: the task's loop starts from their merge (from the workspace's HEAD
    when empty).
    """

    project: ProjectId
    plan_id: PlanId
    task_id: TaskId
    loop_id: LoopId
    config: LoopConfig
    dependency_heads: list[str] = Field(default_factory=list)
