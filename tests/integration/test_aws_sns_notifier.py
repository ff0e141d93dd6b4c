"""SnsNotifier against moto's SNS: the message attributes arrive, a subscription's filter policy
on them selects the notifications, the e-mail text and the AWS Chatbot message are per protocol,
and a failed publication is a LoopFrameworkError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loopwright.adapters.aws._errors import retry_config
from loopwright.adapters.aws.sns_notifier import SUBJECT_MAX_CHARS, SnsNotifier, publish_request, subject
from loopwright.exceptions import LoopFrameworkError
from loopwright.models.notifications import Notification, NotificationKind
from tests.integration.aws_moto import REGION, fake_credentials


def _notification(kind: NotificationKind, loop_id: str = "loop-1", project: str = "shop") -> Notification:
    return Notification(
        kind=kind,
        project=project,
        loop_id=loop_id,
        iteration=3,
        notification_id=f"{loop_id}:3:{kind.value}",
        title=f"loopwright: {loop_id} {kind.value}",
        message=f"{kind.value} of {loop_id}",
        occurred_at=datetime(2026, 12, 7, tzinfo=UTC),
        question="may I?" if kind is NotificationKind.AWAITING_RESPONSE else None,
        approve_url="https://x.example/v1/#/loops/loop-1"
        if kind is NotificationKind.AWAITING_RESPONSE
        else None,
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    fake_credentials(monkeypatch)
    with mock_aws():
        yield (
            boto3.client("sns", region_name=REGION, config=retry_config(2)),
            boto3.client("sqs", region_name=REGION),
        )


def _subscribed_queue(sns: Any, sqs: Any, topic_arn: str, name: str, filter_policy: dict[str, Any]) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"FilterPolicy": json.dumps(filter_policy)},
    )
    return str(url)


def _received(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_published_notifications_carry_filterable_attributes(aws: tuple[Any, Any]) -> None:
    # Given a topic with one subscriber for questions of project shop, one for every failure
    sns, sqs = aws
    topic_arn = sns.create_topic(Name="notifications")["TopicArn"]
    questions = _subscribed_queue(
        sns, sqs, topic_arn, "questions", {"project": ["shop"], "kind": ["AWAITING_RESPONSE"]}
    )
    failures = _subscribed_queue(sns, sqs, topic_arn, "failures", {"kind": ["LOOP_FAILED"]})
    notifier = SnsNotifier(topic_arn, client=sns)

    # When four notifications are published
    notifier.notify(_notification(NotificationKind.AWAITING_RESPONSE))
    notifier.notify(_notification(NotificationKind.AWAITING_RESPONSE, project="other"))
    notifier.notify(_notification(NotificationKind.POLICY_WARNING))
    notifier.notify(_notification(NotificationKind.LOOP_FAILED, loop_id="loop-2", project="other"))

    # Then each subscriber gets only what its filter policy matches, attributes included
    [question] = _received(sqs, questions)
    assert question["MessageAttributes"] == {
        "project": {"Type": "String", "Value": "shop"},
        "loop_id": {"Type": "String", "Value": "loop-1"},
        "kind": {"Type": "String", "Value": "AWAITING_RESPONSE"},
    }
    assert question["Message"] == "AWAITING_RESPONSE of loop-1"  # the 'default' text
    assert question["Subject"] == "loopwright: loop-1 AWAITING_RESPONSE"
    [failure] = _received(sqs, failures)
    assert failure["MessageAttributes"]["loop_id"]["Value"] == "loop-2"
    assert failure["MessageAttributes"]["kind"]["Value"] == "LOOP_FAILED"


def test_the_chatbot_message_is_a_custom_notification_with_the_approve_url() -> None:
    request = publish_request(
        "arn:aws:sns:us-east-1:123456789012:t", _notification(NotificationKind.AWAITING_RESPONSE)
    )

    messages = json.loads(request["Message"])
    assert request["MessageStructure"] == "json" and set(messages) == {"default", "email", "https"}
    chatbot = json.loads(messages["https"])
    assert (chatbot["version"], chatbot["source"]) == ("1.0", "custom")
    assert chatbot["content"]["nextSteps"] == ["Approve or answer: https://x.example/v1/#/loops/loop-1"]
    assert chatbot["metadata"]["threadId"] == "loop-1"


def test_subjects_are_one_line_of_ascii_within_the_limit() -> None:
    assert subject("loopwright: l1 — done\nnext") == "loopwright: l1 done next"
    assert len(subject("x" * 500)) == SUBJECT_MAX_CHARS


def test_a_failed_publication_is_a_loop_framework_error(aws: tuple[Any, Any]) -> None:
    sns, _ = aws
    notifier = SnsNotifier("arn:aws:sns:us-east-1:123456789012:missing", client=sns)

    with pytest.raises(LoopFrameworkError, match="publishing LOOP_FAILED of loop 'loop-1' to SNS"):
        notifier.notify(_notification(NotificationKind.LOOP_FAILED))
