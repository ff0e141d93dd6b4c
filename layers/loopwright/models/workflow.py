"""What the Step Functions state machine passes between its states (issue 3).

Every Lambda of the loop receives a :class:`StepInput` and returns a :class:`StepOutput`; the
loop's state itself lives in the store (DynamoDB), so the execution's payload stays small and
well under the Step Functions payload quota (256 KiB).

State machine (``infrastructure/``)::

    [baseline?] -yes-> Baseline (the exit conditions before the agent runs; CONTINUE -> Authorize,
        | no                     otherwise as after Decide)
        v
    Authorize -> [allowed?] -> Iterate -> Checkpoint -> Evaluate -> Verify -> Decide
        ^            | settle_pins (a held iteration) --^                      |
        |            | no                                                      |
        |            '-> Decide (the denial)                                   |
        '---- CONTINUE (or, every ``iterations_per_execution``, a new execution) <-'
    Decide: COMPLETE / STOP -> Succeed; AWAIT_HUMAN -> wait for a task token -> Authorize
    Any task's error (after retries) -> RecordFailure -> Fail
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from loopwright.models.enums import LoopOutcome, NextAction
from loopwright.models.types import LoopId

#: Iterations one execution runs before it hands over to a new execution of the same state
#: machine. One iteration costs about 40 history events (7 tasks and 3 choices, about 4 events
#: each); the quota is 25,000 events per execution (AWS Step Functions quotas), so 500 iterations
#: (about 20,000 events) leave room for retries.
DEFAULT_ITERATIONS_PER_EXECUTION = 500


class DeferredCommand(BaseModel):
    """A command a step started in the background and polls on its next invocations
    (:mod:`loopwright.deferred`)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1, description="the background sandbox's task id")
    command: list[str] = Field(default_factory=list, description="the program (argv[0]), for people")
    started_at: datetime
    timeout_seconds: float = Field(gt=0, description="the command's time limit, from started_at")


class StepInput(BaseModel):
    """The payload every loop Lambda receives."""

    model_config = ConfigDict(extra="ignore")

    loop_id: LoopId
    iteration: int = Field(default=0, ge=0, description="iterations completed when the step started")
    generation: int = Field(default=0, ge=0, description="execution number of this loop (continue-as-new)")
    iterations_per_execution: int = Field(default=DEFAULT_ITERATIONS_PER_EXECUTION, ge=1)
    first_iteration: int = Field(
        default=0,
        ge=0,
        description="iterations completed when this execution started: it hands over after "
        "iterations_per_execution more (a resumed loop starts a new execution mid-way)",
    )
    task_token: str | None = Field(default=None, description="set by the await-human state")
    baseline: bool = Field(
        default=False,
        description="evaluate the exit conditions before this execution's first Authorize "
        "(loopwright.workflow.baseline_due): set in an execution's input by whoever starts it, never "
        "by a handover, and never carried to a step's output",
    )
    commands: dict[str, DeferredCommand] = Field(
        default_factory=dict,
        description="the commands this step started in the background, by key (a pending step's "
        "output, given back to the same step after the Wait: loopwright.deferred)",
    )
    polls: int = Field(default=0, ge=0, description="pending invocations of this step so far")
    deferral_token: str | None = Field(
        default=None, max_length=64, description="names the pending step's run across its invocations"
    )
    pending_step: Literal["baseline", "iterate", "evaluate"] | None = Field(
        default=None,
        description="the step whose commands still run (the compact variant's next invocation starts there)",
    )
    settle_pins: bool = Field(
        default=False,
        description="set by Authorize when the loop holds an iteration that changed pinned files "
        "(LoopState.pinned_hold; a human answered, or not: a resumed loop's hold counts as refused): "
        "the Evaluate step applies the answer "
        "(loopwright.pinning.settle_hold) and evaluates that iteration instead of a new one being "
        "authorized; carried to Verify and Decide (part of their idempotency key), cleared by the "
        "next Authorize",
    )


class StepOutput(StepInput):
    """The payload every loop Lambda returns: the input plus what the Choice states branch on."""

    allowed: bool = True
    action: NextAction | None = None
    outcome: LoopOutcome | None = None
    reason: str = ""
    handover: bool = Field(default=False, description="CONTINUE in a new execution (continue-as-new)")
    resume_at: datetime | None = Field(default=None, description="PAUSE: when the loop continues by itself")
    pending: bool = Field(
        default=False, description="the step's commands still run: wait wait_seconds, then invoke it again"
    )
    wait_seconds: int = Field(default=0, ge=0, description="seconds to wait before the next poll")


class StartLoopRequest(BaseModel):
    """Body of ``POST /loops`` and the detail of the EventBridge events that start a loop."""

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId | None = None
    config: dict[str, object] = Field(description="a LoopConfig as JSON")
    repository: str | None = Field(default=None, description="where the workspace comes from")
