"""What reaches a human when something fails: the git-push rule's and schedules' retries and
dead-letter queue, start_loop's on-failure destination, and one alarm per function error (loop,
plan and dashboard functions), failed, timed-out, aborted or throttled execution, queued failure and
API 5xx, all to the alerts topic (its own KMS key: tests/infrastructure/test_first_deploy.py)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk.assertions import Match

from infrastructure import constants
from infrastructure.dashboard_routes import FUNCTION_MODES
from infrastructure.plans import PLAN_FUNCTIONS
from tests.infrastructure.conftest import Synthesized


def test_git_push_rule_targets_start_loop_with_a_dead_letter_queue(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": [constants.GIT_EVENT_SOURCE],
                "detail-type": [constants.GIT_EVENT_DETAIL_TYPE],
            },
            "Targets": [
                Match.object_like({"DeadLetterConfig": Match.any_value(), "RetryPolicy": Match.any_value()})
            ],
        },
    )
    synthesized.template.resource_count_is("AWS::Scheduler::ScheduleGroup", 1)
    synthesized.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "scheduler.amazonaws.com"}})]}
            )
        },
    )


def test_every_alarm_notifies_the_alerts_topic(synthesized: Synthesized) -> None:
    topic_id = synthesized.stack.get_logical_id(synthesized.stack.monitoring.topic.node.default_child)
    alarms = synthesized.resources("AWS::CloudWatch::Alarm")
    metrics = sorted(a["Properties"]["MetricName"] for a in alarms.values())
    assert metrics.count("Errors") == len(constants.FUNCTIONS) + len(PLAN_FUNCTIONS) + len(FUNCTION_MODES)
    assert "ExecutionsFailed" in metrics and "5XXError" in metrics
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    synthesized.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def _logical_id(synthesized: Synthesized, construct: Any) -> str:
    return str(Stack.of(construct).get_logical_id(construct.node.default_child))


def _alarms_on(synthesized: Synthesized, metric: str) -> list[dict[str, Any]]:
    alarms = synthesized.resources("AWS::CloudWatch::Alarm").values()
    return [a["Properties"] for a in alarms if a["Properties"]["MetricName"] == metric]


def test_start_loop_sends_failed_asynchronous_events_to_its_on_failure_queue(
    synthesized: Synthesized,
) -> None:
    continuation = synthesized.stack.continuation
    queue_id = _logical_id(synthesized, continuation.start_failures)
    function_id = _logical_id(synthesized, synthesized.stack.functions.functions["start_loop"])
    synthesized.template.resource_count_is("AWS::Lambda::EventInvokeConfig", 1)  # the only async target
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": function_id},
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 6 * 3600,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}},
        },
    )
    # start_loop's own role may send to it (Lambda sends the record as the function's role)
    role = synthesized.stack.functions.functions["start_loop"].role
    role_id = _logical_id(synthesized, role)
    policies = [
        p["Properties"]
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    assert any(
        "sqs:SendMessage" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        and s["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        for s in statements
    )


def test_every_failure_queue_is_encrypted_kept_14_days_tls_only_and_alarmed(synthesized: Synthesized) -> None:
    queues = synthesized.stack.continuation.queues
    assert set(queues) == {
        "GitPushDeadLetters", "ContinueDeadLetters", "ResumeDeadLetters", "StartLoopFailures",
    }  # fmt: skip
    depth = _alarms_on(synthesized, "ApproximateNumberOfMessagesVisible")
    alarmed = {str(a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]) for a in depth}
    for queue in queues.values():
        queue_id = _logical_id(synthesized, queue)
        resource = synthesized.raw["Resources"][queue_id]["Properties"]
        assert resource["SqsManagedSseEnabled"] is True
        assert resource["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert queue_id in alarmed
    synthesized.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": _logical_id(synthesized, queues["StartLoopFailures"])}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            },
        },
    )
    for alarm in depth:  # any message, at its peak in the period
        assert (alarm["Statistic"], alarm["Threshold"]) == ("Maximum", 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["Namespace"] == "AWS/SQS"


def test_loop_executions_timed_out_aborted_or_throttled_are_alarmed(synthesized: Synthesized) -> None:
    machine_id = _logical_id(synthesized, synthesized.stack.loop.state_machine)
    for metric in ("ExecutionsTimedOut", "ExecutionsAborted", "ExecutionThrottled"):
        (alarm,) = _alarms_on(synthesized, metric)
        assert alarm["Namespace"] == "AWS/States"
        assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}]
        assert (alarm["Threshold"], alarm["TreatMissingData"]) == (1, "notBreaching")


def test_plan_dispatch_failures_and_plan_and_dashboard_function_errors_are_alarmed(
    synthesized: Synthesized,
) -> None:
    plan_id = _logical_id(synthesized, synthesized.stack.plans.state_machine)
    failed = _alarms_on(synthesized, "ExecutionsFailed")
    assert [{"Name": "StateMachineArn", "Value": {"Ref": plan_id}}] in [a["Dimensions"] for a in failed]
    errors = _alarms_on(synthesized, "Errors")
    alarmed = {a["Dimensions"][0]["Value"]["Ref"] for a in errors}
    others = [*synthesized.stack.plans.functions.values(), *synthesized.stack.dashboard.functions.values()]
    assert others and {_logical_id(synthesized, f) for f in others} <= alarmed
