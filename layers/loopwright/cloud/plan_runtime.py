"""What a plan Lambda needs at run time: its settings from the environment and its ports.

Like :mod:`loopwright.cloud.runtime`, ``LOOPWRIGHT_ADAPTERS`` chooses the adapters: ``aws`` (the
plans table and the loop tables in DynamoDB, task branches merged in a Code Interpreter session)
or ``local`` (the SQLite file of ``LOOPWRIGHT_STATE_DIR`` for plans and loops, task branches in
the local git repository: what the local execution of the synthesized PlanDispatch uses). Either
way a task's loop is started as an execution of the loop state machine ``LOOP_STATE_MACHINE_ARN``.
Ports are built once per Lambda container.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright.cloud.observability import metrics
from loopwright.cloud.plan_steps import GateFactory, PlanStepPorts, TaskBranches
from loopwright.cloud.runtime import check_agent_for_adapters, loop_repository
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig
from loopwright.models.plans import Plan, TaskRunRequest
from loopwright.plans.ports import PlanWorkspace
from loopwright.ports import Sandbox

if TYPE_CHECKING:  # boto3 is imported only when the AWS adapters are used
    from loopwright.adapters.aws.step_functions_plans import StepFunctionsPlanExecutor


class PlanSettings(BaseModel):
    """The plan handlers' environment variables. A missing one fails at cold start, naming it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    adapters: Literal["aws", "local"] = Field(alias="LOOPWRIGHT_ADAPTERS")
    state_dir: Path = Field(default=Path("/tmp/loopwright"), alias="LOOPWRIGHT_STATE_DIR")
    plans_table: str | None = Field(default=None, alias="PLANS_TABLE_NAME")
    loops_table: str | None = Field(default=None, alias="LOOPS_TABLE_NAME")
    events_table: str | None = Field(default=None, alias="EVENTS_TABLE_NAME")
    loop_state_machine_arn: str | None = Field(default=None, alias="LOOP_STATE_MACHINE_ARN")
    code_interpreter_id: str | None = Field(default=None, alias="CODE_INTERPRETER_ID")
    plan_dispatch_arn: str | None = Field(default=None, alias="PLAN_STATE_MACHINE_ARN")
    region: str | None = Field(default=None, alias="AWS_REGION")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> PlanSettings:
        """Parse ``environ`` (default ``os.environ``). Raises :class:`ConfigError` naming the variable."""
        try:
            return cls.model_validate(dict(environ if environ is not None else os.environ))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(
                f"environment variable {'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from exc

    def require(self, name: str) -> str:
        """The setting ``name``; raises :class:`ConfigError` naming its variable when unset."""
        value = getattr(self, name)
        if not value:
            alias = type(self).model_fields[name].alias
            raise ConfigError(
                f"environment variable {alias} is required with LOOPWRIGHT_ADAPTERS={self.adapters}"
            )
        return str(value)


class LocalTaskBranches:
    """Task branches in the local repository: the branch at the merge of the dependencies'
    results and the loop's worktree, made one at a time (git writes shared files of the
    repository; the loops then run concurrently), as the local dispatcher does."""

    def __init__(self, workspace: Path, state_dir: Path, lock: threading.Lock) -> None:
        self.workspace = workspace
        self.state_dir = state_dir
        self._lock = lock

    def prepare_task(self, loop_id: str, heads: Sequence[str]) -> dict[str, Any]:
        """Create the loop's branch at the merge of ``heads`` and its worktree; the loop's
        ``worktree``, ``branch``, ``base_commit`` (the merge, else the user's HEAD) and
        ``head_commit``. Raises :class:`~loopwright.plans.errors.MergeConflictError`, WorkspaceError."""
        from loopwright.adapters.local.git_workspace import GitWorktreeWorkspace  # local only
        from loopwright.adapters.local.plan_workspace import GitPlanWorkspace

        with self._lock:
            start = GitPlanWorkspace(self.workspace, self.state_dir).start_branch(loop_id, heads)
            worktree, branch, base = GitWorktreeWorkspace(self.workspace, self.state_dir).prepare(loop_id)
        base = start or base
        return {"worktree": str(worktree), "branch": branch, "base_commit": base, "head_commit": base}


def _local_branches(settings: PlanSettings) -> Callable[[TaskRunRequest, str | None], TaskBranches | None]:
    lock = threading.Lock()

    def branches(request: TaskRunRequest, repository: str | None) -> TaskBranches | None:
        if not request.config.git_isolation:
            return None
        if not repository:
            raise ConfigError(
                "repository: the dispatch input needs the workspace folder with LOOPWRIGHT_ADAPTERS=local"
            )
        return LocalTaskBranches(Path(repository), settings.state_dir, lock)

    return branches


def _aws_branches(settings: PlanSettings) -> Callable[[TaskRunRequest, str | None], TaskBranches | None]:
    def branches(request: TaskRunRequest, repository: str | None) -> TaskBranches | None:
        if not request.dependency_heads:
            return None  # the loop starts from repository.ref in its own session
        from loopwright.adapters.aws.session_plan_workspace import session_task_branches  # AWS only

        return session_task_branches(
            loop_repository(request.config, repository),
            region_name=settings.require("region"),
            identifier=settings.require("code_interpreter_id"),
        )

    return branches


def _starter(settings: PlanSettings) -> Callable[[str, str], str]:
    """StartExecution of the loop state machine; a name already started returns its ARN (Step
    Functions answers ExecutionAlreadyExists for a closed one, or one started with another input)."""

    def start(name: str, payload: str) -> str:
        arn = settings.require("loop_state_machine_arn")  # here: only StartTask starts loops
        client = _sfn_client(settings.region)
        try:
            return str(client.start_execution(stateMachineArn=arn, name=name, input=payload)["executionArn"])
        except client.exceptions.ExecutionAlreadyExists:
            return arn.replace(":stateMachine:", ":execution:") + f":{name}"

    return start


@functools.cache
def _sfn_client(region: str | None) -> Any:
    import boto3  # imported here: the module is imported by handlers that never start a loop

    return boto3.client("stepfunctions", region_name=region)


def _local_gates(settings: PlanSettings) -> GateFactory:
    def gates(plan: Plan, repository: str | None) -> AbstractContextManager[tuple[Sandbox, PlanWorkspace]]:
        from loopwright.adapters.local.plan_workspace import GitPlanWorkspace  # local only
        from loopwright.adapters.local.sandbox import SubprocessSandbox

        if not repository:
            raise ConfigError(
                "repository: the verify input needs the workspace folder with LOOPWRIGHT_ADAPTERS=local"
            )
        return nullcontext((SubprocessSandbox(), GitPlanWorkspace(Path(repository), settings.state_dir)))

    return gates


def _aws_gates(settings: PlanSettings) -> GateFactory:
    def gates(plan: Plan, repository: str | None) -> AbstractContextManager[tuple[Sandbox, PlanWorkspace]]:
        from loopwright.adapters.aws.session_plan_workspace import session_gates  # AWS only

        return session_gates(
            plan,
            region_name=settings.require("region"),
            identifier=settings.require("code_interpreter_id"),
            repository=repository,
        )

    return gates


@functools.cache
def plan_ports(settings: PlanSettings) -> PlanStepPorts:
    """The ports for ``settings``, built once per container (clients are reused)."""
    if settings.adapters == "local":
        from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore  # local only
        from loopwright.adapters.local.sqlite_store import SqliteStore

        database = settings.state_dir / "loopwright.db"
        return PlanStepPorts(
            plans=SqlitePlanStore(database),
            loops=SqliteStore(database),
            start_execution=_starter(settings),
            branches=_local_branches(settings),
            check_loop=_loop_check(settings),
            gates=_local_gates(settings),
        )
    from loopwright.adapters.aws.dynamodb_plan_store import DynamoDbPlanStore  # AWS only
    from loopwright.adapters.aws.dynamodb_store import DynamoDbStore

    return PlanStepPorts(
        plans=DynamoDbPlanStore(settings.require("plans_table"), region_name=settings.region),
        loops=DynamoDbStore(
            settings.require("loops_table"), settings.require("events_table"), region_name=settings.region
        ),
        start_execution=_starter(settings),
        branches=_aws_branches(settings),
        check_loop=_loop_check(settings),
        gates=_aws_gates(settings),
    )


def check_task_loop(config: LoopConfig, adapters: str, repository: str | None = None) -> None:
    """Raise ConfigError, naming the field and the fix, when a plan task's loop cannot run with
    ``adapters``: its agent (:func:`~loopwright.cloud.runtime.check_agent_for_adapters`) and, on
    AWS, its repository with ``push = true`` (a task's result must be pushed: the tasks after it
    and the verification clone it in other Code Interpreter sessions)."""
    check_agent_for_adapters(config, adapters, repository=repository)
    if adapters == "aws" and not loop_repository(config, repository).push:
        raise ConfigError(
            "repository.push: must be true for a plan's tasks on AWS (each task's result is pushed "
            "for the tasks after it and for verification); set push = true in defaults.repository"
        )


def _loop_check(settings: PlanSettings) -> Callable[[LoopConfig, str | None], None]:
    def check(config: LoopConfig, repository: str | None) -> None:
        check_task_loop(config, settings.adapters, repository)

    return check


_In = TypeVar("_In", bound=BaseModel)


def run_plan_step(step: Callable[[_In, PlanStepPorts], BaseModel], event: _In, metric: str) -> dict[str, Any]:
    """Run ``step`` for ``event`` with this container's ports; the JSON of its output. Adds the
    count metric ``metric``."""
    output = step(event, plan_ports(PlanSettings.from_environ()))
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    return output.model_dump(mode="json")


def aws_plan_executor(settings: PlanSettings) -> StepFunctionsPlanExecutor:
    """The AWS :class:`~loopwright.plans.ports.PlanExecutor` for the plan API's Lambda
    (:class:`~loopwright.adapters.aws.step_functions_plans.StepFunctionsPlanExecutor`): the
    plans and loop tables, PlanDispatch (``PLAN_STATE_MACHINE_ARN``: dispatch and verify
    executions), every task's loop checked for AWS before dispatch. Raises ConfigError naming a
    missing variable."""
    from loopwright.adapters.aws.step_functions_plans import StepFunctionsPlanExecutor

    ports = plan_ports(settings)
    return StepFunctionsPlanExecutor(
        ports.plans,
        settings.require("plan_dispatch_arn"),
        loops=ports.loops,
        region_name=settings.region,
        check_loop=ports.check_loop,
    )
