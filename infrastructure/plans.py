"""Plan dispatch (issue 5) and verification (issue 12): the PlanDispatch Standard state machine and
its seven Lambdas.

Shape (steps in :mod:`loopwright.cloud.plan_steps` and :mod:`loopwright.cloud.plan_verify_steps`)::

    Mode? -$.verify-> Verify -> Verified   (a verify execution: gate:all, 15 minutes at most)
    Mode? -otherwise-> Begin -> More? -yes-> Wave (Map: ItemsPath $.ready, MaxConcurrencyPath
                                  |          $.concurrency) -> Next -> More?
                                  '-no-> Done
    Wave iteration: StartTask -> Started? -ended-> TaskEnded
                                  '-> WaitForLoop ($.wait_seconds) -> CheckTask -> Ended? -no-> WaitForLoop
                                                                              '-yes-> FinishTask -> TaskEnded
    StartTask, CheckTask: Catch -> FinishTask (the error in $.error: the task ends ERROR, the others go on)
    Begin, Next, Wave, Verify: Catch -> RecordFailure (the plan FAILED with the error) -> Failed

Verification is a *verify execution* of this state machine rather than a machine of its own: the
plan API's role already may start PlanDispatch (and no longer needs Code Interpreter access: the
gates never run in the API call), a plan's executions, logs and failure alarm stay in one place,
and RecordFailure ends a VERIFYING plan FAILED the way it ends a failed dispatch. The Verify
Lambda runs gate:all itself (timeout 15 minutes: the gates' own timeouts must fit in it); its
retries cover only the Lambda service's errors (a failed or timed-out gate run is not repeated).

Every Lambda task retries like the loop's (:mod:`infrastructure.state_machine`): the Lambda service
errors and ``States.TaskFailed`` (every plan step is idempotent), 2 s, backoff 2, full jitter, 3
attempts. A task's loop is started as an execution of the loop state machine and polled (it hands
over to new executions, so ``.sync`` cannot follow it). ``MaxConcurrencyPath`` comes from the
execution input, which :class:`loopwright.cloud.plan_steps.DispatchInput` caps at
``MAX_PLAN_CONCURRENCY`` (32; an inline Map runs at most 40 iterations at once).

Functions: ``functions/plan_<step>/handler.py`` on the loop functions' layer, Python 3.12, ARM_64,
X-Ray, JSON logs in their own log group, each with its own role (:data:`PLAN_NEEDS`): ``plans``
(the plans table, read/write), ``plans_read``, ``loops`` (loops and events tables, read/write; the
DynamoDB loop store writes both), ``loops_read`` (the loops table, read), ``start_loop``
(``states:StartExecution`` on the loop state machine), ``code_interpreter`` (StartTask merges a
task's dependencies' branches in a Code Interpreter session; Verify runs gate:all in one). Table
grants name the table's ARN with the item actions the stores use (:data:`ITEM_WRITE_ACTIONS`),
never an index: the steps never query one.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infrastructure.agentcore import AgentCore
from infrastructure.constants import (
    FUNCTIONS_DIR,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    LAMBDA_SERVICE_ERRORS,
    LOG_RETENTION,
    METRICS_NAMESPACE,
    RETRY_BACKOFF_RATE,
    RETRY_INTERVAL,
    RETRY_MAX_ATTEMPTS,
    SERVICE_NAME,
)
from infrastructure.storage import Storage

#: Plan function -> (timeout, memory MiB, what it may touch; see the module docstring).
PLAN_FUNCTIONS: dict[str, tuple[Duration, int, frozenset[str]]] = {
    "plan_begin": (Duration.seconds(30), 512, frozenset({"plans"})),
    "plan_start_task": (
        Duration.minutes(5),  # a merge of dependencies' branches clones the repository in a session
        512,
        frozenset({"plans", "loops", "start_loop", "code_interpreter"}),
    ),
    "plan_check_task": (Duration.seconds(30), 512, frozenset({"loops_read"})),
    "plan_finish_task": (Duration.seconds(30), 512, frozenset({"plans", "loops"})),
    "plan_next": (Duration.seconds(30), 512, frozenset({"plans_read"})),
    "plan_record_failure": (Duration.seconds(30), 512, frozenset({"plans", "loops"})),
    # gate:all in a Code Interpreter session: the merge of the tasks' branches and every gate
    "plan_verify": (Duration.minutes(15), 512, frozenset({"plans", "code_interpreter"})),
}
#: What each plan function may touch (see :data:`PLAN_FUNCTIONS`).
PLAN_NEEDS = {name: needs for name, (_, _, needs) in PLAN_FUNCTIONS.items()}
#: What the DynamoDB stores do with an item (TransactWriteItems is authorized per item action):
#: no Query or Scan, so no index is granted.
ITEM_WRITE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
)
#: Errors retried on every plan task: the Lambda service's and the handler's own (idempotent steps).
PLAN_RETRIED_ERRORS = [*LAMBDA_SERVICE_ERRORS, "States.TaskFailed"]
#: Errors retried on Verify: the Lambda service's only (a gate run that failed is not run again).
VERIFY_RETRIED_ERRORS = list(LAMBDA_SERVICE_ERRORS)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class PlanDispatch(Construct):
    """:attr:`functions` (name -> function), :attr:`state_machine` and its :attr:`log_group`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layer: lambda_.ILayerVersion,
        storage: Storage,
        agentcore: AgentCore,
        loop_state_machine: sfn.IStateMachine,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._layer = layer
        self._storage = storage
        self._agentcore = agentcore
        self._loop_state_machine = loop_state_machine
        self._removal_policy = removal_policy
        self.functions = {name: self._build_function(name) for name in PLAN_FUNCTIONS}
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION, removal_policy=removal_policy)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(self._build_definition()),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
            comment="loopwright: a plan's tasks as loops, wave after wave (see loopwright.cloud.plan_steps)",
        )

    # ----------------------------------------------------------------------------- functions
    def _environment(self, needs: frozenset[str]) -> dict[str, str]:
        environment = {
            "LOOPWRIGHT_ADAPTERS": "aws",
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "PLANS_TABLE_NAME": self._storage.plans_table.table_name,
            "LOOPS_TABLE_NAME": self._storage.loops_table.table_name,
            "EVENTS_TABLE_NAME": self._storage.events_table.table_name,
        }
        if "start_loop" in needs:
            environment["LOOP_STATE_MACHINE_ARN"] = self._loop_state_machine.state_machine_arn
        if "code_interpreter" in needs:
            environment["CODE_INTERPRETER_ID"] = self._agentcore.code_interpreter.attr_code_interpreter_id
        return environment

    def _build_role(self, name: str, needs: frozenset[str], log_group: logs.LogGroup) -> iam.Role:
        role = iam.Role(
            self,
            f"{_camel(name)}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"loopwright {name} function: its log group, tables and resources only",
        )
        log_group.grant_write(role)
        storage = self._storage
        grants = {
            "plans": (storage.plans_table, ITEM_WRITE_ACTIONS),
            "plans_read": (storage.plans_table, ("dynamodb:GetItem",)),
            "loops": (storage.loops_table, ITEM_WRITE_ACTIONS),
            "loops_read": (storage.loops_table, ("dynamodb:GetItem",)),
        }
        for need, (table, actions) in grants.items():
            if need in needs:  # the table's items only: no step queries an index
                role.add_to_principal_policy(
                    iam.PolicyStatement(actions=list(actions), resources=[table.table_arn])
                )
        if "loops" in needs:  # a loop's events, written with its state in one transaction
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[storage.events_table.table_arn])
            )
        if "start_loop" in needs:
            self._loop_state_machine.grant_start_execution(role)
        if "code_interpreter" in needs:
            role.add_to_principal_policy(self._agentcore.code_interpreter_statement())
        return role

    def _build_function(self, name: str) -> lambda_.Function:
        timeout, memory_mib, needs = PLAN_FUNCTIONS[name]
        log_group = logs.LogGroup(
            self, f"{_camel(name)}Logs", retention=LOG_RETENTION, removal_policy=self._removal_policy
        )
        return lambda_.Function(
            self,
            f"{_camel(name)}Function",
            description=f"loopwright {name} (functions/{name}/handler.py)",
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR / name)),
            handler="handler.handler",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            layers=[self._layer],
            timeout=timeout,
            memory_size=memory_mib,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            role=self._build_role(name, needs, log_group),
            environment=self._environment(needs),
        )

    # ----------------------------------------------------------------------------- states
    def _task(
        self,
        state_name: str,
        name: str,
        *,
        payload: dict[str, object] | None = None,
        retried: list[str] | None = None,
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            state_name,
            lambda_function=self.functions[name],
            payload=sfn.TaskInput.from_object(payload) if payload is not None else None,
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        task.add_retry(
            errors=retried or PLAN_RETRIED_ERRORS,
            interval=RETRY_INTERVAL,
            backoff_rate=RETRY_BACKOFF_RATE,
            max_attempts=RETRY_MAX_ATTEMPTS,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return task

    def _build_failure(self) -> sfn.IChainable:
        record = self._task(
            "RecordFailure",
            "plan_record_failure",
            payload={
                "project": sfn.JsonPath.string_at("$.project"),
                "plan_id": sfn.JsonPath.string_at("$.plan_id"),
                "error": sfn.JsonPath.object_at("$.error"),
                "execution": sfn.JsonPath.execution_id,
            },
        )
        unrecorded = sfn.Fail(
            self, "FailureNotRecorded", error="PlanDispatchFailedUnrecorded", cause="RecordFailure failed too"
        )
        record.add_catch(unrecorded, errors=["States.ALL"], result_path="$.recordError")
        failed = sfn.Fail(self, "Failed", error="PlanDispatchFailed", cause="a step failed after its retries")
        return record.next(failed)

    def _build_iteration(self) -> sfn.IChainable:
        finish = self._task("FinishTask", "plan_finish_task")
        ended_task = sfn.Succeed(self, "TaskEnded", comment="the task is COMPLETED, ERROR or SKIPPED")
        finish.next(ended_task)
        start = self._task("StartTask", "plan_start_task")
        start.add_catch(finish, errors=["States.ALL"], result_path="$.error")
        check = self._task("CheckTask", "plan_check_task")
        check.add_catch(finish, errors=["States.ALL"], result_path="$.error")
        wait = sfn.Wait(self, "WaitForLoop", time=sfn.WaitTime.seconds_path("$.wait_seconds"))
        ended = sfn.Choice(self, "Ended?").when(sfn.Condition.boolean_equals("$.ended", True), finish)
        ended.otherwise(wait)
        wait.next(check).next(ended)
        started = (
            sfn.Choice(self, "Started?")
            .when(sfn.Condition.boolean_equals("$.ended", True), ended_task)
            .otherwise(wait)
        )
        return start.next(started)

    def _build_definition(self) -> sfn.IChainable:
        failure = self._build_failure()
        begin = self._task("Begin", "plan_begin")
        begin.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        wave = sfn.Map(
            self,
            "Wave",
            items_path="$.ready",
            max_concurrency_path="$.concurrency",
            result_path=sfn.JsonPath.DISCARD,
            comment="the ready tasks, each as a loop (Begin/Next cap $.concurrency)",
        )
        wave.item_processor(self._build_iteration())
        wave.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        next_wave = self._task("Next", "plan_next")
        next_wave.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        done = sfn.Succeed(self, "Done", comment="every task ended: the plan waits for verify")
        more = (
            sfn.Choice(self, "More?").when(sfn.Condition.boolean_equals("$.more", True), wave).otherwise(done)
        )
        wave.next(next_wave).next(more)
        verify = self._task("Verify", "plan_verify", retried=VERIFY_RETRIED_ERRORS)
        verify.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        verify.next(sfn.Succeed(self, "Verified", comment="the plan is VERIFIED or FAILED with every check"))
        is_verify = sfn.Condition.and_(
            sfn.Condition.is_present("$.verify"), sfn.Condition.boolean_equals("$.verify", True)
        )
        return sfn.Choice(self, "Mode?").when(is_verify, verify).otherwise(begin.next(more))
