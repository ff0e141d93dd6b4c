"""Continuation modes in the stack (issue 12.8): the loopwright.continue rule, start_loop's
scheduler permissions (CreateSchedule and DeleteSchedule on the group's schedules, PassRole of the
scheduler role to Scheduler only), its environment shared with schedule_resume, and its Cedar and
checkpoint reads. cdk-nag and cfn-lint: tests/infrastructure/test_stack.py."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Stack
from aws_cdk.assertions import Match

from infrastructure import constants
from loopwright.cloud import continuation
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_idempotency_pause_stack import _logical_id
from tests.infrastructure.test_stack import _function, _role_statements

SCHEDULER_ENV = ("SCHEDULE_GROUP_NAME", "SCHEDULER_ROLE_ARN", "RESUME_FUNCTION_ARN", "RESUME_DEAD_LETTER_ARN")


def _by_action(statements: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_action: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            by_action.setdefault(action, []).append(statement)
    return by_action


def _id(construct: Any) -> str:
    return str(Stack.of(construct).get_logical_id(construct.node.default_child))


def test_the_handler_and_the_rule_agree_on_the_continue_event() -> None:
    assert constants.CONTINUE_EVENT_SOURCE == continuation.CONTINUE_EVENT_SOURCE == "loopwright.continue"
    assert constants.CONTINUE_EVENT_DETAIL_TYPE == continuation.CONTINUE_EVENT_DETAIL_TYPE


def test_the_continue_rule_targets_start_loop_with_retries_and_its_dead_letter_queue(
    synthesized: Synthesized,
) -> None:
    rule = synthesized.raw["Resources"][_id(synthesized.stack.continuation.continue_rule)]["Properties"]
    assert rule["EventPattern"] == {
        "source": [constants.CONTINUE_EVENT_SOURCE],
        "detail-type": [constants.CONTINUE_EVENT_DETAIL_TYPE],
    }
    assert "EventBusName" not in rule  # the default bus
    (target,) = rule["Targets"]
    start_loop = _logical_id(synthesized, "AWS::Lambda::Function", "FunctionsStartLoopFunction")
    assert target["Arn"] == {"Fn::GetAtt": [start_loop, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
    dead_letters = _id(synthesized.stack.continuation.continue_dead_letters)
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dead_letters, "Arn"]}}
    # EventBridge may invoke start_loop for this rule (and the git push rule) only
    rule_id = _id(synthesized.stack.continuation.continue_rule)
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]},
        },
    )
    # The git push rule is unchanged but for its description
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": [constants.GIT_EVENT_SOURCE],
                "detail-type": [constants.GIT_EVENT_DETAIL_TYPE],
            },
            "Targets": [Match.object_like({"RetryPolicy": target["RetryPolicy"]})],
        },
    )


def test_start_loop_creates_and_deletes_the_groups_schedules_and_passes_the_scheduler_role_only(
    synthesized: Synthesized,
) -> None:
    by_action = _by_action(_role_statements(synthesized, "start_loop"))
    assert {a for a in by_action if a.startswith(("scheduler:", "iam:"))} == {
        "scheduler:CreateSchedule",
        "scheduler:DeleteSchedule",
        "iam:PassRole",
    }
    (schedules,) = by_action["scheduler:CreateSchedule"]
    assert by_action["scheduler:DeleteSchedule"] == [schedules]  # one statement, one resource
    group = synthesized.stack.resolve(synthesized.stack.continuation.schedule_group.schedule_group_name)
    resource = json.dumps(schedules["Resource"])
    assert f":schedule/{group}/*" in resource and ":scheduler:" in resource
    assert not isinstance(schedules["Resource"], list)
    (pass_role,) = by_action["iam:PassRole"]
    scheduler_role = _logical_id(synthesized, "AWS::IAM::Role", "ContinuationSchedulerRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": [scheduler_role, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    # schedule_resume keeps CreateSchedule alone
    resume = _by_action(_role_statements(synthesized, "schedule_resume"))
    assert "scheduler:DeleteSchedule" not in resume and "scheduler:CreateSchedule" in resume


def test_start_loop_names_the_same_group_role_target_and_dead_letters_as_schedule_resume(
    synthesized: Synthesized,
) -> None:
    start_env = _function(synthesized, "start_loop")["Environment"]["Variables"]
    resume_env = _function(synthesized, "schedule_resume")["Environment"]["Variables"]
    for name in SCHEDULER_ENV:
        assert start_env[name] == resume_env[name], name


def test_start_loop_asks_cedar_and_lists_checkpoints_but_writes_none(synthesized: Synthesized) -> None:
    by_action = _by_action(_role_statements(synthesized, "start_loop"))
    assert "verifiedpermissions:IsAuthorized" in by_action
    assert "POLICY_MAP" in _function(synthesized, "start_loop")["Environment"]["Variables"]
    agentcore = {a for a in by_action if a.startswith("bedrock-agentcore:")}
    assert agentcore == {"bedrock-agentcore:ListEvents"}
    (list_events,) = by_action["bedrock-agentcore:ListEvents"]
    memory = synthesized.stack.resolve(synthesized.stack.agentcore.memory.attr_memory_arn)
    assert list_events["Resource"] == memory
    # a resume starts executions of the loop state machine, nothing else of Step Functions
    assert {a for a in by_action if a.startswith("states:")} == {"states:StartExecution"}


def test_the_scheduler_role_may_only_invoke_start_loop(synthesized: Synthesized) -> None:
    synthesized.template.resource_count_is("AWS::Scheduler::Schedule", 0)  # created at run time
    role = synthesized.raw["Resources"][
        _logical_id(synthesized, "AWS::IAM::Role", "ContinuationSchedulerRole")
    ]["Properties"]
    assert "resume or continue" in role["Description"]
