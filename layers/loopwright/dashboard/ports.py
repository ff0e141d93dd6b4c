"""Ports of the dashboard: the read-side queries it needs beyond :class:`~loopwright.ports.LoopStore`.

- :class:`LoopQueries`: loops filtered by project and status, and a loop's events newest first,
  both with cursor pagination (seed 001 US5 ``ObservabilityQueries``). Adapters:
  ``adapters/local/sqlite_queries.py`` (the local SQLite file), ``adapters/aws/dynamodb_queries.py``
  (the DynamoDB tables and their GSIs, Query only).
- :class:`TraceQueries`: X-Ray trace summaries of a loop (``annotation.loop_id``).
- :class:`MetricQueries`: CloudWatch metrics of the ``loopwright`` namespace over a time window.

Locally, traces and metrics are :class:`UnavailableTraces` / :class:`UnavailableMetrics`: an
empty result with ``source = "unavailable locally"``, never an error.

Cursors are opaque strings (:func:`encode_cursor`); a cursor an adapter cannot read raises
:class:`InvalidCursorError`, which the API answers with 400 naming the ``cursor`` field.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from loopwright.exceptions import LoopFrameworkError
from loopwright.models import (
    ExitConditionStatusValue,
    IterationEvent,
    IterationEventType,
    LoopOutcome,
    LoopPhase,
    LoopState,
)

#: ``source`` of a trace or metric result where the service does not exist (the local mode).
UNAVAILABLE_LOCALLY = "unavailable locally"

#: A loop status filter: a phase (``AWAITING_RESPONSE``...) or an outcome (``STOPPED``...).
LoopStatus = LoopPhase | LoopOutcome

#: Is a process running this loop? True / False, or None when it cannot be told (AWS: Step
#: Functions runs it). Locally: the loop's lock file (``engine/lock.py``) has a holder.
LivenessCheck = Callable[[str], bool | None]

T = TypeVar("T")


class InvalidCursorError(LoopFrameworkError):
    """A pagination cursor that was not produced by this adapter (or was altered)."""


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque cursor for ``position`` (URL-safe base64 of its JSON, no padding)."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *keys: str) -> dict[str, Any]:
    """The position of ``cursor``; it must be a JSON object holding ``keys``.

    Raises :class:`InvalidCursorError` for anything else.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError("cursor: not a cursor returned by this API; omit it to start over") from exc
    if not isinstance(position, dict) or any(key not in position for key in keys):
        raise InvalidCursorError("cursor: not a cursor returned by this API; omit it to start over")
    return position


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_cursor`` fetches the next page (None: this was the last)."""

    items: list[T]
    next_cursor: str | None = None


class ConditionBrief(BaseModel):
    """The latest status of one exit condition, without its output."""

    name: str
    status: ExitConditionStatusValue
    required: bool = True


class LoopSummary(BaseModel):
    """A loop as the list shows it. Units: iterations, tokens, US dollars, ISO 8601 UTC times."""

    model_config = ConfigDict(extra="forbid")

    loop_id: str
    project: str
    phase: LoopPhase
    outcome: LoopOutcome | None = None
    outcome_reason: str | None = None
    goal: str = Field(description="the goal, cut to 200 characters")
    iteration: int
    max_iterations: int
    tokens_used: int
    token_budget: int | None = None
    cost_usd: float = 0.0
    cost_budget_usd: float | None = None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    human_request: str | None = Field(default=None, description="the agent's question (AWAITING_RESPONSE)")
    resume_at: datetime | None = None
    conditions: list[ConditionBrief] = Field(default_factory=list)
    running: bool | None = Field(
        default=None, description="a process runs the loop now; None when it cannot be told (AWS)"
    )
    shown_phase: str | None = Field(
        default=None, description="the phase, or INTERRUPTED when no process runs an active loop"
    )

    @classmethod
    def from_state(cls, state: LoopState) -> LoopSummary:
        """The summary of ``state``."""
        return cls(
            loop_id=state.loop_id,
            project=state.project,
            phase=state.phase,
            outcome=state.outcome,
            outcome_reason=state.outcome_reason,
            goal=state.config.goal[:200],
            iteration=state.iteration,
            max_iterations=state.config.max_iterations,
            tokens_used=state.tokens_used,
            token_budget=state.config.token_budget,
            cost_usd=state.cost_usd,
            cost_budget_usd=state.config.cost_budget_usd,
            started_at=state.started_at,
            updated_at=state.updated_at,
            ended_at=state.ended_at,
            human_request=state.human_request,
            resume_at=state.resume_at,
            conditions=[
                ConditionBrief(name=c.name, status=c.status, required=c.required)
                for c in state.exit_conditions
            ],
        )

    def matches(self, status: LoopStatus | None) -> bool:
        """True when ``status`` is None, this loop's phase, or its outcome."""
        if status is None:
            return True
        if isinstance(status, LoopOutcome):
            return self.outcome is status
        return self.phase is status


class LoopQueries(ABC):
    """Read-only queries of the dashboard (seed 001 US5 ``ObservabilityQueries``).

    Errors: :class:`InvalidCursorError` for a foreign cursor; :class:`LoopFrameworkError` when
    the store cannot be read. An unknown loop has no events (callers check it exists first).
    """

    @abstractmethod
    def list_loops(
        self,
        *,
        project: str | None = None,
        status: LoopStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[LoopSummary]:
        """Up to ``limit`` loops, most recently created first, of ``project`` (None: all) whose
        phase or outcome is ``status`` (None: any), after ``cursor``."""

    @abstractmethod
    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[IterationEvent]:
        """Up to ``limit`` events of ``loop_id``, newest first, of ``types`` (None: all), after
        ``cursor``."""


class TraceSummary(BaseModel):
    """One X-Ray trace of a loop (from GetTraceSummaries). Durations in seconds."""

    trace_id: str
    start_time: datetime | None = None
    duration_seconds: float | None = None
    response_time_seconds: float | None = None
    has_error: bool = False
    has_fault: bool = False
    has_throttle: bool = False
    http_status: int | None = None
    annotations: dict[str, list[str]] = Field(default_factory=dict, description="annotation -> values")


class TracesResult(BaseModel):
    """A loop's traces, newest first, and where they came from."""

    loop_id: str
    source: str = Field(description='"xray", or "unavailable locally"')
    filter_expression: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    traces: list[TraceSummary] = Field(default_factory=list)
    note: str | None = None


class MetricSeries(BaseModel):
    """One metric over time: ``timestamps[i]`` (UTC) has ``values[i]`` (the statistic per period)."""

    name: str
    statistic: str = "Sum"
    unit: str | None = None
    period_seconds: int = 60
    timestamps: list[datetime] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)


class MetricsResult(BaseModel):
    """Metrics of a time window, and where they came from."""

    source: str = Field(description='"cloudwatch", "store" or "unavailable locally"')
    namespace: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    series: list[MetricSeries] = Field(default_factory=list)
    note: str | None = None


class TraceQueries(ABC):
    """Traces of a loop (X-Ray in AWS)."""

    @abstractmethod
    def traces(self, loop_id: str, *, start: datetime, end: datetime, limit: int = 50) -> TracesResult:
        """Up to ``limit`` trace summaries of ``loop_id`` between ``start`` and ``end`` (UTC)."""


class MetricQueries(ABC):
    """Metrics of the ``loopwright`` namespace (CloudWatch in AWS)."""

    @abstractmethod
    def metrics(self, *, start: datetime, end: datetime, period_seconds: int = 60) -> MetricsResult:
        """The namespace's metrics between ``start`` and ``end`` (UTC), one value per period."""


class UnavailableTraces(TraceQueries):
    """The local stand-in: no traces, and why."""

    def traces(self, loop_id: str, *, start: datetime, end: datetime, limit: int = 50) -> TracesResult:
        """An empty result with ``source = "unavailable locally"``."""
        return TracesResult(
            loop_id=loop_id,
            source=UNAVAILABLE_LOCALLY,
            start=start,
            end=end,
            note="X-Ray traces exist only in AWS; locally, run the loop with an OpenTelemetry SDK "
            "(opentelemetry-instrument, or LOOPWRIGHT_TRACING=1) to export the engine's spans",
        )


class UnavailableMetrics(MetricQueries):
    """The local stand-in: no CloudWatch metrics, and why."""

    def metrics(self, *, start: datetime, end: datetime, period_seconds: int = 60) -> MetricsResult:
        """An empty result with ``source = "unavailable locally"``."""
        return MetricsResult(
            source=UNAVAILABLE_LOCALLY,
            start=start,
            end=end,
            note="CloudWatch metrics exist only in AWS; the loop's own figures come from its events",
        )
