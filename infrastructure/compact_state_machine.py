"""The ``compact`` variant of the loop's state machine: one Lambda task per iteration.

CDK context ``loopwright:stateMachine`` (:data:`CTX_STATE_MACHINE`) picks the definition:
``steps`` (default, :class:`~infrastructure.state_machine.LoopStateMachine`: one Lambda per
step, as issue 3 describes) or ``compact`` (:class:`CompactLoopStateMachine`)::

    RunIteration (authorize -> iterate -> checkpoint -> evaluate -> verify -> decide, in one
                  invocation: functions/run_iteration, loopwright.cloud.steps_compact)
        -> RunIterationPending? -pending-> RunIterationWait -> RunIteration (it continues at the
                  step whose agent or checks run in the background: loopwright.cloud.deferral)
                                -otherwise-> Action?
                 (its first invocation in an execution whose input has ``baseline`` evaluates
                  the baseline first, in-process; no Baseline? Choice, no Baseline task)
    Action? and everything after it (continue-as-new, AwaitHuman, PAUSE, Done), Retry, Catch ->
    RecordFailure -> Failed: as in the steps variant, RunIteration standing where Authorize
    stands there.

Why: Standard workflows bill every state transition ($0.025 per 1,000, AWS Step Functions
pricing); the steps variant makes 8 transitions an iteration, this one 2, so the orchestration
of 1,000 iterations costs about $0.05 of transitions instead of $0.20 (``./dev cost``).

Trade-off: without background commands (``LOOPWRIGHT_BACKGROUND_COMMANDS=false``, or an
``agentcore_runtime`` agent, whose invocation is a call that lasts as long as the agent works), one
invocation runs the agent AND the exit conditions, and a Lambda invocation runs at
most 15 minutes ("Code can run for up to 15 minutes in a single invocation", AWS Lambda quotas,
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): the agent's and the
checks' timeouts must add up to less than that, where the steps variant gives each of them 15
minutes. A timed-out iteration fails the task (Sandbox.Timedout, not retried) and the loop ends
FAILED with its last checkpoint intact, resumable. Like Iterate and Evaluate, RunIteration is
retried on Lambda service errors only, never on its own failure (a second agent run is not free);
its Powertools Idempotency key (loop, generation, iteration, action) makes a retry of an
invocation that completed return the stored output instead of running the iteration again.
"""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn

from infrastructure.constants import (
    LAMBDA_SERVICE_ERRORS,
    RETRY_BACKOFF_RATE,
    RETRY_INTERVAL,
    RETRY_MAX_ATTEMPTS,
)
from infrastructure.state_machine import (
    IDEMPOTENT_TASKS,
    IN_PROGRESS_ERRORS,
    IN_PROGRESS_RETRY_BACKOFF_RATE,
    IN_PROGRESS_RETRY_INTERVAL,
    IN_PROGRESS_RETRY_MAX_ATTEMPTS,
    LoopStateMachine,
)

#: Context key choosing the state machine's definition (see the module docstring).
CTX_STATE_MACHINE = "loopwright:stateMachine"
STEPS = "steps"
COMPACT = "compact"
VARIANTS = (STEPS, COMPACT)
#: The compact variant's one Lambda (``functions/run_iteration/handler.py``).
RUN_ITERATION = "run_iteration"


def state_machine_variant(value: object) -> str:
    """The variant named by context value ``value`` (None: ``steps``). Raises ValueError naming
    :data:`CTX_STATE_MACHINE` and the allowed values."""
    variant = str(value or STEPS).strip().lower()
    if variant not in VARIANTS:
        raise ValueError(f"context {CTX_STATE_MACHINE}: {value!r} is not one of {', '.join(VARIANTS)}")
    return variant


class CompactLoopStateMachine(LoopStateMachine):
    """:class:`LoopStateMachine` whose iteration is the one ``RunIteration`` task; needs the
    :data:`RUN_ITERATION` function besides ``record_failure``, ``await_human`` and
    ``schedule_resume``."""

    @staticmethod
    def _retry(task: sfn.TaskStateBase, name: str) -> None:
        if name != RUN_ITERATION:
            LoopStateMachine._retry(task, name)
            return
        if name in IDEMPOTENT_TASKS:  # first: a retry started while the first attempt still runs
            task.add_retry(
                errors=IN_PROGRESS_ERRORS,
                interval=IN_PROGRESS_RETRY_INTERVAL,
                backoff_rate=IN_PROGRESS_RETRY_BACKOFF_RATE,
                max_attempts=IN_PROGRESS_RETRY_MAX_ATTEMPTS,
                jitter_strategy=sfn.JitterType.NONE,
            )
        task.add_retry(
            errors=LAMBDA_SERVICE_ERRORS,
            interval=RETRY_INTERVAL,
            backoff_rate=RETRY_BACKOFF_RATE,
            max_attempts=RETRY_MAX_ATTEMPTS,
            jitter_strategy=sfn.JitterType.FULL,
        )

    def _build_iteration(self, failure: sfn.IChainable) -> tuple[sfn.State, sfn.INextable | sfn.Choice]:
        run = self._step("RunIteration", RUN_ITERATION, failure)
        return run, self._polled(run, "RunIteration")

    def _build_start(self, first: sfn.State, action: sfn.State, failure: sfn.IChainable) -> sfn.State:
        """RunIteration itself: it evaluates the baseline in-process when its input asks for it."""
        return first
