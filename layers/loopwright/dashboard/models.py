"""Request bodies and responses of the dashboard API (seed 001 T102 ``LoopProgress``).

Units everywhere: iterations (count), tokens, US dollars (``*_usd``), seconds; times are ISO
8601 UTC. Every error is
``{"error": {"code", "message", "field"?, "policy_ids"?}}`` (:class:`ErrorResponse`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from loopwright.dashboard.ports import LoopSummary, MetricsResult, Page
from loopwright.models import (
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEvent,
    LoopOutcome,
    LoopPhase,
)
from loopwright.models.config import MAX_COST_BUDGET_USD
from loopwright.models.controls import CHECKPOINT_ID_PATTERN
from loopwright.models.types import MAX_TOKENS, LoopId

#: Every error code of the dashboard's and the plans' routes, the local server's refusals and the
#: dashboard Lambda's (one lower-case vocabulary; ``unavailable`` is the page's own, for a server
#: it cannot reach).
ErrorCode = Literal[
    "bad_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "internal",
    "unavailable",
]


def one_of_required(
    schema: dict[str, Any], names: list[str], *, keyword: str = "oneOf", also_not_null: Sequence[str] = ()
) -> None:
    """Document in ``schema`` (a model's JSON schema, changed in place) that one of the fields
    ``names`` is required (``oneOf``: exactly one; ``anyOf``: at least one), and that those
    fields, optional in Python (``X | None = None``), are never ``null`` on the wire: their
    ``{"type": "null"}`` alternative and ``"default": null`` are dropped (the model refuses a
    null), as are those of ``also_not_null``."""
    schema[keyword] = [{"required": [name]} for name in names]
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    for name in [*names, *also_not_null]:
        field_schema = properties[name]
        variants = [v for v in field_schema.pop("anyOf", []) if v != {"type": "null"}]
        if len(variants) == 1:
            field_schema.update(variants[0])
        elif variants:
            field_schema["anyOf"] = variants
        if field_schema.get("default", ...) is None:
            del field_schema["default"]


class ErrorDetail(BaseModel):
    """What went wrong: ``field`` names the input at fault (query parameter, body field or
    header); ``policy_ids`` the Cedar policies that decided a 403 (empty: no policy permits)."""

    code: ErrorCode
    message: str
    field: str | None = None
    policy_ids: list[str] | None = None


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


class LoopPage(Page[LoopSummary]):
    """A page of loops, most recently created first."""


class EventPage(Page[IterationEvent]):
    """A page of a loop's events, newest first."""


class ConditionProgress(BaseModel):
    """The latest result of one exit condition (outputs left out: see the events and checkpoints)."""

    name: str
    type: ExitConditionType
    required: bool
    status: ExitConditionStatusValue
    iteration: int = Field(description="the iteration it was evaluated at (0: not yet)")
    summary: str = ""
    failures: int = Field(default=0, description="failure lines of the last evaluation")
    duration_seconds: float = 0.0
    evaluated_at: datetime | None = None


class FeatureProgress(BaseModel):
    """One feature of a loop's feature list and whether it is done."""

    name: str
    description: str
    done: bool


class LoopProgress(BaseModel):
    """One loop's progress (seed 001 T102 LoopProgress, T098 get_loop_progress).

    ``eta_seconds`` estimates when the loop reaches a limit at its current pace: the mean
    duration of its recent iterations (ITERATION_STARTED to ITERATION_COMPLETED events, the
    last :data:`~loopwright.dashboard.progress.ETA_WINDOW` iterations) times the iterations
    left to ``max_iterations``, less the time the current iteration has run, capped by the
    wall-clock time left to ``max_duration_seconds``. It is an upper bound: the loop ends
    earlier when its exit conditions hold. None while no iteration has completed, or when the
    loop is not running (finished, paused, awaiting a response, interrupted).
    """

    loop_id: str
    project: str
    goal: str
    phase: LoopPhase
    shown_phase: str = Field(description="the phase, or INTERRUPTED when no process runs an active loop")
    running: bool | None = Field(description="a process runs the loop; None when it cannot be told (AWS)")
    finished: bool = Field(description="the loop ended with an outcome (phase COMPLETED)")
    outcome: LoopOutcome | None = None
    outcome_reason: str | None = None
    iteration: int
    max_iterations: int
    tokens_used: int
    token_budget: int | None = None
    cost_usd: float = Field(
        default=0.0, description="US dollars spent: the agent's figures, else its tokens priced"
    )
    cost_budget_usd: float | None = Field(default=None, description="US dollars; None for no budget")
    unpriced_models: list[str] = Field(
        default_factory=list,
        description="models whose tokens have no price and add no cost ('' for none named)",
    )
    elapsed_seconds: float
    max_duration_seconds: int | None = None
    percent_iterations: float = Field(description="iteration / max_iterations x 100")
    percent_tokens: float | None = None
    percent_cost: float | None = Field(default=None, description="cost_usd / cost_budget_usd x 100")
    percent_time: float | None = None
    conditions: list[ConditionProgress]
    conditions_met: int = Field(description="required conditions that hold")
    conditions_required: int
    mean_iteration_seconds: float | None = None
    eta_seconds: float | None = None
    eta_at: datetime | None = None
    eta_basis: str | None = Field(default=None, description="how eta_seconds was estimated, in words")
    awaiting_response: str | None = Field(
        default=None, description="the agent's question (AWAITING_RESPONSE)"
    )
    pinned_change: list[str] | None = Field(
        default=None,
        description=(
            "the pinned files a reverted iteration changed, while the loop waits for a human to accept "
            "(approve with accept_pinned_change) or leave the change reverted"
        ),
    )
    resume_at: datetime | None = Field(default=None, description="when a PAUSED loop continues by itself")
    stop_requested: str | None = Field(default=None, description="reason of a pending stop request")
    warnings: list[str] = Field(default_factory=list, description="policy warnings in force (SC-008)")
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    branch: str | None = None
    head_commit: str | None = None
    last_checkpoint_id: str | None = None
    sessions_used: int = Field(
        default=0, description="agent sessions started (LoopResult.sessions_used; issue 10.3)"
    )
    max_sessions: int | None = Field(default=None, description="the agent session limit; None for none")
    handoff_reason: str | None = Field(default=None, description="why the last agent session was handed off")
    progress_summary: str | None = Field(
        default=None,
        description="the failing trend of the recent iterations and the stuck facts, one line "
        "(issue 10.4: loopwright.steps.progress.progress_summary)",
    )
    stuck_reason: str | None = Field(
        default=None, description="why the stuck policies paused the loop (until it is resumed)"
    )
    runs: int = Field(default=0, description="engine runs of the loop: the first plus each resume")
    features_completed: int = Field(
        default=0, description="features done (LoopResult.features_completed; issue 10.2)"
    )
    features_total: int = Field(default=0, description="features in the list, else required exit conditions")
    features: list[FeatureProgress] = Field(
        default_factory=list, description="the loop's feature list in order, each with done"
    )
    current_feature: str | None = Field(default=None, description="the feature the agent works on")
    version: int = 0


class CheckpointSummary(BaseModel):
    """One stored checkpoint; ``valid`` is False when its SHA-256 checksum does not hold."""

    checkpoint_id: str
    iteration: int
    created_at: datetime
    commit: str | None = None
    valid: bool
    phase: LoopPhase
    tokens_used: int
    conditions_met: int


class CheckpointList(BaseModel):
    """A loop's checkpoints, newest first (seed 001 T100); ``unreadable`` are ids whose stored
    payload cannot even be parsed."""

    loop_id: str
    checkpoints: list[CheckpointSummary]
    unreadable: list[str] = Field(default_factory=list)


class ConditionEvaluation(BaseModel):
    """One evaluation of the exit conditions (an EXIT_CONDITIONS_EVALUATED event)."""

    iteration: int
    evaluated_at: datetime
    statuses: dict[str, ExitConditionStatusValue]
    summaries: dict[str, str] = Field(default_factory=dict)
    met: int = Field(description="conditions MET in this evaluation")


class ConditionHistory(BaseModel):
    """Exit-condition history (seed 001 T101), newest evaluation first; ``totals`` counts, per
    condition, the evaluations of this page by status."""

    loop_id: str
    conditions: list[str] = Field(description="condition names, in the config's order")
    evaluations: list[ConditionEvaluation]
    totals: dict[str, dict[str, int]]
    next_cursor: str | None = None


class LoopMetrics(BaseModel):
    """A loop's figures per iteration (from its events, ``loop.source = "store"``) and the
    service's CloudWatch metrics over the loop's lifetime (``service``)."""

    loop_id: str
    loop: MetricsResult
    service: MetricsResult


class IdentityInfo(BaseModel):
    """Who the API takes the caller for."""

    principal: str = Field(description='Cedar principal, e.g. User::"alice"')
    groups: list[str] = Field(description='Cedar groups, e.g. Group::"demo-operators"')
    operates_all_projects: bool = Field(
        description="local only: no operators file, so this user operates every project"
    )
    source: Literal["cognito", "local"]
    impersonation_header: str | None = Field(
        default=None, description="local only: the request header that acts as another user"
    )


class ControlBody(BaseModel):
    """Body of pause, resume and stop (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2_000, description="recorded with the control")


class StopBody(ControlBody):
    """Body of stop: optionally ``now``, which ends the running agent or condition at once."""

    now: bool = Field(
        default=False,
        strict=True,
        description="end the running agent or exit condition at once (its partial work is kept on a "
        "ref), not after the current step",
    )


class ResumeBody(ControlBody):
    """Body of resume: optionally the checkpoint to continue from."""

    checkpoint_id: str | None = Field(
        default=None,
        pattern=CHECKPOINT_ID_PATTERN,
        max_length=128,
        description="the checkpoint to continue from (default: the newest valid one; a paused loop "
        "then continues from its stored state); 404 when the loop has no such checkpoint",
    )


class ApproveBody(ControlBody):
    """Body of approve: the answer to the agent's question."""

    response: str | None = Field(default=None, max_length=20_000, description="the answer the agent gets")
    accept_pinned_change: bool = Field(
        default=False,
        description="accept the reverted change to pinned files the loop waits on (the pin moves); "
        "without it the change stays reverted",
    )


class RollbackBody(ControlBody):
    """Body of rollback: the checkpoint (by its iteration) to reset the loop to."""

    to_iteration: int = Field(ge=0, le=100_000, description="iteration of the checkpoint to go back to")


class ForkBody(ControlBody):
    """Body of fork: the checkpoint (by its iteration) the new loop starts from, and optionally
    its goal and id."""

    from_iteration: int = Field(
        ge=0, le=100_000, description="iteration of the checkpoint the new loop starts from"
    )
    goal: str | None = Field(
        default=None,
        min_length=1,
        max_length=20_000,
        description="the new loop's goal (default: the parent's)",
    )
    loop_id: LoopId | None = Field(default=None, description="the new loop's id (default: generated)")


#: The limits a human may change (LimitChange's fields, in order).
_LIMIT_FIELDS = ("max_iterations", "token_budget", "cost_budget_usd", "max_duration_seconds", "max_sessions")


class LimitsBody(ControlBody):
    """Body of limits: each given limit replaces the loop's; at least one (the document says so
    with ``anyOf``). Units: iterations, tokens, US dollars, wall-clock seconds, agent sessions. A
    limit is left out rather than sent as ``null`` (refused, naming it)."""

    model_config = ConfigDict(
        json_schema_extra=lambda schema: one_of_required(schema, list(_LIMIT_FIELDS), keyword="anyOf")
    )

    max_iterations: int | None = Field(default=None, ge=1, le=100_000)
    token_budget: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    cost_budget_usd: float | None = Field(
        default=None, gt=0, le=MAX_COST_BUDGET_USD, allow_inf_nan=False, description="US dollars"
    )
    max_duration_seconds: int | None = Field(default=None, ge=1, le=30 * 86_400)
    max_sessions: int | None = Field(default=None, ge=1, le=100_000, description="agent sessions")

    @field_validator(*_LIMIT_FIELDS, mode="before")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            raise ValueError(f"null is not a limit; leave {info.field_name} out to keep the loop's")
        return value

    @model_validator(mode="after")
    def _one_given(self) -> LimitsBody:
        if all(getattr(self, name) is None for name in _LIMIT_FIELDS):
            raise ValueError(f"give at least one of {', '.join(_LIMIT_FIELDS)}")
        return self
