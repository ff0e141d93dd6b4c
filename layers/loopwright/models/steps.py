"""Inputs and outputs of the steps and ports (authorize, iterate, evaluate, verify, decide)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loopwright.models.enums import AgentFailureCause, HardLimit, LoopOutcome, NextAction
from loopwright.models.pricing import ModelPrice
from loopwright.models.types import TokenCount

_UID = re.compile(r'^(?P<type>[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*)::"(?P<id>(?:[^"\\]|\\.)*)"$')


def parse_entity_uid(uid: str) -> dict[str, str]:
    """Split a Cedar entity uid ``Type::"id"`` into ``{"type": ..., "id": ...}``.

    Raises :class:`ValueError` when ``uid`` is not of that form.
    """
    match = _UID.match(uid)
    if match is None:
        raise ValueError(f'{uid!r} is not a Cedar entity uid such as Loop::"loop_1"')
    raw_id = match["id"]
    entity_id = json.loads(f'"{raw_id}"') if "\\" in raw_id else raw_id
    return {"type": match["type"], "id": entity_id}


class AuthorizationRequest(BaseModel):
    """One Cedar question: may ``principal`` take ``action`` on ``resource``, given ``context``?

    Entity ids are Cedar entity uids written as ``Type::"id"``; ``resource_attributes`` are the
    loop's limits (``max_iterations``, optional ``token_budget`` and ``max_duration_seconds``,
    ``warning_threshold_percent``, ``project``), ``context`` its counters (``iteration``: the
    iteration about to run, ``tokens_used``, ``elapsed_seconds``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    principal: str
    action: str
    resource: str
    resource_attributes: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    principal_parents: list[str] = Field(
        default_factory=list, description='uids of the groups the principal is in, e.g. Group::"x"'
    )


class PolicyDecision(BaseModel):
    """A Cedar decision with the ``@id`` of each determining policy and their annotations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: bool
    policy_ids: list[str] = Field(default_factory=list)
    annotations: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="policy id -> its annotations (for example 'outcome')"
    )
    errors: list[str] = Field(default_factory=list)


class AuthorizationResult(BaseModel):
    """Output of the authorize step: may the next iteration run, and which warnings apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: bool
    iteration: int = Field(description="the iteration that was asked for")
    denied_by: list[str] = Field(default_factory=list, description="@id of the denying policies")
    outcome: LoopOutcome | None = None
    reason: str | None = None
    warnings: list[str] = Field(default_factory=list, description="@id of the warning policies that apply")
    warning_messages: list[str] = Field(default_factory=list)
    pause: bool = Field(
        default=False,
        description='denied by a policy annotated @on_deny("pause"): the loop pauses for a human '
        "(resumable) instead of ending with ``outcome``",
    )


class FeatureBrief(BaseModel):
    """The feature an agent works on (feature lists, issue 10.2): ``position`` is 1-based of
    ``total``; ``done`` the features done before it, ``conditions`` the names its acceptance
    conditions are evaluated under (``<feature>:<key>``), ``broken`` done features whose
    conditions no longer hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    position: int = Field(ge=1)
    total: int = Field(ge=1)
    done: list[str] = Field(default_factory=list)
    conditions: list[str] = Field(default_factory=list)
    broken: list[str] = Field(default_factory=list)


class AgentRequest(BaseModel):
    """What the agent is told each iteration. Times are seconds, budgets tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loop_id: str
    iteration: int
    goal: str
    worktree: str
    state_dir: str = Field(description="a folder outside the worktree for prompt and report files")
    max_iterations: int
    tokens_used: int
    token_budget: int | None = None
    elapsed_seconds: float = 0.0
    max_duration_seconds: int | None = None
    failures: list[str] = Field(default_factory=list, description="failures of the last evaluation")
    failing_conditions: list[str] = Field(default_factory=list)
    conditions: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the failing conditions' structured results (name, type, status, summary, details)",
    )
    warnings: list[str] = Field(default_factory=list)
    human_response: str | None = Field(default=None, description="a human's answer to the agent's question")
    # Feature lists and sessions (issue 10.2, 10.3).
    feature: FeatureBrief | None = Field(
        default=None, description="the feature to work on (None without a feature list, or all done)"
    )
    session_id: str | None = Field(
        default=None, description="the agent session to continue (None: start a fresh one)"
    )
    handoff: str | None = Field(
        default=None, description="a fresh session's handoff summary: why, and what happened so far"
    )
    history: list[str] = Field(
        default_factory=list, description="recent iterations, one line each, and the failing trend"
    )
    regression: str | None = Field(default=None, description="what the agent's reverted iteration broke")
    notes: str = Field(default="", description="the agent's progress notes so far (progress.md)")
    time_left_seconds: float | None = Field(
        default=None,
        ge=0,
        description="seconds until the loop's deadline (max_duration_seconds, active time); the "
        "agent is ended when it arrives. None: no time limit",
    )
    tokens_left: int | None = Field(
        default=None, ge=0, description="tokens left of token_budget; None: no token budget"
    )
    cost_left_usd: float | None = Field(
        default=None, ge=0, description="US dollars left of cost_budget_usd; None: no cost budget"
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="LoopConfig.prices, to price the tokens an agent streams"
    )


class AgentResult(BaseModel):
    """What the agent reports back, for this iteration only.

    ``tokens_used`` is what counts against the token budget (for a CLI backend: input + output
    tokens, cached input included, as the CLI reports them); ``input_tokens`` (all input, cached
    included), ``cached_input_tokens`` (the part of it read from a cache) and ``output_tokens``
    break it down when the agent says so.
    ``cost_usd`` is the agent's own figure in US dollars, or None when it gave none (the loop
    then prices the tokens, see :mod:`loopwright.models.pricing`).
    """

    model_config = ConfigDict(extra="forbid")

    tokens_used: TokenCount = 0
    input_tokens: TokenCount = 0
    cached_input_tokens: TokenCount = Field(default=0, description="input tokens read from a cache")
    output_tokens: TokenCount = 0
    cost_usd: float | None = Field(default=None, ge=0, description="US dollars; None: not reported")
    model: str | None = Field(default=None, description="the model the agent used, as it names it")
    session_id: str | None = Field(default=None, description="the agent CLI's session (or thread) id")
    summary: str = ""
    exit_code: int | None = None
    failed: bool = False
    failure_cause: AgentFailureCause | None = Field(
        default=None,
        description="why the agent did no work (see AgentFailureCause); None with failed=True is "
        "read as CRASH, with usage_limit_resets_at as USAGE_LIMIT",
    )
    retry_after_seconds: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="RATE_LIMIT / PROVIDER_OUTAGE: seconds the provider asked to wait before a retry",
    )
    needs_human: str | None = Field(default=None, description="a question for a human; pauses the loop")
    context_percent: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="how full the agent session's context window is after the run, percent (None: "
        "not reported); at LoopConfig.handoff_context_percent the session is handed off",
    )
    handoff_requested: str | None = Field(
        default=None, description="the agent asks for a fresh session, saying why (report.json 'handoff')"
    )
    notes: str | None = Field(
        default=None, description="the progress notes file after the run; None when the agent has none"
    )
    usage_limit_resets_at: datetime | None = Field(
        default=None,
        description="when the agent's model provider lifts the usage limit it hit (UTC); the loop "
        "pauses until then instead of failing (seed 002: scheduled continuation)",
    )

    @field_validator("usage_limit_resets_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """A time without a zone is read as UTC (agents often print ``2026-11-23T18:00:00``)."""
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    output: str = ""
    ended_by: HardLimit | None = Field(
        default=None,
        description="the hard limit (or stop --now) that ended the agent mid-run; its tokens and "
        "cost are the usage streamed so far. None: the agent ended by itself",
    )


class IterationResult(BaseModel):
    """Output of the iterate step."""

    model_config = ConfigDict(extra="forbid")

    iteration: int
    agent: AgentResult
    commit: str | None = None
    changed_files: list[str] = Field(default_factory=list)
    withheld_files: list[str] = Field(
        default_factory=list, description="changed files not committed: they look like secrets"
    )
    duration_seconds: float = 0.0
    workspace_problem: str | None = Field(
        default=None,
        description="why the agent's work could not be committed (the worktree is not what "
        "loopwright left); the loop pauses for a human",
    )


class CommandResult(BaseModel):
    """Output of one sandboxed command. Output is bounded; ``duration_seconds`` is wall clock."""

    model_config = ConfigDict(extra="forbid")

    command: list[str]
    exit_code: int | None = Field(description="None when the command could not start or timed out")
    stdout: str = ""
    stderr: str = ""
    duration_seconds: float = 0.0
    timed_out: bool = False
    idle: bool = Field(
        default=False,
        description="ended after idle_timeout_seconds without output nor file change (exit_code None)",
    )
    truncated: bool = False
    error: str | None = Field(default=None, description="why the command could not start")
    started_at: datetime | None = None
    left_running: list[str] = Field(
        default_factory=list,
        description="processes of the command that could not be ended ('pid N: command line')",
    )
    stopped: bool = Field(
        default=False,
        description="ended because the caller's should_stop answered True (exit_code None)",
    )


class VerificationResult(BaseModel):
    """Output of the verify step (gate:all): every required condition holds, or which do not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool
    failing: list[str] = Field(default_factory=list)
    message: str = ""


class Decision(BaseModel):
    """Output of the decide step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: NextAction
    outcome: LoopOutcome | None = None
    reason: str = ""
    resume_at: datetime | None = Field(default=None, description="PAUSE: when the loop continues by itself")
