"""The compact state machine's one step: a whole iteration in one Lambda invocation.

The ``compact`` variant of the state machine (``infrastructure/compact_state_machine.py``, CDK
context ``loopwright:stateMachine=compact``) runs one task per iteration instead of six:
:func:`run_iteration_step` calls the same step functions as the ``steps`` variant's Lambdas
(:mod:`loopwright.cloud.steps`), in the order the ``steps`` definition chains them::

    (baseline: the execution's first invocation, when its input asks for it)
    authorize -> (allowed) iterate -> checkpoint -> evaluate -> verify -> decide
              -> (settle_pins: an iteration held for changing pinned files) evaluate -> verify -> decide
              -> (denied)  decide

A baseline that does not CONTINUE (the repository already meets its conditions, a condition
could not be evaluated, a human's stop or pause) is the invocation's result, as the Baseline
task's is in the ``steps`` variant; after a CONTINUE the iteration runs in the same invocation.
Each step still loads the loop's state, applies its transition and saves the state with its
events in one write, so a loop records the same events in the same order with either variant,
and the task's result is the decide step's :class:`~loopwright.models.StepOutput`, which the
``Action?`` Choice branches on as in the ``steps`` variant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from loopwright.cloud.deferral import PendingStep, StepFunction, run_deferred
from loopwright.cloud.steps import (
    CloudPorts,
    authorize_step,
    baseline_step,
    checkpoint_step,
    decide_step,
    evaluate_step,
    iterate_step,
    verify_step,
)
from loopwright.models import NextAction, StepInput, StepOutput

#: The steps an allowed iteration runs between authorize and decide, in order, each with the
#: name it is pending under when its commands run in the background (None: it runs none).
ITERATION_STEPS: tuple[tuple[StepFunction, PendingStep | None], ...] = (
    (iterate_step, "iterate"),
    (checkpoint_step, None),
    (evaluate_step, "evaluate"),
    (verify_step, None),
)


def next_input(output: StepOutput) -> StepInput:
    """The input of the step after the one that returned ``output``: what Step Functions hands on
    when a task's result replaces the state (``StepInput`` ignores the Choice fields)."""
    return StepInput.model_validate(output.model_dump())


def run_iteration_step(
    event: StepInput,
    ports: CloudPorts,
    *,
    work_ports: Callable[[CloudPorts], CloudPorts] | None = None,
) -> StepOutput:
    """One iteration: the baseline first when ``event.baseline`` (its output when it does not
    CONTINUE), authorize, then iterate, checkpoint, evaluate and verify when Cedar allowed it
    (only evaluate and verify when authorize found an iteration held for changing pinned files,
    ``settle_pins``), then decide; the decide step's output.

    With background commands (``work_ports`` giving a
    :class:`~loopwright.deferred.DeferringSandbox`), the baseline, iterate and evaluate steps may
    return pending (:func:`loopwright.cloud.deferral.run_deferred`): that output is the
    invocation's, and the next invocation (``event.pending_step``) starts at that step, the
    steps before it having saved their work.

    ``ports`` serve authorize and decide; ``work_ports(ports)`` (default: ``ports`` as they are)
    adds the loop's agent, workspace and sandbox for the baseline and the four work steps, and is
    called only when one of them runs. Raises what the steps raise (the task's Catch records it).
    """

    @functools.cache
    def worker() -> CloudPorts:  # built once, for the baseline and the iteration alike
        return work_ports(ports) if work_ports is not None else ports

    def work(step: StepFunction, name: PendingStep | None, given: StepInput) -> StepOutput:
        return run_deferred(step, given, worker(), name) if name else step(given, worker())

    resume = event.pending_step
    if resume in (None, "baseline") and event.baseline:
        baseline = work(baseline_step, "baseline", event)
        if baseline.pending or baseline.action is not NextAction.CONTINUE:
            return baseline
        event = next_input(baseline)
    if resume in ("iterate", "evaluate"):
        output = StepOutput.model_validate(event.model_dump())
        start = 0 if resume == "iterate" else 2
    else:
        output = authorize_step(event, ports)
        if output.settle_pins:  # the held iteration is evaluated, no new one runs
            start = 2
        elif not output.allowed:
            return decide_step(next_input(output), ports)
        else:
            start = 0
    for step, name in ITERATION_STEPS[start:]:
        output = work(step, name, next_input(output) if output is not event else event)
        if output.pending:
            return output
    return decide_step(next_input(output), ports)
