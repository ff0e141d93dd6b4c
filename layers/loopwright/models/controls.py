"""Human controls of a loop (issue 4; seed 000 US5 "human oversight"): pause, resume, stop,
approve a gate, raise a limit.

A :class:`ControlRequest` names who asks (a Cedar principal and the groups it belongs to), what
(:class:`~loopwright.models.enums.ControlAction`) and for which loop. It is authorized by Cedar
(``policies/controls.cedar``) before anything is written; :mod:`loopwright.controls` applies it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from loopwright.models.config import MAX_COST_BUDGET_USD
from loopwright.models.enums import ControlAction, LoopPhase
from loopwright.models.state import new_id, utcnow
from loopwright.models.types import MAX_TOKENS, LoopId

#: A Cedar entity uid, ``Type::"id"`` (for example ``User::"alice"``).
EntityUid = Annotated[
    str,
    StringConstraints(pattern=r'^[A-Za-z_][A-Za-z0-9_]*::"[^"\\]{1,256}"$'),
    Field(description='Cedar entity uid, Type::"id"'),
]

#: A checkpoint id a RESUME may name (``ckpt_`` and 12 hex digits when loopwright made it).
CHECKPOINT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

#: The Cedar action each control is authorized as (``policies/loopwright.cedarschema``).
CONTROL_CEDAR_ACTIONS: dict[ControlAction, str] = {
    ControlAction.PAUSE: "PauseLoop",
    ControlAction.RESUME: "ResumeLoop",
    ControlAction.STOP: "StopLoop",
    ControlAction.APPROVE: "ApproveGate",
    ControlAction.RAISE_LIMIT: "RaiseLimit",
    ControlAction.ROLLBACK: "RollbackLoop",
    ControlAction.FORK: "ForkLoop",
}

#: The actions that name a checkpoint by its iteration (``ControlRequest.iteration``).
TIME_TRAVEL_ACTIONS = frozenset({ControlAction.ROLLBACK, ControlAction.FORK})


def operators_group(project: str) -> str:
    """The Cedar uid of a project's operators group: ``Group::"<project>-operators"``.

    Its members may control the project's loops (``policies/controls.cedar``). In AWS it is the
    Cognito group of the same name; locally, see ``loopwright dashboard --help``.
    """
    return f'Group::"{project}-operators"'


class LimitChange(BaseModel):
    """New limits for a loop (RAISE_LIMIT). Each field, when given, replaces the LoopConfig value;
    at least one must be given. Units: iterations, tokens, US dollars, wall-clock seconds, agent
    sessions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_iterations: int | None = Field(default=None, ge=1, le=100_000, strict=True)
    token_budget: int | None = Field(default=None, ge=1, le=MAX_TOKENS, strict=True)
    cost_budget_usd: float | None = Field(
        default=None, gt=0, le=MAX_COST_BUDGET_USD, allow_inf_nan=False, strict=True, description="US dollars"
    )
    max_duration_seconds: int | None = Field(default=None, ge=1, le=30 * 86_400, strict=True)
    max_sessions: int | None = Field(
        default=None, ge=1, le=100_000, strict=True, description="agent sessions"
    )

    @model_validator(mode="after")
    def _one_given(self) -> LimitChange:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(
                "give at least one of max_iterations, token_budget, cost_budget_usd, "
                "max_duration_seconds, max_sessions"
            )
        return self


class ControlRequest(BaseModel):
    """One control asked of a loop.

    ``limits`` is required for RAISE_LIMIT and refused otherwise; ``response`` is the human's
    answer for APPROVE (optional); ``checkpoint_id`` names the checkpoint a RESUME continues
    from (optional, refused for the other actions; default: the newest valid one).
    ``iteration`` names the checkpoint (by the iteration it was taken at) that a ROLLBACK resets
    the loop to or a FORK starts from (required for both, refused otherwise); ``goal`` and
    ``new_loop_id`` are the forked loop's (FORK only; defaults: the parent's goal, a new id).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    control_id: str = Field(default_factory=lambda: new_id("ctl"))
    loop_id: LoopId
    action: ControlAction
    principal: EntityUid = Field(description='who asks, e.g. User::"alice"')
    groups: list[EntityUid] = Field(default_factory=list, description="Cedar groups the principal is in")
    reason: str = Field(default="", max_length=2_000)
    limits: LimitChange | None = None
    response: str | None = Field(default=None, max_length=20_000, description="APPROVE: the answer")
    checkpoint_id: str | None = Field(
        default=None,
        pattern=CHECKPOINT_ID_PATTERN,
        description="RESUME: the checkpoint to continue from (default: the newest valid one)",
    )
    accept_pinned_change: bool = Field(
        default=False,
        description="APPROVE: accept the reverted change to pinned files the loop waits on (the "
        "pin moves); without it the change stays reverted",
    )
    iteration: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        strict=True,
        description="ROLLBACK, FORK: the iteration of the checkpoint to go back to or start from",
    )
    goal: str | None = Field(
        default=None, min_length=1, max_length=20_000, description="FORK: the new loop's goal"
    )
    new_loop_id: LoopId | None = Field(default=None, description="FORK: the new loop's id")
    now: bool = Field(
        default=False,
        strict=True,
        description="STOP: end the running agent or condition at once (`stop --now`), not after "
        "the current step",
    )
    requested_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _limits_match_action(self) -> ControlRequest:
        travel = self.action in TIME_TRAVEL_ACTIONS
        if travel and self.iteration is None:
            raise ValueError(f"iteration: required for {self.action.value} (the checkpoint's iteration)")
        if not travel and self.iteration is not None:
            raise ValueError(f"iteration: only ROLLBACK and FORK take an iteration, not {self.action.value}")
        if self.action is not ControlAction.FORK and (self.goal is not None or self.new_loop_id is not None):
            raise ValueError(f"goal, new_loop_id: only FORK takes them, not {self.action.value}")
        if self.action is not ControlAction.STOP and self.now:
            raise ValueError(f"now: only STOP ends the running agent at once, not {self.action.value}")
        if self.action is not ControlAction.APPROVE and self.accept_pinned_change:
            raise ValueError(
                f"accept_pinned_change: only APPROVE accepts a pinned change, not {self.action.value}"
            )
        if self.action is ControlAction.RAISE_LIMIT and self.limits is None:
            raise ValueError("limits: required for RAISE_LIMIT")
        if self.action is not ControlAction.RAISE_LIMIT and self.limits is not None:
            raise ValueError(f"limits: only RAISE_LIMIT takes limits, not {self.action.value}")
        if self.action is not ControlAction.RESUME and self.checkpoint_id is not None:
            raise ValueError(f"checkpoint_id: only RESUME takes a checkpoint, not {self.action.value}")
        return self


class ControlResult(BaseModel):
    """What became of an accepted control: ``applied`` now (the loop was idle) or ``queued`` for
    the running loop's next step boundary; the loop's phase after it."""

    control: ControlRequest
    status: Annotated[str, StringConstraints(pattern="^(applied|queued)$")]
    message: str
    phase: LoopPhase
    new_loop_id: str | None = Field(default=None, description="FORK: the loop it started")
    policy_ids: list[str] = Field(default_factory=list, description="@id of the allowing Cedar policies")
