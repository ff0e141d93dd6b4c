"""A scheduled resume whose execution cannot start is not lost (issue 12, "Done when"): the
start_loop handler raises, Lambda's asynchronous invocation retries it twice, then puts the
failure record in start_loop's on-failure queue (SQS on moto); the loop stays PAUSED with an ERROR
event, and replaying the record's ``requestPayload`` (README, "Nothing lost silently") resumes it.

Lambda's asynchronous invocation is played here as the Lambda Developer Guide describes it
("How Lambda handles errors and retries with asynchronous invocation"; the destination record's
fields from "Capturing records of Lambda asynchronous invocations"); the stack's own settings
(two retries, the StartLoopFailures queue) are asserted on the template by
tests/infrastructure/test_monitoring.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from moto import mock_aws

from infrastructure.continuation import ASYNC_RETRY_ATTEMPTS
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.cloud.schedule import ScheduledResume, ScheduledResumeEvent
from loopwright.cloud.start import start_loop
from loopwright.models import IterationEventType, LoopPhase, StartLoopRequest
from tests.integration.aws_moto import REGION, fake_credentials
from tests.integration.helpers import make_repo
from tests.integration.test_handlers_local import Context, _handler

RESETS = datetime(2026, 3, 1, 17, 30, tzinfo=UTC)
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:start-loop"


def invoke_asynchronously(handler: Callable[[Any, Any], Any], event: dict[str, Any], queue_url: str) -> int:
    """Lambda's asynchronous invocation with an on-failure destination: the first attempt and
    ASYNC_RETRY_ATTEMPTS retries; after the last failure the record goes to the queue. Returns
    the attempts made."""
    attempts = 0
    while True:
        attempts += 1
        try:
            handler(event, Context())
            return attempts
        except Exception as exc:  # any function error, as Lambda sees it
            if attempts <= ASYNC_RETRY_ATTEMPTS:
                continue
            record = {
                "version": "1.0",
                "timestamp": datetime.now(UTC).isoformat(),
                "requestContext": {
                    "requestId": "req-1",
                    "functionArn": f"{FUNCTION_ARN}:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": event,
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled",
                },
                "responsePayload": {"errorMessage": str(exc), "errorType": type(exc).__name__},
            }
            boto3.client("sqs", region_name=REGION).send_message(
                QueueUrl=queue_url, MessageBody=json.dumps(record)
            )
            return attempts


def test_a_scheduled_resume_that_cannot_start_lands_in_the_on_failure_queue_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a loop paused until a usage limit resets, with the local store, and its one-time
    # schedule's input
    fake_credentials(monkeypatch)
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    monkeypatch.setenv("LOOPWRIGHT_ADAPTERS", "local")
    monkeypatch.setenv("LOOPWRIGHT_STATE_DIR", str(workspace / ".loopwright"))
    runtime.ports.cache_clear()
    ports = runtime.ports(runtime.RuntimeSettings.from_environ())
    config = {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}], "git_isolation": False}
    start_loop(StartLoopRequest(loop_id="paused", config=config), ports, lambda name, payload: "arn")
    state = ports.store.get_state("paused")
    state.phase, state.resume_at, state.is_active, state.iteration = LoopPhase.PAUSED, RESETS, False, 2
    ports.store.save_state(state)
    schedule_input = json.loads(
        ScheduledResumeEvent(
            scheduled_resume=ScheduledResume(
                loop_id="paused", resume_at=RESETS, generation=1, iterations_per_execution=50
            )
        ).model_dump_json()
    )
    module = _handler("start_loop")

    def throttled(name: str, payload: str) -> str:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution"
        )

    monkeypatch.setattr(module, "_start_execution", throttled)
    with mock_aws():
        queue_url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="StartLoopFailures")[
            "QueueUrl"
        ]
        # When the schedule fires and Step Functions keeps refusing the execution
        attempts = invoke_asynchronously(module.handler, schedule_input, queue_url)

        # Then Lambda tried three times and the failure record is in the on-failure queue
        assert attempts == 1 + ASYNC_RETRY_ATTEMPTS
        messages = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=queue_url)["Messages"]
        (message,) = messages
        record = json.loads(message["Body"])
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestPayload"] == schedule_input
        assert record["responsePayload"]["errorType"] == "ResumeNotStartedError"
    # and the loop is still PAUSED, an ERROR event saying the execution did not start
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    paused = store.get_state("paused")
    assert paused.phase is LoopPhase.PAUSED and paused.resume_at == RESETS
    errors = store.list_events("paused", types=[IterationEventType.ERROR])
    assert errors and "did not start" in errors[-1].message

    # When an operator replays the record's requestPayload once Step Functions answers again
    started: list[str] = []
    monkeypatch.setattr(module, "_start_execution", lambda name, payload: started.append(name) or "arn")
    response = module.handler(record["requestPayload"], Context())

    # Then the loop resumes in its next execution
    assert response["statusCode"] == 202, response
    assert started == ["paused-g1"]
    assert (
        SqliteStore(workspace / ".loopwright" / "loopwright.db").get_state("paused").phase
        is not LoopPhase.PAUSED
    )
