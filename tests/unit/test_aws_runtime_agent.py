"""AgentCoreRuntimeAgent: InvokeAgentRuntime under botocore's Stubber, and against a local HTTP
endpoint for what the Stubber skips (retries and read timeouts)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from pydantic import ValidationError

from loopwright.adapters.aws._errors import retry_config
from loopwright.adapters.aws.runtime_agent import (
    AgentCoreRuntimeAgent,
    AgentRepository,
    build_payload,
    no_retry_after_read_timeout,
    runtime_session_id,
)
from loopwright.config_loader import format_validation_error
from loopwright.exceptions import AgentError
from loopwright.models import AgentRequest, LoopConfig, RuntimeAgentConfig

REGION = "us-east-1"
ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/fixer_agent-a1B2c3D4e5"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REPOSITORY = AgentRepository(
    url="https://github.com/o/r.git",
    ref="main",
    branch="loopwright/l1",
    base_commit="abc123",
    head_commit="def456",
)


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def request(iteration: int = 2, loop_id: str = "l1") -> AgentRequest:
    return AgentRequest(
        loop_id=loop_id,
        iteration=iteration,
        goal="make the tests pass",
        worktree="/tmp/loopwright/worktrees/l1",
        state_dir="/tmp/loopwright",
        max_iterations=10,
        tokens_used=500,
        token_budget=10_000,
        failures=["tests: test_a failed"],
        failing_conditions=["tests"],
        warnings=["80% of the token budget is used"],
    )


@pytest.fixture
def stubbed() -> Iterator[tuple[AgentCoreRuntimeAgent, Stubber]]:
    client = boto3.client("bedrock-agentcore", region_name=REGION)
    agent = AgentCoreRuntimeAgent(
        RuntimeAgentConfig(agent_runtime_arn=ARN, timeout_seconds=600),
        repository=REPOSITORY,
        client=client,
        clock=lambda: NOW,
    )
    with Stubber(client) as stubber:
        yield agent, stubber
        stubber.assert_no_pending_responses()


def answer(
    stubber: Stubber, body: bytes | str, content_type: str = "application/json", **expected: Any
) -> None:
    raw = body.encode() if isinstance(body, str) else body
    stubber.add_response(
        "invoke_agent_runtime",
        {
            "response": StreamingBody(io.BytesIO(raw), len(raw)),
            "contentType": content_type,
            "statusCode": 200,
            "runtimeSessionId": str(expected.get("runtimeSessionId", runtime_session_id("l1"))),
        },
        expected or None,
    )


def test_success_sends_the_request_json_in_the_loops_session(
    stubbed: tuple[AgentCoreRuntimeAgent, Stubber],
) -> None:
    agent, stubber = stubbed
    answer(
        stubber,
        json.dumps({"tokens_used": 1200, "summary": "fixed the import", "extra": "ignored"}),
        agentRuntimeArn=ARN,
        qualifier="DEFAULT",
        runtimeSessionId=runtime_session_id("l1", 2),  # a fresh session, started at iteration 2
        contentType="application/json",
        accept="application/json, text/event-stream",
        payload=build_payload(request(), REPOSITORY),
    )
    result = agent.run(request())
    assert (result.tokens_used, result.summary, result.failed, result.usage_limit_resets_at) == (
        1200,
        "fixed the import",
        False,
        None,
    )
    payload = json.loads(build_payload(request(), REPOSITORY))
    assert (payload["goal"], payload["iteration"], payload["failures"]) == (
        "make the tests pass",
        2,
        ["tests: test_a failed"],
    )
    assert payload["warnings"] == ["80% of the token budget is used"]
    assert payload["prompt"].startswith("# loopwright: iteration 2 of 10")
    assert payload["repository"]["branch"] == "loopwright/l1"
    assert "worktree" not in payload and "state_dir" not in payload


def test_the_loops_agent_session_continues_in_its_runtime_session_until_a_handoff(
    stubbed: tuple[AgentCoreRuntimeAgent, Stubber],
) -> None:
    agent, stubber = stubbed
    assert agent.supports_sessions
    # iteration 1 starts a session; the agent says how full its context is
    first = runtime_session_id("l1", 1)
    answer(stubber, '{"context_percent": 42.5}', runtimeSessionId=first, **_rest(1))
    started = agent.run(request(1))
    assert (started.session_id, started.context_percent) == (first, 42.5)
    # iteration 2 continues it: the loop hands the id back, the same runtime session is called
    continued = request(2).model_copy(update={"session_id": first})
    answer(stubber, '{"handoff": "my context is full"}', runtimeSessionId=first, **_rest(2, continued))
    asked = agent.run(continued)
    assert (asked.session_id, asked.handoff_requested) == (first, "my context is full")
    # after the handoff, iteration 3 starts a fresh one
    answer(stubber, "{}", runtimeSessionId=runtime_session_id("l1", 3), **_rest(3))
    assert agent.run(request(3)).session_id == runtime_session_id("l1", 3) != first
    assert runtime_session_id("l1") != runtime_session_id("l2")
    assert runtime_session_id("l/1") != runtime_session_id("l-1")  # made safe, still distinct
    assert len(runtime_session_id("a")) >= 33 and len(runtime_session_id("x" * 72, 10**6)) <= 100


def test_a_context_figure_out_of_range_is_an_invalid_answer(
    stubbed: tuple[AgentCoreRuntimeAgent, Stubber],
) -> None:
    agent, stubber = stubbed
    answer(stubber, '{"context_percent": -1}')
    with pytest.raises(AgentError, match="context_percent"):
        agent.run(request())


def _rest(iteration: int, sent: AgentRequest | None = None) -> dict[str, Any]:
    return {
        "agentRuntimeArn": ARN,
        "qualifier": "DEFAULT",
        "contentType": "application/json",
        "accept": "application/json, text/event-stream",
        "payload": build_payload(sent or request(iteration), REPOSITORY),
    }


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            "Internal error",
            "text/plain",
            r"not JSON \(Expecting value at character 0; content type text/plain\)",
        ),
        ("[1, 2]", "application/json", r"answered with a JSON list, not an object"),
        (
            '{"tokens_used": -5}',
            "application/json",
            r"invalid result: tokens_used: .*greater than or equal to 0 \(got -5\)",
        ),
        ('{"usage_limit_resets_at": "soon"}', "application/json", r"invalid result: usage_limit_resets_at: "),
        (b"\xff\xfe", "application/json", r"not UTF-8"),
        (
            'data: "thinking"\n\ndata: [1]\n\n',
            "text/event-stream",
            r"event stream of 2 event\(s\), none a JSON object",
        ),
    ],
)
def test_an_invalid_answer_raises_agent_error_naming_the_problem(
    stubbed: tuple[AgentCoreRuntimeAgent, Stubber], body: str | bytes, content_type: str, message: str
) -> None:
    agent, stubber = stubbed
    answer(stubber, body, content_type)
    with pytest.raises(AgentError, match=f"AgentCore Runtime {ARN} \\(qualifier DEFAULT\\) .*{message}"):
        agent.run(request())


def test_a_streamed_answer_ends_with_the_result(stubbed: tuple[AgentCoreRuntimeAgent, Stubber]) -> None:
    agent, stubber = stubbed
    events = [
        '"reading the failures"',
        '{"step": 1}',
        '{"tokens_used": 30, "summary": "done", "output": "ok"}',
    ]
    answer(stubber, "".join(f"data: {e}\n\n" for e in events), "text/event-stream; charset=utf-8")
    result = agent.run(request())
    assert (result.tokens_used, result.summary) == (30, "done")
    assert result.output == 'reading the failures\n{"step": 1}\nok'


def test_the_agents_own_usage_limit_answer_pauses_the_loop(
    stubbed: tuple[AgentCoreRuntimeAgent, Stubber],
) -> None:
    agent, stubber = stubbed
    answer(stubber, json.dumps({"usage_limit_resets_at": "2026-03-01T17:00:00", "summary": "limit"}))
    result = agent.run(request())
    assert result.usage_limit_resets_at == datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # no zone: UTC
    assert not result.failed


def test_a_usage_limit_error_with_a_reset_time_becomes_a_paused_result(
    stubbed: tuple[AgentCoreRuntimeAgent, Stubber],
) -> None:
    agent, stubber = stubbed
    stubber.add_client_error(
        "invoke_agent_runtime",
        "ThrottlingException",
        "model usage limit reached",
        429,
        response_meta={"HTTPHeaders": {"retry-after": "3600"}},
    )
    limited = agent.run(request())
    assert limited.usage_limit_resets_at == NOW + timedelta(hours=1) and not limited.failed
    assert "usage limit reached (ThrottlingException: model usage limit reached)" in limited.summary
    stubber.add_client_error(
        "invoke_agent_runtime",
        "ServiceQuotaExceededException",
        json.dumps({"error": "usage limit", "usage_limit_resets_at": "2026-03-02T00:00:00+02:00"}),
        402,
    )
    assert agent.run(request()).usage_limit_resets_at == datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def test_throttling_without_a_reset_time_and_other_errors_raise_agent_error(
    stubbed: tuple[AgentCoreRuntimeAgent, Stubber],
) -> None:
    agent, stubber = stubbed
    stubber.add_client_error("invoke_agent_runtime", "ThrottlingException", "Rate exceeded", 429)
    with pytest.raises(
        AgentError, match=r"ThrottlingException: Rate exceeded\); AWS throttled the call after all"
    ):
        agent.run(request())
    stubber.add_client_error("invoke_agent_runtime", "AccessDeniedException", "not allowed", 403)
    with pytest.raises(AgentError, match=r"AccessDeniedException.*IAM role lacks a permission"):
        agent.run(request())
    stubber.add_client_error("invoke_agent_runtime", "RuntimeClientError", "agent crashed", 424)
    with pytest.raises(AgentError, match=r"RuntimeClientError: agent crashed"):
        agent.run(request())


# ----------------------------------------------------------------------------- real HTTP
class _Endpoint(BaseHTTPRequestHandler):
    """Answers POSTs from the class's script: (status, headers, body, delay seconds)."""

    script: list[tuple[int, dict[str, str], bytes, float]] = []
    seen: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(self.path)
        status, headers, body, delay = type(self).script.pop(0) if type(self).script else (500, {}, b"{}", 0)
        time.sleep(delay)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Endpoint.script, _Endpoint.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _client(url: str, attempts: int, read_timeout: float, *, guard: bool) -> Any:
    client = boto3.client(
        "bedrock-agentcore",
        region_name=REGION,
        endpoint_url=url,
        config=retry_config(attempts, read_timeout=read_timeout, connect_timeout=2),
    )
    if guard:
        client.meta.events.register_first(
            "needs-retry.bedrock-agentcore.InvokeAgentRuntime", no_retry_after_read_timeout
        )
    return client


def test_throttling_is_retried_by_botocore_then_succeeds(endpoint: str) -> None:
    throttled = (429, {"x-amzn-ErrorType": "ThrottlingException"}, b'{"message": "slow down"}', 0.0)
    ok = (200, {"Content-Type": "application/json"}, b'{"tokens_used": 7}', 0.0)
    _Endpoint.script = [throttled, ok]
    agent = AgentCoreRuntimeAgent(
        RuntimeAgentConfig(agent_runtime_arn=ARN), client=_client(endpoint, 3, 5, guard=True)
    )
    assert agent.run(request()).tokens_used == 7
    assert len(_Endpoint.seen) == 2


def test_a_read_timeout_is_not_retried(endpoint: str) -> None:
    slow = (200, {"Content-Type": "application/json"}, b"{}", 1.0)
    # Without the guard botocore's standard mode would run the agent again
    _Endpoint.script = [slow, slow]
    unguarded = AgentCoreRuntimeAgent(
        RuntimeAgentConfig(agent_runtime_arn=ARN), client=_client(endpoint, 2, 0.3, guard=False)
    )
    with pytest.raises(AgentError):
        unguarded.run(request())
    assert len(_Endpoint.seen) == 2
    _Endpoint.script, _Endpoint.seen = [slow, slow], []
    guarded = AgentCoreRuntimeAgent(
        RuntimeAgentConfig(agent_runtime_arn=ARN, timeout_seconds=0.3),
        client=_client(endpoint, 2, 0.3, guard=True),
    )
    with pytest.raises(AgentError, match=r"gave no answer within 0\.3 s"):
        guarded.run(request())
    assert len(_Endpoint.seen) == 1


def test_the_default_client_retries_in_standard_mode_and_waits_past_the_timeout() -> None:
    agent = AgentCoreRuntimeAgent(
        RuntimeAgentConfig(agent_runtime_arn=ARN, timeout_seconds=300), region_name=REGION
    )
    config = agent._client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert (config.read_timeout, config.connect_timeout) == (330, 10)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("agent", "field", "message"),
    [
        (
            {"agent_runtime_arn": "arn:aws:lambda:us-east-1:123456789012:function:f"},
            "agent_runtime_arn",
            "must be an AgentCore Runtime ARN such as arn:aws:bedrock-agentcore:",
        ),
        ({"agent_runtime_arn": ARN, "timeout_seconds": 900}, "timeout_seconds", "less than or equal to 840"),
        ({"agent_runtime_arn": ARN, "qualifier": "prod endpoint"}, "qualifier", "should match pattern"),
        ({}, "agent_runtime_arn", "required field is missing"),
    ],
)
def test_runtime_agent_config_names_the_bad_field(agent: dict[str, Any], field: str, message: str) -> None:
    config = {
        "goal": "g",
        "exit_conditions": [{"type": "LINTING_CLEAN"}],
        "agent": {"kind": "agentcore_runtime", **agent},
    }
    with pytest.raises(ValidationError) as info:
        LoopConfig.model_validate(config)
    line = format_validation_error(info.value, "config")
    assert f".{field}: " in line and message in line, line


def test_runtime_agent_config_defaults() -> None:
    config = RuntimeAgentConfig(agent_runtime_arn=ARN)
    assert (config.qualifier, config.timeout_seconds, config.kind.value) == (
        "DEFAULT",
        840.0,
        "agentcore_runtime",
    )
    assert (
        RuntimeAgentConfig(agent_runtime_arn=ARN.replace("arn:aws:", "arn:aws-cn:"), qualifier="3").qualifier
        == "3"
    )
