"""Run a plan through the SYNTHESIZED PlanDispatch state machine, locally: moto executes the ASL
of both state machines of the template (PlanDispatch and the loop's), the real handlers in
``functions/`` run in this process with the local adapters (``LOOPWRIGHT_ADAPTERS=local``).

:class:`LocalPlanStepFunctions` wraps :class:`~loopwright.engine.stepfunctions.LocalStepFunctions`
(moto with ASL execution, every function of the template deployed with its handler, the loop
state machine created) and creates PlanDispatch from the same template, its Lambda ARNs resolved
to the moto functions. Each task's StartTask starts the task's loop as an execution of the loop
state machine in the same moto (``LOOP_STATE_MACHINE_ARN``), exactly as on AWS; plans and loops
live in the workspace's SQLite file. The dispatch is started by the AWS executor
(:class:`~loopwright.adapters.aws.step_functions_plans.StepFunctionsPlanExecutor`) on moto's
Step Functions client.

Nothing of either definition is changed; only moto's gaps are worked around (in
:mod:`loopwright.engine.stepfunctions`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from unittest import mock

import boto3

from loopwright.adapters.aws.step_functions_plans import StepFunctionsPlanExecutor
from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.cloud import idempotency, plan_runtime
from loopwright.cloud.plan_steps import dispatch_execution_name
from loopwright.cloud.plan_verify_steps import verify_execution_name
from loopwright.engine.local import DB_FILE_NAME, state_dir_for
from loopwright.engine.memory_idempotency import InMemoryIdempotency
from loopwright.engine.stepfunctions import ExecutionSummary, Handler, LocalStepFunctions
from loopwright.engine.stepfunctions_template import (
    ACCOUNT_ID,
    REGION,
    STACK_NAME,
    resolve_intrinsics,
    synthesize_template,
)
from loopwright.exceptions import ConfigError
from loopwright.models.plans import DEFAULT_PLAN_CONCURRENCY, Plan

#: The folder named in a function's description, ``... (functions/<name>/handler.py)``.
_MARKER = "(functions/"
#: Name given to PlanDispatch in moto (CloudFormation would generate one).
DISPATCH_NAME = f"{STACK_NAME}-plan-dispatch"


@dataclass
class PlanRun:
    """A plan dispatched through PlanDispatch: the stored plan at the end and the execution."""

    plan: Plan
    execution: ExecutionSummary


def dispatch_definition(template: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of the template's PlanDispatch: its one state machine that is not
    the loop's (``<stack>-loop``). Raises ConfigError when there is not exactly one."""
    found = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::StepFunctions::StateMachine"
        and resource["Properties"].get("StateMachineName") != f"{STACK_NAME}-loop"
    }
    if len(found) != 1:
        raise ConfigError(f"expected one PlanDispatch state machine in the template, found {len(found)}")
    ((logical_id, resource),) = found.items()
    return logical_id, resource


class LocalPlanStepFunctions:
    """Both state machines in moto with the real handlers (module docstring).

    ``template``: from :func:`synthesize_template`. ``workspace``: the user's folder (its
    ``.loopwright`` is ``LOOPWRIGHT_STATE_DIR``; it is the dispatch's ``repository``).
    ``handlers``: function folder name -> handler replacing the real one (tests).
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        workspace: Path,
        *,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.state_dir = state_dir_for(self.workspace)
        self._template = template
        self.local = LocalStepFunctions(template, self.state_dir, handlers=handlers, idempotency="memory")
        self._stack = contextlib.ExitStack()
        self.dispatch_arn = ""
        self.store: SqlitePlanStore | None = None

    def __enter__(self) -> LocalPlanStepFunctions:
        real_store = idempotency.idempotency_store
        try:
            self._stack.enter_context(self.local)
            self._stack.enter_context(
                mock.patch.object(idempotency, "idempotency_store", InMemoryIdempotency(real_store))
            )
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        plan_runtime.plan_ports.cache_clear()
        self._stack.callback(plan_runtime.plan_ports.cache_clear)
        self._stack.enter_context(_environ({"LOOP_STATE_MACHINE_ARN": self.local.state_machine_arn}))
        _, resource = dispatch_definition(self._template)
        refs = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID}
        refs["AWS::URLSuffix"] = "amazonaws.com"
        props = resource["Properties"]
        definition = resolve_intrinsics(props["DefinitionString"], refs, self._function_arns())
        created = self.local.client.create_state_machine(
            name=DISPATCH_NAME,
            definition=definition,
            roleArn=self._role(),
            type=props.get("StateMachineType", "STANDARD"),
        )
        self.dispatch_arn = created["stateMachineArn"]
        self.store = SqlitePlanStore(self.state_dir / DB_FILE_NAME)
        self._stack.callback(self.store.close)

    @staticmethod
    def _role() -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "states.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="loopwright-plan-dispatch-local", AssumeRolePolicyDocument=json.dumps(trust)
        )
        return str(role["Role"]["Arn"])

    def _function_arns(self) -> dict[str, str]:
        """Logical id -> moto ARN of every function of the template that has a handler folder."""
        deployed = {
            f["FunctionName"]: f["FunctionArn"]
            for f in boto3.client("lambda", region_name=REGION).list_functions()["Functions"]
        }
        arns: dict[str, str] = {}
        for logical_id, resource in self._template["Resources"].items():
            description = str(resource.get("Properties", {}).get("Description", ""))
            if resource["Type"] == "AWS::Lambda::Function" and _MARKER in description:
                folder = description.split(_MARKER, 1)[1].split("/", 1)[0]
                arns[logical_id] = deployed[f"{STACK_NAME}-{folder}"]
        return arns

    def executor(self, *, poll_seconds: int = 1) -> StepFunctionsPlanExecutor:
        """The AWS plan executor on moto's Step Functions, with the workspace as ``repository``."""
        assert self.store is not None, "use inside 'with'"
        return StepFunctionsPlanExecutor(
            self.store,
            self.dispatch_arn,
            client=self.local.client,
            repository=str(self.workspace),
            poll_seconds=poll_seconds,
        )

    def execution_arn(self, project: str, plan_id: str, *, verify: bool = False) -> str:
        """The ARN of the plan's PlanDispatch execution (its verify execution when ``verify``)."""
        name = (verify_execution_name if verify else dispatch_execution_name)(project, plan_id)
        return self.dispatch_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def wait(
        self, project: str, plan_id: str, timeout_seconds: float = 300.0, *, verify: bool = False
    ) -> ExecutionSummary:
        """Wait for the plan's dispatch execution (its verify execution when ``verify``) to end.
        Raises TimeoutError."""
        arn = self.execution_arn(project, plan_id, verify=verify)
        started = time.monotonic()
        while True:
            described = self.local.client.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() - started > timeout_seconds:
                raise TimeoutError(f"execution {arn} still RUNNING after {timeout_seconds} s")
            time.sleep(0.1)
        output = json.loads(described["output"]) if described.get("output") else None
        return ExecutionSummary(
            name=arn.rsplit(":", 1)[1],
            status=str(described["status"]),
            events=self.local.history_event_count(arn),
            seconds=time.monotonic() - started,
            output=output,
        )


def execute_plan(
    project: str,
    plan_id: str,
    workspace: Path,
    *,
    concurrency: int = DEFAULT_PLAN_CONCURRENCY,
    poll_seconds: int = 1,
    template: Mapping[str, Any] | None = None,
    timeout_seconds: float = 300.0,
) -> PlanRun:
    """Dispatch the stored DRAFT plan ``plan_id`` of ``project`` (in ``workspace``'s local store)
    through the synthesized PlanDispatch and wait for it; the plan as stored at the end."""
    with LocalPlanStepFunctions(template or synthesize_template(), workspace) as local:
        local.executor(poll_seconds=poll_seconds).dispatch(project, plan_id, concurrency=concurrency)
        summary = local.wait(project, plan_id, timeout_seconds)
        assert local.store is not None
        return PlanRun(plan=local.store.get_plan(project, plan_id), execution=summary)


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
