"""Pure figures of the dashboard: a loop's progress and ETA, its checkpoints, its exit-condition
history and its per-iteration metrics, computed from its state and events (no I/O here)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from loopwright.dashboard.models import (
    CheckpointSummary,
    ConditionEvaluation,
    ConditionHistory,
    ConditionProgress,
    FeatureProgress,
    LoopProgress,
)
from loopwright.dashboard.ports import MetricSeries, MetricsResult
from loopwright.models import (
    Checkpoint,
    ExitConditionStatusValue,
    IterationEvent,
    IterationEventType,
    LoopPhase,
    LoopResult,
    LoopState,
)
from loopwright.steps.progress import progress_summary

#: Completed iterations whose mean duration gives the ETA (the most recent ones).
ETA_WINDOW = 10
#: Events read to estimate the ETA: a start and a completion per iteration of the window, plus
#: a few more for an iteration in progress and re-runs after a resume.
ETA_EVENTS = 2 * ETA_WINDOW + 4
#: Event types the ETA is estimated from.
TIMING_TYPES = (IterationEventType.ITERATION_STARTED, IterationEventType.ITERATION_COMPLETED)
#: Phases of a loop whose engine is working on it (a process should be running it).
ACTIVE_PHASES = frozenset(
    {
        LoopPhase.INITIALIZING,
        LoopPhase.AUTHORIZING,
        LoopPhase.ITERATING,
        LoopPhase.CHECKPOINTING,
        LoopPhase.EVALUATING,
        LoopPhase.VERIFYING,
        LoopPhase.DECIDING,
    }
)

_EV = IterationEventType


def shown_phase(phase: LoopPhase, running: bool | None) -> str:
    """``phase``, or ``INTERRUPTED`` for an active phase that no process runs (like the CLI)."""
    if running is False and phase in ACTIVE_PHASES:
        return LoopPhase.INTERRUPTED.value
    return phase.value


def elapsed_seconds(state: LoopState, now: datetime) -> float:
    """Seconds that count against the loop's time limit at ``now``: its sessions' running time
    (paused time and waits for a human left out), or wall clock with ``count_paused_time``
    (:meth:`~loopwright.models.LoopState.elapsed_at`)."""
    return state.elapsed_at(now)


def _percent(used: float, limit: float | None) -> float | None:
    if not limit:
        return None
    return round(100.0 * used / limit, 1)


def iteration_durations(events: Iterable[IterationEvent]) -> list[tuple[int, datetime, float]]:
    """(iteration, completed at, seconds) of each completed iteration in ``events`` (any order),
    oldest first: from the iteration's latest ITERATION_STARTED before its ITERATION_COMPLETED."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    started: dict[int, datetime] = {}
    found: list[tuple[int, datetime, float]] = []
    for event in ordered:
        if event.type is _EV.ITERATION_STARTED:
            started[event.iteration] = event.timestamp
        elif event.type is _EV.ITERATION_COMPLETED and event.iteration in started:
            seconds = (event.timestamp - started.pop(event.iteration)).total_seconds()
            found.append((event.iteration, event.timestamp, max(0.0, seconds)))
    return found


def _in_progress(events: Sequence[IterationEvent]) -> IterationEvent | None:
    """The newest ITERATION_STARTED with no ITERATION_COMPLETED after it, if any."""
    for event in sorted(events, key=lambda e: e.timestamp, reverse=True):
        if event.type is _EV.ITERATION_COMPLETED:
            return None
        if event.type is _EV.ITERATION_STARTED:
            return event
    return None


def estimate_eta(
    state: LoopState, timing_events: Sequence[IterationEvent], *, running: bool | None, now: datetime
) -> tuple[float | None, float | None, str | None]:
    """(mean iteration seconds, ETA seconds, how it was estimated) of ``state``.

    See :class:`~loopwright.dashboard.models.LoopProgress` for the method. The ETA is None when
    the loop is not running or no iteration of ``timing_events`` completed.
    """
    durations = iteration_durations(timing_events)[-ETA_WINDOW:]
    if not durations:
        return None, None, None
    mean = sum(seconds for _, _, seconds in durations) / len(durations)
    if state.phase not in ACTIVE_PHASES or running is False:
        return mean, None, None
    config = state.config
    current = _in_progress(timing_events)
    done = current.iteration - 1 if current is not None else state.iteration
    left = max(0, config.max_iterations - done)
    limit_name = f"max_iterations {config.max_iterations}"
    if config.token_budget and state.tokens_used > 0 and state.iteration > 0:
        per_iteration = state.tokens_used / state.iteration
        by_tokens = max(0, math.ceil((config.token_budget - state.tokens_used) / per_iteration))
        if by_tokens < left:
            left, limit_name = (
                by_tokens,
                f"token_budget {config.token_budget} at {per_iteration:.0f} tokens each",
            )
    eta = mean * left
    if current is not None and left > 0:
        eta -= min(mean, max(0.0, (now - current.timestamp).total_seconds()))
    basis = (
        f"mean of the last {len(durations)} iteration(s), {mean:.1f} s, x {left} iteration(s) left "
        f"to {limit_name}"
    )
    if config.max_duration_seconds is not None:
        time_left = max(0.0, config.max_duration_seconds - elapsed_seconds(state, now))
        if time_left < eta:
            eta = time_left
            basis = f"wall-clock time left to max_duration_seconds {config.max_duration_seconds}"
    return mean, round(max(0.0, eta), 1), basis


def build_progress(
    state: LoopState,
    timing_events: Sequence[IterationEvent],
    *,
    running: bool | None,
    stop_requested: str | None,
    now: datetime,
) -> LoopProgress:
    """The progress of ``state``; ``timing_events`` are its newest ITERATION_STARTED and
    ITERATION_COMPLETED events (at least :data:`ETA_EVENTS` of them when there are)."""
    config = state.config
    mean, eta, basis = estimate_eta(state, timing_events, running=running, now=now)
    required = [c for c in state.exit_conditions if c.required]
    elapsed = elapsed_seconds(state, now)
    result = LoopResult.from_state(state)  # features and agent sessions, as the result counts them
    return LoopProgress(
        loop_id=state.loop_id,
        project=state.project,
        goal=config.goal,
        phase=state.phase,
        shown_phase=shown_phase(state.phase, running),
        running=running,
        finished=state.phase is LoopPhase.COMPLETED,
        outcome=state.outcome,
        outcome_reason=state.outcome_reason,
        iteration=state.iteration,
        max_iterations=config.max_iterations,
        tokens_used=state.tokens_used,
        token_budget=config.token_budget,
        cost_usd=state.cost_usd,
        cost_budget_usd=config.cost_budget_usd,
        unpriced_models=state.unpriced_models,
        elapsed_seconds=round(elapsed, 3),
        max_duration_seconds=config.max_duration_seconds,
        percent_iterations=_percent(state.iteration, config.max_iterations) or 0.0,
        percent_tokens=_percent(state.tokens_used, config.token_budget),
        percent_cost=_percent(state.cost_usd, config.cost_budget_usd),
        percent_time=_percent(elapsed, config.max_duration_seconds),
        conditions=[
            ConditionProgress(
                name=c.name,
                type=c.type,
                required=c.required,
                status=c.status,
                iteration=c.iteration,
                summary=c.summary,
                failures=len(c.failures),
                duration_seconds=c.duration_seconds,
                evaluated_at=c.evaluated_at,
            )
            for c in state.exit_conditions
        ],
        conditions_met=sum(1 for c in required if c.is_met),
        conditions_required=len(required),
        mean_iteration_seconds=None if mean is None else round(mean, 3),
        eta_seconds=eta,
        eta_at=None if eta is None else now + timedelta(seconds=eta),
        eta_basis=basis,
        awaiting_response=state.human_request if state.phase is LoopPhase.AWAITING_RESPONSE else None,
        pinned_change=(
            [c.path for c in state.pinned_hold.changes]
            if state.pinned_hold is not None and state.phase is LoopPhase.AWAITING_RESPONSE
            else None
        ),
        resume_at=state.resume_at,
        stop_requested=stop_requested,
        warnings=list(state.pending_warnings),
        started_at=state.started_at,
        updated_at=state.updated_at,
        ended_at=state.ended_at,
        branch=state.branch,
        head_commit=state.head_commit,
        last_checkpoint_id=state.last_checkpoint_id,
        sessions_used=result.sessions_used,
        max_sessions=state.config.max_sessions,
        handoff_reason=state.handoff_reason,
        progress_summary=progress_summary(state.progress, state.config.max_stuck_iterations),
        stuck_reason=state.progress.stuck_reason,
        runs=state.sessions_used,
        features_completed=result.features_completed,
        features_total=result.features_total,
        features=[
            FeatureProgress(name=f.name, description=f.description, done=f.name in state.features_done)
            for f in state.config.features
        ],
        current_feature=next(
            (f.name for f in state.config.features if f.name not in state.features_done), None
        ),
        version=state.version,
    )


def checkpoint_summary(checkpoint: Checkpoint) -> CheckpointSummary:
    """The summary of one stored checkpoint (its checksum verified)."""
    return CheckpointSummary(
        checkpoint_id=checkpoint.checkpoint_id,
        iteration=checkpoint.iteration,
        created_at=checkpoint.created_at,
        commit=checkpoint.commit,
        valid=checkpoint.is_valid(),
        phase=checkpoint.state.phase,
        tokens_used=checkpoint.state.tokens_used,
        conditions_met=sum(1 for c in checkpoint.state.exit_conditions if c.is_met),
    )


def _statuses(event: IterationEvent) -> dict[str, ExitConditionStatusValue]:
    raw = event.data.get("statuses")
    if not isinstance(raw, dict):
        return {}
    found: dict[str, ExitConditionStatusValue] = {}
    for name, value in raw.items():
        try:
            found[str(name)] = ExitConditionStatusValue(value)
        except ValueError:
            continue  # a status this version does not know: left out rather than failing the page
    return found


def condition_evaluation(event: IterationEvent) -> ConditionEvaluation:
    """One EXIT_CONDITIONS_EVALUATED event as an evaluation (its ``statuses`` and ``summaries``)."""
    statuses = _statuses(event)
    summaries = event.data.get("summaries")
    return ConditionEvaluation(
        iteration=event.iteration,
        evaluated_at=event.timestamp,
        statuses=statuses,
        summaries={str(k): str(v) for k, v in summaries.items()} if isinstance(summaries, dict) else {},
        met=sum(1 for status in statuses.values() if status is ExitConditionStatusValue.MET),
    )


def condition_history(
    state: LoopState, events: Sequence[IterationEvent], next_cursor: str | None
) -> ConditionHistory:
    """The history of ``state``'s exit conditions from its EXIT_CONDITIONS_EVALUATED ``events``
    (newest first, as paged)."""
    evaluations = [condition_evaluation(e) for e in events if e.type is _EV.EXIT_CONDITIONS_EVALUATED]
    names = [c.key for c in state.config.exit_conditions]
    totals: dict[str, dict[str, int]] = {name: {} for name in names}
    for evaluation in evaluations:
        for name, status in evaluation.statuses.items():
            counts = totals.setdefault(name, {})
            counts[status.value] = counts.get(status.value, 0) + 1
    return ConditionHistory(
        loop_id=state.loop_id,
        conditions=names,
        evaluations=evaluations,
        totals=totals,
        next_cursor=next_cursor,
    )


def loop_series(state: LoopState, events: Sequence[IterationEvent]) -> MetricsResult:
    """Per-iteration figures of ``state`` from its events: ``iteration_seconds`` (ITERATION_STARTED
    to ITERATION_COMPLETED), ``tokens`` (reported by the agent, AGENT_COMPLETED/AGENT_FAILED) and
    ``conditions_met`` (EXIT_CONDITIONS_EVALUATED), each at the time of its event."""
    durations = iteration_durations(events)
    agent = sorted(
        (e for e in events if e.type in (_EV.AGENT_COMPLETED, _EV.AGENT_FAILED)), key=lambda e: e.timestamp
    )
    evaluated = sorted(
        (e for e in events if e.type is _EV.EXIT_CONDITIONS_EVALUATED), key=lambda e: e.timestamp
    )
    tokens = [(e.timestamp, float(e.data.get("tokens_used", 0) or 0)) for e in agent]
    met = [(e.timestamp, float(condition_evaluation(e).met)) for e in evaluated]
    series = [
        MetricSeries(
            name="iteration_seconds",
            statistic="Value",
            unit="Seconds",
            timestamps=[t for _, t, _ in durations],
            values=[round(s, 3) for _, _, s in durations],
        ),
        MetricSeries(
            name="tokens",
            statistic="Value",
            unit="Count",
            timestamps=[t for t, _ in tokens],
            values=[v for _, v in tokens],
        ),
        MetricSeries(
            name="conditions_met",
            statistic="Value",
            unit="Count",
            timestamps=[t for t, _ in met],
            values=[v for _, v in met],
        ),
    ]
    return MetricsResult(
        source="store",
        start=state.started_at,
        end=state.ended_at or state.updated_at,
        series=series,
        note=f"one value per iteration, from the loop's newest {len(events)} events of these types",
    )
