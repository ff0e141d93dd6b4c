"""The Lambda handlers in functions/, called as Lambda calls them, with the local adapters.

They are chained in the state machine's order against a real git workspace, a command agent and
a real exit condition, and must reach the same outcome and events as the in-process engine.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.cloud.start import LoopNotStartedError
from loopwright.cloud.steps import CloudPorts, start_step
from loopwright.engine import LoopFramework
from loopwright.models import IterationEventType, LoopConfig, StepInput
from tests.integration.helpers import make_repo

ROOT = Path(__file__).resolve().parents[2]
STATES = ("authorize", "iterate", "checkpoint", "evaluate", "verify", "decide")


@dataclass
class Context:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str = "test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id: str = "req-1"


def _handler(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"handler_{name}", ROOT / "functions" / name / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    monkeypatch.setenv("LOOPWRIGHT_ADAPTERS", "local")
    monkeypatch.setenv("LOOPWRIGHT_STATE_DIR", str(workspace / ".loopwright"))
    runtime.ports.cache_clear()
    return workspace


def _config(tmp_path: Path) -> LoopConfig:
    agent = tmp_path / "agent.py"
    agent.write_text(
        textwrap.dedent(
            """
            import os, pathlib
            n = int(os.environ["LOOPWRIGHT_ITERATION"])
            pathlib.Path(f"{n}.txt").write_text("done")
            """
        )
    )
    check = "import pathlib,sys; sys.exit(0 if pathlib.Path('2.txt').exists() else 1)"
    return LoopConfig.model_validate(
        {
            "goal": "write two files",
            "max_iterations": 5,
            "exit_conditions": [{"type": "CUSTOM", "name": "two", "command": ["python", "-c", check]}],
            "agent": {"kind": "command", "command": [sys.executable, str(agent)]},
        }
    )


def test_handlers_chained_like_the_state_machine_reach_the_engines_result(
    tmp_path: Path, lambda_env: Path
) -> None:
    # Given a loop created as the start_loop Lambda creates it
    framework = LoopFramework(_config(tmp_path), workspace=lambda_env, loop_id="lambda-loop")
    framework.initialize_sync()
    store = SqliteStore(lambda_env / ".loopwright" / "loopwright.db")
    event: dict[str, Any] = json.loads(
        start_step(StepInput(loop_id="lambda-loop"), CloudPorts(store=store)).model_dump_json()
    )
    handlers = {name: _handler(name).handler for name in STATES}
    # When the handlers run in the state machine's order until Decide ends the loop
    for _ in range(10):
        event = handlers["authorize"](event, Context())
        assert event["allowed"], event
        for name in STATES[1:]:
            event = handlers[name](event, Context())
        if event["action"] != "CONTINUE":
            break
    # Then the loop met its condition in 2 iterations, on its own branch, as the engine would
    assert (event["action"], event["outcome"], event["iteration"]) == ("COMPLETE", "CONDITIONS_MET", 2)
    state = store.get_state("lambda-loop")
    assert state.outcome is not None and state.outcome.value == "CONDITIONS_MET"
    types = [e.type for e in store.list_events("lambda-loop")]
    assert types.count(IterationEventType.ITERATION_COMPLETED) == 2
    assert types[0] is IterationEventType.LOOP_STARTED
    # the loop's end, then its signed evidence (the handlers run locally sign with the user's key)
    assert types[-2:] == [IterationEventType.LOOP_COMPLETED, IterationEventType.EVIDENCE_RECORDED]


def test_a_handler_rejects_a_bad_event_naming_the_field(lambda_env: Path) -> None:
    with pytest.raises(Exception, match="loop_id"):
        _handler("authorize").handler({"iteration": 1}, Context())


def test_missing_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPWRIGHT_ADAPTERS", raising=False)
    with pytest.raises(Exception, match="LOOPWRIGHT_ADAPTERS"):
        runtime.RuntimeSettings.from_environ({})


def _api_event(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": "/loops",
        "path": "/loops",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/loops",
            "httpMethod": "POST",
            "stage": "prod",
            "requestId": "r",
            "accountId": "123456789012",
            "identity": {},
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def test_start_loop_from_the_api_and_from_an_eventbridge_rule(
    lambda_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _handler("start_loop")
    started: list[str] = []
    monkeypatch.setattr(module, "_start_execution", lambda name, payload: started.append(name) or "arn")
    config = {
        "goal": "g",
        "exit_conditions": [{"type": "LINTING_CLEAN"}],
        "agent": {"kind": "command", "command": ["true"]},
    }
    # A loop the state machine cannot run (no agent) is refused, nothing stored
    refused = module.handler(
        _api_event({"loop_id": "no-agent", "config": {**config, "agent": None}}), Context()
    )
    assert refused["statusCode"] == 400 and "agent" in json.loads(refused["body"])["message"]
    # From API Gateway
    response = module.handler(_api_event({"loop_id": "from-api", "config": config}), Context())
    assert response["statusCode"] == 202 and json.loads(response["body"]) == {"loop_id": "from-api"}
    # From an EventBridge rule (a git push)
    pushed = {
        "version": "0",
        "id": "1",
        "detail-type": "push",
        "source": "loopwright.git",
        "account": "123456789012",
        "time": "2026-11-23T00:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"loop_id": "from-push", "config": config},
    }
    pushed_response = module.handler(pushed, Context())
    assert pushed_response["statusCode"] == 202
    assert json.loads(pushed_response["body"]) == {"loop_id": "from-push"}
    assert started == ["from-api-g0", "from-push-g0"]
    # A bad config is refused with the field named, and nothing is started
    bad = module.handler(_api_event({"loop_id": "bad", "config": {"goal": "g"}}), Context())
    assert bad["statusCode"] == 400 and "exit_conditions" in bad["body"]
    assert started == ["from-api-g0", "from-push-g0"]


def test_a_start_whose_execution_fails_answers_503_to_the_api_and_raises_for_an_event(
    lambda_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 12: a throttled StartExecution after the loop was stored left it "running" for ever
    import botocore.exceptions

    module = _handler("start_loop")

    def throttled(name: str, payload: str) -> str:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution"
        )

    monkeypatch.setattr(module, "_start_execution", throttled)
    config = {
        "goal": "g",
        "exit_conditions": [{"type": "LINTING_CLEAN"}],
        "agent": {"kind": "command", "command": ["true"]},
    }
    # From API Gateway: 503 with the loop's id, so the caller can retry the same request
    response = module.handler(_api_event({"loop_id": "throttled", "config": config}), Context())
    assert response["statusCode"] == 503, response
    assert json.loads(response["body"])["loop_id"] == "throttled"
    # From an EventBridge rule: the error propagates, so Lambda retries it, then the on-failure queue
    pushed = {
        "version": "0",
        "id": "1",
        "detail-type": "push",
        "source": "loopwright.git",
        "account": "123456789012",
        "time": "2026-11-23T00:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"loop_id": "pushed-throttled", "config": config},
    }
    with pytest.raises(LoopNotStartedError):
        module.handler(pushed, Context())
    # A retry of the API request, once Step Functions answers, starts the same loop
    monkeypatch.setattr(module, "_start_execution", lambda name, payload: "arn")
    again = module.handler(_api_event({"loop_id": "throttled", "config": config}), Context())
    assert again["statusCode"] == 202, again
