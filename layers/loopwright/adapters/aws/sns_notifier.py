"""The :class:`~loopwright.ports.Notifier` on Amazon SNS: publishes to the stack's notifications
topic (``NOTIFICATIONS_TOPIC_ARN``, :mod:`infrastructure.notifications`).

Each publication has the message attributes ``project``, ``loop_id`` and ``kind`` (String), which
a subscription's filter policy can match (``FilterPolicyScope`` ``MessageAttributes``, the
default), and one message per protocol (``MessageStructure="json"``, whose ``default`` key SNS
requires: "Amazon SNS message formatting for different protocols", SNS Developer Guide):

- ``default`` and ``email``: the notification in plain text, ``Subject`` its title;
- ``https``: an AWS Chatbot (Amazon Q Developer in chat applications) custom notification
  (``{"version": "1.0", "source": "custom", "content": {...}}``, "Custom notifications", Chatbot
  Administrator Guide), so a Chatbot channel subscribed to the topic shows it;
- every other protocol (``sqs``, ``lambda``, ``email-json``...) gets ``default``; programs read
  the message attributes.

A standard topic does not deduplicate: see :mod:`loopwright.notifications` (``notification_id``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import boto3

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, retry_config
from loopwright.models.notifications import Notification
from loopwright.ports import Notifier

#: SNS's limit on ``Subject`` (characters; ASCII, no line breaks).
SUBJECT_MAX_CHARS = 100
#: The most characters of the agent's question or a message put in a publication (SNS takes at
#: most 256 KiB per message; the protocols' messages repeat the text).
TEXT_MAX_CHARS = 20_000


def subject(title: str) -> str:
    """``title`` as SNS takes a ``Subject``: printable ASCII on one line, at most 100 characters."""
    ascii_text = re.sub(r"\s+", " ", re.sub(r"[^\x20-\x7e]+", " ", title)).strip() or "loopwright"
    return ascii_text[:SUBJECT_MAX_CHARS]


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 1] + "…"


def chatbot_message(notification: Notification) -> dict[str, Any]:
    """The AWS Chatbot custom notification of ``notification``."""
    next_steps = [f"Approve or answer: {notification.approve_url}"] if notification.approve_url else []
    return {
        "version": "1.0",
        "source": "custom",
        "id": notification.notification_id,
        "content": {
            "textType": "client-markdown",
            "title": notification.title,
            "description": _clip(notification.message),
            "nextSteps": next_steps,
            "keywords": [notification.kind.value, notification.project],
        },
        "metadata": {
            "threadId": notification.loop_id,
            "summary": notification.title,
            "eventType": notification.kind.value,
            "additionalContext": dict(notification.attributes()),
        },
    }


def publish_request(topic_arn: str, notification: Notification) -> dict[str, Any]:
    """The keyword arguments of ``sns.publish`` for ``notification``."""
    text = _clip(notification.message)
    messages = {"default": text, "email": text, "https": json.dumps(chatbot_message(notification))}
    return {
        "TopicArn": topic_arn,
        "Subject": subject(notification.title),
        "Message": json.dumps(messages),
        "MessageStructure": "json",
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value}
            for name, value in notification.attributes().items()
        },
    }


class SnsNotifier(Notifier):
    """Publishes each notification to ``topic_arn``."""

    def __init__(
        self,
        topic_arn: str,
        *,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.topic_arn = topic_arn
        self._client: Any = (
            client
            if client is not None
            else boto3.client("sns", region_name=region_name, config=retry_config(max_attempts))
        )

    def notify(self, notification: Notification) -> None:
        """Publish ``notification``; :class:`~loopwright.exceptions.LoopFrameworkError` on failure."""
        with aws_errors(f"publishing {notification.kind.value} of loop {notification.loop_id!r} to SNS"):
            self._client.publish(**publish_request(self.topic_arn, notification))
