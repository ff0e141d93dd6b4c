"""Helpers for the AWS adapter tests: moto-backed clients and canned botocore responses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from loopwright.adapters.aws._errors import retry_config
from loopwright.adapters.aws.dynamodb_store import DynamoDbStore, create_table_requests

REGION = "us-east-1"
LOOPS_TABLE = "test-loops"
EVENTS_TABLE = "test-events"


def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region for moto and Stubber clients (never real ones)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@contextmanager
def moto_dynamodb_store() -> Iterator[DynamoDbStore]:
    """A :class:`DynamoDbStore` over moto tables created with the module's key schema."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION, config=retry_config(2))
        for request in create_table_requests(LOOPS_TABLE, EVENTS_TABLE):
            client.create_table(**request)
        yield DynamoDbStore(LOOPS_TABLE, EVENTS_TABLE, client=client)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def json_error_response(status: int, code: str, message: str = "slow down") -> AWSResponse:
    """An HTTP response carrying a JSON-protocol AWS error (for ``before-send`` hooks)."""
    body = json.dumps({"__type": f"com.amazonaws#{code}", "message": message}).encode()
    return AWSResponse("https://example.invalid/", status, {"x-amzn-requestid": "test"}, _Raw(body))
