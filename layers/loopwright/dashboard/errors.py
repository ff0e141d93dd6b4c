"""The dashboard's error answers: one JSON shape (:class:`~loopwright.dashboard.models.ErrorResponse`,
``{"error": {"code", "message", "field"?, "policy_ids"?}}``) with the lower-case codes of
:data:`~loopwright.dashboard.models.ErrorCode`, for the dashboard's routes, the plan routes
(:mod:`loopwright.planapi.router`) and the refusals of the local server alike.

:func:`register_errors` maps exceptions to answers: 400 :class:`RequestValidationError` (the
parameter or body field named), :class:`ApiError` (its own status), 401/400
:class:`IdentityError`, 400 a bad cursor or a body that is not UTF-8, 415 a body that is not
JSON, 404 :class:`LoopNotFoundError`, :class:`CheckpointNotFoundError` or no route (405 with
``Allow`` when the path exists with other methods), 403 :class:`ControlDeniedError` (with the
deciding ``policy_ids``), 409 :class:`ControlConflictError` and :class:`CheckpointRecoveryError`
(the checkpoint named is corrupt), 500 any other error (logged with
its trace; the caller gets JSON without it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from loopwright.dashboard.identity import IdentityError
from loopwright.dashboard.models import ErrorCode, ErrorDetail, ErrorResponse
from loopwright.dashboard.ports import InvalidCursorError
from loopwright.exceptions import (
    CheckpointNotFoundError,
    CheckpointRecoveryError,
    ControlConflictError,
    ControlDeniedError,
    LoopFrameworkError,
    LoopNotFoundError,
)

#: Content type of every API answer.
JSON = content_types.APPLICATION_JSON
#: Live figures and errors are never cached.
NO_STORE = {"Cache-Control": "no-store"}


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


def error_response(status: int, detail: ErrorDetail) -> Response[dict[str, Any]]:
    return Response(
        status_code=status,
        content_type=JSON,
        body=ErrorResponse(error=detail).model_dump(mode="json", exclude_none=True),
        headers=dict(NO_STORE),
    )


def error_doc(*codes: int) -> dict[int, Any]:
    """The OpenAPI ``responses`` entries of ``codes``, each an :class:`ErrorResponse`."""
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "content": {JSON: {"model": ErrorResponse}},
        }
        for code in codes
    }


def answer_doc(model: type[Any], description: str, status: int = 200) -> dict[int, Any]:
    """The OpenAPI ``responses`` entry of a success: ``status`` with a JSON ``model``. (A route
    given ``responses`` documents only those: Powertools drops the return type's 200 then.)"""
    return {status: {"description": description, "content": {JSON: {"model": model}}}}


def field_of(loc: Sequence[Any]) -> tuple[str, str]:
    """(where, field name) of a validation error's ``loc``: ``("query", "limit")``,
    ``("body", "max_iterations")``; pydantic's union tags (``str-enum[LoopPhase]``) and list
    indexes are left out."""
    parts = [str(p) for p in loc if isinstance(p, str) and "[" not in str(p)]
    where = parts[0] if parts else "request"
    if where in ("query", "path", "header"):
        return where, parts[1] if len(parts) > 1 else where
    return where, ".".join(parts[1:]) or where


def validation_detail(exc: RequestValidationError) -> ErrorDetail:
    """The first invalid input of ``exc`` as an error naming it; when a value fails several
    alternatives (a phase or an outcome), each one's message is given."""
    errors = [e for e in exc.errors() if isinstance(e, Mapping)]
    if not errors:
        return ErrorDetail(code="bad_request", message="the request is not valid")
    where, name = field_of(errors[0].get("loc", ()))
    messages: list[str] = []
    for error in errors:
        if field_of(error.get("loc", ())) != (where, name):
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


def register_errors(app: APIGatewayRestResolver, logger: Logger) -> None:
    def bad_request(exc: RequestValidationError) -> Response[dict[str, Any]]:
        return error_response(400, validation_detail(exc))

    def api_error(exc: ApiError) -> Response[dict[str, Any]]:
        return error_response(exc.status, exc.detail)

    def identity(exc: IdentityError) -> Response[dict[str, Any]]:
        code: ErrorCode = "unauthenticated" if exc.status == 401 else "bad_request"
        return error_response(exc.status, ErrorDetail(code=code, message=str(exc), field=exc.field))

    def bad_media_type(exc: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        message = "header Content-Type: send the body as application/json"
        detail = ErrorDetail(code="unsupported_media_type", message=message, field="Content-Type")
        return error_response(415, detail)

    def bad_encoding(exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
        detail = ErrorDetail(code="bad_request", message="body: not UTF-8 text (send JSON)", field="body")
        return error_response(400, detail)

    def bad_cursor(exc: InvalidCursorError) -> Response[dict[str, Any]]:
        return error_response(400, ErrorDetail(code="bad_request", message=str(exc), field="cursor"))

    def not_found(exc: LoopNotFoundError) -> Response[dict[str, Any]]:
        return error_response(404, ErrorDetail(code="not_found", message=str(exc), field="loop_id"))

    def no_checkpoint(exc: CheckpointNotFoundError) -> Response[dict[str, Any]]:
        return error_response(404, ErrorDetail(code="not_found", message=str(exc), field="checkpoint_id"))

    def bad_checkpoint(exc: CheckpointRecoveryError) -> Response[dict[str, Any]]:
        return error_response(409, ErrorDetail(code="conflict", message=str(exc), field="checkpoint_id"))

    def denied(exc: ControlDeniedError) -> Response[dict[str, Any]]:
        detail = ErrorDetail(code="forbidden", message=str(exc), policy_ids=list(exc.policy_ids))
        return error_response(403, detail)

    def conflict(exc: ControlConflictError) -> Response[dict[str, Any]]:
        return error_response(409, ErrorDetail(code="conflict", message=str(exc)))

    def store_failed(exc: LoopFrameworkError) -> Response[dict[str, Any]]:
        logger.exception("dashboard request failed", exc_info=exc)
        return error_response(500, ErrorDetail(code="internal", message=str(exc)))

    def unexpected(exc: Exception) -> Response[dict[str, Any]]:
        # The edge of the API: a bug is logged with its trace, the caller gets JSON without it.
        logger.exception("dashboard request failed unexpectedly", exc_info=exc)
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return error_response(500, ErrorDetail(code="internal", message=message))

    def no_route(exc: NotFoundError) -> Response[dict[str, Any]]:
        event = app.current_event
        allowed = allowed_methods(app, event.path)
        if allowed:  # the path exists with other methods
            message = f"{event.http_method} {event.path}: not served; use {', '.join(allowed)}"
            response = error_response(405, ErrorDetail(code="method_not_allowed", message=message))
            response.headers["Allow"] = ", ".join(allowed)
            return response
        message = f"no route {event.http_method} {event.path}; see /swagger for the routes"
        return error_response(404, ErrorDetail(code="not_found", message=message))

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
        (CheckpointNotFoundError, no_checkpoint),
        (CheckpointRecoveryError, bad_checkpoint),
        (LoopFrameworkError, store_failed),
        (NotFoundError, no_route),
        (Exception, unexpected),
    ]
    for exc_class, handler in handlers:
        app.exception_handler(exc_class)(handler)


def allowed_methods(app: APIGatewayRestResolver, path: str) -> list[str]:
    """The methods ``app`` serves at ``path`` (HEAD with GET), sorted; empty for an unknown path."""
    routes = app._static_routes + app._dynamic_routes  # Powertools keeps them private
    methods = {route.method for route in routes if route.rule.match(path)}
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


def proxy_error(
    status: int,
    code: ErrorCode,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway proxy response with the error body (for answers given before routing)."""
    detail = ErrorDetail(code=code, message=message, field=field)
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON, **NO_STORE, **(headers or {})},
        "body": ErrorResponse(error=detail).model_dump_json(exclude_none=True),
        "isBase64Encoded": False,
    }
