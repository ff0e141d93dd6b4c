"""Request bodies and responses of the plan API (seed 003), as documented in the OpenAPI document.

Bodies accept the seed's camelCase names (``packetId``) and snake_case ones (``packet_id``); the
document shows camelCase. Optional fields are left out rather than sent as ``null`` (a ``null``
is refused, naming the field). Responses are snake_case like the rest of loopwright; times are
ISO 8601 UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from loopwright.dashboard.models import one_of_required
from loopwright.models.plans import (
    DEFAULT_PLAN_CONCURRENCY,
    MAX_PLAN_CONCURRENCY,
    ActivityEvent,
    GateResult,
    Plan,
    PlanStatus,
)
from loopwright.models.types import LoopId

#: Pattern of a project id (:data:`loopwright.models.types.ProjectId`), declared on the routes.
PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Most plans one list answer holds.
MAX_PLANS_LISTED = 100


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        """Refuse an explicit ``null``: the document shows no field as nullable; leave it out."""
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None:
                    raise ValueError(f"{key}: null is not allowed; leave the field out")
        return data


class CreatePlanRequest(_Body):
    """Body of ``POST /api/projects/{projectId}/plan``: exactly one source of the plan.

    ``plan`` is a plan draft as a plan file holds it (``goal``, ``defaults``, ``tasks``,
    ``gates``); a draft that breaks a rule (a cycle, an unknown dependency, no task, more than 50
    tasks...) is answered 400 naming the field, and nothing is stored.
    """

    model_config = ConfigDict(
        json_schema_extra=lambda schema: one_of_required(
            schema, ["packetId", "loopId", "plan"], also_not_null=["model"]
        )
    )

    packet_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="a stored inspection packet"
    )
    loop_id: LoopId | None = Field(default=None, description="an ended loop to inspect, then plan")
    plan: dict[str, Any] | None = Field(
        default=None, description="a plan draft written by the caller (goal, defaults, tasks, gates)"
    )
    model: str | None = Field(
        default=None, min_length=1, max_length=256, description="the planner's model (optional)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> CreatePlanRequest:
        given = [name for name in ("packet_id", "loop_id", "plan") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of packetId, loopId, plan")
        return self


class DispatchRequest(_Body):
    """Body of ``POST /api/plans/{planId}/dispatch`` (seed: ``parallel``, default true; may be
    empty). ``parallel=false`` runs one task at a time; ``concurrency`` caps the loops running at
    once."""

    parallel: bool = True
    concurrency: int = Field(default=DEFAULT_PLAN_CONCURRENCY, ge=1, le=MAX_PLAN_CONCURRENCY)


class VerifyRequest(_Body):
    """Body of ``POST /api/plans/{planId}/verify``: empty (seed 003)."""


class PlanList(BaseModel):
    """A project's plans, newest first."""

    plans: list[Plan]


class PlanEvents(BaseModel):
    """A plan's evidence trail, oldest first."""

    events: list[ActivityEvent]


class TaskRun(BaseModel):
    """A task of a dispatched plan and its loop (``<plan_id>.<task_id>``)."""

    task_id: str
    loop_id: LoopId | None


class DispatchResult(BaseModel):
    """The answer to a dispatch: the plan's status and each task's loop."""

    plan_id: str
    status: PlanStatus
    runs: list[TaskRun]
    executed_at: datetime | None

    @classmethod
    def of(cls, plan: Plan) -> DispatchResult:
        """The answer for the dispatched ``plan``."""
        return cls(
            plan_id=plan.plan_id,
            status=plan.status,
            runs=[TaskRun(task_id=t.task_id, loop_id=t.loop_id) for t in plan.tasks],
            executed_at=plan.executed_at,
        )


class VerifyResult(BaseModel):
    """The answer to a verify: the plan VERIFYING (the gates run after the answer), or VERIFIED
    or FAILED with every gate check (an executor that verifies in the call)."""

    plan_id: str
    status: PlanStatus
    verify_run_id: str | None
    gate_result: GateResult | None
    verified_at: datetime | None

    @classmethod
    def of(cls, plan: Plan) -> VerifyResult:
        """The answer for ``plan`` (verifying or verified)."""
        return cls(
            plan_id=plan.plan_id,
            status=plan.status,
            verify_run_id=plan.verify_run_id,
            gate_result=plan.gate_result,
            verified_at=plan.verified_at,
        )
