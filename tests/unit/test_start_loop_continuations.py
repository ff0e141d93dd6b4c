"""The start_loop handler's routing of continuations (issue 12.8): a loop schedule's input, a
``loopwright.continue`` event and a git push for an existing loop; bad events name the field and
write nothing. The control service is a fake here (tests/integration/test_continuation_moto.py
drives the real one against moto)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.cloud.continuation import CONTINUE_EVENT_DETAIL_TYPE, CONTINUE_EVENT_SOURCE
from loopwright.cloud.schedule import ResumeNotStartedError
from loopwright.exceptions import ControlConflictError, ControlDeniedError
from loopwright.models import ControlRequest, ControlResult, LoopConfig, LoopOutcome, LoopPhase, LoopState

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "goal": "g",
    "exit_conditions": [{"type": "LINTING_CLEAN"}],
    "agent": {"kind": "command", "command": ["true"]},
}


@dataclass
class Context:
    function_name: str = "start_loop"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:start_loop"
    aws_request_id: str = "req-1"


class FakeControls:
    """Records the controls submitted; raises ``error`` when given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.requests: list[ControlRequest] = []
        self.error = error

    def submit(self, request: ControlRequest) -> ControlResult:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return ControlResult(
            control=request, status="applied", message="resuming", phase=LoopPhase.AUTHORIZING
        )


@dataclass
class Wired:
    module: ModuleType
    store: SqliteStore
    controls: FakeControls
    started: list[str]
    created: list[str]
    deleted: list[str]


@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Wired:
    monkeypatch.setenv("LOOPWRIGHT_ADAPTERS", "local")
    monkeypatch.setenv("LOOPWRIGHT_STATE_DIR", str(tmp_path))
    runtime.ports.cache_clear()
    spec = importlib.util.spec_from_file_location(
        "handler_start_loop_cont", ROOT / "functions" / "start_loop" / "handler.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wired = Wired(module, SqliteStore(tmp_path / "loopwright.db"), FakeControls(), [], [], [])
    monkeypatch.setattr(module, "_controls", lambda settings: wired.controls)
    monkeypatch.setattr(module, "_start_execution", lambda name, payload: wired.started.append(name) or "arn")
    monkeypatch.setattr(
        module, "_create_schedule", lambda loop_id, config: wired.created.append(loop_id) or "name"
    )
    monkeypatch.setattr(module, "_delete_schedule", lambda loop_id: wired.deleted.append(loop_id) or True)
    return wired


def _loop(wired: Wired, loop_id: str, *, schedule: str | None = "rate(1 hour)", **fields: Any) -> None:
    config = LoopConfig.model_validate({**CONFIG, "schedule": schedule})
    wired.store.create_loop(
        LoopState(loop_id=loop_id, project="default", config=config, workspace="", **fields)
    )


def _bridge(source: str, detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "1",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-12-07T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def _continue(detail: dict[str, Any]) -> dict[str, Any]:
    return _bridge(CONTINUE_EVENT_SOURCE, CONTINUE_EVENT_DETAIL_TYPE, detail)


def _push(detail: dict[str, Any]) -> dict[str, Any]:
    return _bridge("loopwright.git", "push", detail)


def _body(response: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response["body"])
    return body


def test_a_schedule_firing_continues_a_limit_ended_loop_as_the_scheduler(wired: Wired) -> None:
    _loop(wired, "sched", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.ITERATION_LIMIT)
    event = {"continue_loop": {"loop_id": "sched", "reason": "schedule rate(1 hour)", "source": "schedule"}}
    response = wired.module.handler(event, Context())
    assert response["statusCode"] == 202, response
    assert _body(response)["continued"] is True
    assert [(r.action.value, r.principal) for r in wired.controls.requests] == [
        ("RESUME", 'Service::"scheduler"')
    ]


def test_a_continue_event_continues_a_paused_loop_as_events(wired: Wired) -> None:
    _loop(wired, "paused", phase=LoopPhase.PAUSED)
    response = wired.module.handler(_continue({"loop_id": "paused", "reason": "deploy done"}), Context())
    assert response["statusCode"] == 202, response
    (request,) = wired.controls.requests
    assert (request.principal, request.reason) == ('Service::"events"', "continued by event: deploy done")


def test_a_continue_event_without_loop_id_names_the_field_and_writes_nothing(wired: Wired) -> None:
    response = wired.module.handler(_continue({"reason": "x"}), Context())
    assert response["statusCode"] == 400
    message = _body(response)["message"]
    assert "detail.loop_id: required field is missing" in message and '"loop_id"' in message
    assert wired.controls.requests == [] and wired.started == [] and wired.store.list_loops() == []


def test_a_bad_schedule_input_names_the_field(wired: Wired) -> None:
    response = wired.module.handler({"continue_loop": {"loop_id": "x", "source": "cron"}}, Context())
    assert response["statusCode"] == 400 and "continue_loop.source" in _body(response)["message"]
    assert wired.controls.requests == []


def test_a_push_for_an_existing_loop_continues_it_instead_of_409(wired: Wired) -> None:
    _loop(wired, "pushed", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.TIME_LIMIT, iteration=3)
    response = wired.module.handler(_push({"loop_id": "pushed", "config": CONFIG}), Context())
    assert response["statusCode"] == 202, response
    (request,) = wired.controls.requests
    assert request.principal == 'Service::"events"' and request.reason == "continued by git-push: git push"
    assert wired.started == [] and wired.created == []


def test_a_push_for_a_new_loop_starts_it_with_its_schedule(wired: Wired) -> None:
    response = wired.module.handler(
        _push({"loop_id": "fresh", "config": {**CONFIG, "schedule": "rate(1 day)"}}), Context()
    )
    assert response["statusCode"] == 202 and _body(response) == {"loop_id": "fresh"}
    assert (wired.created, wired.started, wired.controls.requests) == (["fresh"], ["fresh-g0"], [])


def test_a_bad_push_names_the_field(wired: Wired) -> None:
    response = wired.module.handler(_push({"loop_id": "x"}), Context())
    assert response["statusCode"] == 400 and "detail: config: required field is missing" in response["body"]
    assert wired.store.list_loops() == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"phase": LoopPhase.ITERATING, "is_active": True}, "running"),
        ({"phase": LoopPhase.AWAITING_RESPONSE}, "waits for a human"),
    ],
)
def test_a_no_op_continuation_says_why_and_is_not_retried(
    wired: Wired, fields: dict[str, Any], reason: str
) -> None:
    _loop(wired, "busy", **fields)
    response = wired.module.handler(_continue({"loop_id": "busy"}), Context())
    assert response["statusCode"] == 200
    assert _body(response)["continued"] is False and reason in _body(response)["reason"]
    assert wired.controls.requests == [] and wired.deleted == []


def test_a_push_for_a_loop_that_met_its_conditions_says_it_is_final_and_deletes_its_schedule(
    wired: Wired,
) -> None:
    _loop(wired, "done", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET)
    _loop(wired, "done-plain", schedule=None, phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET)
    response = wired.module.handler(_push({"loop_id": "done", "config": CONFIG}), Context())
    assert response["statusCode"] == 200
    assert "CONDITIONS_MET" in _body(response)["reason"] and _body(response)["schedule_deleted"] is True
    plain = wired.module.handler(_push({"loop_id": "done-plain", "config": CONFIG}), Context())
    assert plain["statusCode"] == 200 and _body(plain)["schedule_deleted"] is False
    assert wired.deleted == ["done"] and wired.controls.requests == [] and wired.started == []


def test_an_unknown_loop_is_404_and_a_denial_403_neither_retried(wired: Wired) -> None:
    assert wired.module.handler(_continue({"loop_id": "ghost"}), Context())["statusCode"] == 404
    _loop(wired, "guarded", phase=LoopPhase.PAUSED)
    wired.controls.error = ControlDeniedError("no policy permits it", policy_ids=[])
    assert wired.module.handler(_continue({"loop_id": "guarded"}), Context())["statusCode"] == 403
    wired.controls.error = ControlConflictError("loop 'guarded' is running; nothing to resume")
    conflict = wired.module.handler(_continue({"loop_id": "guarded"}), Context())
    assert conflict["statusCode"] == 200 and "running" in _body(conflict)["reason"]


def test_a_continuation_whose_execution_did_not_start_raises_for_lambdas_retries(wired: Wired) -> None:
    _loop(wired, "throttled", phase=LoopPhase.PAUSED)
    wired.controls.error = ResumeNotStartedError("loop throttled: execution throttled-g1 did not start")
    with pytest.raises(ResumeNotStartedError):
        wired.module.handler(_continue({"loop_id": "throttled"}), Context())
