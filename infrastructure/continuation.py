"""What starts and continues loops without a caller of the API.

- An EventBridge Scheduler schedule group (:attr:`Continuation.schedule_group`) and a role
  (:attr:`Continuation.scheduler_role`) that Scheduler assumes to start executions of the loop's
  state machine: a scheduled continuation is a schedule in that group whose target is the state
  machine (``states:StartExecution``) with a ``StepInput`` as input. Schedules are created at run
  time (one per loop that asks to resume later), so the stack holds no schedule; the caller
  creating them needs ``scheduler:CreateSchedule`` on the group and ``iam:PassRole`` on the role.
- An EventBridge rule on the default bus, source ``loopwright.git``, detail-type ``push``: a git
  host (or a CodeCommit/CodePipeline forwarder) puts a ``StartLoopRequest`` as the event's detail,
  and the ``start_loop`` function starts the loop (up to 2 retries within 1 hour; undelivered
  events go to an encrypted dead-letter queue).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infrastructure.constants import GIT_EVENT_DETAIL_TYPE, GIT_EVENT_SOURCE


class Continuation(Construct):
    """:attr:`schedule_group`, :attr:`scheduler_role`, :attr:`git_push_rule`, :attr:`dead_letters`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.IStateMachine,
        start_loop: lambda_.IFunction,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedule_group = scheduler.ScheduleGroup(self, "Schedules", removal_policy=removal_policy)
        self.scheduler_role = self._build_scheduler_role(state_machine)
        self.dead_letters = self._build_dead_letters()
        self.git_push_rule = self._build_git_push_rule(start_loop)

    def _build_scheduler_role(self, state_machine: sfn.IStateMachine) -> iam.Role:
        account = Stack.of(self).account
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            description="EventBridge Scheduler: start the next execution of a loop",
        )
        state_machine.grant_start_execution(role)
        return role

    def _build_dead_letters(self) -> sqs.Queue:
        return sqs.Queue(
            self,
            "GitPushDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )

    def _build_git_push_rule(self, start_loop: lambda_.IFunction) -> events.Rule:
        return events.Rule(
            self,
            "GitPush",
            description="a git push asks for a loop: detail = StartLoopRequest",
            event_pattern=events.EventPattern(source=[GIT_EVENT_SOURCE], detail_type=[GIT_EVENT_DETAIL_TYPE]),
            targets=[
                targets.LambdaFunction(
                    start_loop,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=2,
                    max_event_age=Duration.hours(1),
                )
            ],
        )
