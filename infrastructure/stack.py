"""The loopwright stack: composes the constructs, one per concern, and acknowledges cdk-nag
findings one resource at a time (:mod:`infrastructure.nag`).

Context keys (``cdk.json`` or ``-c``): ``loopwright:removalPolicy`` (``destroy`` | ``retain``),
``loopwright:memoryExpiryDays`` (7-365), ``loopwright:codeInterpreterNetwork`` (``PUBLIC`` |
``SANDBOX``), ``loopwright:layer`` (``build`` | ``stub``; also the
environment variable ``LOOPWRIGHT_CDK_LAYER``), ``loopwright:alarmEmail``, ``loopwright:stateMachine``
(``steps`` | ``compact``, :mod:`infrastructure.compact_state_machine`),
``loopwright:apiGatewayCloudWatchRole`` (``create`` | ``existing``, :mod:`infrastructure.api`),
``loopwright:notificationEmails`` (:mod:`infrastructure.notifications`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from infrastructure import nag
from infrastructure.agentcore import AgentCore
from infrastructure.api import CTX_API_GATEWAY_CLOUDWATCH_ROLE, LoopApi, creates_cloudwatch_role
from infrastructure.compact_state_machine import (
    COMPACT,
    CTX_STATE_MACHINE,
    CompactLoopStateMachine,
    state_machine_variant,
)
from infrastructure.constants import (
    CTX_ALARM_EMAIL,
    CTX_CODE_INTERPRETER_NETWORK,
    CTX_LAYER,
    CTX_MEMORY_EXPIRY_DAYS,
    CTX_REMOVAL_POLICY,
    DEFAULT_MEMORY_EXPIRY_DAYS,
    ENV_LAYER,
)
from infrastructure.continuation import Continuation
from infrastructure.dashboard import Dashboard
from infrastructure.dashboard_routes import CONTROL_ROUTE_KEYS
from infrastructure.evidence import EvidenceKey
from infrastructure.functions import NEEDS, LoopFunctions
from infrastructure.layer_build import build_layer, stub_layer
from infrastructure.monitoring import Monitoring
from infrastructure.notifications import (
    CTX_NOTIFICATION_EMAILS,
    Notifications,
    dashboard_url,
    notification_emails,
)
from infrastructure.plans import PlanDispatch
from infrastructure.policies import PolicyStore
from infrastructure.state_machine import LoopStateMachine
from infrastructure.storage import Storage

_REMOVAL_POLICIES = {"destroy": RemovalPolicy.DESTROY, "retain": RemovalPolicy.RETAIN}


class LoopwrightStack(Stack):
    """Tables, policy store, AgentCore Memory and Code Interpreter, the functions and their
    layer, the evidence key, the state machine, ``POST /loops``, continuation triggers, alarms
    and a dashboard.

    ``layer_dir`` overrides the layer folder (default: from ``loopwright:layer``). Raises
    ``ValueError`` for a bad context value and
    :class:`~infrastructure.layer_build.LayerBuildError` when the layer cannot be built.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, layer_dir: Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal_policy = self._removal_policy()
        self.storage = Storage(self, "Storage", removal_policy=removal_policy)
        self.policy_store = PolicyStore(self, "Policies", removal_policy=removal_policy)
        self.agentcore = AgentCore(
            self,
            "AgentCore",
            memory_expiry_days=self._memory_expiry_days(),
            removal_policy=removal_policy,
            network_mode=str(self.node.try_get_context(CTX_CODE_INTERPRETER_NETWORK) or "PUBLIC").upper(),
        )
        self.functions = LoopFunctions(
            self,
            "Functions",
            layer_dir=layer_dir or self._layer_dir(),
            storage=self.storage,
            agentcore=self.agentcore,
            policy_store=self.policy_store,
            removal_policy=removal_policy,
        )
        functions = self.functions.functions
        self.evidence = EvidenceKey(self, "Evidence", removal_policy=removal_policy)
        for name, function in functions.items():
            if "evidence" in NEEDS[name]:  # the steps that complete a loop sign its bundle
                self.evidence.connect(function)
        variant = state_machine_variant(self.node.try_get_context(CTX_STATE_MACHINE))  # steps | compact
        machine = CompactLoopStateMachine if variant == COMPACT else LoopStateMachine
        self.loop = machine(self, "Loop", functions=dict(functions), removal_policy=removal_policy)
        start_loop = functions["start_loop"]
        start_loop.add_environment("STATE_MACHINE_ARN", self.loop.state_machine.state_machine_arn)
        self.loop.state_machine.grant_start_execution(start_loop)
        self.plans = PlanDispatch(
            self,
            "Plans",
            layer=self.functions.layer,
            storage=self.storage,
            agentcore=self.agentcore,
            loop_state_machine=self.loop.state_machine,
            removal_policy=removal_policy,
        )
        self.api = LoopApi(
            self,
            "Api",
            start_loop=start_loop,
            removal_policy=removal_policy,
            throttled_posts=CONTROL_ROUTE_KEYS,
            create_cloudwatch_role=creates_cloudwatch_role(
                self.node.try_get_context(CTX_API_GATEWAY_CLOUDWATCH_ROLE)
            ),
        )
        self.notifications = Notifications(
            self,
            "Notifications",
            emails=notification_emails(self.node.try_get_context(CTX_NOTIFICATION_EMAILS)),
            removal_policy=removal_policy,
        )
        for name, function in functions.items():
            if "notify" in NEEDS[name]:
                self.notifications.connect(function, dashboard_url=dashboard_url(self.api.api))
        self.dashboard = Dashboard(
            self,
            "Dashboard",
            api=self.api,
            layer=self.functions.layer,
            storage=self.storage,
            agentcore=self.agentcore,
            policy_store=self.policy_store,
            loop_state_machine=self.loop.state_machine,
            plan_state_machine=self.plans.state_machine,
            removal_policy=removal_policy,
        )
        self.evidence.connect_reader(self.dashboard.functions["read"])  # GET /api/evidence/public-key
        self.continuation = Continuation(
            self,
            "Continuation",
            start_loop=start_loop,
            schedule_resume=functions["schedule_resume"],
            removal_policy=removal_policy,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            state_machine=self.loop.state_machine,
            functions=functions,
            api=self.api.api,
            plan_state_machine=self.plans.state_machine,
            other_functions={
                **self.plans.functions,
                **{f"dashboard_{mode}": f for mode, f in self.dashboard.functions.items()},
            },
            queues=self.continuation.queues,
            alarm_email=self.node.try_get_context(CTX_ALARM_EMAIL),
            removal_policy=removal_policy,
        )
        self._build_outputs()
        nag.acknowledge(self)

    # ----------------------------------------------------------------------------- context
    def _removal_policy(self) -> RemovalPolicy:
        value = str(self.node.try_get_context(CTX_REMOVAL_POLICY) or "destroy").lower()
        if value not in _REMOVAL_POLICIES:
            raise ValueError(f"context {CTX_REMOVAL_POLICY}: {value!r} is not one of destroy, retain")
        return _REMOVAL_POLICIES[value]

    def _memory_expiry_days(self) -> int:
        value = self.node.try_get_context(CTX_MEMORY_EXPIRY_DAYS) or DEFAULT_MEMORY_EXPIRY_DAYS
        days = int(value)
        if not 7 <= days <= 365:
            raise ValueError(f"context {CTX_MEMORY_EXPIRY_DAYS}: {days} is not within 7..365 days")
        return days

    def _layer_dir(self) -> Path:
        mode = str(self.node.try_get_context(CTX_LAYER) or os.environ.get(ENV_LAYER) or "build")
        if mode == "stub":
            return stub_layer()
        if mode != "build":
            raise ValueError(f"context {CTX_LAYER}: {mode!r} is not one of build, stub")
        return build_layer()

    def _build_outputs(self) -> None:
        outputs = {
            "ApiUrl": self.api.api.url_for_path("/loops"),
            "DashboardUrl": self.api.api.url_for_path("/"),
            "DashboardSignInUrl": self.dashboard.signin_url,
            "UserPoolId": self.dashboard.user_pool.user_pool_id,
            "UserPoolClientId": self.dashboard.client.user_pool_client_id,
            "StateMachineArn": self.loop.state_machine.state_machine_arn,
            "LoopsTableName": self.storage.loops_table.table_name,
            "EventsTableName": self.storage.events_table.table_name,
            "PlansTableName": self.storage.plans_table.table_name,
            "PlanDispatchStateMachineArn": self.plans.state_machine.state_machine_arn,
            "MemoryId": self.agentcore.memory.attr_memory_id,
            "CodeInterpreterId": self.agentcore.code_interpreter.attr_code_interpreter_id,
            "PolicyStoreId": self.policy_store.policy_store_id,
            "EvidenceKeyArn": self.evidence.key.key_arn,
            "AlertsTopicArn": self.monitoring.topic.topic_arn,
            "NotificationsTopicArn": self.notifications.topic.topic_arn,
            "ScheduleGroupName": self.continuation.schedule_group.schedule_group_name,
            "SchedulerRoleArn": self.continuation.scheduler_role.role_arn,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
