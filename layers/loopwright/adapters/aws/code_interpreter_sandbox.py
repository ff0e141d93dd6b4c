"""AgentCore Code Interpreter sandbox: runs an exit condition's command in a Code Interpreter
session (``executeCommand``), one session per loop.

The command goes to the service as ONE string that the Code Interpreter runs through its shell.
Each argv element is quoted with :func:`shlex.join`, so values from the loop's config stay
literal arguments (``;``, ``|``, ``$(...)`` are not interpreted): the quoting is what keeps the
port's "never through a shell" promise. The line is::

    cd '<cwd>' && env 'K=V'... timeout -k <grace> <seconds> '<argv0>' '<argv1>'...

``executeCommand`` takes no timeout of its own (the API bounds a call only by the session's
timeout), so the time limit is GNU coreutils ``timeout`` inside the sandbox (assumed present in
the Code Interpreter image: not verified here): SIGTERM at ``timeout_seconds``, SIGKILL
:data:`KILL_GRACE_SECONDS` later; exit status 124 (or 137 after the SIGKILL) past the limit is
reported as ``timed_out``. The client's read timeout is ``max_timeout_seconds`` plus
:data:`READ_TIMEOUT_MARGIN_SECONDS`, above any command's limit; if it fires anyway, the result
is ``timed_out`` with an ``error``.

``executeCommand`` is not idempotent (a retry would run the command twice), so its client has
botocore retries OFF (one attempt); starting and stopping the session use the SDK's client with
standard retries. AWS errors (throttling, a missing session...) raise :class:`LoopFrameworkError`
``from`` the botocore error: they are not the command's own failure.

Output: stdout and stderr each keep their last ``max_output_bytes`` bytes, with the same marker
as the local sandbox (``[... N bytes truncated, last M kept ...]``).

Session lifetime: a session ends by itself after its timeout (at most 8 hours; AgentCore
developer guide, "Session management") or when stopped, and cannot be restarted
(``StopCodeInterpreterSession``, API reference); its files go with it.
``GetCodeInterpreterSession`` tells its status (``READY`` or ``TERMINATED``, API reference
``CodeInterpreterSessionSummary``). The error ``InvokeCodeInterpreter`` returns for an ended
session is not documented, so when a call fails with a service error the sandbox asks for the
status, and raises :class:`~loopwright.exceptions.SandboxSessionEndedError` when the session is
TERMINATED or not found (:class:`CodeInterpreterSessions`); the runtime then starts a new session
and restores the loop's clone.

Files: :meth:`CodeInterpreterSandbox.write_files` writes text files with the ``writeFiles`` tool,
whose paths are relative to the session's working directory (the API takes no absolute path);
:meth:`CodeInterpreterSandbox.working_directory` tells that directory (``pwd``, asked once per
session). That ``writeFiles`` and ``executeCommand`` start from the same directory is assumed
here, not verified against the service.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, TypeVar

import boto3
import botocore.session
from bedrock_agentcore.tools.code_interpreter_client import CodeInterpreter
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from loopwright.adapters.aws._errors import (
    DEFAULT_MAX_ATTEMPTS,
    THROTTLING_CODES,
    aws_errors,
    domain_error,
    error_code,
    retry_config,
)
from loopwright.exceptions import LoopFrameworkError, SandboxSessionEndedError
from loopwright.models import CommandResult, utcnow
from loopwright.ports import OutputCallback, Sandbox, SandboxSessions, StopCheck

T = TypeVar("T")

#: The AWS-managed Code Interpreter (the SDK's default identifier).
DEFAULT_IDENTIFIER = "aws.codeinterpreter.v1"
#: Session lifetime asked for when the sandbox starts one (the SDK's default, 15 minutes).
DEFAULT_SESSION_TIMEOUT_SECONDS = 900
#: The longest session lifetime the Code Interpreter allows: 8 hours (AgentCore developer guide,
#: "Session management": default 900 s, configurable up to 8 hours).
MAX_SESSION_TIMEOUT_SECONDS = 28_800
#: Longest ``timeout_seconds`` a run may ask for; sets the read timeout of the command client.
DEFAULT_MAX_TIMEOUT_SECONDS = 900.0
#: Seconds added to ``max_timeout_seconds`` for the read timeout (the answer's own travel time).
READ_TIMEOUT_MARGIN_SECONDS = 30.0
#: Seconds between ``timeout``'s SIGTERM and its SIGKILL (as the local sandbox's grace).
KILL_GRACE_SECONDS = 1
#: Exit statuses of GNU ``timeout`` when it ended the command (TERM, then KILL).
TIMEOUT_EXIT_CODES = frozenset({124, 137})


#: Status of a session that can run commands (GetCodeInterpreterSession; the other is TERMINATED).
READY = "READY"


class CodeInterpreterSessions(SandboxSessions):
    """Status and stop of Code Interpreter sessions by id (``GetCodeInterpreterSession``,
    ``StopCodeInterpreterSession``), for the steps that hold a loop's session id.

    Args:
        region_name: the AWS region.
        identifier: the Code Interpreter id.
        client: a boto3 ``bedrock-agentcore`` client; default one (built at first use) with
            standard retries.
    """

    def __init__(
        self,
        region_name: str | None,
        *,
        identifier: str = DEFAULT_IDENTIFIER,
        client: Any | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.identifier = identifier
        self._region = region_name
        self._client = client
        self._max_attempts = max_attempts

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client(
                "bedrock-agentcore", region_name=self._region, config=retry_config(self._max_attempts)
            )
        return self._client

    def status(self, session_id: str) -> str | None:
        """The session's status (``READY``, ``TERMINATED``), None when the service does not know
        it. Raises :class:`LoopFrameworkError` for other AWS errors."""
        action = f"reading Code Interpreter session {session_id!r}"
        try:
            response = self.client.get_code_interpreter_session(
                codeInterpreterIdentifier=self.identifier, sessionId=session_id
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise domain_error(exc, action) from exc
        except BotoCoreError as exc:
            raise domain_error(exc, action) from exc
        return str(response.get("status") or "")

    def is_ready(self, session_id: str) -> bool:
        """Whether the session can still run commands."""
        return self.status(session_id) == READY

    def stop(self, session_id: str) -> None:
        """Stop the session; one that ended already (TERMINATED, not found) is left as it is."""
        action = f"stopping Code Interpreter session {session_id!r}"
        try:
            self.client.stop_code_interpreter_session(
                codeInterpreterIdentifier=self.identifier, sessionId=session_id
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException" or self.status(session_id) != READY:
                return
            raise domain_error(exc, action) from exc
        except BotoCoreError as exc:
            raise domain_error(exc, action) from exc


class CodeInterpreterSandbox(Sandbox):
    """:class:`Sandbox` over one Code Interpreter session.

    Args:
        region_name: the AWS region.
        identifier: the Code Interpreter id.
        session_id: an existing session of the loop to use (saved by the caller); None: start
            one at the first run (:attr:`session_id` then tells its id).
        interpreter: a ``CodeInterpreter`` (SDK) for starting and stopping the session; default
            one whose clients retry in standard mode (``max_attempts``).
        command_client: the boto3 ``bedrock-agentcore`` client for ``executeCommand``; default
            one with retries off and a read timeout above ``max_timeout_seconds``.
        session_timeout_seconds: lifetime of a session this sandbox starts.
        max_timeout_seconds: the longest ``timeout_seconds`` a run may ask for.
        sessions: status and stop of sessions by id; default :class:`CodeInterpreterSessions`.

    Use :meth:`close` (or ``with``) to stop the session this sandbox started.
    """

    def __init__(
        self,
        region_name: str,
        *,
        identifier: str = DEFAULT_IDENTIFIER,
        session_id: str | None = None,
        interpreter: Any | None = None,
        command_client: Any | None = None,
        session_timeout_seconds: int = DEFAULT_SESSION_TIMEOUT_SECONDS,
        max_timeout_seconds: float = DEFAULT_MAX_TIMEOUT_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sessions: CodeInterpreterSessions | None = None,
    ) -> None:
        self.identifier = identifier
        self.max_timeout_seconds = max_timeout_seconds
        self.sessions = sessions or CodeInterpreterSessions(
            region_name, identifier=identifier, max_attempts=max_attempts
        )
        self._session_timeout = session_timeout_seconds
        core = botocore.session.Session()
        core.set_default_client_config(retry_config(max_attempts))
        session = boto3.Session(botocore_session=core, region_name=region_name)
        self._interpreter: Any = (
            interpreter if interpreter is not None else CodeInterpreter(region_name, session=session)
        )
        self._commands: Any = (
            command_client
            if command_client is not None
            else session.client(
                "bedrock-agentcore",
                config=retry_config(1, read_timeout=max_timeout_seconds + READ_TIMEOUT_MARGIN_SECONDS),
            )
        )
        self._session_id = session_id
        self._started = False
        self._working_directory: tuple[str, PurePosixPath] | None = None  # (session id, pwd)

    @property
    def session_id(self) -> str | None:
        """The session the commands run in (None until the first run starts one)."""
        return self._session_id

    def start(self) -> str:
        """The session id, starting a session first if there is none."""
        if self._session_id is None:
            with aws_errors(f"starting a Code Interpreter session of {self.identifier!r}"):
                self._session_id = str(
                    self._interpreter.start(
                        identifier=self.identifier, session_timeout_seconds=self._session_timeout
                    )
                )
            self._started = True
        return self._session_id

    def close(self) -> None:
        """Stop the session if this sandbox started it (idempotent)."""
        if self._started:
            with aws_errors(f"stopping Code Interpreter session {self._session_id!r}"):
                self._interpreter.stop()
            self._started = False
            self._session_id = None

    def working_directory(self) -> PurePosixPath:
        """The session's working directory, where :meth:`write_files` paths start (an absolute
        path, from ``pwd``; asked once per session). Raises :class:`LoopFrameworkError`."""
        session_id = self.start()
        if self._working_directory is None or self._working_directory[0] != session_id:
            done = self.run(["pwd"], cwd=Path("."), timeout_seconds=60)
            lines = done.stdout.strip().splitlines()
            if done.exit_code != 0 or not lines or not lines[-1].startswith("/"):
                detail = (done.error or done.stderr or done.stdout)[-500:]
                raise LoopFrameworkError(
                    f"cannot tell the working directory of Code Interpreter session {session_id!r}: "
                    f"`pwd` gave exit code {done.exit_code}: {detail}"
                )
            self._working_directory = (session_id, PurePosixPath(lines[-1]))
        return self._working_directory[1]

    def write_files(self, files: Mapping[str, str]) -> None:
        """Write text files into the session with the ``writeFiles`` tool: path (relative to
        :meth:`working_directory`; folders are created) -> UTF-8 content.

        Raises :class:`LoopFrameworkError` for an absolute path, an AWS error, or when the tool
        reports an error.
        """
        absolute = [path for path in files if path.startswith("/")]
        if absolute:
            raise LoopFrameworkError(
                f"writeFiles takes paths relative to the session's folder, got {absolute}"
            )
        if not files:
            return
        session_id = self.start()
        with self._session_errors(f"writing {len(files)} file(s) in Code Interpreter session {session_id!r}"):
            response = self._commands.invoke_code_interpreter(
                codeInterpreterIdentifier=self.identifier,
                sessionId=session_id,
                name="writeFiles",
                arguments={"content": [{"path": path, "text": text} for path, text in files.items()]},
            )
            _, stderr, exit_code = _read_stream(response.get("stream", ()))
        if exit_code not in (None, 0):
            raise LoopFrameworkError(
                f"the Code Interpreter could not write {sorted(files)} in session {session_id!r}: "
                f"{stderr.strip()[-500:]}"
            )

    def invoke(
        self, tool: str, arguments: Mapping[str, Any], action: str, read: Callable[[Iterable[Any]], T]
    ) -> T:
        """Call the session's tool ``tool`` (``InvokeCodeInterpreter``) with ``arguments`` and
        ``read`` its event stream; errors as :meth:`run`'s (``action`` names the call in them)."""
        session_id = self.start()
        with self._session_errors(f"{action} in Code Interpreter session {session_id!r}"):
            response = self._commands.invoke_code_interpreter(
                codeInterpreterIdentifier=self.identifier,
                sessionId=session_id,
                name=tool,
                arguments=dict(arguments),
            )
            return read(response.get("stream", ()))

    @contextlib.contextmanager
    def _session_errors(self, action: str) -> Iterator[None]:
        """:func:`aws_errors` for a call in the session; a service error (an error code) of a
        session that is no longer READY raises :class:`SandboxSessionEndedError` instead."""
        try:
            with aws_errors(action):
                yield
        except LoopFrameworkError as exc:
            session_id = self._session_id
            from_service = isinstance(exc, StreamError) or isinstance(exc.__cause__, ClientError)
            if not from_service or session_id is None:
                raise
            try:
                ready = self.sessions.is_ready(session_id)
            except LoopFrameworkError:
                raise exc from exc.__cause__  # the status is unknown: the call's own error
            if ready:
                raise
            raise SandboxSessionEndedError(
                f"Code Interpreter session {session_id!r} has ended (timed out or stopped; its files "
                f"are gone): {action} failed",
                session_id=session_id,
            ) from exc

    def __enter__(self) -> CodeInterpreterSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: StopCheck | None = None,
    ) -> CommandResult:
        """Run ``command`` in ``cwd`` (a path inside the session) for at most
        ``timeout_seconds``; see the module docstring for quoting, timeout and output bounds.
        ``stdin`` is piped in by the session's shell (``printf '%s' ... |``); ``on_output`` sees
        the output once the command has ended (the Code Interpreter answers with all of it).
        ``idle_timeout_seconds`` and ``should_stop`` are ignored (the output is only seen once
        the command has ended): only ``timeout_seconds`` ends a command here.

        Returns ``error`` with ``exit_code=None`` for an empty command or a timeout above
        ``max_timeout_seconds``; raises :class:`LoopFrameworkError` for AWS errors.
        """
        given = list(command)
        started_at = utcnow()
        start = time.monotonic()
        if not given:
            return CommandResult(command=given, exit_code=None, error="empty command", started_at=started_at)
        if timeout_seconds > self.max_timeout_seconds:
            return CommandResult(
                command=given,
                exit_code=None,
                error=(
                    f"timeout of {timeout_seconds} s is above this sandbox's maximum of "
                    f"{self.max_timeout_seconds} s"
                ),
                started_at=started_at,
            )
        line = shell_line(given, cwd=cwd, timeout_seconds=timeout_seconds, env=env, stdin=stdin)
        session_id = self.start()
        try:
            with self._session_errors(f"running a command in Code Interpreter session {session_id!r}"):
                response = self._commands.invoke_code_interpreter(
                    codeInterpreterIdentifier=self.identifier,
                    sessionId=session_id,
                    name="executeCommand",
                    arguments={"command": line},
                )
                stdout, stderr, exit_code = _read_stream(response.get("stream", ()))
        except LoopFrameworkError as exc:
            if not isinstance(exc.__cause__, ReadTimeoutError):
                raise
            return CommandResult(
                command=given,
                exit_code=None,
                timed_out=True,
                error=f"no answer from the Code Interpreter within its read timeout: {exc.__cause__}",
                duration_seconds=time.monotonic() - start,
                started_at=started_at,
            )
        duration = time.monotonic() - start
        if on_output is not None:
            for stream, text in (("stdout", stdout), ("stderr", stderr)):
                if text:
                    with contextlib.suppress(Exception):
                        on_output(stream, text)
        timed_out = exit_code in TIMEOUT_EXIT_CODES and duration >= timeout_seconds
        out, out_cut = tail(stdout, max_output_bytes)
        err, err_cut = tail(stderr, max_output_bytes)
        return CommandResult(
            command=given,
            exit_code=None if timed_out else exit_code,
            stdout=out,
            stderr=err,
            duration_seconds=duration,
            timed_out=timed_out,
            truncated=out_cut or err_cut,
            error=None if exit_code is not None or timed_out else "the Code Interpreter gave no exit code",
            started_at=started_at,
        )


def shell_line(
    command: Sequence[str],
    *,
    cwd: Path,
    timeout_seconds: float,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """The one shell line sent to ``executeCommand`` (every argv element and value quoted);
    ``stdin`` is piped into the command."""
    argv = ["timeout", "-k", str(KILL_GRACE_SECONDS), f"{timeout_seconds:g}", *command]
    if env:
        argv = ["env", *(f"{name}={value}" for name, value in env.items()), *argv]
    feed = f"printf '%s' {shlex.quote(stdin)} | " if stdin is not None else ""
    return f"cd {shlex.quote(str(cwd))} && {feed}{shlex.join(argv)}"


def tail(text: str, limit: int) -> tuple[str, bool]:
    """The last ``limit`` UTF-8 bytes of ``text`` (a cut character replaced) and whether it
    was cut; a cut text starts with the local sandbox's marker."""
    raw = text.encode()
    dropped = len(raw) - limit
    if dropped <= 0:
        return text, False
    body = raw[dropped:].decode("utf-8", errors="replace")
    return f"[... {dropped} bytes truncated, last {limit} kept ...]\n{body}", True


class StreamError(LoopFrameworkError):
    """An exception event in the InvokeCodeInterpreter stream (a service error)."""


def _read_stream(stream: Iterable[Mapping[str, Any]]) -> tuple[str, str, int | None]:
    """(stdout, stderr, exit code) from the InvokeCodeInterpreter event stream.

    Each ``result`` event carries ``structuredContent`` (``stdout``, ``stderr``, ``exitCode``)
    and ``content`` blocks; text blocks are the output when there is no structured content. An
    exception event (``throttlingException``...) raises :class:`LoopFrameworkError`.
    """
    stdout: list[str] = []
    stderr: list[str] = []
    exit_code: int | None = None
    for event in stream:
        for name, body in event.items():
            if name != "result":
                message = body.get("message", "") if isinstance(body, Mapping) else body
                code = name[:1].upper() + name[1:]
                raise StreamError(
                    f"the Code Interpreter ended the command with {code}: {message}"
                    + ("; AWS throttled the call, retry later" if code in THROTTLING_CODES else "")
                )
            structured = body.get("structuredContent") or {}
            if structured:
                stdout.append(str(structured.get("stdout") or ""))
                stderr.append(str(structured.get("stderr") or ""))
                if structured.get("exitCode") is not None:
                    exit_code = int(structured["exitCode"])
            else:
                texts = [str(b.get("text", "")) for b in body.get("content", []) if b.get("type") == "text"]
                (stderr if body.get("isError") else stdout).append("".join(texts))
                if exit_code is None and body.get("isError"):
                    exit_code = 1
    return "".join(stdout), "".join(stderr), exit_code
