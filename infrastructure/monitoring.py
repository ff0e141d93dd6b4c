"""Alerts and a dashboard.

- SNS topic for alerts, encrypted with the ``alias/aws/sns`` KMS key, TLS enforced; an e-mail
  subscription when the context key ``loopwright:alarmEmail`` is set.
- Alarms (period :data:`ALARM_PERIOD`, alarm at 1 or more, missing data = OK): the state
  machine's ``ExecutionsFailed``; each function's ``Errors``; the API's ``5XXError``.
- A dashboard: executions (started, succeeded, failed), per-function errors and duration (p95),
  API requests, 4XX, 5XX and latency.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infrastructure.constants import ALARM_PERIOD


class Monitoring(Construct):
    """:attr:`topic`, :attr:`alarms` and :attr:`dashboard`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        functions: dict[str, lambda_.Function],
        api: apigw.RestApi,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = self._build_topic(alarm_email)
        self.alarms: list[cloudwatch.Alarm] = []
        self._build_alarms(state_machine, functions, api)
        self.dashboard = self._build_dashboard(state_machine, functions, api)

    def _build_topic(self, alarm_email: str | None) -> sns.Topic:
        topic = sns.Topic(
            self,
            "Alerts",
            display_name="loopwright alerts",
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
            enforce_ssl=True,
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

    def _build_dashboard(
        self, state_machine: sfn.StateMachine, functions: dict[str, lambda_.Function], api: apigw.RestApi
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
        )
        return dashboard
