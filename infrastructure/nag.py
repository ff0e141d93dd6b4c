"""cdk-nag (v3) acknowledgements, each on one construct with its reason.

cdk-nag 3 runs as a CDK validation plugin (``Validations.of(app).add_plugins(AwsSolutionsChecks(app))``)
and fails synth on any finding not acknowledged with ``Validations.of(construct).acknowledge``.
A finding with a detail (IAM5 wildcards) is acknowledged by its full id,
``AwsSolutions-IAM5[Resource::<LogicalId.Arn>/index/*]``: one wildcard, one reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from constructs import IConstruct

if TYPE_CHECKING:  # the stack imports this module: avoid the import cycle at run time
    from infrastructure.stack import LoopwrightStack

XRAY_REASON = (
    "X-Ray PutTraceSegments and PutTelemetryRecords support no resource-level permissions "
    "(Resource '*' is the only value; added by Tracing.ACTIVE / tracing_enabled)"
)


def _ack(construct: IConstruct, rule: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


def _arn_ref(table: dynamodb.Table) -> str:
    default = table.node.default_child
    assert isinstance(default, CfnResource)
    return f"<{Stack.of(table).get_logical_id(default)}.Arn>"


def acknowledge(stack: LoopwrightStack) -> None:
    """Acknowledge the findings that are by design (see each reason)."""
    tables = (stack.storage.loops_table, stack.storage.events_table)
    for name, function in stack.functions.functions.items():
        _ack(
            function,
            "AwsSolutions-L1",
            "Python 3.12 on purpose: the core layer's wheels are built for cp312 "
            "(infrastructure.constants.LAYER_PYTHON_VERSION); move both together",
        )
        role = function.role
        assert role is not None
        _ack(role, "AwsSolutions-IAM5[Resource::*]", XRAY_REASON)
        for table in tables:
            _ack(
                role,
                f"AwsSolutions-IAM5[Resource::{_arn_ref(table)}/index/*]",
                f"{name} queries the GSIs of its own table (grant_read_write_data adds them as "
                "'<table arn>/index/*'); no other table's indexes",
            )
    machine = stack.loop.state_machine
    _ack(
        machine.role,
        "AwsSolutions-IAM5[Resource::*]",
        XRAY_REASON + "; CloudWatch Logs vended-log delivery actions (logs:CreateLogDelivery, "
        "PutResourcePolicy...) also take '*' only",
    )
    for name, function in stack.functions.functions.items():
        default = function.node.default_child
        assert isinstance(default, CfnResource)
        _ack(
            machine.role,
            f"AwsSolutions-IAM5[Resource::<{stack.get_logical_id(default)}.Arn>:*]",
            f"invoking the {name} function's versions and aliases ('<arn>:*', added by LambdaInvoke); "
            "this one function only",
        )
    api = stack.api.api
    _ack(
        api.deployment_stage,
        "AwsSolutions-APIG3",
        "no WAF yet: IAM (SigV4) authorization, stage throttling and request validation on the one "
        "method; attach a web ACL when the API is exposed to untrusted networks",
    )
    _ack(
        api.deployment_stage,
        "AwsSolutions-APIG6",
        "access logs are on (JSON, own log group); execution logging needs the account-wide API "
        "Gateway CloudWatch role, which this stack does not own",
    )
    _ack(
        stack.api.post_loops,
        "AwsSolutions-COG4",
        "callers are AWS principals (CLI, pipelines, EventBridge) authorized with IAM (SigV4), "
        "not Cognito users",
    )
    _ack(
        stack.continuation.dead_letters,
        "AwsSolutions-SQS3",
        "this queue is itself the dead-letter queue of the git-push rule's target",
    )
