"""Alerts and a dashboard.

- SNS topic for alerts, TLS enforced, encrypted with its own customer-managed KMS key (rotation
  on). Not the AWS-managed ``alias/aws/sns`` key: its key policy cannot be changed, and CloudWatch
  alarms can publish to an encrypted topic only when the key policy lets
  ``cloudwatch.amazonaws.com`` call ``kms:Decrypt`` and ``kms:GenerateDataKey*`` ("Enable
  compatibility between event sources from AWS services and encrypted topics", Amazon SNS
  Developer Guide, sns-key-management). The key statement has no condition, as in that guide's
  example; the topic policy lets CloudWatch publish only for alarms of this account
  (``aws:SourceAccount``, and ``aws:SourceArn`` like ``arn:...:cloudwatch:<region>:<account>:alarm:*``).
  An e-mail subscription when the context key ``loopwright:alarmEmail`` is set.
- Alarms (period :data:`ALARM_PERIOD`, alarm at 1 or more, missing data = OK), all to the topic:
  the loop state machine's ``ExecutionsFailed``, ``ExecutionsTimedOut``, ``ExecutionsAborted``
  and ``ExecutionThrottled`` (Step Functions execution metrics, namespace ``AWS/States``); the
  PlanDispatch state machine's ``ExecutionsFailed``; each loop, plan and dashboard function's
  ``Errors``; each dead-letter and on-failure queue's ``ApproximateNumberOfMessagesVisible``
  (maximum over the period: any message is a start, resume or push that nobody acted on); the
  API's ``5XXError``.
- A dashboard: executions (started, succeeded, failed), per-function errors and duration (p95),
  API requests, 4XX, 5XX and latency, the queues' depth.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infrastructure.constants import ALARM_PERIOD


class Monitoring(Construct):
    """:attr:`key`, :attr:`topic`, :attr:`alarms` and :attr:`dashboard`.

    ``functions``: the loop functions (alarmed and graphed); ``other_functions``: more functions
    whose errors are alarmed (plan and dashboard functions, by a name unique in the stack);
    ``queues``: dead-letter and on-failure queues by name; ``plan_state_machine``: PlanDispatch.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        functions: dict[str, lambda_.Function],
        api: apigw.RestApi,
        plan_state_machine: sfn.StateMachine | None = None,
        other_functions: Mapping[str, lambda_.IFunction] | None = None,
        queues: Mapping[str, sqs.IQueue] | None = None,
        alarm_email: str | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = self._build_key(removal_policy)
        self.topic = self._build_topic(alarm_email)
        self.alarms: list[cloudwatch.Alarm] = []
        self._build_alarms(state_machine, functions, api)
        self._build_loss_alarms(state_machine, plan_state_machine, other_functions or {}, queues or {})
        self.dashboard = self._build_dashboard(state_machine, functions, api, queues or {})

    def _build_key(self, removal_policy: RemovalPolicy) -> kms.Key:
        key = kms.Key(
            self,
            "AlertsKey",
            description="loopwright alerts topic: SNS encryption that CloudWatch alarms can use",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToUseTheKey",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        return key

    def _build_topic(self, alarm_email: str | None) -> sns.Topic:
        topic = sns.Topic(
            self, "Alerts", display_name="loopwright alerts", master_key=self.key, enforce_ssl=True
        )
        stack = Stack.of(self)
        alarms = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name="*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": alarms},
                },
            )
        )
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic

    def _alarm(self, construct_id: str, metric: cloudwatch.Metric, description: str) -> None:
        alarm = metric.create_alarm(
            self,
            construct_id,
            alarm_description=description,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _build_alarms(
        self, state_machine: sfn.StateMachine, functions: dict[str, lambda_.Function], api: apigw.RestApi
    ) -> None:
        self._alarm(
            "ExecutionsFailed",
            state_machine.metric_failed(period=ALARM_PERIOD),
            "a loop execution failed (RecordFailure ran, or it could not)",
        )
        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=ALARM_PERIOD),
                f"the {name} function raised (Step Functions retries, then RecordFailure)",
            )
        self._alarm("Api5xx", api.metric_server_error(period=ALARM_PERIOD), "POST /loops answered 5XX")

    def _build_loss_alarms(
        self,
        state_machine: sfn.StateMachine,
        plan_state_machine: sfn.StateMachine | None,
        other_functions: Mapping[str, lambda_.IFunction],
        queues: Mapping[str, sqs.IQueue],
    ) -> None:
        """Alarms on what would otherwise end unseen: loop executions that timed out, were aborted
        or throttled, failed plan dispatches, plan and dashboard function errors, queued failures."""
        loop_metrics = (
            ("ExecutionsTimedOut", state_machine.metric_timed_out, "a loop execution timed out"),
            ("ExecutionsAborted", state_machine.metric_aborted, "a loop execution was stopped (aborted)"),
            (
                "ExecutionThrottled",
                state_machine.metric_throttled,
                "a loop execution was throttled (Step Functions quota): starts and steps are delayed",
            ),
        )
        for construct_id, metric, description in loop_metrics:
            self._alarm(construct_id, metric(period=ALARM_PERIOD), description)
        if plan_state_machine is not None:
            self._alarm(
                "PlanExecutionsFailed",
                plan_state_machine.metric_failed(period=ALARM_PERIOD),
                "a PlanDispatch execution failed (its RecordFailure ran, or it could not)",
            )
        for name, function in other_functions.items():
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=ALARM_PERIOD),
                f"the {name} function raised",
            )
        for name, queue in queues.items():
            self._alarm(
                f"{name}Depth",
                queue.metric_approximate_number_of_messages_visible(period=ALARM_PERIOD, statistic="Maximum"),
                f"{name} holds a message: an event that started or resumed no loop "
                "(README, On AWS: what to do when an alarm fires)",
            )

    def _build_dashboard(
        self,
        state_machine: sfn.StateMachine,
        functions: dict[str, lambda_.Function],
        api: apigw.RestApi,
        queues: Mapping[str, sqs.IQueue],
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Loop executions",
                left=[
                    state_machine.metric_started(period=ALARM_PERIOD),
                    state_machine.metric_succeeded(period=ALARM_PERIOD),
                    state_machine.metric_failed(period=ALARM_PERIOD),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Function errors",
                left=[f.metric_errors(period=ALARM_PERIOD, label=n) for n, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Function duration p95 (ms)",
                left=[
                    f.metric_duration(period=ALARM_PERIOD, statistic="p95", label=n)
                    for n, f in functions.items()
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="POST /loops",
                left=[
                    api.metric_count(period=ALARM_PERIOD),
                    api.metric_client_error(period=ALARM_PERIOD),
                    api.metric_server_error(period=ALARM_PERIOD),
                ],
                right=[api.metric_latency(period=ALARM_PERIOD, statistic="p95")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Undelivered and failed events (messages)",
                left=[
                    q.metric_approximate_number_of_messages_visible(
                        period=ALARM_PERIOD, statistic="Maximum", label=n
                    )
                    for n, q in queues.items()
                ],
                width=12,
            ),
        )
        return dashboard
