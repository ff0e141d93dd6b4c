"""The loop's Lambda functions and the core layer they share.

One function per state of the state machine plus ``start_loop`` (``POST /loops``, and the target
of the resume schedules), ``await_human`` (the task-token state) and ``schedule_resume`` (a one-time
schedule at a usage limit's reset; its scheduler permissions and environment are added by
:class:`infrastructure.continuation.Continuation`, which owns the schedule group), each
``functions/<name>/handler.handler`` on Python 3.12, ARM_64, X-Ray tracing active, its own log
group (retention :data:`LOG_RETENTION`) and its own role holding only what it uses (:data:`NEEDS`):
table grants, the AgentCore Memory or Code Interpreter statement, ``IsAuthorized`` on the policy
store (authorize only), item access to the idempotency table.

Environment (read by :class:`loopwright.cloud.runtime.RuntimeSettings`): ``LOOPWRIGHT_ADAPTERS``
(``aws``), ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``, ``LOOPS_TABLE_NAME``,
``EVENTS_TABLE_NAME``, ``PLANS_TABLE_NAME``, ``MEMORY_ID``, ``CODE_INTERPRETER_ID``,
``POLICY_STORE_ID``, ``LOOPWRIGHT_POLICIES_DIR`` (the layer's copy of ``policies/``),
``IDEMPOTENCY_TABLE_NAME`` for the steps with Powertools Idempotency and, for authorize only,
``POLICY_MAP`` (JSON, see :mod:`infrastructure.policies`); ``start_loop`` gets
``STATE_MACHINE_ARN`` from the stack once the state machine exists, and the functions that
complete loops ``EVIDENCE_KEY_ARN`` (:class:`infrastructure.evidence.EvidenceKey`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from aws_cdk import ArnFormat, RemovalPolicy, Stack
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
from infrastructure.dashboard_routes import MEMORY_READ_ACTIONS
from infrastructure.policies import PolicyStore
from infrastructure.repository_secrets import (
    CTX_REPOSITORY_SECRET_ARNS,
    repository_secret_arns,
    repository_secrets_statement,
)
from infrastructure.storage import Storage
from loopwright.models.agent_config import AGENT_RUNTIME_ARN_PATTERN

#: What each function may touch: ``loops`` (read and update its loop's item: :data:`LOOP_ACTIONS`),
#: ``loop_create`` (put a new loop item: start_loop), ``records`` (put the agent's iteration
#: records, items of the loops table: iterate, evaluate and run_iteration, ``loopwright.records``),
#: ``events`` (put event items, written in the same transaction as the loop's state: every step
#: that records events; not await_human), ``memory``
#: (checkpoints: checkpoint, and authorize/evaluate/decide for the final one when a loop ends),
#: ``memory_read`` (list a loop's checkpoints only: start_loop, whose continuations resume from
#: the newest valid one, as the dashboard's resume does),
#: ``code_interpreter`` (iterate, evaluate), ``policy`` (authorize, run_iteration, and iterate for
#: the pinned checks, ``loopwright.pinning``; start_loop,
#: whose continuations are RESUMEs that Cedar decides), ``idempotency`` (its records:
#: every task whose handler is ``@idempotent_step``; not await_human, whose retry must store the
#: new task token), ``schedule`` (create a schedule in the group, pass the scheduler role: the
#: grants and environment are :class:`infrastructure.continuation.Continuation`'s: schedule_resume
#: creates one-time schedules, start_loop creates and deletes loops' recurring ones),
#: ``agent_runtime`` (iterate: invoke a loop's AgentCore Runtime agent, see :data:`CTX_AGENT_RUNTIME_ARNS`),
#: ``repository_secrets`` (the functions that clone and push read the private repositories' tokens,
#: :mod:`infrastructure.repository_secrets`), ``session_stop`` (the steps that end or park a loop
#: stop its Code Interpreter session), ``notify`` (the steps that record an agent's question, a policy
#: warning or the loop's end publish to the notifications topic, :mod:`infrastructure.notifications`),
#: ``evidence`` (the steps that complete a loop, decide and, for a loop its baseline met, evaluate and
#: run_iteration: sign its evidence bundle with the evidence key and put it as an item of the loops
#: table, :mod:`infrastructure.evidence`; the key's grant and variable are the stack's).
NEEDS: dict[str, frozenset[str]] = {
    "authorize": frozenset({"loops", "events", "memory", "policy", "idempotency", "session_stop", "notify"}),
    "iterate": frozenset(
        {
            "loops",
            "records",
            "events",
            "code_interpreter",
            "idempotency",
            "agent_runtime",
            "repository_secrets",
            "policy",
        }
    ),
    "checkpoint": frozenset({"loops", "events", "memory", "idempotency"}),
    "evaluate": frozenset(
        {
            "loops",
            "records",
            "events",
            "memory",
            "code_interpreter",
            "idempotency",
            "repository_secrets",
            "notify",
            "evidence",
        }
    ),
    "verify": frozenset({"loops", "events", "idempotency"}),
    "decide": frozenset({"loops", "events", "memory", "idempotency", "session_stop", "notify", "evidence"}),
    "record_failure": frozenset({"loops", "events", "idempotency", "session_stop", "notify"}),
    "start_loop": frozenset({"loops", "loop_create", "events", "policy", "memory_read", "schedule"}),
    "await_human": frozenset({"loops"}),
    "run_iteration": frozenset(
        {
            "loops",
            "records",
            "events",
            "memory",
            "policy",
            "code_interpreter",
            "idempotency",
            "agent_runtime",
            "repository_secrets",
            "notify",
            "evidence",
        }
    ),
    "schedule_resume": frozenset({"schedule", "idempotency"}),
}
#: What the loop functions do with the loops table, read from their code path
#: (``loopwright.cloud.steps``, ``start``, ``schedule``: ``LoopStore.get_state``, ``save_state``,
#: ``pending_controls``, ``clear_controls``, ``clear_stop``; in ``DynamoDbStore`` a GetItem, an
#: UpdateItem or a TransactWriteItems of one Update and event Puts): item actions on the table only,
#: no index (no step queries one), no Scan, no DeleteItem, no BatchGetItem. A TransactWriteItems is
#: authorized per item action ("Using IAM with DynamoDB transactions", DynamoDB Developer Guide).
LOOP_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
#: ``create_loop``: a conditional PutItem of the new loop (start_loop only).
LOOP_CREATE_ACTIONS = ("dynamodb:PutItem",)
#: ``save_iteration_record``: a PutItem of the record's item in the loops table (read back with
#: GetItem, in :data:`LOOP_ACTIONS`); the evidence bundle's item alike (``evidence``).
RECORD_ACTIONS = ("dynamodb:PutItem",)
#: Events are only ever put (conditional Puts in the loop's transaction); the steps never read them.
EVENT_ACTIONS = ("dynamodb:PutItem",)
#: What Powertools Idempotency does with a record (``DynamoDBPersistenceLayer``): no Query, no Scan.
IDEMPOTENCY_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
#: Context key: the AgentCore Runtime ARNs the iterate function may invoke (``agent_runtime``: a
#: loop's ``agentcore_runtime`` agent), a list or one comma-separated string. Unset: every runtime
#: of the stack's account and region (a loop's config names its runtime only at run time).
CTX_AGENT_RUNTIME_ARNS = "loopwright:agentRuntimeArns"


def agent_runtime_arns(value: object) -> list[str]:
    """The ARNs of :data:`CTX_AGENT_RUNTIME_ARNS` (``value``: None, a list, or a string with
    commas). Raises ValueError naming the context key for a value that is not a runtime ARN."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    arns = [str(item).strip() for item in items if str(item).strip()]
    for arn in arns:
        if re.fullmatch(AGENT_RUNTIME_ARN_PATTERN, arn) is None:
            raise ValueError(
                f"context {CTX_AGENT_RUNTIME_ARNS}: {arn!r} is not an AgentCore Runtime ARN "
                "(arn:aws:bedrock-agentcore:<region>:<account>:runtime/<name>-<10 characters>)"
            )
    return arns


#: Where the layer's copy of ``policies/`` is in Lambda (layers unpack under /opt).
LAYER_POLICIES_DIR = "/opt/python/policies"


#: Functions whose physical name is derived from the stack's (:func:`function_name`). start_loop:
#: a resume schedule targets it, and the schedule_resume function, which the state machine invokes,
#: must name it in its environment; start_loop itself names the state machine, so a reference to
#: its resource would close a cycle (start_loop -> state machine -> schedule_resume -> start_loop).
NAMED_FUNCTIONS = frozenset({"start_loop"})
#: Lambda's limit on a function name (characters).
FUNCTION_NAME_MAX_CHARS = 64


def function_name(stack_name: str, name: str) -> str:
    """``<stack name>-<name with dashes>``, shortened with a hash of the stack name to at most
    :data:`FUNCTION_NAME_MAX_CHARS` characters (unique per stack name, as a stack's own name is in
    its account and region)."""
    suffix = name.replace("_", "-")
    full = f"{stack_name}-{suffix}"
    if len(full) <= FUNCTION_NAME_MAX_CHARS:
        return full
    digest = hashlib.sha256(stack_name.encode()).hexdigest()[:8]
    return f"{stack_name[: FUNCTION_NAME_MAX_CHARS - len(suffix) - len(digest) - 2]}-{digest}-{suffix}"


def function_arn(scope: Construct, name: str) -> str:
    """The ARN of :data:`NAMED_FUNCTIONS` member ``name`` in ``scope``'s stack, built from its
    name (no reference to the function resource)."""
    if name not in NAMED_FUNCTIONS:
        raise ValueError(f"{name} has no derived name: only {sorted(NAMED_FUNCTIONS)}")
    stack = Stack.of(scope)
    return stack.format_arn(
        service="lambda",
        resource="function",
        resource_name=function_name(stack.stack_name, name),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


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
        #: The runtimes iterate may invoke (empty: every runtime of the account and region).
        self.agent_runtime_arns = agent_runtime_arns(self.node.try_get_context(CTX_AGENT_RUNTIME_ARNS))
        #: The secrets the cloning functions may read (empty: none, no statement).
        self.repository_secret_arns = repository_secret_arns(
            self.node.try_get_context(CTX_REPOSITORY_SECRET_ARNS)
        )
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
        if "idempotency" in NEEDS[name]:
            environment["IDEMPOTENCY_TABLE_NAME"] = self._storage.idempotency_table.table_name
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
        if "evidence" in needs:  # the bundle's item: the records' PutItem, one statement for both
            needs = needs | {"records"}
        loops, events = self._storage.loops_table, self._storage.events_table
        grants = (
            ("loops", loops, LOOP_ACTIONS),
            ("loop_create", loops, LOOP_CREATE_ACTIONS),
            ("records", loops, RECORD_ACTIONS),
            ("events", events, EVENT_ACTIONS),
        )
        for need, table, actions in grants:
            if need in needs:  # the table's ARN: its items, never '<arn>/index/*'
                role.add_to_principal_policy(
                    iam.PolicyStatement(actions=list(actions), resources=[table.table_arn])
                )
        if "idempotency" in needs:
            self._storage.idempotency_table.grant(role, *IDEMPOTENCY_ACTIONS)
        if "memory" in needs:
            role.add_to_principal_policy(self._agentcore.memory_statement())
        if "memory_read" in needs:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=list(MEMORY_READ_ACTIONS), resources=[self._agentcore.memory.attr_memory_arn]
                )
            )
        if "code_interpreter" in needs:
            role.add_to_principal_policy(self._agentcore.code_interpreter_statement())
        if "agent_runtime" in needs:
            role.add_to_principal_policy(self._agent_runtime_statement())
        if "repository_secrets" in needs and self.repository_secret_arns:
            role.add_to_principal_policy(repository_secrets_statement(self.repository_secret_arns))
        if "session_stop" in needs:
            role.add_to_principal_policy(self._agentcore.session_stop_statement())
        if "policy" in needs:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["verifiedpermissions:IsAuthorized"],  # BatchIsAuthorized needs no other
                    resources=[self._policy_store.policy_store_arn],
                )
            )
        return role

    def _agent_runtime_statement(self) -> iam.PolicyStatement:
        """``InvokeAgentRuntime`` on :attr:`agent_runtime_arns` and their endpoints (the loop's
        ``qualifier``), or on ``runtime/*`` of this account and region when none is given."""
        if self.agent_runtime_arns:
            resources = [r for arn in self.agent_runtime_arns for r in (arn, f"{arn}/runtime-endpoint/*")]
        else:
            resources = [
                Stack.of(self).format_arn(service="bedrock-agentcore", resource="runtime", resource_name="*")
            ]
        return iam.PolicyStatement(actions=["bedrock-agentcore:InvokeAgentRuntime"], resources=resources)

    def _build_function(self, name: str) -> lambda_.Function:
        timeout, memory_mib = FUNCTIONS[name]
        log_group = logs.LogGroup(
            self, f"{camel(name)}Logs", retention=LOG_RETENTION, removal_policy=self._removal_policy
        )
        return lambda_.Function(
            self,
            f"{camel(name)}Function",
            function_name=function_name(Stack.of(self).stack_name, name) if name in NAMED_FUNCTIONS else None,
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
