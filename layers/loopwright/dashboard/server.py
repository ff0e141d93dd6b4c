"""The local HTTP server of the dashboard (``loopwright dashboard``): uvicorn serving a small ASGI
app (:class:`DashboardAsgi`) in front of the same Powertools resolver the Lambda runs.

Each HTTP request becomes an API Gateway REST proxy event (:func:`http_to_event`: ``httpMethod``,
``path``, headers, query string, body), is resolved by the resolver in a worker thread, and its
proxy response is written back. Powertools keeps the current event on its ``BaseRouter`` class
(process-wide), so resolving is serialized by one process-wide lock (a request takes about a
millisecond; the loops themselves run in other threads). Reading requests and writing answers is
asynchronous: a slow or idle client holds a socket, never a worker.

Limits (uvicorn's h11 protocol; the figures are this module's constants): listen backlog
:data:`BACKLOG`; a request head over :data:`MAX_HEADER_BYTES` is answered 431 (400 while still
incomplete) and closed; a body
over :data:`MAX_BODY_BYTES` is 413 (read and dropped up to :data:`DRAIN_LIMIT_BYTES` first, so the
client reads the answer instead of a reset); a body not received within
:data:`BODY_TIMEOUT_SECONDS` of the request head is 408 and the connection closed; an idle
keep-alive connection is closed after :data:`KEEP_ALIVE_SECONDS`. The resolver refuses a JSON body
nested deeper than 64 levels (400) and puts the security headers on every answer; the server's
own refusals carry them too.

Guards:

- Bound to a loopback address (``127.0.0.1``, ``::1``, ``localhost``), which any web page the user
  visits could reach: the ``Host`` header must name a loopback host (DNS rebinding, 403).
- Bound to any other address: every request must carry the access ``token``, as
  ``Authorization: Bearer <token>`` or the cookie :data:`TOKEN_COOKIE`, else 401.
  ``GET <path>?token=<token>`` (the URL ``loopwright dashboard`` prints) sets that cookie
  (HttpOnly, SameSite=Strict) and redirects to ``<path>`` (303).
- Always: a request other than GET or HEAD whose ``Origin`` is not this server's is refused
  (cross-site requests, 403).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from http.cookies import CookieError, SimpleCookie
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import uvicorn
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.dashboard.errors import proxy_error
from loopwright.dashboard.models import ErrorCode
from loopwright.dashboard.security import with_security_headers
from loopwright.exceptions import ConfigError

#: Largest request body accepted, bytes (API Gateway's own payload quota is 10 MB).
MAX_BODY_BYTES = 1024 * 1024
#: A refused body up to this size is read and dropped before the 413, so the client, still
#: sending it, reads the answer instead of a connection reset; a larger one just closes.
DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES
#: Seconds a client has, from its request head, to send the whole body (else 408, closed).
BODY_TIMEOUT_SECONDS = 5.0
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_SECONDS = 5
#: Pending connections the kernel queues before refusing more (``listen(2)`` backlog).
BACKLOG = 2048
#: Largest request line plus headers, bytes: h11 stops buffering an incomplete head there (400),
#: and a complete one over it is refused (431).
MAX_HEADER_BYTES = 64 * 1024
#: Threads resolving requests (one resolves at a time, see the module docstring; the others
#: wait their turn without blocking the event loop).
WORKER_THREADS = 4
#: Seconds :meth:`DashboardServer.shutdown` gives open requests to finish.
SHUTDOWN_GRACE_SECONDS = 3
#: Cookie holding the access token (set by ``?token=``).
TOKEN_COOKIE = "loopwright_token"
#: Shortest access token accepted from a file or the environment.
MIN_TOKEN_CHARS = 16
#: Stage name of the events the local server builds.
LOCAL_STAGE = "local"

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
#: What a supplied token may hold: it travels in a header, a cookie and a query string.
_TOKEN = re.compile(rf"^[A-Za-z0-9._~+/=-]{{{MIN_TOKEN_CHARS},512}}$")
#: Powertools keeps the current event on its BaseRouter class: one resolution at a time, process-wide.
_RESOLVE_LOCK = threading.Lock()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def http_to_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    client_ip: str = "127.0.0.1",
    client_port: int | None = None,
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
            "identity": {"sourceIp": client_ip, **({"sourcePort": client_port} if client_port else {})},
        },
    }


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or a name) is a loopback one: ``127.0.0.0/8``, ``::1``,
    ``localhost``."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_loopback_host(host_header: str) -> bool:
    return is_loopback(urlsplit(f"//{host_header}").hostname or "")


def new_token() -> str:
    """A fresh access token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def check_token(token: str, source: str) -> str:
    """``token`` stripped; :class:`ConfigError` naming ``source`` when it is shorter than
    :data:`MIN_TOKEN_CHARS` or holds a character other than letters, digits and ``-._~+/=``
    (it travels in a header, a cookie and a URL)."""
    token = token.strip()
    if not _TOKEN.match(token):
        raise ConfigError(
            f"{source}: the access token must be at least {MIN_TOKEN_CHARS} characters of letters, "
            "digits and '-._~+/=' (for example the output of `openssl rand -hex 32`)"
        )
    return token


class _LocalContext:
    """The Lambda context attributes Powertools may read."""

    function_name = "loopwright-dashboard-local"
    memory_limit_in_mb = 0
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:loopwright-dashboard-local"
    aws_request_id = "local"


class _Refused(Exception):
    """An answer given before the resolver: status, code, message, extra headers."""

    def __init__(self, status: int, code: ErrorCode, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class DashboardAsgi:
    """The ASGI app: guards, body limits, then the resolver in a worker thread (module docstring).

    Args:
        app: the resolver (:func:`loopwright.dashboard.api.build_app`).
        loopback_only: the server is bound to a loopback address (the ``Host`` check applies).
        token: the access token every request must carry; None: no token asked.
        log: receives one line per request (default: none).
    """

    def __init__(
        self,
        app: APIGatewayRestResolver,
        *,
        loopback_only: bool,
        token: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self.token = token
        self.log = log
        self.executor = ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="dashboard")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websockets
        started = time.perf_counter()
        method = str(scope["method"])
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        close = False
        try:
            redirect = self._guard(method, target, headers)
            if redirect is not None:
                response = redirect
            else:
                body = await _read_body(receive, headers)
                event = http_to_event(
                    "GET" if method == "HEAD" else method,
                    target,
                    headers,
                    body,
                    _client(scope),
                    _client_port(scope),
                )
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(self.executor, self._resolve, event)
        except _Refused as refused:
            close = refused.status in (408, 413, 431)
            extra = {**refused.headers, **({"Connection": "close"} if close else {})}
            response = with_security_headers(
                proxy_error(refused.status, refused.code, refused.message, headers=extra)
            )
        except _Disconnected:
            return
        status = int(response.get("statusCode", 500))
        await _send(send, response)
        if self.log is not None:
            elapsed = (time.perf_counter() - started) * 1000
            shown = scope["path"] if "token=" in target else target  # never log the token
            self.log(f"{_client(scope)} {method} {shown[:200]} {status} {elapsed:.1f} ms")

    def _resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        with _RESOLVE_LOCK:
            response: dict[str, Any] = self.app.resolve(event, cast(LambdaContext, _LocalContext()))
        return response

    def _guard(self, method: str, target: str, headers: list[tuple[str, str]]) -> dict[str, Any] | None:
        """Raise :class:`_Refused` for a request the guards refuse; a redirect answer for
        ``?token=``; None when the request goes on."""
        if sum(len(k) + len(v) + 4 for k, v in headers) + len(target) > MAX_HEADER_BYTES:
            raise _Refused(
                431, "bad_request", f"headers: at most {MAX_HEADER_BYTES} bytes with the request line"
            )
        named = {k.lower(): v for k, v in headers}
        host = named.get("host", "")
        if self.loopback_only and not _is_loopback_host(host):
            raise _Refused(403, "forbidden", "the local dashboard answers only to localhost / 127.0.0.1")
        redirect = self._check_token(method, target, named)
        origin = named.get("origin")
        if method not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != host:
            raise _Refused(403, "forbidden", f"cross-site request from {origin[:100]} refused")
        return redirect

    def _check_token(self, method: str, target: str, named: dict[str, str]) -> dict[str, Any] | None:
        if self.token is None:
            return None
        parts = urlsplit(target)
        query = parse_qsl(parts.query, keep_blank_values=True)
        offered = [value for key, value in query if key == "token"]
        if offered and method in ("GET", "HEAD"):
            if not secrets.compare_digest(offered[-1].encode(), self.token.encode()):
                raise _Refused(401, "unauthenticated", "query parameter token: not this dashboard's token")
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return with_security_headers(
                {
                    "statusCode": 303,
                    "headers": {
                        "Location": parts.path + (f"?{rest}" if rest else ""),
                        "Set-Cookie": cookie,
                        "Cache-Control": "no-store",
                        "Content-Type": "text/plain; charset=utf-8",
                    },
                    "body": "signed in: see Location",
                }
            )
        authorization = named.get("authorization", "")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), self.token.encode()):
            return None
        with contextlib.suppress(CookieError):
            jar: SimpleCookie = SimpleCookie(named.get("cookie", ""))
            if TOKEN_COOKIE in jar and secrets.compare_digest(
                jar[TOKEN_COOKIE].value.encode(), self.token.encode()
            ):
                return None
        raise _Refused(
            401,
            "unauthenticated",
            "this dashboard needs its access token: open the URL `loopwright dashboard` printed "
            "(/?token=...), or send the header Authorization: Bearer <token>",
            **{"WWW-Authenticate": 'Bearer realm="loopwright dashboard"'},
        )


class _Disconnected(Exception):
    """The client went away before its request was read."""


def _client_port(scope: Scope) -> int | None:
    client = scope.get("client")
    return int(client[1]) if client and len(client) > 1 and client[1] else None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _read_body(receive: Receive, headers: list[tuple[str, str]]) -> bytes:
    """The request body, read within :data:`BODY_TIMEOUT_SECONDS`; :class:`_Refused` 408 (too slow),
    413 (too large, drained up to :data:`DRAIN_LIMIT_BYTES`) or 400 (a bad Content-Length)."""
    declared = next((v for k, v in headers if k.lower() == "content-length"), None)
    try:
        length = int(declared) if declared is not None else None
    except ValueError:
        raise _Refused(400, "bad_request", "header Content-Length: not a number") from None
    too_large = length is not None and length > MAX_BODY_BYTES
    deadline = asyncio.get_running_loop().time() + BODY_TIMEOUT_SECONDS
    chunks: list[bytes] = []
    received = 0
    more = True
    while more:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.0))
        except TimeoutError:
            raise _Refused(
                408, "request_timeout", f"body: not received within {BODY_TIMEOUT_SECONDS:g} s"
            ) from None
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = bytes(message.get("body", b""))
        received += len(chunk)
        more = bool(message.get("more_body", False))
        if received > MAX_BODY_BYTES:
            too_large = True
        if too_large and (received > DRAIN_LIMIT_BYTES or (length or 0) > DRAIN_LIMIT_BYTES):
            break  # too large to drain: answer now, the connection closes
        if not too_large:
            chunks.append(chunk)
    if too_large:
        raise _Refused(413, "payload_too_large", f"body: at most {MAX_BODY_BYTES} bytes")
    return b"".join(chunks)


async def _send(send: Send, response: dict[str, Any]) -> None:
    headers: dict[str, str] = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if values:
            headers[str(key)] = ", ".join(str(v) for v in values)
    raw = response.get("body") or ""
    payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode("utf-8")
    skip = {"content-length", "transfer-encoding"}
    pairs = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in headers.items()
        if k.lower() not in skip
    ]
    pairs.append((b"content-length", str(len(payload)).encode()))
    await send(
        {"type": "http.response.start", "status": int(response.get("statusCode", 500)), "headers": pairs}
    )
    await send({"type": "http.response.body", "body": payload})


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: any free port); OSError if taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class DashboardServer:
    """Serves ``app`` on ``host``:``port`` (port 0: any free port; see :attr:`url`) with uvicorn.

    The socket is bound here, so a port in use raises ``OSError`` at once. A ``host`` that is
    not a loopback address needs a ``token`` (:class:`ConfigError` otherwise). ``log``
    receives one line per request (default: none). :meth:`serve_forever` runs until
    :meth:`shutdown` (from another thread) or, in the main thread, SIGINT/SIGTERM (uvicorn
    shuts down gracefully, then raises the signal again for the caller).
    """

    def __init__(
        self,
        app: APIGatewayRestResolver,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        log: Callable[[str], None] | None = None,
        token: str | None = None,
    ) -> None:
        self.loopback_only = is_loopback(host)
        if not self.loopback_only and token is None:
            raise ConfigError(f"--host {host}: a dashboard on a non-loopback address needs an access token")
        self.token = token
        self.socket = _bind(host, port)
        self.server_address: tuple[str, int] = cast(tuple[str, int], self.socket.getsockname()[:2])
        self.asgi = DashboardAsgi(app, loopback_only=self.loopback_only, token=token, log=log)
        config = uvicorn.Config(
            self.asgi,
            http="h11",
            loop="asyncio",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        self.server = uvicorn.Server(config)
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def url(self) -> str:
        """``http://host:port/`` of the listening socket."""
        host, port = self.server_address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` or a signal (see the class docstring)."""
        self._stopped.clear()
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = SHUTDOWN_GRACE_SECONDS + 5) -> None:
        """Stop :meth:`serve_forever` (running in another thread) and wait up to ``timeout`` s."""
        self.server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        """Close the socket and the worker threads (after :meth:`serve_forever` returned)."""
        self.socket.close()
        self.asgi.executor.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[DashboardServer]:
        """Serve in a daemon thread for the block, then shut down and close (tests, benchmarks)."""
        thread = threading.Thread(target=self.serve_forever, name="dashboard-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            yield self
        finally:
            self.shutdown()
            thread.join(timeout=10)
            self.server_close()
