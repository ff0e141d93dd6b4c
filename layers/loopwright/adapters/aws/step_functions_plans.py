"""The AWS :class:`~loopwright.plans.ports.PlanExecutor`: dispatch and verification through the
PlanDispatch state machine.

- :meth:`StepFunctionsPlanExecutor.dispatch` begins the dispatch (DRAFT -> DISPATCHING, event
  ``plan_dispatched`` with every task's loop id: a conditional write, so a second dispatch is a
  :class:`PlanConflictError`) and starts the PlanDispatch execution named
  ``<plan_id>-<project digest>`` (:func:`~loopwright.cloud.plan_steps.dispatch_execution_name`).
  It returns the plan DISPATCHING; the execution's Begin step marks it RUNNING. A DISPATCHING plan
  is started again (a call whose StartExecution failed is retried that way; Step Functions returns
  the running execution for the same name and input).
- :meth:`StepFunctionsPlanExecutor.verify` begins the verification (RUNNING with every task
  ended -> VERIFYING, event ``verify_started``: a conditional write) and starts a *verify
  execution* of PlanDispatch named ``<dispatch execution>-verify``
  (:mod:`loopwright.cloud.plan_verify_steps`); it returns the plan VERIFYING and the execution's
  Verify step runs gate:all in a Code Interpreter session, outside the API call (API Gateway's
  29 s). A VERIFYING plan is started again (Step Functions returns the running execution for the
  same name and input); a closed execution is a :class:`PlanConflictError`.
- :meth:`StepFunctionsPlanExecutor.inspect_loop` builds the packet of an ended loop from the loop
  store; changed files come from the ``changes`` workspace when given (none otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, error_code, retry_config
from loopwright.cloud.plan_steps import DEFAULT_POLL_SECONDS, DispatchInput, dispatch_execution_name
from loopwright.cloud.plan_verify_steps import VerifyInput, verify_execution_name
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
from loopwright.plans.transitions import begin_dispatch, task_run_request
from loopwright.ports import LoopStore

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
        repository: the dispatch and verify inputs' ``repository`` (a git URL used by tasks and
            gates when the plan names none; locally the workspace folder).
        poll_seconds: first wait between two polls of a task's loop.
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
        check_loop: LoopCheck | None = None,
        changes: PlanWorkspace | None = None,
    ) -> None:
        self.store = store
        self.state_machine_arn = state_machine_arn
        self.loops = loops
        self.repository = repository
        self.poll_seconds = poll_seconds
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
        self._start(
            dispatch_execution_name(project, plan_id),
            event.model_dump_json(exclude_none=True),
            f"the dispatch of plan {plan_id!r}",
            f"plan {plan_id} was dispatched already",
        )
        return self.store.get_plan(project, plan_id)

    def verify(self, project: str, plan_id: str) -> Plan:
        """Begin the verification and start the plan's verify execution; the plan VERIFYING (or
        already VERIFIED or FAILED when the execution was that fast).

        Raises :class:`PlanConflictError` when the plan is neither RUNNING with every task ended
        nor VERIFYING (nothing is written or started), or its verify execution ended already.
        """
        if self.store.get_plan(project, plan_id).status is not PlanStatus.VERIFYING:
            service.start_verify(self.store, project, plan_id)
        event = VerifyInput(project=project, plan_id=plan_id, repository=self.repository)
        self._start(
            verify_execution_name(project, plan_id),
            event.model_dump_json(exclude_none=True),
            f"the verification of plan {plan_id!r}",
            f"plan {plan_id} was verified already",
        )
        return self.store.get_plan(project, plan_id)

    def _start(self, name: str, payload: str, what: str, exists: str) -> None:
        """StartExecution of PlanDispatch; ``exists`` is the PlanConflictError's message when the
        execution ``name`` exists with another input or has ended."""
        with aws_errors(f"starting {what} (execution {name})"):
            try:
                self._client.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=payload)
            except ClientError as exc:
                if error_code(exc) == "ExecutionAlreadyExists":
                    raise PlanConflictError(f"{exists} (execution {name} exists)") from exc
                raise
