"""The notifications topic (issue 12.2): its own customer-managed key, TLS only, e-mail
subscriptions from context, and publish rights for exactly the functions that notify."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infrastructure import constants
from infrastructure.functions import NEEDS
from infrastructure.notifications import (
    CTX_NOTIFICATION_EMAILS,
    KEY_ACTIONS,
    Notifications,
    notification_emails,
)
from tests.infrastructure.conftest import Synthesized

PUBLISHERS = sorted(name for name, needs in NEEDS.items() if "notify" in needs)


def _logical_id(synthesized: Synthesized, construct: Any) -> str:
    return synthesized.stack.get_logical_id(construct.node.default_child)


def _statements(synthesized: Synthesized, name: str) -> list[dict[str, Any]]:
    role = synthesized.stack.functions.functions[name].role
    assert role is not None
    role_id = _logical_id(synthesized, role)
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_the_functions_that_record_questions_warnings_and_ends_publish() -> None:
    assert PUBLISHERS == ["authorize", "decide", "evaluate", "record_failure", "run_iteration"]


def test_the_topic_is_apart_from_alerts_and_encrypted_with_its_own_rotated_key(
    synthesized: Synthesized,
) -> None:
    notifications = synthesized.stack.notifications
    topic = synthesized.raw["Resources"][_logical_id(synthesized, notifications.topic)]
    key_id = _logical_id(synthesized, notifications.key)
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key_id != _logical_id(synthesized, synthesized.stack.monitoring.key)
    assert synthesized.raw["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    topic_ref = {"Ref": _logical_id(synthesized, notifications.topic)}
    synthesized.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [topic_ref],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sns:Publish",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )
    assert "NotificationsTopicArn" in synthesized.raw["Outputs"]
    subscriptions = synthesized.resources("AWS::SNS::Subscription").values()
    assert all(s["Properties"]["TopicArn"] != topic_ref for s in subscriptions)  # no context: none


@pytest.mark.parametrize("name", PUBLISHERS)
def test_publishers_may_publish_to_exactly_that_topic_with_its_key(
    synthesized: Synthesized, name: str
) -> None:
    notifications = synthesized.stack.notifications
    topic_ref = {"Ref": _logical_id(synthesized, notifications.topic)}
    key_arn = {"Fn::GetAtt": [_logical_id(synthesized, notifications.key), "Arn"]}
    statements = _statements(synthesized, name)
    publish = [s for s in statements if "sns:Publish" in _actions(s)]
    assert publish == [{"Action": "sns:Publish", "Effect": "Allow", "Resource": topic_ref}]
    key = [s for s in statements if _actions(s) & set(KEY_ACTIONS)]
    assert [(_actions(s), s["Resource"]) for s in key] == [(set(KEY_ACTIONS), key_arn)]
    environment = synthesized.stack.functions.functions[name].node.default_child
    variables = synthesized.raw["Resources"][synthesized.stack.get_logical_id(environment)]["Properties"][
        "Environment"
    ]["Variables"]
    assert variables["NOTIFICATIONS_TOPIC_ARN"] == topic_ref
    dashboard = json.dumps(variables["DASHBOARD_URL"])
    assert _logical_id(synthesized, synthesized.stack.api.api) in dashboard and "/v1/" in dashboard


@pytest.mark.parametrize("name", sorted(set(constants.FUNCTIONS) - set(PUBLISHERS)))
def test_other_functions_cannot_publish(synthesized: Synthesized, name: str) -> None:
    statements = _statements(synthesized, name)
    assert not [s for s in statements if "sns:Publish" in _actions(s)]


def test_the_stack_synthesizes_without_unacknowledged_nag_findings(synthesized: Synthesized) -> None:
    assert synthesized.error is None


def test_emails_in_context_subscribe_to_the_topic() -> None:
    # Given the construct in a small stack, with two addresses (one repeated) from context
    app = App(context={CTX_NOTIFICATION_EMAILS: "a@example.com, b@example.com,a@example.com"})
    stack = Stack(app, "S")
    emails = notification_emails(stack.node.try_get_context(CTX_NOTIFICATION_EMAILS))
    notifications = Notifications(stack, "Notifications", emails=emails)
    function = lambda_.Function(
        stack,
        "F",
        code=lambda_.Code.from_inline("def handler(e, c): pass"),
        handler="index.handler",
        runtime=lambda_.Runtime.PYTHON_3_12,
    )
    notifications.connect(function, dashboard_url="https://d.example/v1/")

    # Then one e-mail subscription per address, on that topic
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SNS::Subscription", 2)
    for email in ("a@example.com", "b@example.com"):
        template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": email})
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": {
                    "DASHBOARD_URL": "https://d.example/v1/",
                    "NOTIFICATIONS_TOPIC_ARN": Match.any_value(),
                }
            }
        },
    )


@pytest.mark.parametrize("value", [["not-an-address"], "a@example.com,b@"])
def test_a_value_that_is_no_address_fails_naming_the_context_key(value: object) -> None:
    with pytest.raises(ValueError, match=CTX_NOTIFICATION_EMAILS):
        notification_emails(value)


def test_no_context_means_no_addresses() -> None:
    assert notification_emails(None) == [] and notification_emails(["x@y.io"]) == ["x@y.io"]
