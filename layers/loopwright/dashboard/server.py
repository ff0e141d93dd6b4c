"""A local HTTP server for the dashboard's resolver (``loopwright dashboard``).

Each HTTP request becomes an API Gateway REST proxy event (``httpMethod``, ``path``, headers,
query string, body), is resolved by the same :class:`APIGatewayRestResolver` the Lambda runs,
and its proxy response is written back. Python's ``ThreadingHTTPServer`` (standard library) takes
the connections; the resolver keeps the current event on itself, so requests are resolved one at
a time (a request takes milliseconds; the loops themselves run in other threads).

Guards of a server on the loopback interface, which any web page the user visits could reach:
the ``Host`` header must name a loopback host (DNS rebinding), and a request other than GET or
HEAD whose ``Origin`` is not this server's is refused (cross-site requests). Bodies over
:data:`MAX_BODY_BYTES` are refused with 413.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

#: Largest request body accepted, bytes (API Gateway's own payload quota is 10 MB).
MAX_BODY_BYTES = 1024 * 1024
#: A refused body up to this size is read and dropped before the 413, so the client, still
#: sending it, reads the answer instead of a connection reset; a larger one just closes.
DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES
#: Stage name of the events the local server builds.
LOCAL_STAGE = "local"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def http_to_event(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, client_ip: str = "127.0.0.1"
) -> dict[str, Any]:
    """The API Gateway REST proxy event of one HTTP request (``target`` is path plus query)."""
    parts = urlsplit(target)
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        multi_query.setdefault(key, []).append(value)
    multi_headers: dict[str, list[str]] = {}
    for key, value in headers:
        multi_headers.setdefault(key, []).append(value)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    path = parts.path or "/"
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {key: values[-1] for key, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "body": text if body else None,
        "isBase64Encoded": encoded,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": path,
            "stage": LOCAL_STAGE,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": client_ip},
        },
    }


def _is_loopback_host(host_header: str) -> bool:
    host = urlsplit(f"//{host_header}").hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardServer(ThreadingHTTPServer):
    """Serves ``app`` on ``host``:``port`` (port 0: any free port; see :attr:`url`).

    ``log`` receives one line per request (default: none).
    """

    daemon_threads = True

    def __init__(
        self,
        app: APIGatewayRestResolver,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.log = log
        self.resolve_lock = threading.Lock()
        try:
            self.loopback_only = ipaddress.ip_address(host).is_loopback
        except ValueError:
            self.loopback_only = host in _LOOPBACK_NAMES
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """``http://host:port/`` of the listening socket."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}/"

    def resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        """The proxy response of ``event`` (one request at a time, see the module docstring)."""
        with self.resolve_lock:
            response: dict[str, Any] = self.app.resolve(event, cast(LambdaContext, _LocalContext()))
        return response


class _LocalContext:
    """The Lambda context attributes Powertools may read."""

    function_name = "loopwright-dashboard-local"
    memory_limit_in_mb = 0
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:loopwright-dashboard-local"
    aws_request_id = "local"


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "loopwright-dashboard"
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK (40 ms on Linux) on a kept-open connection, the page's polling pattern.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self._send(status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body)

    def _handle(self) -> None:
        if self.server.loopback_only and not _is_loopback_host(self.headers.get("Host", "")):
            self._refuse(403, "forbidden", "the local dashboard answers only to localhost / 127.0.0.1")
            return
        origin = self.headers.get("Origin")
        cross_site = bool(origin) and urlsplit(origin or "").netloc != self.headers.get("Host", "")
        if self.command not in ("GET", "HEAD") and cross_site:
            self._refuse(403, "forbidden", f"cross-site request from {str(origin)[:100]} refused")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._refuse(400, "bad_request", "header Content-Length: not a number")
            return
        if length > MAX_BODY_BYTES:
            if length <= DRAIN_LIMIT_BYTES:
                remaining = length
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 64 * 1024))):
                    remaining -= len(chunk)
            self.close_connection = True
            self._refuse(413, "bad_request", f"body: at most {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length) if length > 0 else b""
        method = "GET" if self.command == "HEAD" else self.command
        event = http_to_event(method, self.path, list(self.headers.items()), body, self.client_address[0])
        response = self.server.resolve(event)
        headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
        for key, values in (response.get("multiValueHeaders") or {}).items():
            if values:
                headers[str(key)] = ", ".join(str(v) for v in values)
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode("utf-8")
        self._send(int(response.get("statusCode", 500)), headers, payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND...) gets the resolver's JSON 404, not an HTML 501.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)
