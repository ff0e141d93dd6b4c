"""The dashboard API and web page: one Powertools ``APIGatewayRestResolver`` built by
:func:`build_app`, used by the Lambda handler (``functions/dashboard``) and the local server
(``loopwright dashboard``) alike. The routes live by concern in :mod:`.reads`, :mod:`.controls`
and :mod:`.page`; error answers in :mod:`.errors`; the ports in :mod:`.deps`.

Routes (every JSON answer; errors are :class:`~loopwright.dashboard.models.ErrorResponse`):

- ``GET /api/loops`` (``project``, ``status``, ``limit``, ``cursor``): loops, newest first.
- ``GET /api/loops/{loop_id}``: progress (seed alias ``GET /progress/{session_id}``).
- ``GET /api/loops/{loop_id}/events`` (``type`` repeatable, ``limit``, ``cursor``): events,
  newest first (seed alias ``GET /events/{session_id}``).
- ``GET /api/loops/{loop_id}/checkpoints`` (seed alias ``GET /checkpoints/{session_id}``).
- ``GET /api/loops/{loop_id}/conditions`` (``limit``, ``cursor``): exit-condition history.
- ``GET /api/loops/{loop_id}/traces`` (``limit``): X-Ray traces (``annotation.loop_id``).
- ``GET /api/loops/{loop_id}/metrics``: per-iteration figures and the service's CloudWatch metrics.
- ``GET /api/loops/{loop_id}/iterations`` and ``.../iterations/{n}``: the agent's records
  (:mod:`.record_reads`).
- ``GET /api/loops/{loop_id}/evidence``: the loop's signed evidence bundle (:mod:`.evidence_reads`).
- ``POST /api/loops/{loop_id}/pause|resume|stop|approve|limits|rollback|fork``: controls,
  authorized by Cedar (rollback and fork: time travel, docs/time-travel.md).
- ``GET /api/identity``: who the API takes the caller for.
- ``GET /api/openapi.json`` and ``GET /swagger``: the OpenAPI document and Swagger UI.
- ``GET /`` and ``GET /static/{name}``: the web page (package data in ``dashboard/static``).

Status codes (lower-case ``code`` of :data:`~loopwright.dashboard.models.ErrorCode`): 400 bad
input (``field`` names it; also a JSON body nested deeper than 64 levels), 401 no identity, 403
Cedar denied (the deciding ``policy_ids``), 404 unknown loop or route, 405 a method the path does
not serve (``Allow`` lists those it does), 409 the control does not apply now, 415 a body that
is not ``application/json``, 500 the store failed. A rejected control writes nothing: identity,
body and Cedar are all checked before :class:`ControlSubmitter` writes. Every answer carries the
security headers of :mod:`loopwright.dashboard.security`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.dashboard.controls import register_controls
from loopwright.dashboard.deps import ControlSubmitter, DashboardDeps
from loopwright.dashboard.errors import JSON, ApiError, proxy_error, register_errors
from loopwright.dashboard.page import API_TITLE, API_VERSION, PAGE_HEADERS, openapi_document, register_page
from loopwright.dashboard.reads import register_reads
from loopwright.dashboard.security import MAX_JSON_DEPTH, json_too_deep, with_security_headers

__all__ = [
    "API_TITLE",
    "API_VERSION",
    "PAGE_HEADERS",
    "ApiError",
    "ControlSubmitter",
    "DashboardDeps",
    "DashboardResolver",
    "build_app",
    "openapi_document",
]


class DashboardResolver(APIGatewayRestResolver):
    """The resolver, refusing before Powertools parses the body: a body that is not JSON (415;
    Powertools would fail on, for example, ``multipart/form-data`` without a boundary) and a JSON
    body nested deeper than :data:`~loopwright.dashboard.security.MAX_JSON_DEPTH` (400; parsers
    recurse). Every answer gets the security headers (:func:`with_security_headers`)."""

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        refused = _refusal(event)
        response = refused if refused is not None else super().resolve(event, context)
        return with_security_headers(response)


def _refusal(event: Mapping[str, Any]) -> dict[str, Any] | None:
    body = event.get("body")
    if not body:
        return None
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and not (media_type == JSON or media_type.endswith("+json")):
        message = f"header Content-Type: {media_type[:80]!r}; send the body as application/json"
        return proxy_error(415, "unsupported_media_type", message, field="Content-Type")
    text = str(body)
    if event.get("isBase64Encoded"):
        try:
            text = base64.b64decode(text).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError: Powertools answers 400
            return None
    if json_too_deep(text):
        message = f"body: JSON nested more than {MAX_JSON_DEPTH} levels deep; send a flatter body"
        return proxy_error(400, "bad_request", message, field="body")
    return None


def build_app(deps: DashboardDeps, *, routers: Sequence[Router] = ()) -> APIGatewayRestResolver:
    """The dashboard's resolver over ``deps``.

    ``routers``: more Powertools routers to serve with it: the plan routes
    (:func:`loopwright.planapi.router.build_plan_router`), the sign-in page on AWS.
    """
    app = DashboardResolver(enable_validation=True)
    app.use(middlewares=[_no_store])
    register_errors(app, Logger(child=True))
    register_reads(app, deps)
    register_controls(app, deps)
    register_page(app)
    for router in routers:
        app.include_router(router)
    return app


def _no_store(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """``Cache-Control: no-store`` on every ``/api/`` answer: live figures are never cached."""
    response = next_middleware(app)
    if app.current_event.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
