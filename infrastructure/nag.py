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
    for function in stack.functions.functions.values():
        _ack(
            function,
            "AwsSolutions-L1",
            "Python 3.12 on purpose: the core layer's wheels are built for cp312 "
            "(infrastructure.constants.LAYER_PYTHON_VERSION); move both together",
        )
        role = function.role
        assert role is not None
        _ack(role, "AwsSolutions-IAM5[Resource::*]", XRAY_REASON)
    _acknowledge_agent_runtime(stack)
    for function in stack.notifications.publishers:
        role = function.role
        assert role is not None
        _ack(
            role,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "publishing to the KMS-encrypted notifications topic needs kms:GenerateDataKey* (the "
            "SNS Developer Guide's publisher permission), on the topic's own key only",
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
        "no WAF yet: every route with data needs IAM (SigV4, POST /loops) or a Cognito ID token (the "
        "dashboard), each method is throttled and validated; attach a web ACL (rate-based rules, "
        "IP sets) when the API is exposed to untrusted networks",
    )
    _ack(
        api.deployment_stage,
        "AwsSolutions-APIG6",
        "access logs are on (JSON, own log group, one month retention) with each request's status, "
        "latencies and error; execution logs would go to API Gateway's own log group "
        "(API-Gateway-Execution-Logs_<api id>/<stage>), which this stack does not create and so "
        "cannot give a retention",
    )
    cloudwatch_role = api.node.try_find_child("CloudWatchRole")
    if cloudwatch_role is not None:  # context loopwright:apiGatewayCloudWatchRole=create
        _ack(
            cloudwatch_role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "the account's API Gateway CloudWatch role, created by RestApi(cloud_watch_role=True) with "
            "the AWS managed policy API Gateway documents for it (writing logs to CloudWatch Logs); "
            "without it a stage with access logging is rejected in a fresh account",
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
    _ack(
        stack.continuation.resume_dead_letters,
        "AwsSolutions-SQS3",
        "this queue is itself the dead-letter queue of the one-time resume schedules' target",
    )
    _ack(
        stack.continuation.continue_dead_letters,
        "AwsSolutions-SQS3",
        "this queue is itself the dead-letter queue of the loopwright.continue rule's target",
    )
    _ack(
        stack.continuation.start_failures,
        "AwsSolutions-SQS3",
        "this queue is itself start_loop's on-failure destination (the dead letters of its "
        "asynchronous invocations); its depth is alarmed",
    )
    _acknowledge_schedules(stack)
    _acknowledge_plans(stack)
    _acknowledge_dashboard(stack)


def _acknowledge_schedules(stack: LoopwrightStack) -> None:
    group = stack.resolve(stack.continuation.schedule_group.schedule_group_name)  # a generated name
    finding = (
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:"
        f"schedule/{group}/*]"
    )
    reasons = {
        "schedule_resume": "schedule_resume creates one schedule per pause, named at run time from "
        "the loop and its reset time: CreateSchedule only, on schedules of the stack's own group only",
        "start_loop": "start_loop creates a loop's recurring schedule when the loop starts and deletes "
        "it when the loop ends for good, named at run time from the loop id: CreateSchedule and "
        "DeleteSchedule only, on schedules of the stack's own group only",
    }
    for name, reason in reasons.items():
        role = stack.functions.functions[name].role
        assert role is not None
        _ack(role, finding, reason)


def _acknowledge_agent_runtime(stack: LoopwrightStack) -> None:
    """The ``InvokeAgentRuntime`` wildcards of the roles that run agents (iterate, run_iteration;
    see ``infrastructure.functions``)."""
    from infrastructure.functions import NEEDS

    arns = stack.functions.agent_runtime_arns
    for name, function in stack.functions.functions.items():
        if "agent_runtime" not in NEEDS[name]:
            continue
        role = function.role
        assert role is not None
        for arn in arns:
            _ack(
                role,
                f"AwsSolutions-IAM5[Resource::{arn}/runtime-endpoint/*]",
                f"{name} invokes the AgentCore Runtime {arn} through the endpoint (qualifier) a loop's "
                "config names at run time; endpoints of this one runtime only",
            )
        if not arns:
            _ack(
                role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock-agentcore:<AWS::Region>:"
                "<AWS::AccountId>:runtime/*]",
                f"{name} invokes the AgentCore Runtime a loop's config names at run time "
                "(agent.agent_runtime_arn), so any runtime of this account and region; list the allowed "
                "runtimes in the context key loopwright:agentRuntimeArns to narrow it",
            )


def _acknowledge_plans(stack: LoopwrightStack) -> None:
    """The plan dispatch's functions and state machine (``infrastructure.plans``)."""
    plans = stack.plans
    for function in plans.functions.values():
        _ack(
            function,
            "AwsSolutions-L1",
            "Python 3.12 on purpose: the plan functions share the core layer, whose wheels are built "
            "for cp312 (infrastructure.constants.LAYER_PYTHON_VERSION); move both together",
        )
        role = function.role
        assert role is not None
        _ack(role, "AwsSolutions-IAM5[Resource::*]", XRAY_REASON)
    _ack(
        plans.state_machine.role,
        "AwsSolutions-IAM5[Resource::*]",
        XRAY_REASON + "; CloudWatch Logs vended-log delivery actions (logs:CreateLogDelivery, "
        "PutResourcePolicy...) also take '*' only",
    )
    for name, function in plans.functions.items():
        default = function.node.default_child
        assert isinstance(default, CfnResource)
        _ack(
            plans.state_machine.role,
            f"AwsSolutions-IAM5[Resource::<{stack.get_logical_id(default)}.Arn>:*]",
            f"PlanDispatch invokes the {name} function's versions and aliases ('<arn>:*', added by "
            "LambdaInvoke); this one function only",
        )


def _acknowledge_dashboard(stack: LoopwrightStack) -> None:
    """The dashboard's functions, roles and public routes (``infrastructure.dashboard``)."""
    dashboard = stack.dashboard
    indexed = {
        "read": (stack.storage.loops_table, stack.storage.events_table, stack.storage.plans_table),
        "plans": (stack.storage.plans_table,),
    }
    for mode, function in dashboard.functions.items():
        _ack(
            function,
            "AwsSolutions-L1",
            "Python 3.12 on purpose: the dashboard functions share the core layer, whose wheels are "
            "built for cp312 (infrastructure.constants.LAYER_PYTHON_VERSION); move both together",
        )
        role = function.role
        assert role is not None
        reason = XRAY_REASON
        if mode == "read":
            reason += (
                "; xray:GetTraceSummaries and cloudwatch:GetMetricData (a loop's traces and the "
                "service's metrics on the dashboard) support no resource-level permissions either"
            )
        _ack(role, "AwsSolutions-IAM5[Resource::*]", reason)
        for table in indexed.get(mode, ()):
            _ack(
                role,
                f"AwsSolutions-IAM5[Resource::{_arn_ref(table)}/index/*]",
                f"the dashboard's {mode} function queries this table's GSIs (Query only on them: "
                "loops by project, events by type, plans by creation time); no other table's indexes",
            )
    machine = stack.loop.state_machine
    default = machine.node.default_child
    assert isinstance(default, CfnResource)
    controls_role = dashboard.functions["controls"].role
    assert controls_role is not None
    _ack(
        controls_role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
        f"execution:<{stack.get_logical_id(default)}.Name>:*]",
        "approve checks whether a loop's current execution (named <loop_id>-g<generation> at run "
        "time) still runs: DescribeExecution only, on executions of the loop state machine only",
    )
    for route in dashboard.public_routes():
        method = dashboard.methods[(route.method, route.path)]
        why = (
            f"{route.method} {route.path} is public on purpose: it serves only code shipped in the layer "
            "(the page, its script, the sign-in page or the API's description), no loop data, and a "
            "browser opens it by navigation, which cannot send the Cognito ID token; every route with "
            "data has the Cognito authorizer"
        )
        _ack(method, "AwsSolutions-APIG4", why)
        _ack(method, "AwsSolutions-COG4", why)
