"""The loop's Standard state machine (shape and payloads: ``loopwright.models.workflow``)::

    Baseline? -$.baseline true-> Baseline (the Evaluate Lambda: exit conditions before the agent
              |                  runs, loopwright.cloud.steps.baseline_step) -> Action?
              '-otherwise-> Authorize
    Authorize -> Allowed? -yes-> Iterate -> Checkpoint -> Evaluate -> Verify -> Decide -> Action?
                     |-$.settle_pins true-----------------^
                     '-no-> Decide                                                          |
    Action? CONTINUE with handover -> StartNextExecution (same machine, name
                                      "<loop_id>-g<generation>", fire and forget) -> HandedOver
            CONTINUE -> Authorize (after Baseline too: its output never has a handover)
            AWAIT_HUMAN -> AwaitHuman (task token, up to AWAIT_HUMAN_TIMEOUT) -> Authorize
            PAUSE -> ResumeAt? -a time-> ScheduleResume (a one-time schedule that resumes the
                                         loop through start_loop, loopwright.cloud.schedule) -> Paused
                               -none (a human's pause)-> Paused
            otherwise (COMPLETE, STOP) -> Done
    Pinned checks (loopwright.pinning): Iterate reverts an iteration that changed pinned files
    Cedar does not allow (LoopState.pinned_hold), Checkpoint skips it, Evaluate returns the hold's
    AWAIT_HUMAN instead of evaluating it (Verify and Decide pass it on); once a human answered,
    Authorize returns ``settle_pins`` and Allowed? goes to Evaluate, which applies the answer
    (an accepted change moves the branch back to the kept commit) and evaluates that iteration.
    Iterate, Evaluate and Baseline are each followed by <Name>Pending?: while the task's output is
    ``pending`` (the agent or the checks run as background tasks of the Code Interpreter session,
    loopwright.cloud.deferral), <Name>Wait waits its ``wait_seconds`` and the task runs again with
    that output (it polls the tasks, and completes once they ended); no Lambda waits for them.
    every task: Retry (2 s, backoff 2, full jitter, 3 attempts) and Catch -> RecordFailure -> Failed;
    the idempotent steps first retry IdempotencyAlreadyInProgressError (see IN_PROGRESS_RETRY_*)

Whoever starts an execution (``loopwright.cloud.start``, ``resume``, ``schedule``, the plan
steps, the local runner) sets ``baseline`` in its input when ``loopwright.workflow.baseline_due``;
a handover's input never has it, and no step's output carries it, so Baseline runs at most once
an execution, before its first Authorize.

Every Lambda task passes the whole state as its payload and its result replaces the state
(``payload_response_only``), except AwaitHuman (a callback: its input goes on unchanged) and the
Catch, which keeps the error under ``$.error`` for RecordFailure.

The decide step already returns ``generation + 1`` when it hands over, so the next execution's
name is ``States.Format('{}-g{}', $.loop_id, $.generation)``, the name
``loopwright.cloud.start.execution_name`` gives generation 0: a retried StartExecution with the
same name and input is idempotent (Step Functions returns the running execution).

The state machine starts executions of itself, so its name is fixed from the stack name
(``<stack>-loop``): its ARN is then known without referring to the resource (no cycle) and the
role's ``states:StartExecution`` names that one ARN.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infrastructure.constants import (
    AWAIT_HUMAN_TIMEOUT,
    LAMBDA_SERVICE_ERRORS,
    LOG_RETENTION,
    RETRY_BACKOFF_RATE,
    RETRY_INTERVAL,
    RETRY_MAX_ATTEMPTS,
    STATE_MACHINE_NAME_SUFFIX,
)
from infrastructure.functions import NEEDS
from loopwright.cloud.idempotency import IN_PROGRESS_ERROR

#: Retried besides the Lambda service errors: a handler's own failure (a throttled or conflicting
#: store write) on the short, idempotent steps. Not on iterate and evaluate (15 min each, and a
#: second agent run is not free); their failures go straight to RecordFailure.
#: Not on await_human either: there a task failure is an operator's SendTaskFailure, an answer.
RETRIED_TASK_FAILURES = ["States.TaskFailed"]
_NOT_RETRIED_ON_TASK_FAILURE = frozenset({"iterate", "evaluate", "await_human"})
#: Errors of the StartExecution service integration retried (throttling, service errors).
START_EXECUTION_ERRORS = ["StepFunctions.AWSStepFunctionsException", "StepFunctions.SdkClientException"]
#: The tasks whose handlers are ``@idempotent_step`` (loopwright.cloud.idempotency).
IDEMPOTENT_TASKS = frozenset(name for name, needs in NEEDS.items() if "idempotency" in needs)
#: Retry of a task whose key another invocation holds in progress (a retry Step Functions started
#: while the first attempt still runs): wait until that attempt has ended. 30, 60, 120, 240, 480 s
#: add up to 930 s, longer than any function's timeout (at most Lambda's 900 s), after which its
#: in-progress record has expired; no jitter, so the waits always add up to that.
IN_PROGRESS_ERRORS = [IN_PROGRESS_ERROR]
IN_PROGRESS_RETRY_INTERVAL = Duration.seconds(30)
IN_PROGRESS_RETRY_BACKOFF_RATE = 2.0
IN_PROGRESS_RETRY_MAX_ATTEMPTS = 5
#: The fields of StepInput carried to the next execution.
_CARRIED = ("loop_id", "iteration", "generation", "iterations_per_execution", "first_iteration")


def _carried_payload() -> dict[str, object]:
    """The StepInput fields of the state, as a task's payload (loop_id text, the rest numbers)."""
    payload: dict[str, object] = {_CARRIED[0]: sfn.JsonPath.string_at(f"$.{_CARRIED[0]}")}
    payload |= {name: sfn.JsonPath.number_at(f"$.{name}") for name in _CARRIED[1:]}
    return payload


def state_machine_name(stack_name: str) -> str:
    """``<stack name>-loop``."""
    return f"{stack_name}-{STATE_MACHINE_NAME_SUFFIX}"


class LoopStateMachine(Construct):
    """:attr:`state_machine` and its :attr:`log_group`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: dict[str, lambda_.IFunction],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._functions = functions
        self.name = state_machine_name(Stack.of(self).stack_name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{self.name}",
            retention=LOG_RETENTION,
            removal_policy=removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(self._build_definition()),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
            comment="loopwright: one loop, iteration after iteration (see loopwright.models.workflow)",
        )

    # ----------------------------------------------------------------------------- states
    @staticmethod
    def _retry(task: sfn.TaskStateBase, name: str) -> None:
        if name in IDEMPOTENT_TASKS:  # first: States.TaskFailed below would match it too
            task.add_retry(
                errors=IN_PROGRESS_ERRORS,
                interval=IN_PROGRESS_RETRY_INTERVAL,
                backoff_rate=IN_PROGRESS_RETRY_BACKOFF_RATE,
                max_attempts=IN_PROGRESS_RETRY_MAX_ATTEMPTS,
                jitter_strategy=sfn.JitterType.NONE,
            )
        if name == "start_next_execution":
            errors = START_EXECUTION_ERRORS
        elif name in _NOT_RETRIED_ON_TASK_FAILURE:
            errors = LAMBDA_SERVICE_ERRORS
        else:
            errors = LAMBDA_SERVICE_ERRORS + RETRIED_TASK_FAILURES
        task.add_retry(
            errors=errors,
            interval=RETRY_INTERVAL,
            backoff_rate=RETRY_BACKOFF_RATE,
            max_attempts=RETRY_MAX_ATTEMPTS,
            jitter_strategy=sfn.JitterType.FULL,
        )

    def _step(self, state_name: str, name: str, on_error: sfn.IChainable) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            state_name,
            lambda_function=self._functions[name],
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        self._retry(task, name)
        task.add_catch(on_error, errors=["States.ALL"], result_path="$.error")
        return task

    def _build_failure(self) -> sfn.IChainable:
        failed = sfn.Fail(self, "Failed", error="LoopFailed", cause="a step failed after its retries")
        unrecorded = sfn.Fail(
            self, "FailureNotRecorded", error="LoopFailedUnrecorded", cause="RecordFailure failed too"
        )
        record = tasks.LambdaInvoke(
            self,
            "RecordFailure",
            lambda_function=self._functions["record_failure"],
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        self._retry(record, "record_failure")
        record.add_catch(unrecorded, errors=["States.ALL"], result_path="$.recordError")
        return record.next(failed)

    def _build_await_human(self, on_error: sfn.IChainable) -> tasks.LambdaInvoke:
        payload = _carried_payload()
        task = tasks.LambdaInvoke(
            self,
            "AwaitHuman",
            lambda_function=self._functions["await_human"],
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object({**payload, "task_token": sfn.JsonPath.task_token}),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(AWAIT_HUMAN_TIMEOUT),
            retry_on_service_exceptions=False,
        )
        self._retry(task, "await_human")
        task.add_catch(on_error, errors=["States.ALL"], result_path="$.error")
        return task

    def _build_handover(self, on_error: sfn.IChainable) -> sfn.IChainable:
        stack = Stack.of(self)
        itself = sfn.StateMachine.from_state_machine_name(self, "Itself", self.name)
        payload = _carried_payload()
        start = tasks.StepFunctionsStartExecution(
            self,
            "StartNextExecution",
            state_machine=itself,
            name=sfn.JsonPath.format(
                "{}-g{}", sfn.JsonPath.string_at("$.loop_id"), sfn.JsonPath.string_at("$.generation")
            ),
            input=sfn.TaskInput.from_object(payload),
            associate_with_parent=True,
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            result_path=sfn.JsonPath.DISCARD,
            comment=f"continue-as-new in {stack.stack_name}'s {self.name}",
        )
        self._retry(start, "start_next_execution")
        start.add_catch(on_error, errors=["States.ALL"], result_path="$.error")
        return start.next(sfn.Succeed(self, "HandedOver", comment="the next execution continues the loop"))

    def _polled(self, task: tasks.LambdaInvoke, state_name: str) -> sfn.Choice:
        """``task`` followed by ``<state_name>Pending?``: while the task's output is ``pending``
        (its agent or checks still run in the background, loopwright.cloud.deferral), wait its
        ``wait_seconds`` (``<state_name>Wait``) and run the task again with that output; the
        Choice's ``otherwise`` (set by the caller) is what follows once it completes."""
        wait = sfn.Wait(
            self,
            f"{state_name}Wait",
            time=sfn.WaitTime.seconds_path("$.wait_seconds"),
            comment="the agent or the checks run in the background; nothing is paid while waiting",
        )
        pending = sfn.Choice(self, f"{state_name}Pending?").when(
            sfn.Condition.and_(
                sfn.Condition.is_present("$.pending"), sfn.Condition.boolean_equals("$.pending", True)
            ),
            wait.next(task),
        )
        task.next(pending)
        return pending

    def _build_iteration(self, failure: sfn.IChainable) -> tuple[sfn.State, sfn.INextable | sfn.Choice]:
        """One iteration's states: (the first, the one whose output ``Action?`` branches on)."""
        authorize = self._step("Authorize", "authorize", failure)
        iterate = self._step("Iterate", "iterate", failure)
        checkpoint = self._step("Checkpoint", "checkpoint", failure)
        evaluate = self._step("Evaluate", "evaluate", failure)
        verify = self._step("Verify", "verify", failure)
        decide = self._step("Decide", "decide", failure)
        self._polled(iterate, "Iterate").otherwise(checkpoint)
        checkpoint.next(evaluate)
        self._polled(evaluate, "Evaluate").otherwise(verify)
        verify.next(decide)
        allowed = (
            sfn.Choice(self, "Allowed?")
            .when(sfn.Condition.boolean_equals("$.allowed", True), iterate)
            .when(  # an iteration held for changing pinned files, answered: evaluate it
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.settle_pins"),
                    sfn.Condition.boolean_equals("$.settle_pins", True),
                ),
                evaluate,
            )
            .otherwise(decide)
        )
        authorize.next(allowed)
        return authorize, decide

    def _build_start(self, first: sfn.State, action: sfn.State, failure: sfn.IChainable) -> sfn.State:
        """The definition's first state: ``Baseline?``, which runs the ``Baseline`` task (the
        Evaluate Lambda, told by the input's ``baseline``) when the execution's input asks for it,
        else goes to ``first``; the task's output branches on ``action`` as Decide's does."""
        baseline = self._step("Baseline", "evaluate", failure)
        self._polled(baseline, "Baseline").otherwise(action)
        return (
            sfn.Choice(self, "Baseline?", comment="the exit conditions once before the agent runs")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.baseline"), sfn.Condition.boolean_equals("$.baseline", True)
                ),
                baseline,
            )
            .otherwise(first)
        )

    def _build_definition(self) -> sfn.IChainable:
        failure = self._build_failure()
        first, last = self._build_iteration(failure)  # Authorize ... Decide
        done = sfn.Succeed(self, "Done", comment="COMPLETE or STOP: the loop's outcome is stored")
        paused = sfn.Succeed(self, "Paused", comment="PAUSE: the loop is PAUSED, resumed later")
        resume_at = (
            sfn.Choice(self, "ResumeAt?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.resume_at"), sfn.Condition.is_string("$.resume_at")
                ),
                self._step("ScheduleResume", "schedule_resume", failure).next(paused),
            )
            .otherwise(paused)
        )

        action = (
            sfn.Choice(self, "Action?")
            .when(  # continue-as-new, folded into this Choice: one state transition fewer an iteration
                sfn.Condition.and_(
                    sfn.Condition.string_equals("$.action", "CONTINUE"),
                    sfn.Condition.boolean_equals("$.handover", True),
                ),
                self._build_handover(failure),
            )
            .when(sfn.Condition.string_equals("$.action", "CONTINUE"), first)
            .when(
                sfn.Condition.string_equals("$.action", "AWAIT_HUMAN"),
                self._build_await_human(failure).next(first),
            )
            .when(sfn.Condition.string_equals("$.action", "PAUSE"), resume_at)
            .otherwise(done)
        )
        if isinstance(last, sfn.Choice):
            last.otherwise(action)
        else:
            last.next(action)
        return self._build_start(first, action, failure)
