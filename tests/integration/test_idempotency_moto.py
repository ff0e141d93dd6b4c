"""Powertools Idempotency on the real step handlers, with its DynamoDB table in moto: a handler
called again with the same input (a Step Functions retry) returns the stored output and applies
its step once."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyValidationError
from moto import mock_aws

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import idempotency, runtime
from loopwright.cloud.idempotency import idempotent_step
from loopwright.cloud.steps import CloudPorts, start_step
from loopwright.engine import LoopFramework
from loopwright.models import IterationEventType, LoopConfig, StepInput
from tests.integration.aws_moto import REGION, fake_credentials
from tests.integration.helpers import make_repo

ROOT = Path(__file__).resolve().parents[2]
TABLE = "test-idempotency"
REMAINING_MILLIS = 30_000


@dataclass
class Context:
    """A Lambda context with the time left, as Lambda gives it."""

    function_name: str = "authorize"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:authorize"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return REMAINING_MILLIS


def _handler(name: str) -> ModuleType:
    path = ROOT / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"idem_handler_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The idempotency table in moto; handlers with the local adapters in a fresh workspace."""
    fake_credentials(monkeypatch)
    monkeypatch.setenv("LOOPWRIGHT_ADAPTERS", "local")
    monkeypatch.setenv("LOOPWRIGHT_STATE_DIR", str(tmp_path / "ws" / ".loopwright"))
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", TABLE)
    runtime.ports.cache_clear()
    idempotency.idempotency_store.cache_clear()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(**idempotency.create_table_request(TABLE))
        yield client
    runtime.ports.cache_clear()
    idempotency.idempotency_store.cache_clear()


def _loop(tmp_path: Path) -> tuple[SqliteStore, dict[str, Any]]:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    config = LoopConfig.model_validate(
        {
            "goal": "g",
            "git_isolation": False,
            "exit_conditions": [{"type": "CUSTOM", "command": "true"}],
        }
    )
    LoopFramework(config, workspace=workspace, loop_id="idem").initialize_sync()
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    started = start_step(StepInput(loop_id="idem"), CloudPorts(store=store))
    return store, json.loads(started.model_dump_json())


def _count(store: SqliteStore, kind: IterationEventType) -> int:
    return sum(1 for e in store.list_events("idem") if e.type is kind)


def test_a_retried_step_returns_the_stored_output_and_applies_once(tmp_path: Path, table: Any) -> None:
    store, event = _loop(tmp_path)
    authorize = _handler("authorize").handler
    # When Authorize runs, then is retried with the same input
    first = authorize(event, Context())
    version = store.get_state("idem").version
    second = authorize(event, Context())
    # Then the retry returns the first output, and the step was applied once
    assert first["allowed"] is True and second == first
    assert _count(store, IterationEventType.ITERATION_STARTED) == 1
    assert store.get_state("idem").version == version
    # And the store holds one completed record: the output, expiring in a day
    (item,) = table.scan(TableName=TABLE)["Items"]
    now = time.time()
    assert item["id"]["S"].startswith("loopwright.authorize#")
    assert item["status"]["S"] == "COMPLETED"
    assert json.loads(item["data"]["S"]) == first
    assert abs(int(item["expiration"]["N"]) - (now + idempotency.EXPIRY_SECONDS)) < 60
    # the in-progress expiry was the invocation's time left (its Lambda timeout)
    assert abs(int(item["in_progress_expiration"]["N"]) / 1000 - (now + REMAINING_MILLIS / 1000)) < 60
    size = sum(len(k) + len(json.dumps(v)) for k, v in item.items())
    print(f"idempotency record: {size} bytes (DynamoDB's item limit: 400 KB)")


def test_another_iteration_or_execution_is_another_key(tmp_path: Path, table: Any) -> None:
    store, event = _loop(tmp_path)
    verify = _handler("verify").handler
    verify(event, Context())
    verify({**event, "iteration": event["iteration"] + 1}, Context())
    verify({**event, "generation": event["generation"] + 1}, Context())
    verify(event, Context())  # a retry of the first: replayed
    assert _count(store, IterationEventType.VERIFICATION_FAILED) == 3
    assert len(table.scan(TableName=TABLE)["Items"]) == 3


def test_a_failed_attempt_leaves_no_record_so_the_retry_runs(table: Any) -> None:
    calls: list[int] = []

    @idempotent_step("probe")
    def probe(event: Any, context: Any) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("throttled")
        return {"call": len(calls)}

    event = {"loop_id": "l1", "iteration": 1}
    with pytest.raises(RuntimeError):
        probe(event, Context())
    assert probe(event, Context()) == {"call": 2}
    assert probe(event, Context()) == {"call": 2}
    assert len(calls) == 2


def test_a_retry_while_the_first_attempt_runs_fails_with_the_error_the_state_machine_retries(
    table: Any,
) -> None:
    errors: list[str] = []

    @idempotent_step("probe")
    def probe(event: Any, context: Any) -> dict[str, int]:
        try:
            probe(event, context)  # Step Functions' retry arrives while this attempt runs
        except Exception as exc:  # the name Step Functions sees as the task's error
            errors.append(type(exc).__name__)
        return {"done": 1}

    assert probe({"loop_id": "l1"}, Context()) == {"done": 1}
    assert errors == [idempotency.IN_PROGRESS_ERROR]


def test_a_key_reused_with_another_event_is_refused(table: Any) -> None:
    @idempotent_step("probe")
    def probe(event: Any, context: Any) -> dict[str, Any]:
        return dict(event)

    probe({"loop_id": "l1", "reason": "a"}, Context())
    with pytest.raises(IdempotencyValidationError):
        probe({"loop_id": "l1", "reason": "b"}, Context())
