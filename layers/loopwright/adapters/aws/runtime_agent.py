"""An agent hosted in Amazon Bedrock AgentCore Runtime, invoked once per iteration (AWS).

:class:`AgentCoreRuntimeAgent` calls ``InvokeAgentRuntime`` (boto3 client ``bedrock-agentcore``)
with the loop's :class:`~loopwright.models.RuntimeAgentConfig` (runtime ARN, qualifier, timeout).

Sessions (issue 10.3, :mod:`loopwright.sessions`): the agent has sessions
(``supports_sessions``). An iteration that continues the loop's agent session
(``request.session_id``) sends that id as ``runtimeSessionId``, so the runtime routes it to the
same session and the agent keeps its context, for as long as the runtime keeps the session (idle
timeout 15 minutes, lifetime 8 hours by default: the runtime's ``LifecycleConfiguration``,
AgentCore Control API reference; after that the same id opens a new one). A fresh session (the
first iteration, or after a handoff, whose summary is in the payload's ``handoff`` and prompt)
gets a new id, :func:`runtime_session_id` of the loop id and the iteration (deterministic, so a
retried step reaches the same session; 33 to 100 characters as the API asks). The result's
``session_id`` is the id used. The agent may report ``context_percent`` (how full its context
is) and ``handoff`` (it asks for a fresh session, saying why), which hand the session off.

Request: ``contentType`` ``application/json``, the payload is the UTF-8 JSON of the
:class:`~loopwright.models.AgentRequest` (``loop_id``, ``iteration``, ``goal``, limits,
``failures``, ``failing_conditions``, ``conditions``, ``warnings``...) without ``worktree`` and
``state_dir`` (paths the agent cannot see), plus ``prompt`` (the same markdown prompt a local
command agent gets) and ``repository`` (:class:`AgentRepository`: ``url``, ``ref``, ``branch``,
``base_commit``, ``head_commit``). The agent works on its own clone: it checks out ``branch``
of ``url`` (the loop creates and pushes it), commits, and pushes ``branch``; the loop's
workspace then fetches it (:class:`~loopwright.adapters.aws.session_workspace.SessionWorkspace`
with ``fetch_agent_commits``) and the exit conditions evaluate it.

Response: the body (``response``) is one JSON object with the fields of
:class:`~loopwright.models.AgentResult` the agent knows (``tokens_used``, ``summary``,
``failed``, ``needs_human``, ``usage_limit_resets_at``, ``output``; others are ignored), for
example ``{"tokens_used": 1200, "summary": "fixed the import order"}``. A ``text/event-stream``
answer (an agent that streams) is read to its end: its last ``data:`` event that is a JSON object
is the result, the other events are kept as ``output``. A body that is not JSON, not an object,
or has a field of the wrong type raises :class:`~loopwright.exceptions.AgentError` naming what was
wrong (the iteration is then recorded as failed).

Usage limits: an agent whose model provider refused it for a usage limit answers
``{"usage_limit_resets_at": "2026-01-01T05:00:00Z"}`` (ISO 8601; without a zone, UTC), and the
loop pauses until then. When the call itself fails with ``ThrottlingException``,
``ServiceQuotaExceededException`` or ``RuntimeClientError`` after botocore's retries, the reset
time is taken, if known, from the answer's ``Retry-After`` header (seconds or an HTTP date) or
from a JSON error message holding ``usage_limit_resets_at``; the result is then
``AgentResult(usage_limit_resets_at=...)``. Without a known reset time it is an AgentError.

Retries: botocore's standard mode (:func:`~loopwright.adapters.aws._errors.retry_config`) retries
throttling and 5xx answers, which arrive before the agent ran or after it failed; a read timeout
is NOT retried (the agent may have worked for the whole timeout and would run again). The read
timeout is ``timeout_seconds`` plus :data:`READ_TIMEOUT_MARGIN_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import boto3
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loopwright.adapters.aws._errors import (
    DEFAULT_MAX_ATTEMPTS,
    THROTTLING_CODES,
    domain_error,
    error_code,
    retry_config,
)
from loopwright.exceptions import AgentError
from loopwright.models import (
    MAX_AWS_AGENT_TIMEOUT_SECONDS,
    AgentRequest,
    AgentResult,
    RuntimeAgentConfig,
    utcnow,
)
from loopwright.ports import Agent, OutputCallback, StopCheck
from loopwright.steps.prompt import render_prompt

#: Seconds added to the agent's ``timeout_seconds`` for the client's read timeout.
READ_TIMEOUT_MARGIN_SECONDS = 30.0
#: Seconds to open the connection to AgentCore.
CONNECT_TIMEOUT_SECONDS = 10
#: Error codes whose answer may carry a usage limit's reset time (see the module docstring).
USAGE_LIMIT_CODES = THROTTLING_CODES | {"ServiceQuotaExceededException", "RuntimeClientError"}
#: Characters of ``output`` kept in the result (as the local command agent).
MAX_OUTPUT_CHARS = 4000
_SESSION_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def runtime_session_id(loop_id: str, iteration: int = 0) -> str:
    """``loopwright-<loop id, made safe, at most 40 characters>-<24 hex of the SHA-256 of the
    loop id and the iteration>``: the id of the session a fresh agent session started at
    ``iteration`` uses, the same on a retry, distinct for distinct loops and iterations, 37 to
    76 characters of ``[A-Za-z0-9_-]`` (``InvokeAgentRuntime`` asks for at least 33)."""
    digest = hashlib.sha256(f"{loop_id}\n{iteration}".encode()).hexdigest()[:24]
    return f"loopwright-{_SESSION_UNSAFE.sub('-', loop_id)[:40]}-{digest}"


class AgentRepository(BaseModel):
    """Where the agent works (the payload's ``repository``): the loop's branch of the repository."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    ref: str | None = None
    branch: str = Field(description="the loop's branch, loopwright/<loop_id>: check it out, commit, push")
    base_commit: str | None = Field(default=None, description="the commit the branch started from")
    head_commit: str | None = Field(default=None, description="the branch's head when the iteration starts")


class RuntimeAgentReply(BaseModel):
    """The JSON object an agent answers with: the :class:`AgentResult` fields it knows."""

    model_config = ConfigDict(extra="ignore")

    tokens_used: int = Field(default=0, ge=0)
    summary: str = ""
    failed: bool = False
    needs_human: str | None = None
    usage_limit_resets_at: datetime | None = None
    output: str = ""
    context_percent: float | None = Field(default=None, ge=0, le=1000)
    handoff: str | None = Field(default=None, max_length=1000)

    @field_validator("usage_limit_resets_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _aware(value) if value is not None else None


def build_payload(request: AgentRequest, repository: AgentRepository | None) -> bytes:
    """The UTF-8 JSON sent to the agent (see the module docstring)."""
    body: dict[str, Any] = request.model_dump(mode="json", exclude={"worktree", "state_dir"})
    body["prompt"] = render_prompt(request)
    body["repository"] = repository.model_dump(mode="json") if repository is not None else None
    return json.dumps(body).encode("utf-8")


def parse_reply(body: bytes, content_type: str, source: str) -> AgentResult:
    """The :class:`AgentResult` in an agent's answer; :class:`AgentError` naming what is wrong.

    ``source`` names the agent in the messages.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentError(f"{source} answered with a body that is not UTF-8 text: {exc}") from exc
    progress: list[str] = []
    if content_type.split(";")[0].strip().lower() == "text/event-stream":
        data = _last_object_event(text, source, progress)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AgentError(
                f"{source} answered with a body that is not JSON ({exc.msg} at character {exc.pos}; "
                f"content type {content_type or 'not given'}): {text[:200]!r}"
            ) from exc
        if not isinstance(data, dict):
            raise AgentError(
                f"{source} answered with a JSON {type(data).__name__}, not an object such as "
                '{"tokens_used": 1200, "summary": "..."}'
            )
    try:
        reply = RuntimeAgentReply.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "result"
        raise AgentError(
            f"{source} answered with an invalid result: {where}: {first['msg']} (got {first.get('input')!r})"
        ) from exc
    output = "\n".join([*progress, reply.output]).strip()
    return AgentResult(
        tokens_used=reply.tokens_used,
        summary=reply.summary,
        failed=reply.failed,
        needs_human=reply.needs_human,
        usage_limit_resets_at=reply.usage_limit_resets_at,
        output=output[-MAX_OUTPUT_CHARS:],
        context_percent=reply.context_percent,
        handoff_requested=reply.handoff,
    )


def usage_limit_reset(exc: ClientError, now: datetime) -> datetime | None:
    """When the limit behind ``exc`` lifts, if the answer says: its ``Retry-After`` header
    (seconds or an HTTP date), or a JSON error message with ``usage_limit_resets_at``."""
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    retry_after = str(headers.get("retry-after", "")).strip()
    if retry_after.isdigit():
        return now + timedelta(seconds=int(retry_after))
    if retry_after:
        try:
            return _aware(parsedate_to_datetime(retry_after))
        except (TypeError, ValueError):
            pass
    message = str(exc.response.get("Error", {}).get("Message", "") or "")
    try:
        detail = json.loads(message)
        if isinstance(detail, dict) and detail.get("usage_limit_resets_at"):
            return _aware(datetime.fromisoformat(str(detail["usage_limit_resets_at"])))
    except ValueError:
        pass
    return None


class AgentCoreRuntimeAgent(Agent):
    """Invokes the AgentCore Runtime agent of ``config`` once per iteration; see the module docstring.

    Args:
        config: runtime ARN, qualifier and ``timeout_seconds``.
        region_name: the AWS region of the default client.
        repository: the loop's repository and branch, sent to the agent.
        client: a boto3 ``bedrock-agentcore`` client; default one with standard retries
            (``max_attempts``), a read timeout above ``timeout_seconds`` and no retry of a read
            timeout.
        clock: the current time, UTC (for ``Retry-After`` in seconds).
    """

    supports_sessions = True  # runtimeSessionId: see the module docstring

    def __init__(
        self,
        config: RuntimeAgentConfig,
        *,
        region_name: str | None = None,
        repository: AgentRepository | None = None,
        client: Any | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.repository = repository
        self._clock = clock
        if client is None:
            session = boto3.Session(botocore_session=botocore.session.Session(), region_name=region_name)
            client = session.client(
                "bedrock-agentcore",
                config=retry_config(
                    max_attempts,
                    read_timeout=config.timeout_seconds + READ_TIMEOUT_MARGIN_SECONDS,
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                ),
            )
            client.meta.events.register_first(
                "needs-retry.bedrock-agentcore.InvokeAgentRuntime", no_retry_after_read_timeout
            )
        self._client: Any = client

    @property
    def source(self) -> str:
        """How messages name the agent: its ARN and qualifier."""
        return f"AgentCore Runtime {self.config.agent_runtime_arn} (qualifier {self.config.qualifier})"

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        """One invocation for ``request``; the agent's result.

        Returns ``AgentResult(usage_limit_resets_at=...)`` for a usage limit with a known reset
        time. Raises :class:`AgentError` for any other AWS error, a timeout, or an invalid answer.
        """
        session = request.session_id or runtime_session_id(request.loop_id, request.iteration)
        try:
            response = self._client.invoke_agent_runtime(
                agentRuntimeArn=self.config.agent_runtime_arn,
                qualifier=self.config.qualifier,
                runtimeSessionId=session,
                contentType="application/json",
                accept="application/json, text/event-stream",
                payload=build_payload(request, self.repository),
            )
            body = response["response"].read()
        except ClientError as exc:
            return self._failed_call(exc)
        except ReadTimeoutError as exc:
            raise AgentError(
                f"{self.source} gave no answer within {self.config.timeout_seconds:g} s "
                f"(+{READ_TIMEOUT_MARGIN_SECONDS:g} s): raise agent.timeout_seconds (at most "
                f"{MAX_AWS_AGENT_TIMEOUT_SECONDS:g}) or "
                "make the agent answer sooner"
            ) from exc
        except BotoCoreError as exc:
            raise AgentError(str(domain_error(exc, f"invoking {self.source}"))) from exc
        result = parse_reply(body, str(response.get("contentType") or ""), self.source)
        result.session_id = session
        return result

    def _failed_call(self, exc: ClientError) -> AgentResult:
        code = error_code(exc)
        resets_at = usage_limit_reset(exc, self._clock()) if code in USAGE_LIMIT_CODES else None
        if resets_at is None:
            raise AgentError(str(domain_error(exc, f"invoking {self.source}"))) from exc
        message = str(exc.response.get("Error", {}).get("Message", ""))
        when = resets_at.isoformat()
        return AgentResult(
            summary=f"usage limit reached ({code}: {message[:300]}); the loop continues at {when}",
            usage_limit_resets_at=resets_at,
            output=message[-MAX_OUTPUT_CHARS:],
        )


def no_retry_after_read_timeout(caught_exception: Exception | None = None, **_: Any) -> None:
    """botocore ``needs-retry`` handler (registered first): a read timeout ends the call at once,
    since the agent may have worked for the whole timeout and a retry would run it again."""
    if isinstance(caught_exception, ReadTimeoutError):
        raise caught_exception


def _last_object_event(text: str, source: str, progress: list[str]) -> dict[str, Any]:
    """The last ``data:`` event of an event stream that is a JSON object; other events go to
    ``progress`` (as text)."""
    result: dict[str, Any] | None = None
    events = 0
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        events += 1
        raw = line[5:].strip()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, dict):
            if result is not None:
                progress.append(json.dumps(result))
            result = value
        else:
            progress.append(value if isinstance(value, str) else json.dumps(value))
    if result is None:
        raise AgentError(
            f"{source} answered with an event stream of {events} event(s), none a JSON object: its last "
            'object event must be the result, such as data: {"tokens_used": 1200, "summary": "..."}'
        )
    return result


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
