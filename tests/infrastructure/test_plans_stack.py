"""The synthesized PlanDispatch (infrastructure/plans.py) and the plans table."""

from __future__ import annotations

import json
from typing import Any

from infrastructure.dashboard_routes import PLAN_FUNCTION_ACTIONS
from infrastructure.plans import ITEM_WRITE_ACTIONS, PLAN_FUNCTIONS
from loopwright.adapters.aws import dynamodb_plan_store as plan_keys
from loopwright.engine.plan_stepfunctions import dispatch_definition
from tests.infrastructure.conftest import Synthesized


def _flatten(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_flatten(part) for part in parts)
    return "TOKEN"


def _definition(synthesized: Synthesized) -> dict[str, Any]:
    _, machine = dispatch_definition(synthesized.raw)
    definition: dict[str, Any] = json.loads(_flatten(machine["Properties"]["DefinitionString"]))
    return definition


def _tasks(states: dict[str, Any]) -> dict[str, Any]:
    found = {name: s for name, s in states.items() if s["Type"] == "Task"}
    for state in states.values():
        if state["Type"] == "Map":
            found |= _tasks(state["ItemProcessor"]["States"])
    return found


def _statements(synthesized: Synthesized, name: str) -> list[dict[str, Any]]:
    prefix = "Plans" + "".join(p.capitalize() for p in name.split("_")) + "Function"
    (function,) = [
        r for k, r in synthesized.resources("AWS::Lambda::Function").items() if k.startswith(prefix)
    ]
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        p["Properties"]
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _logical_id(synthesized: Synthesized, kind: str, prefix: str) -> str:
    (found,) = [k for k in synthesized.resources(kind) if k.startswith(prefix)]
    return found


def test_dispatch_is_a_logged_traced_standard_state_machine(synthesized: Synthesized) -> None:
    _, machine = dispatch_definition(synthesized.raw)
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["LoggingConfiguration"]["Level"] == "ALL" and props["TracingConfiguration"] == {
        "Enabled": True
    }
    assert "PlanDispatchStateMachineArn" in synthesized.raw["Outputs"]


def test_dispatch_loops_over_waves_with_a_map_state(synthesized: Synthesized) -> None:
    definition = _definition(synthesized)
    states = definition["States"]
    assert definition["StartAt"] == "Mode?" and states["Mode?"]["Default"] == "Begin"
    assert states["Begin"]["Next"] == "More?"
    assert states["More?"]["Choices"][0]["Next"] == "Wave" and states["More?"]["Default"] == "Done"
    wave = states["Wave"]
    assert (wave["Type"], wave["ItemsPath"], wave["MaxConcurrencyPath"]) == (
        "Map",
        "$.ready",
        "$.concurrency",
    )
    assert wave["ResultPath"] is None and wave["Next"] == "Next" and states["Next"]["Next"] == "More?"
    iteration = wave["ItemProcessor"]
    inner = iteration["States"]
    assert iteration["StartAt"] == "StartTask" and inner["StartTask"]["Next"] == "Started?"
    assert inner["WaitForLoop"] == {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "CheckTask"}
    assert (
        inner["Ended?"]["Choices"][0]["Next"] == "FinishTask" and inner["Ended?"]["Default"] == "WaitForLoop"
    )
    assert "Resource" in inner["StartTask"] and ".sync" not in json.dumps(definition)  # loops are polled


def test_every_task_retries_and_errors_end_the_task_or_fail_the_plan(synthesized: Synthesized) -> None:
    definition = _definition(synthesized)
    tasks = _tasks(definition["States"])
    assert set(tasks) == {"Begin", "Next", "RecordFailure", "StartTask", "CheckTask", "FinishTask", "Verify"}
    for name, state in tasks.items():
        if name == "Verify":
            continue  # see test_a_verify_execution_runs_gate_all_and_fails_the_plan_on_error
        (retry,) = state["Retry"]
        assert "States.TaskFailed" in retry["ErrorEquals"] and retry["JitterStrategy"] == "FULL", name
        assert (retry["IntervalSeconds"], retry["BackoffRate"], retry["MaxAttempts"]) == (2, 2, 3)
    inner = definition["States"]["Wave"]["ItemProcessor"]["States"]
    for name in ("StartTask", "CheckTask"):  # a task's own failure ends that task ERROR
        assert inner[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "FinishTask"}
        ]
    for name in ("Begin", "Next", "Wave"):  # the dispatch's failure fails the plan, with evidence
        (catch,) = definition["States"][name]["Catch"]
        assert (catch["Next"], catch["ResultPath"]) == ("RecordFailure", "$.error")
    assert definition["States"]["RecordFailure"]["Next"] == "Failed"
    payload = definition["States"]["RecordFailure"]["Parameters"]  # the payload itself (response only)
    assert payload["error.$"] == "$.error" and payload["execution.$"] == "$$.Execution.Id"


def test_the_plans_table_has_the_adapters_keys(synthesized: Synthesized) -> None:
    table = synthesized.resources("AWS::DynamoDB::Table")[
        _logical_id(synthesized, "AWS::DynamoDB::Table", "StoragePlansTable")
    ]
    request = plan_keys.create_table_request("x")
    props = table["Properties"]
    assert props["KeySchema"] == request["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(request["AttributeDefinitions"], key=str)
    (index,) = props["GlobalSecondaryIndexes"]
    (expected,) = request["GlobalSecondaryIndexes"]
    assert (index["IndexName"], index["KeySchema"], index["Projection"]) == (
        expected["IndexName"], expected["KeySchema"], expected["Projection"],
    )  # fmt: skip


def test_each_plan_function_holds_only_what_it_uses(synthesized: Synthesized) -> None:
    loops_table = _logical_id(synthesized, "AWS::DynamoDB::Table", "StorageLoopsTable")
    plans_table = _logical_id(synthesized, "AWS::DynamoDB::Table", "StoragePlansTable")
    for name in PLAN_FUNCTIONS:
        statements = _statements(synthesized, name)
        resources = json.dumps([s["Resource"] for s in statements])
        assert "/index/" not in resources, name  # no step queries an index
        starts = [s for s in statements if s["Action"] == "states:StartExecution"]
        assert bool(starts) == (name == "plan_start_task"), name
    (check,) = [
        s for s in _statements(synthesized, "plan_check_task") if str(s["Action"]).startswith("dynamodb")
    ]
    assert check == {
        "Action": "dynamodb:GetItem",
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [loops_table, "Arn"]},
    }
    (read,) = [s for s in _statements(synthesized, "plan_next") if str(s["Action"]).startswith("dynamodb")]
    assert read["Action"] == "dynamodb:GetItem" and read["Resource"] == {"Fn::GetAtt": [plans_table, "Arn"]}
    (write,) = [s for s in _statements(synthesized, "plan_begin") if "dynamodb:GetItem" in s["Action"]]
    assert (write["Action"], write["Resource"]) == (
        list(ITEM_WRITE_ACTIONS),
        {"Fn::GetAtt": [plans_table, "Arn"]},
    )


def test_a_verify_execution_runs_gate_all_and_fails_the_plan_on_error(synthesized: Synthesized) -> None:
    # Issue 12 point 9: verify runs in PlanDispatch (an execution with "verify": true), not in the API
    states = _definition(synthesized)["States"]
    (choice,) = states["Mode?"]["Choices"]
    assert choice == {
        "And": [
            {"Variable": "$.verify", "IsPresent": True},
            {"Variable": "$.verify", "BooleanEquals": True},
        ],
        "Next": "Verify",
    }
    verify = states["Verify"]
    assert verify["Next"] == "Verified" and states["Verified"]["Type"] == "Succeed"
    (retry,) = verify["Retry"]  # a failed gate run is not repeated: only the Lambda service's errors
    assert (
        "States.TaskFailed" not in retry["ErrorEquals"] and "Lambda.ServiceException" in retry["ErrorEquals"]
    )
    assert retry["JitterStrategy"] == "FULL"
    (catch,) = verify["Catch"]  # RecordFailure ends a VERIFYING plan FAILED with a plan_verify check
    assert (catch["ErrorEquals"], catch["Next"], catch["ResultPath"]) == (
        ["States.ALL"],
        "RecordFailure",
        "$.error",
    )
    function = _function_props(synthesized, "plan_verify")
    assert function["Timeout"] == 900 and function["TracingConfig"] == {"Mode": "Active"}
    assert "CODE_INTERPRETER_ID" in function["Environment"]["Variables"]


def test_the_verify_function_may_write_plans_and_use_code_interpreter_only(synthesized: Synthesized) -> None:
    plans_table = _logical_id(synthesized, "AWS::DynamoDB::Table", "StoragePlansTable")
    statements = _statements(synthesized, "plan_verify")
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "bedrock-agentcore:InvokeCodeInterpreter" in actions
    assert not any(a.startswith("states:") or a.startswith("secretsmanager:") for a in actions)
    tables = [s for s in statements if any(str(a).startswith("dynamodb") for a in _as_list(s["Action"]))]
    assert [(s["Action"], s["Resource"]) for s in tables] == [
        (list(ITEM_WRITE_ACTIONS), {"Fn::GetAtt": [plans_table, "Arn"]})
    ]


def test_the_dashboard_plans_function_starts_executions_and_runs_no_gate(synthesized: Synthesized) -> None:
    # gate:all left the API call: the plans function needs no Code Interpreter session any more
    functions = synthesized.resources("AWS::Lambda::Function")
    (props,) = [
        f["Properties"]
        for f in functions.values()
        if f["Properties"].get("Environment", {}).get("Variables", {}).get("LOOPWRIGHT_DASHBOARD_MODE")
        == "plans"
    ]
    assert "CODE_INTERPRETER_ID" not in props["Environment"]["Variables"]
    assert "PLAN_STATE_MACHINE_ARN" in props["Environment"]["Variables"]
    assert not any(a.startswith("bedrock-agentcore:") for a in PLAN_FUNCTION_ACTIONS)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _function_props(synthesized: Synthesized, name: str) -> dict[str, Any]:
    (props,) = [
        f["Properties"]
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if f"(functions/{name}/" in str(f["Properties"].get("Description", ""))
    ]
    return props
