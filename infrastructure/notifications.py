"""The notifications topic (issue 12.2): what the loop functions publish when a loop waits for a
human, crosses a policy's warning threshold, completes or fails (:mod:`loopwright.notifications`).

- Its own SNS topic, apart from the alerts topic of :mod:`infrastructure.monitoring` (alarms are
  for operators; these are for the people who follow loops), TLS enforced, encrypted with its own
  customer-managed KMS key (rotation on). The publishing functions need ``kms:GenerateDataKey*``
  and ``kms:Decrypt`` on it ("AWS KMS permissions" for publishers of an encrypted topic,
  sns-key-management, Amazon SNS Developer Guide); subscribers need nothing on the key.
- Each message has the attributes ``project``, ``loop_id`` and ``kind`` (String): a subscription
  takes only what its filter policy matches.
- E-mail subscriptions from the context key :data:`CTX_NOTIFICATION_EMAILS` (a list, or one
  comma-separated string); each address confirms its subscription from the mail SNS sends.
- AWS Chatbot (Amazon Q Developer in chat applications): a channel configuration that names the
  topic (``SnsTopicArns``) subscribes itself; the ``https`` message of each publication is a
  Chatbot custom notification (:mod:`loopwright.adapters.aws.sns_notifier`).

:meth:`Notifications.connect` gives one function ``sns:Publish`` on exactly this topic and the key
statement, and its environment ``NOTIFICATIONS_TOPIC_ARN`` and ``DASHBOARD_URL``.
"""

from __future__ import annotations

import re

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infrastructure.api import STAGE_NAME

#: Context key: the e-mail addresses subscribed to the notifications topic.
CTX_NOTIFICATION_EMAILS = "loopwright:notificationEmails"
#: What the publishers do with the topic's key (SNS encrypts each message with a data key).
KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")
_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+")


def notification_emails(value: object) -> list[str]:
    """The addresses of :data:`CTX_NOTIFICATION_EMAILS` (``value``: None, a list, or a string with
    commas), without repeats. Raises ValueError naming the context key for one that is no address."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    emails = list(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    for email in emails:
        if _EMAIL.fullmatch(email) is None:
            raise ValueError(f"context {CTX_NOTIFICATION_EMAILS}: {email!r} is not an e-mail address")
    return emails


def dashboard_url(api: apigw.IRestApi) -> str:
    """The dashboard's base URL (the API's stage root, where the dashboard page is served), built
    from the API's id and the stage's name, not the stage resource: the stage depends on every
    method, hence on start_loop, which names the state machine, which invokes the publishers."""
    return f"https://{api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{STAGE_NAME}/"


class Notifications(Construct):
    """:attr:`key`, :attr:`topic` and its e-mail subscriptions (see the module docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        emails: list[str] | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "NotificationsKey",
            description="loopwright notifications topic: SNS encryption the loop functions can use",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.topic = sns.Topic(
            self,
            "Notifications",
            display_name="loopwright notifications",
            master_key=self.key,
            enforce_ssl=True,
        )
        for email in emails or []:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        #: The functions given :meth:`connect`.
        self.publishers: list[lambda_.Function] = []

    def connect(self, function: lambda_.Function, *, dashboard_url: str | None = None) -> None:
        """Let ``function`` publish (``sns:Publish`` on the topic, :data:`KEY_ACTIONS` on its key)
        and tell it where: ``NOTIFICATIONS_TOPIC_ARN`` and, with ``dashboard_url``, ``DASHBOARD_URL``."""
        role = function.role
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(KEY_ACTIONS), resources=[self.key.key_arn])
        )
        function.add_environment("NOTIFICATIONS_TOPIC_ARN", self.topic.topic_arn)
        if dashboard_url:
            function.add_environment("DASHBOARD_URL", dashboard_url)
        self.publishers.append(function)
