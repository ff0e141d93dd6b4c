"""The dashboard's read routes (GET): loops, a loop's progress, events, checkpoints, exit-condition
history, traces and metrics, and who the caller is. See :mod:`loopwright.dashboard.api`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Query

from loopwright.dashboard.deps import DashboardDeps
from loopwright.dashboard.errors import ApiError, answer_doc, error_doc
from loopwright.dashboard.evidence_reads import register_evidence_reads
from loopwright.dashboard.models import (
    CheckpointList,
    ConditionHistory,
    EventPage,
    IdentityInfo,
    LoopMetrics,
    LoopPage,
    LoopProgress,
)
from loopwright.dashboard.ports import TracesResult
from loopwright.dashboard.progress import (
    ETA_EVENTS,
    TIMING_TYPES,
    build_progress,
    checkpoint_summary,
    condition_history,
    loop_series,
    shown_phase,
)
from loopwright.dashboard.record_reads import register_record_reads
from loopwright.models import IterationEventType, LoopOutcome, LoopPhase, LoopState

#: Events read for a loop's per-iteration metrics (the newest ones).
METRIC_EVENTS = 2_000
#: Most points of a CloudWatch series over a loop's lifetime (the period grows to fit).
MAX_METRIC_POINTS = 100
#: Slack around a loop's lifetime when querying traces and metrics.
WINDOW_SLACK = timedelta(minutes=2)

_LOOP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,71}$")


def check_loop_id(loop_id: str) -> str:
    """``loop_id`` when it is one; else :class:`ApiError` 404 (no such loop can exist)."""
    if not _LOOP_ID.match(loop_id):
        raise ApiError(404, "not_found", f"no loop {loop_id[:80]!r}: not a loop id", field="loop_id")
    return loop_id


def register_reads(app: APIGatewayRestResolver, deps: DashboardDeps) -> None:
    def running(loop_id: str) -> bool | None:
        return None if deps.liveness is None else deps.liveness(loop_id)

    def state_of(loop_id: str) -> LoopState:
        return deps.store.get_state(check_loop_id(loop_id))

    @app.get(
        "/api/loops",
        summary="List loops",
        description="Loops, most recently created first, filtered by project and by status (a phase "
        "such as AWAITING_RESPONSE, or an outcome such as STOPPED); paginate with next_cursor.",
        responses=answer_doc(LoopPage, "a page of loops") | error_doc(400, 500),
    )
    def list_loops(
        project: Annotated[str | None, Query(max_length=128, description="project id")] = None,
        status: Annotated[
            LoopPhase | LoopOutcome | None, Query(description="a LoopPhase or a LoopOutcome")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200, description="loops per page")] = 50,
        cursor: Annotated[
            str | None, Query(max_length=2048, description="next_cursor of the last page")
        ] = None,
    ) -> LoopPage:
        page = deps.queries.list_loops(project=project, status=status, limit=limit, cursor=cursor)
        for summary in page.items:
            summary.running = running(summary.loop_id)
            summary.shown_phase = shown_phase(summary.phase, summary.running)
        return LoopPage(items=page.items, next_cursor=page.next_cursor)

    def progress(loop_id: str) -> LoopProgress:
        state = state_of(loop_id)
        timing = deps.queries.list_events(loop_id, types=TIMING_TYPES, limit=ETA_EVENTS).items
        return build_progress(
            state,
            timing,
            running=running(loop_id),
            stop_requested=deps.store.stop_requested(loop_id),
            now=deps.clock(),
        )

    @app.get(
        "/api/loops/<loop_id>",
        summary="A loop's progress",
        description="Iteration and limit, phase, tokens and time used, each exit condition's latest "
        "status, the ETA (see LoopProgress), a pending question and stop request.",
        responses=answer_doc(LoopProgress, "the loop's progress") | error_doc(404, 500),
    )
    def get_progress(loop_id: str) -> LoopProgress:
        return progress(loop_id)

    @app.get(
        "/progress/<session_id>",
        summary="A loop's progress (seed 001 T105 alias of /api/loops/{loop_id})",
        responses=answer_doc(LoopProgress, "the loop's progress") | error_doc(404, 500),
    )
    def get_progress_alias(session_id: str) -> LoopProgress:
        return progress(session_id)

    def events(
        loop_id: str, types: list[IterationEventType] | None, limit: int, cursor: str | None
    ) -> EventPage:
        state_of(loop_id)
        page = deps.queries.list_events(loop_id, types=types, limit=limit, cursor=cursor)
        return EventPage(items=page.items, next_cursor=page.next_cursor)

    @app.get(
        "/api/loops/<loop_id>/events",
        summary="A loop's events",
        description="Recorded events, newest first; `type` (repeatable) keeps only those types.",
        responses=answer_doc(EventPage, "a page of events") | error_doc(400, 404, 500),
    )
    def get_events(
        loop_id: str,
        event_type: Annotated[
            list[IterationEventType] | None, Query(alias="type", description="event type (repeatable)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="events per page")] = 100,
        cursor: Annotated[
            str | None, Query(max_length=2048, description="next_cursor of the last page")
        ] = None,
    ) -> EventPage:
        return events(loop_id, event_type, limit, cursor)

    @app.get(
        "/events/<session_id>",
        summary="A loop's events (seed 001 T106 alias of /api/loops/{loop_id}/events)",
        responses=answer_doc(EventPage, "a page of events") | error_doc(400, 404, 500),
    )
    def get_events_alias(
        session_id: str,
        limit: Annotated[int, Query(ge=1, le=500, description="events per page")] = 100,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> EventPage:
        return events(session_id, None, limit, cursor)

    def checkpoints(loop_id: str) -> CheckpointList:
        state_of(loop_id)
        found = deps.checkpoints.list_checkpoints(loop_id)
        return CheckpointList(
            loop_id=loop_id,
            checkpoints=[checkpoint_summary(c) for c in found if not isinstance(c, str)],
            unreadable=[c for c in found if isinstance(c, str)],
        )

    @app.get(
        "/api/loops/<loop_id>/checkpoints",
        summary="A loop's checkpoints",
        description="Stored checkpoints, newest first, each with its checksum verified.",
        responses=answer_doc(CheckpointList, "the checkpoints") | error_doc(404, 500),
    )
    def get_checkpoints(loop_id: str) -> CheckpointList:
        return checkpoints(loop_id)

    @app.get(
        "/checkpoints/<session_id>",
        summary="A loop's checkpoints (seed 001 T107 alias of /api/loops/{loop_id}/checkpoints)",
        responses=answer_doc(CheckpointList, "the checkpoints") | error_doc(404, 500),
    )
    def get_checkpoints_alias(session_id: str) -> CheckpointList:
        return checkpoints(session_id)

    @app.get(
        "/api/loops/<loop_id>/conditions",
        summary="A loop's exit-condition history",
        description="Each evaluation of the exit conditions (EXIT_CONDITIONS_EVALUATED), newest first.",
        responses=answer_doc(ConditionHistory, "the evaluations") | error_doc(400, 404, 500),
    )
    def get_conditions(
        loop_id: str,
        limit: Annotated[int, Query(ge=1, le=1000, description="evaluations per page")] = 200,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> ConditionHistory:
        state = state_of(loop_id)
        page = deps.queries.list_events(
            loop_id, types=[IterationEventType.EXIT_CONDITIONS_EVALUATED], limit=limit, cursor=cursor
        )
        return condition_history(state, page.items, page.next_cursor)

    def window(state: LoopState) -> tuple[datetime, datetime]:
        end = (state.ended_at or deps.clock()) + WINDOW_SLACK
        return state.started_at - WINDOW_SLACK, end

    @app.get(
        "/api/loops/<loop_id>/traces",
        summary="A loop's traces",
        description="X-Ray trace summaries annotated with the loop's id, over its lifetime; "
        'locally: none, with source "unavailable locally".',
        responses=answer_doc(TracesResult, "the traces") | error_doc(400, 404, 500),
    )
    def get_traces(
        loop_id: str, limit: Annotated[int, Query(ge=1, le=100, description="traces")] = 20
    ) -> TracesResult:
        state = state_of(loop_id)
        start, end = window(state)
        return deps.traces.traces(loop_id, start=start, end=end, limit=limit)

    @app.get(
        "/api/loops/<loop_id>/metrics",
        summary="A loop's metrics",
        description="Per-iteration figures from the loop's events (seconds, tokens, conditions met) "
        "and the service's CloudWatch metrics over the loop's lifetime.",
        responses=answer_doc(LoopMetrics, "the metrics") | error_doc(404, 500),
    )
    def get_metrics(loop_id: str) -> LoopMetrics:
        state = state_of(loop_id)
        types = [
            IterationEventType.ITERATION_STARTED,
            IterationEventType.ITERATION_COMPLETED,
            IterationEventType.AGENT_COMPLETED,
            IterationEventType.AGENT_FAILED,
            IterationEventType.EXIT_CONDITIONS_EVALUATED,
        ]
        found = deps.queries.list_events(loop_id, types=types, limit=METRIC_EVENTS).items
        start, end = window(state)
        seconds = max(60.0, (end - start).total_seconds())
        period = max(60, -(-int(seconds / MAX_METRIC_POINTS) // 60) * 60)
        service = deps.metrics.metrics(start=start, end=end, period_seconds=period)
        return LoopMetrics(loop_id=loop_id, loop=loop_series(state, found), service=service)

    register_record_reads(app, deps)  # the agent's records: /api/loops/{loop_id}/iterations[/{n}]
    register_evidence_reads(app, deps)  # the signed evidence bundle: /api/loops/{loop_id}/evidence

    @app.get(
        "/api/identity",
        summary="Who the API takes the caller for",
        responses=answer_doc(IdentityInfo, "the caller") | error_doc(400, 401),
    )
    def get_identity() -> IdentityInfo:
        identity = deps.identity(app.current_event.raw_event)
        return IdentityInfo(
            principal=identity.principal,
            groups=list(identity.groups),
            operates_all_projects=identity.operates_all_projects,
            source="cognito" if identity.source == "cognito" else "local",
            impersonation_header=identity.impersonation_header,
        )
