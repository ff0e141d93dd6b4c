"""Loop state, exit-condition status, events, checkpoints and results (seed 001 T013-T016, T024, T059)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from loopwright.models.config import LoopConfig
from loopwright.models.enums import (
    AgentFailureCause,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEventType,
    LoopOutcome,
    LoopPhase,
)
from loopwright.models.pins import PinnedChangeHold
from loopwright.models.progress import LoopProgress
from loopwright.models.types import LoopId


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random id such as ``loop_3f2a9c0e1b7d``: ``prefix``, an underscore, 12 hex digits."""
    return f"{prefix}_{secrets.token_hex(6)}"


class ExitConditionStatus(BaseModel):
    """The latest result of one exit condition (seed 001 T013).

    ``details`` holds the parsed, structured result (for tests: ``passed``, ``failed``,
    ``errors``, ``skipped``; for lint: ``findings`` and ``by_rule``; for a security scan:
    ``by_severity``). ``failures`` are the individual problems, one line each, bounded by the
    parser; they are what the agent sees next iteration. ``stdout``/``stderr`` are the tool's
    output, bounded to the condition's ``max_output_bytes`` (``output_truncated`` tells).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ExitConditionType
    status: ExitConditionStatusValue = ExitConditionStatusValue.PENDING
    required: bool = True
    iteration: int = Field(default=0, ge=0)
    command: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    duration_seconds: float = Field(default=0.0, ge=0)
    summary: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    output_truncated: bool = False
    evaluated_at: datetime | None = None

    @property
    def is_met(self) -> bool:
        """True when the condition holds."""
        return self.status is ExitConditionStatusValue.MET


class CachedEvaluation(BaseModel):
    """One exit condition's result kept for reuse: ``key`` is the SHA-256 of the condition's
    definition (its JSON) and the git tree hash it was evaluated on (``tree``)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    tree: str
    iteration: int = Field(ge=0, description="the iteration whose evaluation this is")
    status: ExitConditionStatus


class LoopState(BaseModel):
    """The mutable state of one loop (seed 001 T024), stored after every step.

    ``iteration`` counts iterations whose agent work is done. ``version`` increases on every
    stored write; stores use it for conditional writes (optimistic concurrency).
    """

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId
    project: str = "default"
    config: LoopConfig
    phase: LoopPhase = LoopPhase.INITIALIZING
    iteration: int = Field(default=0, ge=0)
    tokens_used: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0, description="US dollars the agent's iterations cost")
    unpriced_models: list[str] = Field(
        default_factory=list,
        description="models the agent used that have no price (their tokens add no cost); each "
        "was reported once by a COST_UNKNOWN event",
    )
    started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    exit_conditions: list[ExitConditionStatus] = Field(default_factory=list)
    evaluated_iteration: int = Field(default=0, ge=0, description="iteration of the last evaluation")
    outcome: LoopOutcome | None = None
    outcome_reason: str | None = None
    is_active: bool = False
    sessions_used: int = Field(
        default=0,
        ge=0,
        description="engine runs: the first plus each resume (not the agent's sessions: agent_sessions)",
    )
    errors_recovered: int = Field(default=0, ge=0)
    last_checkpoint_id: str | None = None
    checkpointed_iteration: int = Field(default=0, ge=0, description="iteration of the last checkpoint")
    workspace: str = Field(default="", description="absolute path of the user's workspace")
    worktree: str = Field(default="", description="absolute path the agent and checks run in")
    branch: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    pending_warnings: list[str] = Field(default_factory=list, description="policy warnings for the agent")
    human_request: str | None = Field(default=None, description="what the agent asked a human")
    policy_files: dict[str, str] | None = Field(
        default=None,
        description="the Cedar policy set the loop runs under, file name -> SHA-256 (local "
        "engine); a resume under another set needs an operator's consent (POLICY_SET_CHANGED)",
    )
    workspace_problem: str | None = Field(
        default=None,
        description="the last iteration's work could not be committed (its worktree was tampered "
        "with): the loop pauses with this reason; cleared when a session starts",
    )
    pinned_hold: PinnedChangeHold | None = Field(
        default=None,
        description="an iteration's change to pinned files, reverted and waiting for a human "
        "(loopwright.pinning)",
    )
    sandbox_session_id: str | None = Field(
        default=None, description="the loop's Code Interpreter session (AWS engine)"
    )
    agent_seconds: float | None = Field(
        default=None,
        ge=0,
        description="how long the last iteration's agent worked (seconds, wall clock): the state "
        "machine's first poll of the next one waits about that long (loopwright.deferred.next_wait)",
    )
    task_token: str | None = Field(
        default=None, description="Step Functions task token of a loop awaiting a human (AWS engine)"
    )
    human_response: str | None = Field(
        default=None, description="a human's answer (APPROVE), handed to the agent's next iteration"
    )
    generation: int = Field(
        default=0, ge=0, description="the newest Step Functions execution generation of the loop (AWS engine)"
    )
    resume_at: datetime | None = Field(
        default=None, description="when a PAUSED loop continues by itself (a usage limit's reset), UTC"
    )
    consecutive_failures: int = Field(
        default=0,
        ge=0,
        description="agent iterations in a row that failed (crash, timeout, idle, rate limit, "
        "outage); reset by one that did not; Cedar's 'consecutive-failures' policy stops the loop "
        "at config.max_consecutive_failures",
    )
    last_failure_cause: AgentFailureCause | None = Field(
        default=None, description="why the last agent iteration failed; None when it did not"
    )
    uncounted_iterations: int = Field(
        default=0,
        ge=0,
        description="iterations retried after a rate limit or a provider outage: they do not "
        "count against max_iterations (Cedar's context.iteration leaves them out)",
    )
    # Feature lists and agent sessions (issue 10.2, 10.3): loopwright.feature_progress, loopwright.sessions.
    features_done: list[str] = Field(
        default_factory=list, description="names of the config's features that are done, in order"
    )
    agent_sessions: int = Field(
        default=0,
        ge=0,
        description="agent sessions started: an agent with sessions starts one at its first "
        "iteration and at each handoff; an agent without sessions one every iteration",
    )
    agent_session_id: str | None = Field(
        default=None, description="the agent's current session, resumed by the next iteration"
    )
    session_iterations: int = Field(default=0, ge=0, description="iterations of the current agent session")
    pending_handoff: str | None = Field(
        default=None, description="why the next iteration starts a fresh agent session (a handoff)"
    )
    handoff_reason: str | None = Field(default=None, description="why the last handoff happened")
    session_history: list[str] = Field(
        default_factory=list,
        description="one line per recent iteration (bounded), for the next handoff's summary",
    )
    parent_loop_id: str | None = Field(
        default=None, description="the loop this one was forked from (loopwright fork); None otherwise"
    )
    forked_from_iteration: int | None = Field(
        default=None, ge=0, description="the parent's checkpoint iteration this loop was forked from"
    )
    evaluation_cache: list[CachedEvaluation] = Field(
        default_factory=list,
        description="exit-condition results by (condition definition, worktree tree hash), oldest "
        "first, bounded (loopwright.steps.evaluation_cache)",
    )
    progress: LoopProgress = Field(
        default_factory=LoopProgress,
        description="the loop's memory of its iterations and its stuck facts (loopwright.progress)",
    )
    active_seconds: float = Field(
        default=0.0,
        ge=0,
        description="seconds the loop's ended sessions ran (paused time and waits for a human left "
        "out); the running session's time is counted from active_since",
    )
    active_since: datetime | None = Field(
        default=None, description="when the running session started (None: no session runs)"
    )
    version: int = Field(default=0, ge=0)

    @property
    def wall_clock_seconds(self) -> float:
        """Wall-clock seconds from the start to the end (or to now while running)."""
        end = self.ended_at or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def elapsed_seconds(self) -> float:
        """Seconds that count against ``config.max_duration_seconds``, now (:meth:`elapsed_at`)."""
        return self.elapsed_at(utcnow())

    def elapsed_at(self, now: datetime) -> float:
        """Seconds that count against ``config.max_duration_seconds`` at ``now``: the time the
        loop's sessions ran (:attr:`active_seconds` plus the running session's since
        :attr:`active_since`), or wall clock from the start (to the end, else ``now``) with
        ``config.count_paused_time`` or for a loop that never recorded its sessions' time (stored
        before it was kept)."""
        if self.config.count_paused_time or (self.active_since is None and self.active_seconds == 0):
            return max(0.0, ((self.ended_at or now) - self.started_at).total_seconds())
        running = 0.0 if self.active_since is None else max(0.0, (now - self.active_since).total_seconds())
        return self.active_seconds + running

    def open_active_time(self, now: datetime | None = None) -> None:
        """A session starts: its time counts from ``now``. A session that died without
        :meth:`close_active_time` (``kill -9``) is counted up to its last write (``updated_at``)."""
        now = now or utcnow()
        if self.active_since is not None:
            end = max(self.active_since, min(self.updated_at, now))
            self.active_seconds += (end - self.active_since).total_seconds()
        self.active_since = now

    def close_active_time(self, now: datetime | None = None) -> None:
        """The running session ends (paused, waiting for a human, ended): its time is added to
        :attr:`active_seconds`. Nothing happens when no session runs."""
        if self.active_since is None:
            return
        now = now or utcnow()
        self.active_seconds += max(0.0, (now - self.active_since).total_seconds())
        self.active_since = None

    @property
    def failing_conditions(self) -> list[ExitConditionStatus]:
        """The conditions of the last evaluation that do not hold (PENDING ones are not failing)."""
        return [
            c
            for c in self.exit_conditions
            if c.status not in (ExitConditionStatusValue.MET, ExitConditionStatusValue.PENDING)
        ]


class IterationEvent(BaseModel):
    """One recorded event of a loop (seed 001 T015), stored and added to the current span."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(default_factory=lambda: new_id("evt"))
    loop_id: LoopId
    iteration: int = Field(ge=0)
    type: IterationEventType
    phase: LoopPhase
    timestamp: datetime = Field(default_factory=utcnow)
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class Checkpoint(BaseModel):
    """A durable snapshot of a loop (seed 001 T059-T061).

    ``checksum`` is the SHA-256 of the canonical JSON of all other fields; a checkpoint whose
    checksum does not match is corrupt and is never restored.
    """

    model_config = ConfigDict(extra="forbid")

    checkpoint_id: str = Field(default_factory=lambda: new_id("ckpt"))
    loop_id: LoopId
    iteration: int = Field(ge=0)
    created_at: datetime = Field(default_factory=utcnow)
    commit: str | None = Field(default=None, description="git commit of the worktree at the checkpoint")
    state: LoopState
    checksum: str = ""
    _payload: str | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Equal content (the cached :meth:`payload_json` does not count)."""
        return isinstance(other, Checkpoint) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, like every pydantic model

    def payload_json(self) -> str:
        """The checkpoint as stored (its JSON, checksum included); made once when the checkpoint
        was taken (:meth:`from_loop_state`) and forgotten as soon as a field changes or the
        checkpoint is copied, else made now."""
        return self._payload if self._payload is not None else self.model_dump_json()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).model_fields:
            super().__setattr__("_payload", None)
        super().__setattr__(name, value)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Checkpoint:
        """A copy (see pydantic's ``model_copy``), without the serialized form of the original."""
        copy = super().model_copy(update=update, deep=deep)
        copy._payload = None
        return copy

    def compute_checksum(self) -> str:
        """SHA-256 hex digest of the JSON of every field but ``checksum``.

        pydantic writes fields in declaration order and dicts in insertion order, both of which
        survive a round trip through the stored JSON, so a stored checkpoint re-computes the same
        digest while any change to its content does not.
        """
        return hashlib.sha256(self.model_dump_json(exclude={"checksum"}).encode()).hexdigest()

    @classmethod
    def from_loop_state(cls, state: LoopState, commit: str | None = None) -> Checkpoint:
        """A checkpoint of ``state`` at ``commit``, with its checksum set.

        The snapshot's ``last_checkpoint_id`` is the new checkpoint's own id, so a state restored
        from it names the checkpoint it came from. The checkpoint is serialized once, here: its
        JSON gives the checksum and is what a store writes (:meth:`payload_json`), so a later
        change to ``state`` cannot reach the stored checkpoint. The ``state`` attribute itself is
        a shallow copy (the engine replaces a state's fields, never mutates them in place);
        :meth:`to_loop_state` returns a deep copy.
        """
        checkpoint_id = new_id("ckpt")
        snapshot = state.model_copy(
            update={"last_checkpoint_id": checkpoint_id, "checkpointed_iteration": state.iteration}
        )
        ckpt = cls(
            checkpoint_id=checkpoint_id,
            loop_id=state.loop_id,
            iteration=state.iteration,
            commit=commit,
            state=snapshot,
        )
        body = ckpt.model_dump_json(exclude={"checksum"})
        ckpt.checksum = hashlib.sha256(body.encode()).hexdigest()
        # pydantic writes the fields in declaration order, ``checksum`` last.
        ckpt._payload = f'{body[:-1]},"checksum":{json.dumps(ckpt.checksum)}}}'
        return ckpt

    def is_valid(self) -> bool:
        """True when the stored checksum matches the content."""
        return bool(self.checksum) and self.checksum == self.compute_checksum()

    def to_loop_state(self) -> LoopState:
        """A copy of the state stored in this checkpoint."""
        return self.state.model_copy(deep=True)


class LoopResult(BaseModel):
    """What a finished (or paused) loop reports (seed 002 LoopResult, seed 001 T016).

    With a feature list (``LoopConfig.features``) ``features_total`` is its length and
    ``features_completed`` how many are done; without one, the required exit conditions stand for
    the features (how many hold of how many). ``sessions_used`` counts the agent sessions
    (``LoopState.agent_sessions``), ``handoff_reason`` says why the last one was handed off to a
    fresh session (None without a handoff), ``stop_reason`` why the loop stopped or paused when it
    did not succeed (the Cedar policy id for a policy stop). ``duration_seconds`` is wall clock,
    seconds.
    """

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId
    success: bool
    outcome: LoopOutcome | None
    phase: LoopPhase
    iterations: int
    features_completed: int
    features_total: int
    sessions_used: int
    total_tokens: int
    total_cost_usd: float = Field(
        default=0.0,
        description="US dollars the agent's iterations cost: its own figures, else its tokens "
        "priced (loopwright.models.pricing); models without a price add nothing",
    )
    errors_recovered: int
    duration_seconds: float
    elapsed_seconds: float = Field(
        default=0.0,
        description="seconds that count against max_duration_seconds (the sessions' running time, "
        "or wall clock with count_paused_time)",
    )
    handoff_reason: str | None = None
    stop_reason: str | None = None
    exit_conditions: list[ExitConditionStatus] = Field(default_factory=list)
    branch: str | None = None
    head_commit: str | None = None

    @classmethod
    def from_state(cls, state: LoopState) -> LoopResult:
        """Summarise ``state`` as a result."""
        required = [c for c in state.exit_conditions if c.required]
        completed = sum(1 for c in required if c.is_met)
        total = len(required) or len([c for c in state.config.exit_conditions if c.required])
        if state.config.features:
            completed, total = len(state.features_done), len(state.config.features)
        return cls(
            loop_id=state.loop_id,
            success=state.outcome is LoopOutcome.CONDITIONS_MET,
            outcome=state.outcome,
            phase=state.phase,
            iterations=state.iteration,
            features_completed=completed,
            features_total=total,
            sessions_used=state.agent_sessions,
            total_tokens=state.tokens_used,
            total_cost_usd=state.cost_usd,
            errors_recovered=state.errors_recovered,
            duration_seconds=round(state.wall_clock_seconds, 3),
            elapsed_seconds=round(state.elapsed_seconds, 3),
            handoff_reason=state.handoff_reason,
            stop_reason=None if state.outcome is LoopOutcome.CONDITIONS_MET else state.outcome_reason,
            exit_conditions=state.exit_conditions,
            branch=state.branch,
            head_commit=state.head_commit,
        )
