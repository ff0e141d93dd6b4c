"""The loop's Lambda functions and the core layer they share.

One function per state of the state machine plus ``start_loop`` (``POST /loops``) and
``await_human`` (the task-token state), each ``functions/<name>/handler.handler`` on Python 3.12,
ARM_64, X-Ray tracing active, its own log group (retention :data:`LOG_RETENTION`) and its own
role holding only what it uses (:data:`NEEDS`): table grants, the AgentCore Memory or Code
Interpreter statement, ``IsAuthorized`` on the policy store (authorize only).

Environment (read by :class:`loopwright.cloud.runtime.RuntimeSettings`): ``LOOPWRIGHT_ADAPTERS``
(``aws``), ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``, ``LOOPS_TABLE_NAME``,
``EVENTS_TABLE_NAME``, ``PLANS_TABLE_NAME``, ``MEMORY_ID``, ``CODE_INTERPRETER_ID``,
``POLICY_STORE_ID``, ``LOOPWRIGHT_POLICIES_DIR`` (the layer's copy of ``policies/``) and, for
authorize only, ``POLICY_MAP`` (JSON, see :mod:`infrastructure.policies`); ``start_loop`` gets
``STATE_MACHINE_ARN`` from the stack once the state machine exists.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infrastructure.agentcore import AgentCore
from infrastructure.constants import (
    FUNCTIONS,
    FUNCTIONS_DIR,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    LOG_RETENTION,
    METRICS_NAMESPACE,
    SERVICE_NAME,
)
from infrastructure.policies import PolicyStore
from infrastructure.storage import Storage

#: What each function may touch: ``tables`` (loops and events, read/write), ``memory``
#: (checkpoints: checkpoint, and authorize/evaluate/decide for the final one when a loop ends),
#: ``code_interpreter`` (iterate, evaluate), ``policy`` (authorize).
NEEDS: dict[str, frozenset[str]] = {
    "authorize": frozenset({"tables", "memory", "policy"}),
    "iterate": frozenset({"tables", "code_interpreter"}),
    "checkpoint": frozenset({"tables", "memory"}),
    "evaluate": frozenset({"tables", "memory", "code_interpreter"}),
    "verify": frozenset({"tables"}),
    "decide": frozenset({"tables", "memory"}),
    "record_failure": frozenset({"tables"}),
    "start_loop": frozenset({"tables"}),
    "await_human": frozenset({"tables"}),
}
#: Where the layer's copy of ``policies/`` is in Lambda (layers unpack under /opt).
LAYER_POLICIES_DIR = "/opt/python/policies"


def camel(name: str) -> str:
    """``record_failure`` -> ``RecordFailure``."""
    return "".join(part.capitalize() for part in name.split("_"))


class LoopFunctions(Construct):
    """:attr:`layer` and :attr:`functions` (name -> function), see the module docstring."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layer_dir: Path,
        storage: Storage,
        agentcore: AgentCore,
        policy_store: PolicyStore,
        removal_policy: RemovalPolicy,
        functions_dir: Path = FUNCTIONS_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self._agentcore = agentcore
        self._policy_store = policy_store
        self._removal_policy = removal_policy
        self._functions_dir = functions_dir
        self.layer = self._build_layer(layer_dir)
        self.functions = {name: self._build_function(name) for name in FUNCTIONS}

    def _build_layer(self, layer_dir: Path) -> lambda_.LayerVersion:
        return lambda_.LayerVersion(
            self,
            "CoreLayer",
            code=lambda_.Code.from_asset(str(layer_dir)),
            compatible_runtimes=[LAMBDA_RUNTIME],
            compatible_architectures=[LAMBDA_ARCHITECTURE],
            description="loopwright core + pydantic, powertools, bedrock-agentcore",
        )

    def _environment(self, name: str) -> dict[str, str]:
        environment = {
            "LOOPWRIGHT_ADAPTERS": "aws",
            "LOOPWRIGHT_POLICIES_DIR": LAYER_POLICIES_DIR,
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "LOOPS_TABLE_NAME": self._storage.loops_table.table_name,
            "EVENTS_TABLE_NAME": self._storage.events_table.table_name,
            "PLANS_TABLE_NAME": self._storage.plans_table.table_name,
            "MEMORY_ID": self._agentcore.memory.attr_memory_id,
            "CODE_INTERPRETER_ID": self._agentcore.code_interpreter.attr_code_interpreter_id,
            "POLICY_STORE_ID": self._policy_store.policy_store_id,
        }
        if "policy" in NEEDS[name]:
            environment["POLICY_MAP"] = self._policy_store.policy_map_json()
        return environment

    def _build_role(self, name: str, log_group: logs.LogGroup) -> iam.Role:
        role = iam.Role(
            self,
            f"{camel(name)}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"loopwright {name} function: its log group, tables and resources only",
        )
        log_group.grant_write(role)
        needs = NEEDS[name]
        if "tables" in needs:
            self._storage.loops_table.grant_read_write_data(role)
            self._storage.events_table.grant_read_write_data(role)
        if "memory" in needs:
            role.add_to_principal_policy(self._agentcore.memory_statement())
        if "code_interpreter" in needs:
            role.add_to_principal_policy(self._agentcore.code_interpreter_statement())
        if "policy" in needs:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["verifiedpermissions:IsAuthorized"],  # BatchIsAuthorized needs no other
                    resources=[self._policy_store.policy_store_arn],
                )
            )
        return role

    def _build_function(self, name: str) -> lambda_.Function:
        timeout, memory_mib = FUNCTIONS[name]
        log_group = logs.LogGroup(
            self, f"{camel(name)}Logs", retention=LOG_RETENTION, removal_policy=self._removal_policy
        )
        return lambda_.Function(
            self,
            f"{camel(name)}Function",
            description=f"loopwright {name} (functions/{name}/handler.py)",
            code=lambda_.Code.from_asset(str(self._functions_dir / name)),
            handler="handler.handler",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            layers=[self.layer],
            timeout=timeout,
            memory_size=memory_mib,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            role=self._build_role(name, log_group),
            environment=self._environment(name),
        )
