"""The dashboard API and web page: one Powertools ``APIGatewayRestResolver`` built by
:func:`build_app`, used by the Lambda handler (``functions/dashboard``) and the local server
(``loopwright dashboard``) alike.

Routes (every JSON answer; errors are :class:`~loopwright.dashboard.models.ErrorResponse`):

- ``GET /api/loops`` (``project``, ``status``, ``limit``, ``cursor``): loops, newest first.
- ``GET /api/loops/{loop_id}``: progress (seed alias ``GET /progress/{session_id}``).
- ``GET /api/loops/{loop_id}/events`` (``type`` repeatable, ``limit``, ``cursor``): events,
  newest first (seed alias ``GET /events/{session_id}``).
- ``GET /api/loops/{loop_id}/checkpoints`` (seed alias ``GET /checkpoints/{session_id}``).
- ``GET /api/loops/{loop_id}/conditions`` (``limit``, ``cursor``): exit-condition history.
- ``GET /api/loops/{loop_id}/traces`` (``limit``): X-Ray traces (``annotation.loop_id``).
- ``GET /api/loops/{loop_id}/metrics``: per-iteration figures and the service's CloudWatch metrics.
- ``POST /api/loops/{loop_id}/pause|resume|stop|approve|limits``: controls, authorized by Cedar.
- ``GET /api/identity``: who the API takes the caller for.
- ``GET /api/openapi.json`` and ``GET /swagger``: the OpenAPI document and Swagger UI.
- ``GET /`` and ``GET /static/{name}``: the web page (package data in ``dashboard/static``).

Status codes: 400 bad input (``field`` names it), 401 no identity, 403 Cedar denied (the
deciding ``policy_ids``), 404 unknown loop or route, 409 the control does not apply now, 415 a
body that is not ``application/json``, 500 the store failed. A rejected control writes
nothing: identity, body and Cedar are all checked before :class:`ControlSubmitter` writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from http import HTTPStatus
from importlib import resources
from typing import Annotated, Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from loopwright.dashboard.identity import Identity, IdentityError, IdentityResolver
from loopwright.dashboard.models import (
    ApproveBody,
    CheckpointList,
    ConditionHistory,
    ControlBody,
    ErrorCode,
    ErrorDetail,
    ErrorResponse,
    EventPage,
    IdentityInfo,
    LimitsBody,
    LoopMetrics,
    LoopPage,
    LoopProgress,
)
from loopwright.dashboard.ports import (
    InvalidCursorError,
    LivenessCheck,
    LoopQueries,
    MetricQueries,
    TraceQueries,
    TracesResult,
    UnavailableMetrics,
    UnavailableTraces,
)
from loopwright.dashboard.progress import (
    ETA_EVENTS,
    TIMING_TYPES,
    build_progress,
    checkpoint_summary,
    condition_history,
    loop_series,
    shown_phase,
)
from loopwright.exceptions import (
    ControlConflictError,
    ControlDeniedError,
    LoopFrameworkError,
    LoopNotFoundError,
)
from loopwright.models import (
    ControlAction,
    ControlRequest,
    ControlResult,
    IterationEventType,
    LimitChange,
    LoopOutcome,
    LoopPhase,
    LoopState,
    operators_group,
    utcnow,
)
from loopwright.ports import CheckpointStore, LoopStore

#: Title and version of the OpenAPI document.
API_TITLE = "loopwright dashboard API"
API_VERSION = "1.0.0"
#: Events read for a loop's per-iteration metrics (the newest ones).
METRIC_EVENTS = 2_000
#: Most points of a CloudWatch series over a loop's lifetime (the period grows to fit).
MAX_METRIC_POINTS = 100
#: Slack around a loop's lifetime when querying traces and metrics.
WINDOW_SLACK = timedelta(minutes=2)
#: Static files of the web page and their content types.
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Headers of the web page: no inline script or style, nothing from other origins.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_LOOP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,71}$")
_JSON = content_types.APPLICATION_JSON
_NO_STORE = {"Cache-Control": "no-store"}


class ControlSubmitter(Protocol):
    """What applies a control: :class:`loopwright.controls.ControlService`.

    ``submit`` authorizes the request with Cedar, then applies or queues it; it raises
    :class:`ControlDeniedError` (403), :class:`ControlConflictError` (409) or
    :class:`LoopNotFoundError` (404) having written nothing.
    """

    def submit(self, request: ControlRequest) -> ControlResult: ...


@dataclass
class DashboardDeps:
    """The ports the dashboard works with.

    ``liveness`` tells whether a process runs a loop (locally its lock file; None in AWS);
    ``clock`` gives the current UTC time (tests pass a fixed one).
    """

    store: LoopStore
    queries: LoopQueries
    checkpoints: CheckpointStore
    controls: ControlSubmitter
    identity: IdentityResolver
    traces: TraceQueries = field(default_factory=UnavailableTraces)
    metrics: MetricQueries = field(default_factory=UnavailableMetrics)
    liveness: LivenessCheck | None = None
    clock: Callable[[], datetime] = utcnow


class ApiError(LoopFrameworkError):
    """An answer other than 2xx: ``status`` and the :class:`ErrorDetail` fields."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        policy_ids: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(code=code, message=message, field=field, policy_ids=policy_ids)


def _error_response(status: int, detail: ErrorDetail) -> Response[dict[str, Any]]:
    return Response(
        status_code=status,
        content_type=_JSON,
        body=ErrorResponse(error=detail).model_dump(mode="json", exclude_none=True),
        headers=dict(_NO_STORE),
    )


def _error_doc(*codes: int) -> dict[int, Any]:
    """The OpenAPI ``responses`` entries of ``codes``, each an :class:`ErrorResponse`."""
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "content": {_JSON: {"model": ErrorResponse}},
        }
        for code in codes
    }


def _field_of(loc: Sequence[Any]) -> tuple[str, str]:
    """(where, field name) of a validation error's ``loc``: ``("query", "limit")``,
    ``("body", "max_iterations")``; pydantic's union tags (``str-enum[LoopPhase]``) and list
    indexes are left out."""
    parts = [str(p) for p in loc if isinstance(p, str) and "[" not in str(p)]
    where = parts[0] if parts else "request"
    if where in ("query", "path", "header"):
        return where, parts[1] if len(parts) > 1 else where
    return where, ".".join(parts[1:]) or where


def _validation_detail(exc: RequestValidationError) -> ErrorDetail:
    """The first invalid input of ``exc`` as an error naming it; when a value fails several
    alternatives (a phase or an outcome), each one's message is given."""
    errors = [e for e in exc.errors() if isinstance(e, Mapping)]
    if not errors:
        return ErrorDetail(code="bad_request", message="the request is not valid")
    where, name = _field_of(errors[0].get("loc", ()))
    messages: list[str] = []
    for error in errors:
        if _field_of(error.get("loc", ())) != (where, name):
            continue
        if error.get("type") == "json_invalid":
            text = "not valid JSON"
        else:
            text = str(error.get("msg") or error.get("type") or "invalid value").removeprefix("Value error, ")
        if text not in messages:
            messages.append(text)
    message = "; or ".join(messages)
    value = errors[0].get("input")
    if where != "body" and isinstance(value, str | int | float) and errors[0].get("type") != "missing":
        message += f" (got {str(value)[:80]!r})"
    label = (
        "body"
        if (where, name) == ("body", "body")
        else f"{where} {'field' if where == 'body' else 'parameter'} {name}"
    )
    return ErrorDetail(code="bad_request", message=f"{label}: {message}", field=name)


def _check_loop_id(loop_id: str) -> str:
    if not _LOOP_ID.match(loop_id):
        raise ApiError(404, "not_found", f"no loop {loop_id[:80]!r}: not a loop id", field="loop_id")
    return loop_id


@cache
def _static_files() -> dict[str, bytes]:
    """name -> content of every file in ``dashboard/static`` (read once per process)."""
    folder = resources.files("loopwright.dashboard") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and any(entry.name.endswith(ext) for ext in STATIC_TYPES)
    }


def _content_type(name: str) -> str:
    return next(ctype for ext, ctype in STATIC_TYPES.items() if name.endswith(ext))


def _base_path(event: Mapping[str, Any]) -> str:
    """The path prefix the API is served under (API Gateway stage or base path mapping): the
    part of ``requestContext.path`` before the resource path; "" locally."""
    path = str(event.get("path") or "")
    full = str((event.get("requestContext") or {}).get("path") or "")
    if path and full.endswith(path):
        return full[: len(full) - len(path)].rstrip("/")
    return ""


def openapi_document(app: APIGatewayRestResolver) -> dict[str, Any]:
    """The OpenAPI document of ``app``, with the request validation answers as they are:
    Powertools documents them as 422 ``HTTPValidationError``; this API answers 400
    :class:`ErrorResponse`."""
    schema = app.get_openapi_schema(title=API_TITLE, version=API_VERSION)
    document: dict[str, Any] = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault(
                    "400",
                    {"description": "Bad Request", "content": {_JSON: {"schema": error_ref}}},
                )
    schemas = document.get("components", {}).get("schemas", {})
    text = json.dumps(document.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'/{unused}"' not in text:
            schemas.pop(unused, None)
    return document


class DashboardResolver(APIGatewayRestResolver):
    """The resolver, refusing a request body that is not JSON with 415 before Powertools parses
    it (Powertools would fail on, for example, ``multipart/form-data`` without a boundary)."""

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if event.get("body") and media_type and not (media_type == _JSON or media_type.endswith("+json")):
            message = f"header Content-Type: {media_type[:80]!r}; send the body as application/json"
            body = ErrorResponse(
                error=ErrorDetail(code="unsupported_media_type", message=message, field="Content-Type")
            )
            return {
                "statusCode": 415,
                "headers": {"Content-Type": _JSON, **_NO_STORE},
                "body": body.model_dump_json(exclude_none=True),
                "isBase64Encoded": False,
            }
        return super().resolve(event, context)


def build_app(deps: DashboardDeps, *, routers: Sequence[Router] = ()) -> APIGatewayRestResolver:
    """The dashboard's resolver over ``deps``.

    ``routers``: more Powertools routers to serve with it. HOOK for the plan endpoints of seed
    003 (``loopwright.plans.api``): the lead passes ``routers=[plans_router]``.
    """
    app = DashboardResolver(enable_validation=True)
    app.use(middlewares=[_no_store])
    _register_errors(app, Logger(child=True))
    _register_reads(app, deps)
    _register_controls(app, deps)
    _register_page(app)
    for router in routers:
        app.include_router(router)
    return app


def _no_store(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """``Cache-Control: no-store`` on every ``/api/`` answer: live figures are never cached."""
    response = next_middleware(app)
    if app.current_event.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# --------------------------------------------------------------------------------- errors
def _register_errors(app: APIGatewayRestResolver, logger: Logger) -> None:
    def bad_request(exc: RequestValidationError) -> Response[dict[str, Any]]:
        return _error_response(400, _validation_detail(exc))

    def api_error(exc: ApiError) -> Response[dict[str, Any]]:
        return _error_response(exc.status, exc.detail)

    def identity(exc: IdentityError) -> Response[dict[str, Any]]:
        code: ErrorCode = "unauthenticated" if exc.status == 401 else "bad_request"
        return _error_response(exc.status, ErrorDetail(code=code, message=str(exc), field=exc.field))

    def bad_media_type(exc: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        message = "header Content-Type: send the body as application/json"
        detail = ErrorDetail(code="unsupported_media_type", message=message, field="Content-Type")
        return _error_response(415, detail)

    def bad_encoding(exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
        detail = ErrorDetail(code="bad_request", message="body: not UTF-8 text (send JSON)", field="body")
        return _error_response(400, detail)

    def bad_cursor(exc: InvalidCursorError) -> Response[dict[str, Any]]:
        return _error_response(400, ErrorDetail(code="bad_request", message=str(exc), field="cursor"))

    def not_found(exc: LoopNotFoundError) -> Response[dict[str, Any]]:
        return _error_response(404, ErrorDetail(code="not_found", message=str(exc), field="loop_id"))

    def denied(exc: ControlDeniedError) -> Response[dict[str, Any]]:
        detail = ErrorDetail(code="forbidden", message=str(exc), policy_ids=list(exc.policy_ids))
        return _error_response(403, detail)

    def conflict(exc: ControlConflictError) -> Response[dict[str, Any]]:
        return _error_response(409, ErrorDetail(code="conflict", message=str(exc)))

    def store_failed(exc: LoopFrameworkError) -> Response[dict[str, Any]]:
        logger.exception("dashboard request failed", exc_info=exc)
        return _error_response(500, ErrorDetail(code="internal", message=str(exc)))

    def unexpected(exc: Exception) -> Response[dict[str, Any]]:
        # The edge of the API: a bug is logged with its trace, the caller gets JSON without it.
        logger.exception("dashboard request failed unexpectedly", exc_info=exc)
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return _error_response(500, ErrorDetail(code="internal", message=message))

    def no_route(exc: NotFoundError) -> Response[dict[str, Any]]:
        event = app.current_event
        message = f"no route {event.http_method} {event.path}; see /swagger for the routes"
        return _error_response(404, ErrorDetail(code="not_found", message=message))

    handlers: list[tuple[type[Exception], Callable[[Any], Response[dict[str, Any]]]]] = [
        (RequestValidationError, bad_request),
        (ApiError, api_error),
        (IdentityError, identity),
        (InvalidCursorError, bad_cursor),
        (RequestUnsupportedContentType, bad_media_type),
        (UnicodeDecodeError, bad_encoding),  # a body that is not UTF-8 (Powertools decodes it)
        (LoopNotFoundError, not_found),
        (ControlDeniedError, denied),
        (ControlConflictError, conflict),
        (LoopFrameworkError, store_failed),
        (NotFoundError, no_route),
        (Exception, unexpected),
    ]
    for exc_class, handler in handlers:
        app.exception_handler(exc_class)(handler)


# --------------------------------------------------------------------------------- reads
def _register_reads(app: APIGatewayRestResolver, deps: DashboardDeps) -> None:
    def running(loop_id: str) -> bool | None:
        return None if deps.liveness is None else deps.liveness(loop_id)

    def state_of(loop_id: str) -> LoopState:
        return deps.store.get_state(_check_loop_id(loop_id))

    @app.get(
        "/api/loops",
        summary="List loops",
        description="Loops, most recently created first, filtered by project and by status (a phase "
        "such as AWAITING_RESPONSE, or an outcome such as STOPPED); paginate with next_cursor.",
        responses=_error_doc(400, 500),
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
        responses=_error_doc(404, 500),
    )
    def get_progress(loop_id: str) -> LoopProgress:
        return progress(loop_id)

    @app.get(
        "/progress/<session_id>",
        summary="A loop's progress (seed 001 T105 alias of /api/loops/{loop_id})",
        responses=_error_doc(404, 500),
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
        responses=_error_doc(400, 404, 500),
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
        responses=_error_doc(400, 404, 500),
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
        responses=_error_doc(404, 500),
    )
    def get_checkpoints(loop_id: str) -> CheckpointList:
        return checkpoints(loop_id)

    @app.get(
        "/checkpoints/<session_id>",
        summary="A loop's checkpoints (seed 001 T107 alias of /api/loops/{loop_id}/checkpoints)",
        responses=_error_doc(404, 500),
    )
    def get_checkpoints_alias(session_id: str) -> CheckpointList:
        return checkpoints(session_id)

    @app.get(
        "/api/loops/<loop_id>/conditions",
        summary="A loop's exit-condition history",
        description="Each evaluation of the exit conditions (EXIT_CONDITIONS_EVALUATED), newest first.",
        responses=_error_doc(400, 404, 500),
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
        responses=_error_doc(400, 404, 500),
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
        responses=_error_doc(404, 500),
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

    @app.get("/api/identity", summary="Who the API takes the caller for", responses=_error_doc(400, 401))
    def get_identity() -> IdentityInfo:
        identity = deps.identity(app.current_event.raw_event)
        return IdentityInfo(
            principal=identity.principal,
            groups=list(identity.groups),
            operates_all_projects=identity.operates_all_projects,
            source="cognito" if identity.source == "cognito" else "local",
            impersonation_header=identity.impersonation_header,
        )


# --------------------------------------------------------------------------------- controls
_CONTROL_DOC = {
    200: {
        "description": "applied: the loop was idle and is changed",
        "content": {_JSON: {"model": ControlResult}},
    },
    202: {
        "description": "queued for the running loop's next step",
        "content": {_JSON: {"model": ControlResult}},
    },
    **_error_doc(400, 401, 403, 404, 409, 415, 500),
}


def _register_controls(app: APIGatewayRestResolver, deps: DashboardDeps) -> None:
    def submit(
        loop_id: str,
        action: ControlAction,
        body: ControlBody | None,
        *,
        limits: LimitChange | None = None,
        response: str | None = None,
    ) -> Response[ControlResult]:
        identity: Identity = deps.identity(app.current_event.raw_event)
        state = deps.store.get_state(_check_loop_id(loop_id))
        groups = list(identity.groups)
        if identity.operates_all_projects and operators_group(state.project) not in groups:
            groups.append(operators_group(state.project))
        try:
            request = ControlRequest(
                loop_id=loop_id,
                action=action,
                principal=identity.principal,
                groups=groups,
                reason=body.reason if body is not None else "",
                limits=limits,
                response=response,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(400, "bad_request", f"body {name}: {first['msg']}", field=name) from exc
        result = deps.controls.submit(request)
        status = 202 if result.status == "queued" else 200
        return Response(status_code=status, content_type=_JSON, body=result, headers=dict(_NO_STORE))

    @app.post(
        "/api/loops/<loop_id>/pause",
        summary="Pause a loop",
        description="The loop pauses after its current step, without an outcome; resume continues it.",
        responses=_CONTROL_DOC,
    )
    def post_pause(loop_id: str, body: ControlBody | None = None) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.PAUSE, body)

    @app.post(
        "/api/loops/<loop_id>/resume",
        summary="Resume a loop",
        description="Continue a PAUSED, INTERRUPTED or STOPPED loop from its newest valid checkpoint.",
        responses=_CONTROL_DOC,
    )
    def post_resume(loop_id: str, body: ControlBody | None = None) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.RESUME, body)

    @app.post(
        "/api/loops/<loop_id>/stop",
        summary="Stop a loop",
        description="The loop stops after its current step with outcome STOPPED.",
        responses=_CONTROL_DOC,
    )
    def post_stop(loop_id: str, body: ControlBody | None = None) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.STOP, body)

    @app.post(
        "/api/loops/<loop_id>/approve",
        summary="Answer a loop awaiting a response",
        description="Give the agent's question (AWAITING_RESPONSE) an answer; the loop continues.",
        responses=_CONTROL_DOC,
    )
    def post_approve(loop_id: str, body: ApproveBody | None = None) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.APPROVE, body, response=body.response if body else None)

    @app.post(
        "/api/loops/<loop_id>/limits",
        summary="Change a loop's limits",
        description="Each limit given replaces the loop's (iterations, tokens, wall-clock seconds).",
        responses=_CONTROL_DOC,
    )
    def post_limits(loop_id: str, body: LimitsBody) -> Response[ControlResult]:
        limits = LimitChange(
            max_iterations=body.max_iterations,
            token_budget=body.token_budget,
            max_duration_seconds=body.max_duration_seconds,
        )
        return submit(loop_id, ControlAction.RAISE_LIMIT, body, limits=limits)


# --------------------------------------------------------------------------------- page
def _register_page(app: APIGatewayRestResolver) -> None:
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not document:
            document.update(openapi_document(app))
        return document

    @app.get("/api/openapi.json", include_in_schema=False)
    def get_openapi() -> Response[Any]:
        return Response(200, _JSON, body=json.dumps(openapi()), headers=dict(_NO_STORE))

    @app.get("/swagger", include_in_schema=False)
    def get_swagger() -> Response[Any]:
        spec = dict(openapi())
        spec["servers"] = [{"url": _base_path(app.current_event.raw_event) or "/"}]
        text = json.dumps(spec).replace("</", "<\\/")
        query = app.current_event.query_string_parameters or {}
        if query.get("format") == "json":
            return Response(200, _JSON, body=text)
        return Response(200, "text/html; charset=utf-8", body=_swagger_html(text))

    @app.get("/", include_in_schema=False)
    def get_index() -> Response[Any]:
        html = _static_files()["index.html"].decode()
        base = _base_path(app.current_event.raw_event) + "/"
        return Response(
            200, STATIC_TYPES[".html"], body=html.replace("__BASE_HREF__", base), headers=dict(PAGE_HEADERS)
        )

    @app.get("/static/<name>", include_in_schema=False)
    def get_static(name: str) -> Response[Any]:
        files = _static_files()
        if name not in files:
            raise ApiError(404, "not_found", f"no static file {name[:80]!r}")
        return Response(200, _content_type(name), body=files[name].decode(), headers=dict(PAGE_HEADERS))


def _swagger_html(spec: str) -> str:
    """Swagger UI with its script and style inlined (Powertools ships them: no CDN needed)."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    folder = resources.files("aws_lambda_powertools.event_handler.openapi") / "swagger_ui"
    js = (folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (folder / "swagger-ui.min.css").read_text(encoding="utf-8")
    return generate_swagger_html(spec, js, css, "", None)
