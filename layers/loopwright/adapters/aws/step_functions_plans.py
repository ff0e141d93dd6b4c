"""The AWS :class:`~loopwright.plans.ports.PlanExecutor`: dispatch through the PlanDispatch state
machine, verification in a Code Interpreter session.

- :meth:`StepFunctionsPlanExecutor.dispatch` begins the dispatch (DRAFT -> DISPATCHING, event
  ``plan_dispatched`` with every task's loop id: a conditional write, so a second dispatch is a
  :class:`PlanConflictError`) and starts the PlanDispatch execution named
  ``<plan_id>-<project digest>`` (:func:`~loopwright.cloud.plan_steps.dispatch_execution_name`).
  It returns the plan DISPATCHING; the execution's Begin step marks it RUNNING. A DISPATCHING plan
  is started again (a call whose StartExecution failed is retried that way; Step Functions returns
  the running execution for the same name and input).
- :meth:`StepFunctionsPlanExecutor.verify` runs gate:all (:func:`loopwright.plans.service.verify_plan`)
  with the sandbox and workspace its ``gates`` factory gives for the plan: on AWS a Code
  Interpreter session holding the merge of the tasks' pushed branches
  (:mod:`loopwright.adapters.aws.session_plan_workspace`). Without a factory only ``gate:tasks``
  can run: a plan without gates is verified, one with gates is refused (ConfigError, nothing
  written) rather than failed for good (a FAILED plan is never verified again).
- :meth:`StepFunctionsPlanExecutor.inspect_loop` builds the packet of an ended loop from the loop
  store; changed files come from the ``changes`` workspace when given (none otherwise).

The verification runs in the calling process, so through API Gateway (29 s integration timeout)
only fast gates fit; a long gate:all needs an asynchronous caller (not built yet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, error_code, retry_config
from loopwright.cloud.plan_steps import DEFAULT_POLL_SECONDS, DispatchInput, dispatch_execution_name
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig
from loopwright.models.plans import (
    DEFAULT_PLAN_CONCURRENCY,
    InspectionPacket,
    Plan,
    PlanStatus,
)
from loopwright.plans import service
from loopwright.plans.errors import PlanConflictError
from loopwright.plans.ports import PlanExecutor, PlanStore, PlanWorkspace
from loopwright.plans.transitions import begin_dispatch, begin_verify, finish_verify, task_run_request
from loopwright.plans.verify import tasks_check
from loopwright.ports import LoopStore, Sandbox

#: (plan) -> a context giving the sandbox and workspace gate:all runs in, released at its end (on
#: AWS a Code Interpreter session: :func:`loopwright.adapters.aws.session_plan_workspace.session_gates`).
GateEnvironment = Callable[[Plan], AbstractContextManager[tuple[Sandbox, PlanWorkspace]]]
#: (a task's loop config, the dispatch's repository) -> None, or ConfigError naming the field.
LoopCheck = Callable[[LoopConfig, str | None], None]


class _NoChanges(PlanWorkspace):
    """Changed files unknown (no workspace to diff in)."""

    def integrate(self, run_id: str, heads: Sequence[str], *, isolated: bool = True) -> Path:
        raise ConfigError("no workspace to integrate the tasks' results in")

    def changed_files(self, base: str | None, head: str | None) -> list[str]:
        return []


class StepFunctionsPlanExecutor(PlanExecutor):
    """Plans on AWS (see the module docstring).

    Args:
        store: where plans live (the DynamoDB plan store).
        state_machine_arn: the PlanDispatch state machine.
        loops: the loop store (for :meth:`inspect_loop`).
        client: a boto3 Step Functions client (default: standard retries in ``region_name``).
        repository: the dispatch input's ``repository`` (a git URL used by tasks whose config has
            none; locally the workspace folder).
        poll_seconds: first wait between two polls of a task's loop.
        gates: the environment gate:all runs in (see the module docstring).
        check_loop: checks each task's loop config before dispatch (on AWS
            :func:`loopwright.cloud.runtime.check_agent_for_adapters` with ``aws``).
        changes: the workspace :meth:`inspect_loop` lists changed files with.
    """

    def __init__(
        self,
        store: PlanStore,
        state_machine_arn: str,
        *,
        loops: LoopStore | None = None,
        client: Any | None = None,
        region_name: str | None = None,
        repository: str | None = None,
        poll_seconds: int = DEFAULT_POLL_SECONDS,
        gates: GateEnvironment | None = None,
        check_loop: LoopCheck | None = None,
        changes: PlanWorkspace | None = None,
    ) -> None:
        self.store = store
        self.state_machine_arn = state_machine_arn
        self.loops = loops
        self.repository = repository
        self.poll_seconds = poll_seconds
        self.gates = gates
        self.check_loop = check_loop
        self.changes = changes or _NoChanges()
        self._client: Any = (
            client
            if client is not None
            else boto3.client(
                "stepfunctions", region_name=region_name, config=retry_config(DEFAULT_MAX_ATTEMPTS)
            )
        )

    def inspect_loop(self, project: str, loop_id: str) -> InspectionPacket:
        """See :func:`loopwright.plans.service.inspect_loop`. Raises ConfigError without a loop store."""
        if self.loops is None:
            raise ConfigError("inspecting a loop needs the loop store (LOOPS_TABLE_NAME, EVENTS_TABLE_NAME)")
        return service.inspect_loop(self.loops, self.store, self.changes, project, loop_id)

    def dispatch(self, project: str, plan_id: str, *, concurrency: int = DEFAULT_PLAN_CONCURRENCY) -> Plan:
        """Begin the dispatch and start the PlanDispatch execution; the plan DISPATCHING.

        Raises :class:`PlanConflictError` when the plan is neither DRAFT nor DISPATCHING or its
        execution exists already, ConfigError when a task's loop cannot run here (nothing is
        written then), ValueError (pydantic) for a concurrency out of range.
        """
        plan = self.store.get_plan(project, plan_id)
        event = DispatchInput(
            project=project,
            plan_id=plan_id,
            concurrency=concurrency,
            poll_seconds=self.poll_seconds,
            repository=self.repository,
        )
        if plan.status is not PlanStatus.DISPATCHING:
            change = begin_dispatch(plan)  # PlanConflictError unless DRAFT
            if self.check_loop is not None:
                for task in change.plan.tasks:
                    self.check_loop(task_run_request(change.plan, task.task_id).config, self.repository)
            plan = self.store.save_plan(project, change.plan, change.events)
        name = dispatch_execution_name(project, plan_id)
        with aws_errors(f"starting the dispatch of plan {plan_id!r} (execution {name})"):
            try:
                self._client.start_execution(
                    stateMachineArn=self.state_machine_arn,
                    name=name,
                    input=event.model_dump_json(exclude_none=True),
                )
            except ClientError as exc:
                if error_code(exc) == "ExecutionAlreadyExists":
                    raise PlanConflictError(
                        f"plan {plan_id} was dispatched already (execution {name} exists)"
                    ) from exc
                raise
        return self.store.get_plan(project, plan_id)

    def verify(self, project: str, plan_id: str) -> Plan:
        """gate:all on the plan whose tasks all ended; VERIFIED or FAILED (see the module docstring)."""
        plan = self.store.get_plan(project, plan_id)
        if self.gates is not None:
            with self.gates(plan) as (sandbox, workspace):
                return service.verify_plan(self.store, project, plan_id, sandbox, workspace)
        if plan.gates:
            raise ConfigError(
                f"plan {plan_id} has {len(plan.gates)} gates and this deployment runs no gate "
                "(no Code Interpreter configured for verification); nothing was changed"
            )
        change = begin_verify(plan)
        plan = self.store.save_plan(project, change.plan, change.events)
        change = finish_verify(plan, [tasks_check(plan)])
        return self.store.save_plan(project, change.plan, change.events)
