"""The dashboard's web page, its static files, the OpenAPI document and Swagger UI.

- ``GET /`` and ``GET /static/{name}``: the page (package data in ``dashboard/static``), served
  with :data:`PAGE_HEADERS` (no inline script or style, nothing from other origins).
- ``GET /api/openapi.json``: the OpenAPI document (:func:`openapi_document`).
- ``GET /swagger``: Swagger UI with the document (``?format=json``: the document with its
  ``servers`` entry). Its script and style are inlined (Powertools ships them: no CDN); its
  Content-Security-Policy allows exactly those by their SHA-256 (no ``'unsafe-inline'``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

from loopwright.dashboard.errors import JSON, NO_STORE, ApiError
from loopwright.dashboard.security import inline_csp

#: Title and version of the OpenAPI document.
API_TITLE = "loopwright dashboard API"
API_VERSION = "1.0.0"
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
                    {"description": "Bad Request", "content": {JSON: {"schema": error_ref}}},
                )
    schemas = document.get("components", {}).get("schemas", {})
    text = json.dumps(document.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'/{unused}"' not in text:
            schemas.pop(unused, None)
    return document


def register_page(app: APIGatewayRestResolver) -> None:
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not document:
            document.update(openapi_document(app))
        return document

    @app.get("/api/openapi.json", include_in_schema=False)
    def get_openapi() -> Response[Any]:
        return Response(200, JSON, body=json.dumps(openapi()), headers=dict(NO_STORE))

    @app.get("/swagger", include_in_schema=False)
    def get_swagger() -> Response[Any]:
        spec = dict(openapi())
        spec["servers"] = [{"url": _base_path(app.current_event.raw_event) or "/"}]
        text = json.dumps(spec).replace("</", "<\\/")
        query = app.current_event.query_string_parameters or {}
        if query.get("format") == "json":
            return Response(200, JSON, body=text)
        html = _swagger_html(text)
        headers = {"Content-Security-Policy": inline_csp(html), "Cache-Control": "no-store"}
        return Response(200, "text/html; charset=utf-8", body=html, headers=headers)

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
    folder = resources.files("aws_lambda_powertools.event_handler.openapi") / "swagger_ui"
    js = (folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (folder / "swagger-ui.min.css").read_text(encoding="utf-8")
    return generate_swagger_html(spec, js, css, "", None)
