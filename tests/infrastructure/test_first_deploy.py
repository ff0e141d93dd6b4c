"""What a first deploy into a fresh account needs (issue 12 point 1): the API Gateway CloudWatch
role, and an alerts topic that CloudWatch alarms can publish to."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infrastructure.api import (
    CLOUDWATCH_ROLE_CREATE,
    CLOUDWATCH_ROLE_EXISTING,
    CTX_API_GATEWAY_CLOUDWATCH_ROLE,
    LoopApi,
    creates_cloudwatch_role,
)
from tests.infrastructure.conftest import Synthesized


def _flatten_arn(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(p if isinstance(p, str) else "TOKEN" for p in value["Fn::Join"][1])
    return str(value)


def _only(synthesized: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = synthesized.resources(kind).items()
    return logical_id, resource


def _alerts(synthesized: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    """The alerts topic, its key or its topic policy (the notifications topic has its own)."""
    monitoring = synthesized.stack.monitoring
    topic_id = synthesized.stack.get_logical_id(monitoring.topic.node.default_child)
    if kind == "AWS::SNS::TopicPolicy":
        ((logical_id, resource),) = [
            (k, r)
            for k, r in synthesized.resources(kind).items()
            if r["Properties"]["Topics"] == [{"Ref": topic_id}]
        ]
        return logical_id, resource
    construct = monitoring.topic if kind == "AWS::SNS::Topic" else monitoring.key
    logical_id = synthesized.stack.get_logical_id(construct.node.default_child)
    return logical_id, synthesized.raw["Resources"][logical_id]


# ----------------------------------------------------------------------------- API Gateway account role
def test_the_stack_creates_and_retains_the_api_gateway_cloudwatch_role(synthesized: Synthesized) -> None:
    # Given the default context (loopwright:apiGatewayCloudWatchRole = create)
    account_id, account = _only(synthesized, "AWS::ApiGateway::Account")
    # Then the account setting names a role API Gateway can assume, and both outlive the stack
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    role = synthesized.raw["Resources"][role_id]
    assert account["DeletionPolicy"] == role["DeletionPolicy"] == "Retain"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert [_flatten_arn(arn) for arn in role["Properties"]["ManagedPolicyArns"]] == [
        "arn:TOKEN:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
    ]
    # And the stage with access logging is created only once the role is set
    _, stage = _only(synthesized, "AWS::ApiGateway::Stage")
    assert "AccessLogSetting" in stage["Properties"]
    assert account_id in stage["DependsOn"]


@pytest.mark.parametrize(
    ("value", "creates"),
    [(None, True), ("create", True), ("CREATE", True), ("existing", False), (" existing ", False)],
)
def test_the_context_switch_reads_create_or_existing(value: object, creates: bool) -> None:
    assert creates_cloudwatch_role(value) is creates


def test_a_bad_context_value_fails_synth_naming_the_key() -> None:
    with pytest.raises(ValueError, match=CTX_API_GATEWAY_CLOUDWATCH_ROLE):
        creates_cloudwatch_role("yes")


def _api_template(mode: str) -> Template:
    """A stack with only the API (fast: no layer), ``create_cloudwatch_role`` from ``mode``."""
    stack = cdk.Stack(cdk.App())
    function = lambda_.Function(
        stack,
        "Start",
        code=lambda_.Code.from_inline("def handler(event, context): return {}"),
        handler="index.handler",
        runtime=lambda_.Runtime.PYTHON_3_12,
    )
    LoopApi(
        stack,
        "Api",
        start_loop=function,
        removal_policy=cdk.RemovalPolicy.DESTROY,
        create_cloudwatch_role=creates_cloudwatch_role(mode),
    )
    return Template.from_stack(stack)


def test_existing_leaves_the_account_setting_alone() -> None:
    # Given an account whose platform team owns the API Gateway CloudWatch role
    template = _api_template(CLOUDWATCH_ROLE_EXISTING)
    # Then the stack neither creates nor overwrites it
    template.resource_count_is("AWS::ApiGateway::Account", 0)
    template.resource_properties_count_is(
        "AWS::IAM::Role",
        {"AssumeRolePolicyDocument": Match.object_like({"Statement": [Match.object_like(
            {"Principal": {"Service": "apigateway.amazonaws.com"}}
        )]})},
        0,
    )  # fmt: skip
    # And with create, exactly one Account resource, retained
    created = _api_template(CLOUDWATCH_ROLE_CREATE)
    created.resource_count_is("AWS::ApiGateway::Account", 1)
    created.has_resource("AWS::ApiGateway::Account", {"DeletionPolicy": "Retain"})


# ----------------------------------------------------------------------------- alerts topic
def test_alerts_topic_uses_a_rotated_customer_managed_key(synthesized: Synthesized) -> None:
    _, topic = _alerts(synthesized, "AWS::SNS::Topic")
    key_ref = topic["Properties"]["KmsMasterKeyId"]
    # Not the AWS-managed alias/aws/sns key, which CloudWatch alarms cannot use
    assert isinstance(key_ref, dict) and "Fn::GetAtt" in key_ref, key_ref
    key = synthesized.raw["Resources"][key_ref["Fn::GetAtt"][0]]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True


def test_the_key_policy_lets_cloudwatch_use_the_key(synthesized: Synthesized) -> None:
    _, key = _alerts(synthesized, "AWS::KMS::Key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Effect"] == "Allow"
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_the_topic_policy_lets_this_accounts_alarms_publish(synthesized: Synthesized) -> None:
    _, policy = _alerts(synthesized, "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (publish,) = [
        s
        for s in statements
        if s["Effect"] == "Allow" and s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "aws:SourceArn" in publish["Condition"]["ArnLike"]
    # TLS is still enforced for everyone else
    assert any(s["Effect"] == "Deny" and s["Sid"] == "AllowPublishThroughSSLOnly" for s in statements)
