"""The stack's idempotency table and its grants, and the pause until a usage limit resets: the
schedule_resume function, its least-privilege role, the scheduler role and the state machine branch."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from infrastructure import constants
from infrastructure.functions import IDEMPOTENCY_ACTIONS, NEEDS, function_name
from loopwright.cloud import idempotency
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_stack import _definition, _function, _role_statements


def _logical_id(synthesized: Synthesized, kind: str, prefix: str) -> str:
    (logical_id,) = [k for k in synthesized.resources(kind) if k.startswith(prefix)]
    return logical_id


def _idempotency_table_id(synthesized: Synthesized) -> str:
    return _logical_id(synthesized, "AWS::DynamoDB::Table", "StorageIdempotencyTable")


def _on_idempotency_table(synthesized: Synthesized, statement: dict[str, Any]) -> bool:
    arn = {"Fn::GetAtt": [_idempotency_table_id(synthesized), "Arn"]}
    return statement["Resource"] in (arn, [arn])


# ----------------------------------------------------------------------------- idempotency
def test_idempotency_table_keys_ttl_and_durability(synthesized: Synthesized) -> None:
    table = synthesized.resources("AWS::DynamoDB::Table")[_idempotency_table_id(synthesized)]
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": idempotency.PARTITION_KEY, "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": idempotency.EXPIRY_ATTRIBUTE,
        "Enabled": True,
    }
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Delete"  # as the other tables (context default: destroy)


def test_each_idempotent_step_gets_the_table_and_item_access_only(synthesized: Synthesized) -> None:
    table_ref = {"Ref": _idempotency_table_id(synthesized)}
    for name in constants.FUNCTIONS:
        env = _function(synthesized, name)["Environment"]["Variables"]
        grants = [s for s in _role_statements(synthesized, name) if _on_idempotency_table(synthesized, s)]
        if "idempotency" in NEEDS[name]:
            assert env["IDEMPOTENCY_TABLE_NAME"] == table_ref, name
            (grant,) = grants
            assert sorted(grant["Action"]) == sorted(IDEMPOTENCY_ACTIONS), name
        else:
            assert "IDEMPOTENCY_TABLE_NAME" not in env and grants == [], name
    # every task of the loop but await_human (its retry must store the new task token)
    idempotent = {n for n, needs in NEEDS.items() if "idempotency" in needs}
    assert idempotent == {
        "authorize", "iterate", "checkpoint", "evaluate", "verify", "decide", "record_failure",
        "schedule_resume", "run_iteration",
    }  # fmt: skip


def test_idempotent_tasks_wait_out_an_in_progress_attempt_longer_than_any_timeout(
    synthesized: Synthesized,
) -> None:
    states = _definition(synthesized)["States"]
    longest = max(timeout.to_seconds() for timeout, _ in constants.FUNCTIONS.values())
    tasks = ("Authorize", "Iterate", "Checkpoint", "Evaluate", "Verify", "Decide", "ScheduleResume")
    for state_name in tasks:
        first = states[state_name]["Retry"][0]
        assert first["ErrorEquals"] == [idempotency.IN_PROGRESS_ERROR], state_name
        assert first.get("JitterStrategy", "NONE") == "NONE"
        waits = [first["IntervalSeconds"] * first["BackoffRate"] ** i for i in range(first["MaxAttempts"])]
        assert sum(waits) > longest, (state_name, waits)
    assert all(r["ErrorEquals"] != [idempotency.IN_PROGRESS_ERROR] for r in states["AwaitHuman"]["Retry"])


# ----------------------------------------------------------------------------- pause until a reset
def test_pause_branch_schedules_the_resume_then_ends_paused(synthesized: Synthesized) -> None:
    states = _definition(synthesized)["States"]
    pause = [c for c in states["Action?"]["Choices"] if c.get("StringEquals") == "PAUSE"]
    assert [c["Next"] for c in pause] == ["ResumeAt?"]
    resume_at = states["ResumeAt?"]
    (choice,) = resume_at["Choices"]
    assert {"Variable": "$.resume_at", "IsString": True} in choice["And"]
    assert choice["Next"] == "ScheduleResume"
    assert resume_at["Default"] == "Paused"  # a human's pause: no schedule
    assert states["ScheduleResume"]["Next"] == "Paused"
    assert states["ScheduleResume"]["Catch"][0]["Next"] == "RecordFailure"
    assert states["Paused"]["Type"] == "Succeed"


def test_schedule_resume_role_creates_schedules_in_the_group_and_passes_the_scheduler_role_only(
    synthesized: Synthesized,
) -> None:
    statements = _role_statements(synthesized, "schedule_resume")
    by_action: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            by_action.setdefault(action, []).append(statement)
    assert {a for a in by_action if a.startswith(("scheduler:", "iam:"))} == {
        "scheduler:CreateSchedule",
        "iam:PassRole",
    }
    (create,) = by_action["scheduler:CreateSchedule"]
    group = synthesized.stack.resolve(synthesized.stack.continuation.schedule_group.schedule_group_name)
    assert f":schedule/{group}/*" in json.dumps(create["Resource"])
    assert "scheduler" in json.dumps(create["Resource"])
    (pass_role,) = by_action["iam:PassRole"]
    scheduler_role = _logical_id(synthesized, "AWS::IAM::Role", "ContinuationSchedulerRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": [scheduler_role, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    # nothing of the loop's tables, Memory, Code Interpreter or policy store
    assert not any(a.startswith(("bedrock-agentcore:", "verifiedpermissions:", "states:")) for a in by_action)
    assert all(
        _on_idempotency_table(synthesized, s)
        for a, ss in by_action.items()
        if a.startswith("dynamodb:")
        for s in ss
    )


def test_schedule_resume_environment_names_group_role_target_and_dead_letters(
    synthesized: Synthesized,
) -> None:
    env = _function(synthesized, "schedule_resume")["Environment"]["Variables"]
    assert env["SCHEDULER_ROLE_ARN"] == {
        "Fn::GetAtt": [_logical_id(synthesized, "AWS::IAM::Role", "ContinuationSchedulerRole"), "Arn"]
    }
    group = synthesized.stack.resolve(synthesized.stack.continuation.schedule_group.schedule_group_name)
    assert env["SCHEDULE_GROUP_NAME"] == group
    # start_loop by its name, derived from the stack's (no reference to the resource: no cycle)
    target = json.dumps(env["RESUME_FUNCTION_ARN"])
    assert f":function:{function_name(constants.STACK_NAME, 'start_loop')}" in target
    expected = function_name(constants.STACK_NAME, "start_loop")
    assert _function(synthesized, "start_loop")["FunctionName"] == expected
    dead_letters = _logical_id(synthesized, "AWS::SQS::Queue", "ContinuationResumeDeadLetters")
    assert env["RESUME_DEAD_LETTER_ARN"] == {"Fn::GetAtt": [dead_letters, "Arn"]}


def test_scheduler_role_invokes_start_loop_and_sends_dead_letters_only(synthesized: Synthesized) -> None:
    role = _logical_id(synthesized, "AWS::IAM::Role", "ContinuationSchedulerRole")
    statements = [
        s
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "lambda:InvokeFunction" in actions and "sqs:SendMessage" in actions
    assert not any(a.startswith("states:") for a in actions)
    (invoke,) = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    start_loop = _logical_id(synthesized, "AWS::Lambda::Function", "FunctionsStartLoopFunction")
    assert invoke["Resource"] == {"Fn::GetAtt": [start_loop, "Arn"]}
    synthesized.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {
                    "Statement": [
                        Match.object_like(
                            {
                                "Principal": {"Service": "scheduler.amazonaws.com"},
                                "Condition": {"StringEquals": {"aws:SourceAccount": Match.any_value()}},
                            }
                        )
                    ]
                }
            )
        },
    )


def test_function_names_fit_lambdas_limit() -> None:
    assert function_name("Loopwright", "start_loop") == "Loopwright-start-loop"
    long = function_name("S" * 128, "start_loop")
    assert len(long) <= 64 and long.endswith("-start-loop")
    assert long != function_name("S" * 127 + "T", "start_loop")
