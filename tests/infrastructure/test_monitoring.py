"""What reaches a human when something fails: the git-push rule's and schedules' retries and
dead-letter queue, and one alarm per function error, failed execution and API 5xx, all to the
alerts topic (its own KMS key: tests/infrastructure/test_first_deploy.py)."""

from __future__ import annotations

from aws_cdk.assertions import Match

from infrastructure import constants
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
    (topic_id,) = synthesized.resources("AWS::SNS::Topic")
    alarms = synthesized.resources("AWS::CloudWatch::Alarm")
    metrics = sorted(a["Properties"]["MetricName"] for a in alarms.values())
    assert metrics.count("Errors") == len(constants.FUNCTIONS)
    assert "ExecutionsFailed" in metrics and "5XXError" in metrics
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    synthesized.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
