"""What starts and continues loops without a caller of the API.

- An EventBridge Scheduler schedule group (:attr:`Continuation.schedule_group`) and a role
  (:attr:`Continuation.scheduler_role`) that Scheduler assumes to invoke the ``start_loop``
  function (``lambda:InvokeFunction`` on it, ``sqs:SendMessage`` on :attr:`resume_dead_letters`).
  A scheduled continuation is a schedule in that group whose target is ``start_loop`` with a
  ``{"scheduled_resume": ...}`` input (:mod:`loopwright.cloud.schedule`): ``start_loop`` records
  the resumed session before it starts the next execution, and does nothing when a human resumed
  or stopped the loop meanwhile; a schedule targeting the state machine could do neither.
  Schedules are created at run time (one per pause until a usage limit resets) by the
  ``schedule_resume`` function, so the stack holds no schedule; that function's role gets
  ``scheduler:CreateSchedule`` on the group's schedules and ``iam:PassRole`` on the scheduler role
  only (for ``scheduler.amazonaws.com``), and its environment names the group, role, target and
  dead-letter queue. Undeliverable resumes go to :attr:`resume_dead_letters` (encrypted).
- Continuation modes (issue 12.8, :mod:`loopwright.cloud.continuation`): ``start_loop`` creates
  the recurring schedule of a loop whose config has ``schedule`` (``rate(...)``/``cron(...)``) in
  the same group, run as the same role, targeting itself with a ``{"continue_loop": ...}`` input,
  and deletes it when a firing finds the loop ended for good. Its role gets
  ``scheduler:CreateSchedule`` and ``scheduler:DeleteSchedule`` on the group's schedules and the
  same conditional ``iam:PassRole``; its environment names the same group, role, target and
  dead-letter queue as ``schedule_resume``'s (one method grants both, :meth:`_allow_scheduling`).
- An EventBridge rule on the default bus, source ``loopwright.continue``, detail-type
  ``continue`` (:data:`~infrastructure.constants.CONTINUE_EVENT_SOURCE`): detail ``{"loop_id",
  "reason"}`` continues a paused or limit-ended loop through ``start_loop`` (Cedar decides, as
  ``Service::"events"``); the same retries as the git push rule, its own dead-letter queue
  (:attr:`continue_dead_letters`).
- An EventBridge rule on the default bus, source ``loopwright.git``, detail-type ``push``: a git
  host (or a CodeCommit/CodePipeline forwarder) puts a ``StartLoopRequest`` as the event's detail,
  and the ``start_loop`` function starts the loop, or continues it when it exists (up to 2
  retries within 1 hour; undelivered events go to an encrypted dead-letter queue).
- An on-failure destination for ``start_loop``'s asynchronous invocations
  (:attr:`Continuation.start_failures`, ``AWS::Lambda::EventInvokeConfig`` through
  ``configure_async_invoke``): the dead-letter queues above catch only events that could not be
  delivered; once Lambda has accepted an event (a git push, a resume schedule) and the function
  fails, Lambda retries it twice and then discards it unless the function has an on-failure
  destination or a dead-letter queue ("How Lambda handles errors and retries with asynchronous
  invocation", Lambda Developer Guide). ``start_loop`` is the stack's only asynchronously invoked
  function: the state machines invoke their functions synchronously (``LambdaInvoke``'s default
  RequestResponse) and API Gateway invokes the API's synchronously. The record Lambda sends holds
  the original event under ``requestPayload`` (README, "On AWS": replaying a failed start).

Every queue here (:attr:`Continuation.queues`) is a standard queue (on-failure destinations
cannot be FIFO queues), SQS-managed encryption, TLS enforced, 14 days' retention (SQS's maximum),
and has a depth alarm (:mod:`infrastructure.monitoring`).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infrastructure.constants import (
    CONTINUE_EVENT_DETAIL_TYPE,
    CONTINUE_EVENT_SOURCE,
    GIT_EVENT_DETAIL_TYPE,
    GIT_EVENT_SOURCE,
)
from infrastructure.functions import function_arn

#: Lambda's retries of a failed asynchronous invocation (its default and maximum, 2) and how long
#: an event may wait in Lambda's asynchronous queue (its maximum, 6 hours: a throttled start retries
#: for that long before it goes to the on-failure queue).
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = Duration.hours(6)
#: What each function may do with the group's schedules: schedule_resume creates one-time ones
#: (deleted by Scheduler once fired); start_loop creates and deletes loops' recurring ones.
SCHEDULE_ACTIONS = {
    "schedule_resume": ("scheduler:CreateSchedule",),
    "start_loop": ("scheduler:CreateSchedule", "scheduler:DeleteSchedule"),
}
#: The rules' target retries: up to 2 within 1 hour, then the rule's dead-letter queue.
RULE_RETRY_ATTEMPTS = 2
RULE_MAX_EVENT_AGE = Duration.hours(1)


class Continuation(Construct):
    """:attr:`schedule_group`, :attr:`scheduler_role`, :attr:`resume_dead_letters`,
    :attr:`git_push_rule`, :attr:`dead_letters`, :attr:`continue_rule`,
    :attr:`continue_dead_letters`, :attr:`start_failures` (start_loop's on-failure destination)
    and :attr:`queues` (all four, by name); ``schedule_resume`` and ``start_loop`` get their
    scheduler permissions and environment (module docstring).

    Resumes go through ``start_loop`` (it records LOOP_RESUMED and starts the execution);
    ``schedule_resume`` is the function that creates one-time schedules.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        start_loop: lambda_.Function,
        schedule_resume: lambda_.Function,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedule_group = scheduler.ScheduleGroup(self, "Schedules", removal_policy=removal_policy)
        self.resume_dead_letters = self._queue("ResumeDeadLetters")
        self.scheduler_role = self._build_scheduler_role(start_loop)
        self._allow_scheduling(schedule_resume, SCHEDULE_ACTIONS["schedule_resume"])
        self._allow_scheduling(start_loop, SCHEDULE_ACTIONS["start_loop"])
        self.dead_letters = self._queue("GitPushDeadLetters")
        self.git_push_rule = self._rule(
            "GitPush",
            "a git push asks for a loop (detail = StartLoopRequest): started, or continued if it exists",
            events.EventPattern(source=[GIT_EVENT_SOURCE], detail_type=[GIT_EVENT_DETAIL_TYPE]),
            start_loop,
            self.dead_letters,
        )
        self.continue_dead_letters = self._queue("ContinueDeadLetters")
        self.continue_rule = self._rule(
            "Continue",
            "continue a paused or limit-ended loop: detail = {loop_id, reason}",
            events.EventPattern(source=[CONTINUE_EVENT_SOURCE], detail_type=[CONTINUE_EVENT_DETAIL_TYPE]),
            start_loop,
            self.continue_dead_letters,
        )
        self.start_failures = self._queue("StartLoopFailures")
        start_loop.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.start_failures),  # grants start_loop SendMessage
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
        )
        #: Queue name -> queue: what was not delivered (dead letters) or failed (on-failure).
        self.queues: dict[str, sqs.Queue] = {
            "GitPushDeadLetters": self.dead_letters,
            "ContinueDeadLetters": self.continue_dead_letters,
            "ResumeDeadLetters": self.resume_dead_letters,
            "StartLoopFailures": self.start_failures,
        }

    def _build_scheduler_role(self, start_loop: lambda_.IFunction) -> iam.Role:
        account = Stack.of(self).account
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            description="EventBridge Scheduler: invoke start_loop to resume or continue a loop",
        )
        # The function itself, not '<arn>:*' (grant_invoke's versions and aliases): none are used.
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[start_loop.function_arn])
        )
        self.resume_dead_letters.grant_send_messages(role)
        return role

    def _allow_scheduling(self, function: lambda_.Function, actions: tuple[str, ...]) -> None:
        """``function`` may do ``actions`` on the group's schedules, which Scheduler runs as the
        scheduler role (PassRole to Scheduler only); its environment names them."""
        schedules = Stack.of(self).format_arn(
            service="scheduler",
            resource="schedule",
            resource_name=f"{self.schedule_group.schedule_group_name}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        function.add_to_role_policy(iam.PolicyStatement(actions=list(actions), resources=[schedules]))
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.scheduler_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            )
        )
        environment = {
            "SCHEDULE_GROUP_NAME": self.schedule_group.schedule_group_name,
            "SCHEDULER_ROLE_ARN": self.scheduler_role.role_arn,
            "RESUME_FUNCTION_ARN": function_arn(self, "start_loop"),  # by name: no cycle
            "RESUME_DEAD_LETTER_ARN": self.resume_dead_letters.queue_arn,
        }
        for name, value in environment.items():
            function.add_environment(name, value)

    def _queue(self, construct_id: str) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )

    def _rule(
        self,
        construct_id: str,
        description: str,
        pattern: events.EventPattern,
        start_loop: lambda_.IFunction,
        dead_letters: sqs.IQueue,
    ) -> events.Rule:
        return events.Rule(
            self,
            construct_id,
            description=description,
            event_pattern=pattern,
            targets=[
                targets.LambdaFunction(
                    start_loop,
                    dead_letter_queue=dead_letters,
                    retry_attempts=RULE_RETRY_ATTEMPTS,
                    max_event_age=RULE_MAX_EVENT_AGE,
                )
            ],
        )
