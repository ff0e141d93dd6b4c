"""The dashboard in AWS: X-Ray traces (botocore Stubber), CloudWatch metrics (moto) and the
Lambda handler of functions/dashboard over moto DynamoDB with Cognito claims."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from loopwright.adapters.aws.observability_queries import (
    DEFAULT_METRIC_NAMES,
    TRACE_SLICE,
    CloudWatchMetricQueries,
    XRayTraceQueries,
)
from loopwright.cloud import runtime
from loopwright.dashboard.server import http_to_event
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import LoopPhase
from tests.integration.aws_moto import (
    EVENTS_TABLE,
    LOOPS_TABLE,
    REGION,
    fake_credentials,
    moto_dynamodb_store,
)
from tests.integration.dashboard_helpers import iteration_events, loop_state

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)


def test_xray_traces_of_a_loop_by_its_annotation(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_credentials(monkeypatch)
    client = boto3.client("xray", region_name=REGION)
    traces = XRayTraceQueries(client=client)
    summary = {
        "Id": "1-abc-def",
        "StartTime": NOW - timedelta(minutes=5),
        "Duration": 1.5,
        "ResponseTime": 1.2,
        "HasError": False,
        "HasFault": True,
        "Http": {"HttpStatus": 502},
        "Annotations": {"loop_id": [{"AnnotationValue": {"StringValue": "l1"}}]},
    }
    expected = {
        "StartTime": ANY,
        "EndTime": ANY,
        "TimeRangeType": "TraceId",
        "Sampling": False,
        "FilterExpression": 'annotation.loop_id = "l1"',
    }
    with Stubber(client) as stub:
        stub.add_response("get_trace_summaries", {"TraceSummaries": [summary], "NextToken": "t"}, expected)
        stub.add_response("get_trace_summaries", {"TraceSummaries": []}, {**expected, "NextToken": "t"})
        stub.add_response("get_trace_summaries", {"TraceSummaries": []}, expected)  # the older slice
        result = traces.traces("l1", start=NOW - TRACE_SLICE - timedelta(hours=1), end=NOW, limit=10)
        stub.assert_no_pending_responses()
    assert result.source == "xray" and result.filter_expression == 'annotation.loop_id = "l1"'
    [trace] = result.traces
    assert (trace.trace_id, trace.has_fault, trace.http_status) == ("1-abc-def", True, 502)
    assert trace.annotations == {"loop_id": ["l1"]}

    with Stubber(client) as stub:
        stub.add_client_error("get_trace_summaries", "ThrottledException", "slow down")
        with pytest.raises(LoopFrameworkError, match=r"X-Ray traces of loop 'l1'.*ThrottledException"):
            traces.traces("l1", start=NOW - timedelta(minutes=10), end=NOW)


def test_cloudwatch_metrics_of_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_credentials(monkeypatch)
    with mock_aws():
        client = boto3.client("cloudwatch", region_name=REGION)
        client.put_metric_data(
            Namespace="Loopwright",
            MetricData=[
                {
                    "MetricName": "StepsCompleted",
                    "Dimensions": [{"Name": "service", "Value": "loopwright"}],
                    "Timestamp": NOW - timedelta(minutes=2),
                    "Value": 3,
                    "Unit": "Count",
                }
            ],
        )
        result = CloudWatchMetricQueries("Loopwright", "loopwright", client=client).metrics(
            start=NOW - timedelta(minutes=30), end=NOW, period_seconds=60
        )
    series = {s.name: s.values for s in result.series}
    assert result.source == "cloudwatch" and set(series) == set(DEFAULT_METRIC_NAMES)
    assert series["StepsCompleted"] == [3.0] and series["LoopsConditionsMet"] == []
    assert "LoopsTokenBudgetExhausted" in series


def _handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "handler_dashboard", ROOT / "functions" / "dashboard" / "handler.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Context:
    function_name = "dashboard"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:dashboard"
    aws_request_id = "req-1"


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Any]]:
    fake_credentials(monkeypatch)
    for name, value in {
        "LOOPWRIGHT_ADAPTERS": "aws",
        "LOOPS_TABLE_NAME": LOOPS_TABLE,
        "EVENTS_TABLE_NAME": EVENTS_TABLE,
        "MEMORY_ID": "mem-1",
        "POLICY_STORE_ID": "ps-1",
        "POLICY_MAP": "{}",
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    runtime.ports.cache_clear()
    with moto_dynamodb_store() as store:
        state = store.create_loop(loop_state("l1", phase=LoopPhase.ITERATING, iteration=2))
        store.save_state(state, iteration_events("l1", 2))
        module = _handler()
        yield module, store
    runtime.ports.cache_clear()


def _call(
    module: ModuleType, method: str, target: str, claims: dict[str, str] | None, body: Any = None
) -> tuple[int, Any]:
    event = http_to_event(
        method, target, [("X-Loopwright-User", "root")], b"" if body is None else json.dumps(body).encode()
    )
    event["requestContext"]["stage"] = "prod"
    if claims is not None:
        event["requestContext"]["authorizer"] = {"claims": claims}
    response = module.handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.slow
def test_the_lambda_serves_reads_from_dynamodb(handler: tuple[ModuleType, Any]) -> None:
    module, _ = handler
    status, body = _call(module, "GET", "/api/loops", {"cognito:username": "alice"})
    assert status == 200 and [item["loop_id"] for item in body["items"]] == ["l1"]
    assert body["items"][0]["running"] is None  # Step Functions runs it: not told
    status, body = _call(module, "GET", "/api/loops/l1", {"cognito:username": "alice"})
    assert status == 200 and body["iteration"] == 2 and body["mean_iteration_seconds"] == 5.0
    status, body = _call(
        module, "GET", "/api/loops/l1/events?type=ITERATION_STARTED", {"cognito:username": "alice"}
    )
    assert status == 200 and [e["iteration"] for e in body["items"]] == [2, 1]
    identity = _call(
        module, "GET", "/api/identity", {"cognito:username": "alice", "cognito:groups": "demo-operators"}
    )[1]
    assert identity == {
        "principal": 'User::"alice"',
        "groups": ['Group::"demo-operators"'],
        "operates_all_projects": False,
        "source": "cognito",
        "impersonation_header": None,  # the X-Loopwright-User header is ignored in AWS
    }


def test_the_lambda_refuses_a_control_without_a_user(handler: tuple[ModuleType, Any]) -> None:
    module, store = handler
    version = store.get_state("l1").version
    status, body = _call(module, "POST", "/api/loops/l1/stop", None, {"reason": "x"})
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    assert store.get_state("l1").version == version and store.pending_controls("l1") == []


def test_the_lambda_reports_a_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPWRIGHT_ADAPTERS", raising=False)
    module = _handler()
    response = module.handler(http_to_event("GET", "/api/loops", [], b""), Context())
    assert response["statusCode"] == 500
    assert "LOOPWRIGHT_ADAPTERS" in json.loads(response["body"])["error"]["message"]


# ----------------------------------------------------------------------------- plans (Cedar)
PLAN_STORE_POLICIES = {"SPplans0001": {"id": "operators-change-plans", "message": "operators may"}}
PLAN_DRAFT = {
    "defaults": {"exit_conditions": [{"type": "CUSTOM", "name": "ok", "command": "true"}]},
    "tasks": [{"task_id": "a", "description": "a"}],
}


def _plan_question(user: str, groups: list[str]) -> dict[str, Any]:
    """The IsAuthorized request the plans function sends for ``user`` creating a plan in demo."""
    entities: list[dict[str, Any]] = [
        {
            "identifier": {"entityType": "Project", "entityId": "demo"},
            "attributes": {
                "operators": {"entityIdentifier": {"entityType": "Group", "entityId": "demo-operators"}}
            },
            "parents": [],
        }
    ]
    if groups:
        entities.append(
            {
                "identifier": {"entityType": "User", "entityId": user},
                "attributes": {},
                "parents": [{"entityType": "Group", "entityId": g} for g in groups],
            }
        )
    return {
        "policyStoreId": "ps-1",
        "principal": {"entityType": "User", "entityId": user},
        "action": {"actionType": "Action", "actionId": "CreatePlan"},
        "resource": {"entityType": "Project", "entityId": "demo"},
        "context": {"contextMap": {}},
        "entities": {"entityList": entities},
    }


def test_the_plans_lambda_asks_verified_permissions_before_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine
    from loopwright.cloud import dashboard_runtime
    from tests.integration.plans_aws_helpers import PLANS_TABLE, MotoPlanStore

    # Given the plans function over moto DynamoDB and a stubbed Verified Permissions client
    fake_credentials(monkeypatch)
    client = boto3.client("verifiedpermissions", region_name=REGION)
    engine = VerifiedPermissionsPolicyEngine("ps-1", PLAN_STORE_POLICIES, client=client)
    monkeypatch.setattr(dashboard_runtime, "_policy_engine", lambda settings: engine)
    plans = MotoPlanStore()
    try:
        for name, value in {
            "LOOPWRIGHT_ADAPTERS": "aws",
            "LOOPWRIGHT_DASHBOARD_MODE": "plans",
            "LOOPS_TABLE_NAME": LOOPS_TABLE,
            "EVENTS_TABLE_NAME": EVENTS_TABLE,
            "PLANS_TABLE_NAME": PLANS_TABLE,
            "PLAN_STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:123456789012:stateMachine:plans",
            "AWS_REGION": REGION,
        }.items():
            monkeypatch.setenv(name, value)
        module = _handler()
        with Stubber(client) as stub:
            # When mallory (no group) posts a plan, Then Cedar denies it and nothing is stored
            stub.add_response(
                "is_authorized",
                {"decision": "DENY", "determiningPolicies": [], "errors": []},
                _plan_question("mallory", []),
            )
            status, body = _call(
                module,
                "POST",
                "/api/projects/demo/plan",
                {"cognito:username": "mallory"},
                {"plan": PLAN_DRAFT},
            )
            assert (status, body["error"]["code"], body["error"]["policy_ids"]) == (403, "forbidden", [])
            assert plans.list_plans("demo") == []
            # When an operator posts it, Then the permitting policy is the plans one and it is stored
            stub.add_response(
                "is_authorized",
                {"decision": "ALLOW", "determiningPolicies": [{"policyId": "SPplans0001"}], "errors": []},
                _plan_question("bob", ["demo-operators"]),
            )
            claims = {"cognito:username": "bob", "cognito:groups": "demo-operators"}
            status, body = _call(module, "POST", "/api/projects/demo/plan", claims, {"plan": PLAN_DRAFT})
            assert (status, body["status"]) == (201, "DRAFT"), body
            stub.assert_no_pending_responses()
        assert [p.plan_id for p in plans.list_plans("demo")] == [body["plan_id"]]
    finally:
        plans.close()
