"""The synthesized stack: properties of every resource kind, cdk-nag, cfn-lint, app.py."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from aws_cdk.assertions import Match

from infrastructure import constants
from infrastructure.api import request_schema
from infrastructure.functions import NEEDS
from infrastructure.plans import PLAN_FUNCTIONS
from infrastructure.policies import SCHEMA_JSON_PATH, SCHEMA_SHA256_PATH, load_policies, split_policies
from loopwright.adapters.aws import dynamodb_store as keys
from tests.infrastructure.conftest import Synthesized, assert_polled

REPO = constants.REPO_ROOT
#: Lambda's limit on all environment variables of a function together (bytes).
LAMBDA_ENV_LIMIT_BYTES = 4096


def _flatten(value: Any) -> str:
    """A ``Fn::Join`` of strings and intrinsics as text, each intrinsic as ``TOKEN``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_flatten(part) for part in parts)
    return "TOKEN"


def _task_functions(synthesized: Synthesized) -> dict[str, str]:
    """State name -> logical id of the Lambda function its ``Resource`` names (a direct invoke)."""
    (machine,) = [
        m
        for m in synthesized.resources("AWS::StepFunctions::StateMachine").values()
        if m["Properties"].get("StateMachineName") == f"{constants.STACK_NAME}-loop"
    ]
    text, found = "", {}
    for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]:
        if isinstance(part, dict) and "Fn::GetAtt" in part and text.endswith('"Resource":"'):
            found[re.findall(r'"([^"]+)":\{"(?:Next|End|Type)"', text)[-1]] = part["Fn::GetAtt"][0]
        text += part if isinstance(part, str) else "TOKEN"
    return found


def _definition(synthesized: Synthesized) -> dict[str, Any]:
    (machine,) = [
        m
        for m in synthesized.resources("AWS::StepFunctions::StateMachine").values()
        if m["Properties"].get("StateMachineName") == f"{constants.STACK_NAME}-loop"
    ]
    definition: dict[str, Any] = json.loads(_flatten(machine["Properties"]["DefinitionString"]))
    return definition


def _function(synthesized: Synthesized, name: str) -> dict[str, Any]:
    prefix = "Functions" + "".join(p.capitalize() for p in name.split("_")) + "Function"
    (function,) = [
        r for k, r in synthesized.resources("AWS::Lambda::Function").items() if k.startswith(prefix)
    ]
    props: dict[str, Any] = function["Properties"]
    return props


def _role_statements(synthesized: Synthesized, name: str) -> list[dict[str, Any]]:
    role_ref = _function(synthesized, name)["Role"]["Fn::GetAtt"][0]
    policies = [
        p["Properties"]
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_ref} in p["Properties"]["Roles"]
    ]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


# ----------------------------------------------------------------------------- cdk-nag, cfn-lint
def test_cdk_nag_has_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    # Given the app synthesized with AwsSolutionsChecks (cdk-nag 3: a validation plugin)
    # Then synth succeeded, and the validation report (when written) lists no violation
    assert synthesized.error is None, synthesized.error
    report = synthesized.outdir / "validation-report.json"
    if report.exists():
        violations = [
            (v["ruleName"], c["constructPath"])
            for plugin in json.loads(report.read_text())["pluginReports"]
            for v in plugin["violations"]
            for c in v["violatingConstructs"]
        ]
        assert violations == []


def test_acknowledgements_are_written_to_the_template_with_reasons(synthesized: Synthesized) -> None:
    acknowledged = [
        rule
        for resource in synthesized.raw["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert acknowledged, "write_suppressions_to_cloud_formation puts them in Metadata"
    assert all(len(rule["reason"]) > 20 for rule in acknowledged)
    assert {rule["id"].split("[")[0] for rule in acknowledged} <= {
        "AwsSolutions-L1", "AwsSolutions-IAM4", "AwsSolutions-IAM5", "AwsSolutions-APIG3",
        "AwsSolutions-APIG4", "AwsSolutions-APIG6", "AwsSolutions-COG4", "AwsSolutions-SQS3",
    }  # fmt: skip


@pytest.mark.slow
def test_cfn_lint_finds_no_error(synthesized: Synthesized) -> None:
    template = synthesized.outdir / f"{constants.STACK_NAME}.template.json"
    # cfn-lint 1.x has no __main__ ("python -m cfnlint" printed nothing, so this passed unlinted)
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    completed = subprocess.run(
        [str(cfn_lint), "--format", "json", str(template)], capture_output=True, text=True, check=False
    )
    assert completed.stdout.strip().startswith("["), completed.stderr[-2000:]
    findings = json.loads(completed.stdout)
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], errors
    # W3005 (a DependsOn CDK adds beside a GetAtt) is the only warning tolerated
    assert {f["Rule"]["Id"] for f in findings if f["Level"] == "Warning"} <= {"W3005"}


# ----------------------------------------------------------------------------- DynamoDB
def test_tables_are_on_demand_with_pitr_and_encryption(synthesized: Synthesized) -> None:
    tables = synthesized.resources("AWS::DynamoDB::Table")
    assert len(tables) == 4  # loops, events, plans, idempotency
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert table["DeletionPolicy"] == "Delete"  # context default: destroy


def test_loops_table_keys_match_the_adapter(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": keys.LOOPS_PARTITION_KEY, "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": keys.LOOPS_BY_PROJECT_INDEX,
                    "KeySchema": [
                        {"AttributeName": keys.LOOPS_PROJECT_ATTRIBUTE, "KeyType": "HASH"},
                        {"AttributeName": keys.LOOPS_CREATED_ATTRIBUTE, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
                {
                    "IndexName": keys.LOOPS_ALL_INDEX,
                    "KeySchema": [
                        {"AttributeName": keys.LOOPS_ALL_ATTRIBUTE, "KeyType": "HASH"},
                        {"AttributeName": keys.LOOPS_CREATED_ATTRIBUTE, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
            ],
        },
    )


def test_events_and_plans_table_keys(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": keys.EVENTS_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": keys.EVENTS_SORT_KEY, "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                Match.object_like(
                    {
                        "IndexName": keys.EVENTS_BY_TYPE_INDEX,
                        "KeySchema": [
                            {"AttributeName": keys.EVENTS_LOOP_TYPE_ATTRIBUTE, "KeyType": "HASH"},
                            {"AttributeName": keys.EVENTS_SORT_KEY, "KeyType": "RANGE"},
                        ],
                    }
                )
            ],
        },
    )


# ----------------------------------------------------------------------------- Lambda
@pytest.mark.parametrize("name", list(constants.FUNCTIONS))
def test_function_properties(synthesized: Synthesized, name: str) -> None:
    props = _function(synthesized, name)
    timeout, memory = constants.FUNCTIONS[name]
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "handler.handler"
    assert props["Timeout"] == timeout.to_seconds()
    assert props["MemorySize"] == memory
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert len(props["Layers"]) == 1
    assert "Ref" in props["LoggingConfig"]["LogGroup"]
    env = props["Environment"]["Variables"]
    for variable in (
        "LOOPWRIGHT_ADAPTERS", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
        "LOOPS_TABLE_NAME", "EVENTS_TABLE_NAME", "MEMORY_ID", "CODE_INTERPRETER_ID", "POLICY_STORE_ID",
    ):  # fmt: skip
        assert variable in env, variable
    assert env["LOOPWRIGHT_ADAPTERS"] == "aws"
    assert ("POLICY_MAP" in env) == (name in {"authorize", "iterate", "run_iteration", "start_loop"})
    assert ("STATE_MACHINE_ARN" in env) == (name == "start_loop")


def test_iterate_and_evaluate_may_run_15_minutes_the_others_at_most_one() -> None:
    long = {n for n, (timeout, _) in constants.FUNCTIONS.items() if timeout.to_seconds() > 60}
    assert long == {"iterate", "evaluate", "run_iteration"}
    assert all(constants.FUNCTIONS[n][0].to_seconds() == 900 for n in long)


def test_log_groups_have_retention(synthesized: Synthesized) -> None:
    groups = synthesized.resources("AWS::Logs::LogGroup")
    # + the loop state machine, API access logs; the plan functions and PlanDispatch; the dashboard's
    dashboard = len(synthesized.stack.dashboard.functions)
    expected = len(constants.FUNCTIONS) + 2 + len(PLAN_FUNCTIONS) + 1 + dashboard
    assert len(groups) == expected
    assert all(g["Properties"]["RetentionInDays"] == 30 for g in groups.values())


@pytest.mark.parametrize("name", list(constants.FUNCTIONS))
def test_each_role_holds_only_what_its_function_needs(synthesized: Synthesized, name: str) -> None:
    statements = _role_statements(synthesized, name)
    actions = _actions(statements)
    needs = NEEDS[name]
    assert ("verifiedpermissions:IsAuthorized" in actions) == ("policy" in needs)
    assert ("bedrock-agentcore:CreateEvent" in actions) == ("memory" in needs)
    assert ("bedrock-agentcore:InvokeCodeInterpreter" in actions) == ("code_interpreter" in needs)
    assert ("states:StartExecution" in actions) == (name == "start_loop")
    assert not any(a.endswith(":*") or a == "*" for a in actions)
    for statement in statements:
        if statement["Action"] == "verifiedpermissions:IsAuthorized":
            assert statement["Resource"] == {"Fn::GetAtt": [Match.any_value(), "Arn"]} or (
                statement["Resource"]["Fn::GetAtt"][0].startswith("PoliciesStore")
            )


def test_policy_map_fits_lambdas_environment_limit(synthesized: Synthesized) -> None:
    env = _function(synthesized, "authorize")["Environment"]["Variables"]
    # Given store policy ids of 22 characters and names of about 60 (longer than seen)
    text = "".join(k + _flatten(v).replace("TOKEN", "x" * 60) for k, v in env.items())
    policy_map = json.loads(_flatten(env["POLICY_MAP"]).replace("TOKEN", "p" * 22, 1).replace("TOKEN", "q"))
    assert policy_map  # parses as JSON once the tokens are in
    assert len(text.encode()) < LAMBDA_ENV_LIMIT_BYTES


# ----------------------------------------------------------------------------- Step Functions
def test_state_machine_logs_all_and_traces(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "StateMachineName": f"{constants.STACK_NAME}-loop",
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
            "TracingConfiguration": {"Enabled": True},
        },
    )


def test_every_task_retries_with_full_jitter_and_is_caught(synthesized: Synthesized) -> None:
    states = _definition(synthesized)["States"]
    task_states = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert set(task_states) == {
        "Baseline", "Authorize", "Iterate", "Checkpoint", "Evaluate", "Verify", "Decide", "AwaitHuman",
        "StartNextExecution", "RecordFailure", "ScheduleResume",
    }  # fmt: skip
    for name, state in task_states.items():
        retry = state["Retry"][-1]  # idempotent steps retry an in-progress key first
        assert retry["JitterStrategy"] == "FULL", name
        assert (retry["IntervalSeconds"], retry["BackoffRate"], retry["MaxAttempts"]) == (2, 2, 3)
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        assert catch["Next"] == ("FailureNotRecorded" if name == "RecordFailure" else "RecordFailure")
    assert "States.TaskFailed" not in task_states["Iterate"]["Retry"][-1]["ErrorEquals"]
    assert "States.TaskFailed" not in task_states["Baseline"]["Retry"][-1]["ErrorEquals"]  # as Evaluate
    assert task_states["Baseline"]["Retry"] == task_states["Evaluate"]["Retry"]
    assert "States.TaskFailed" in task_states["Decide"]["Retry"][-1]["ErrorEquals"]


def test_definition_follows_the_workflow_shape(synthesized: Synthesized) -> None:
    definition = _definition(synthesized)
    states = definition["States"]
    # The baseline first, when the execution's input asks for it (issue 9 point 6)
    assert definition["StartAt"] == "Baseline?"
    (baseline,) = states["Baseline?"]["Choices"]
    assert baseline["And"] == [
        {"Variable": "$.baseline", "IsPresent": True},
        {"Variable": "$.baseline", "BooleanEquals": True},
    ]
    assert baseline["Next"] == "Baseline" and states["Baseline?"]["Default"] == "Authorize"
    # Baseline is the Evaluate Lambda given the whole state (its baseline flag), branching as Decide
    functions = _task_functions(synthesized)
    assert functions["Baseline"] == functions["Evaluate"]
    assert functions["Evaluate"].startswith("FunctionsEvaluateFunction")
    assert not {"Parameters", "InputPath"} & set(states["Baseline"])
    assert states["Authorize"]["Next"] == "Allowed?"
    allowed, settle = states["Allowed?"]["Choices"]
    assert allowed["Next"] == "Iterate"
    # An iteration held for changing pinned files, answered: evaluated, no new one (issue 15.1)
    assert settle["And"] == [
        {"Variable": "$.settle_pins", "IsPresent": True},
        {"Variable": "$.settle_pins", "BooleanEquals": True},
    ]
    assert settle["Next"] == "Evaluate"
    assert states["Allowed?"]["Default"] == "Decide"
    # Iterate, Evaluate and Baseline poll their background commands: pending -> wait -> again
    for task, then in (("Iterate", "Checkpoint"), ("Evaluate", "Verify"), ("Baseline", "Action?")):
        assert_polled(states, task, then)
    sequence = ["Checkpoint", "Evaluate"]
    for current, following in itertools.pairwise(sequence):
        assert states[current]["Next"] == following
    assert states["Verify"]["Next"] == "Decide" and states["Decide"]["Next"] == "Action?"
    handover, *choices = states["Action?"]["Choices"]  # CONTINUE with handover: a new execution
    assert handover["Next"] == "StartNextExecution"
    assert {"Variable": "$.action", "StringEquals": "CONTINUE"} in handover["And"]
    assert {"Variable": "$.handover", "BooleanEquals": True} in handover["And"]
    action = {c["StringEquals"]: c["Next"] for c in choices}
    assert action == {"CONTINUE": "Authorize", "AWAIT_HUMAN": "AwaitHuman", "PAUSE": "ResumeAt?"}
    assert states["Action?"]["Default"] == "Done"
    assert "Handover?" not in states  # folded into Action?: one transition less per iteration
    assert states["AwaitHuman"]["Next"] == "Authorize"
    assert states["AwaitHuman"]["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert states["AwaitHuman"]["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    start = states["StartNextExecution"]
    assert start["Resource"].endswith(":states:::states:startExecution")
    assert start["Parameters"]["Name.$"] == "States.Format('{}-g{}', $.loop_id, $.generation)"
    assert start["Next"] == "HandedOver"
    assert states["RecordFailure"]["Next"] == "Failed"
    assert states["Iterate"]["Catch"][0]["ResultPath"] == "$.error"


# ----------------------------------------------------------------------------- API Gateway
def test_post_loops_requires_iam_and_validates_the_body(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "AuthorizationType": "AWS_IAM",
            "RequestValidatorId": Match.any_value(),
            "RequestModels": {"application/json": Match.any_value()},
        },
    )
    methods = synthesized.resources("AWS::ApiGateway::Method")
    # POST /loops only; the dashboard's methods (Cognito): tests/infrastructure/test_dashboard_stack.py
    assert sum(m["Properties"]["AuthorizationType"] == "AWS_IAM" for m in methods.values()) == 1
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Model", {"ContentType": "application/json", "Schema": request_schema()}
    )
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True}
    )
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "TracingEnabled": True,
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {
                            "HttpMethod": "POST",
                            "ResourcePath": "/~1loops",
                            "ThrottlingRateLimit": constants.API_THROTTLING_RATE_LIMIT,
                            "ThrottlingBurstLimit": constants.API_THROTTLING_BURST_LIMIT,
                        }
                    )
                ]
            ),
        },
    )


def test_request_schema_is_draft_4_without_refs() -> None:
    schema = request_schema()
    assert schema["$schema"].startswith("http://json-schema.org/draft-04/")
    assert "$ref" not in json.dumps(schema)
    assert schema["required"] == ["config"]


# ----------------------------------------------------------------------------- Verified Permissions
def test_policy_store_is_strict_with_the_json_schema(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::VerifiedPermissions::PolicyStore",
        {
            "ValidationSettings": {"Mode": "STRICT"},
            "Schema": {
                "CedarJson": json.dumps(json.loads(SCHEMA_JSON_PATH.read_text()), separators=(",", ":"))
            },
        },
    )


def test_one_static_policy_per_cedar_policy(synthesized: Synthesized) -> None:
    expected = sum(
        len(json.loads(cedarpy.policies_to_json_str(p.read_text()))["staticPolicies"])
        for p in (REPO / "policies").glob("*.cedar")
    )
    policies = synthesized.resources("AWS::VerifiedPermissions::Policy")
    assert len(policies) == expected
    statements = [p["Properties"]["Definition"]["Static"]["Statement"] for p in policies.values()]
    ids = {p.policy_id for p in load_policies()}
    assert {s.split('@id("')[1].split('")')[0] for s in statements} == ids
    schema = cedarpy.Schema.from_json_str(SCHEMA_JSON_PATH.read_text())
    for statement in statements:
        assert len(json.loads(cedarpy.policies_to_json_str(statement))["staticPolicies"]) == 1
        result = cedarpy.validate_policies(statement, schema)
        assert result.validation_passed, (statement, result.errors)


def test_split_policies_keeps_text_and_annotations() -> None:
    text = (
        '@id("a")\n@outcome("X")\npermit (principal, action, resource);\n'
        '@id("b") forbid (principal, action, resource) when { context.n > 1 };'
    )
    first, second = split_policies(text)
    assert first.annotations == {"id": "a", "outcome": "X"}
    assert second.policy_id == "b"
    assert "context.n" in second.statement
    with pytest.raises(ValueError, match="no @id"):
        split_policies("permit (principal, action, resource);")


def test_json_schema_was_generated_from_the_current_cedar_schema() -> None:
    text = (REPO / "policies" / "loopwright.cedarschema").read_bytes()
    assert hashlib.sha256(text).hexdigest() == SCHEMA_SHA256_PATH.read_text().strip(), (
        "policies/loopwright.cedarschema changed: run infrastructure/cedar/regenerate.sh"
    )


# ----------------------------------------------------------------------------- AgentCore
def test_memory_and_code_interpreter(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::BedrockAgentCore::Memory",
        {
            "EventExpiryDuration": constants.DEFAULT_MEMORY_EXPIRY_DAYS,
            "Name": Match.string_like_regexp("^[a-zA-Z][a-zA-Z0-9_]{0,47}$"),
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::BedrockAgentCore::CodeInterpreterCustom",
        {"NetworkConfiguration": {"NetworkMode": "PUBLIC"}},
    )


# ------------------------------------------------------------------------ app.py (layer: test_layer_build)
@pytest.mark.slow
def test_app_py_synthesizes_from_a_clean_folder(tmp_path: Path) -> None:
    # Given a copy of what the app needs, without build/ or cdk.out/
    for name in ("app.py", "cdk.json"):
        shutil.copy(REPO / name, tmp_path / name)
    for folder in ("infrastructure", "functions", "policies", "layers"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, constants.ENV_LAYER: "stub", "PYTHONPATH": str(tmp_path)}
    env.pop("CDK_OUTDIR", None)
    # When app.py runs as the CDK CLI would, without the CLI
    completed = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    # Then the stack is in ./cdk.out
    assert completed.returncode == 0, completed.stderr[-3000:]
    template = json.loads((tmp_path / "cdk.out" / f"{constants.STACK_NAME}.template.json").read_text())
    assert any(r["Type"] == "AWS::StepFunctions::StateMachine" for r in template["Resources"].values())
