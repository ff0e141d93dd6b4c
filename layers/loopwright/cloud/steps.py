"""The steps of the Step Functions state machine, one function per state.

Each function loads the loop's state from the store, applies one transition of
:mod:`loopwright.workflow`, saves the state with the events it recorded in one write, and
returns the :class:`~loopwright.models.StepOutput` the next Choice state branches on. The Lambda
handlers in ``functions/`` are one call to these; the functions take their ports as arguments,
so they are tested without AWS (``tests/unit/test_cloud_steps.py``) and run unchanged against the
local adapters when the synthesized state machine is executed locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopwright import workflow
from loopwright.models import (
    Decision,
    IterationEvent,
    IterationEventType,
    LoopOutcome,
    LoopPhase,
    LoopState,
    NextAction,
    StepInput,
    StepOutput,
)
from loopwright.ports import Agent, CheckpointStore, LoopStore, PolicyEngine, Sandbox, Workspace
from loopwright.steps.decide import decide
from loopwright.steps.verify import verify


@dataclass
class CloudPorts:
    """The ports one Lambda needs (each handler builds only what it uses)."""

    store: LoopStore
    checkpoints: CheckpointStore | None = None
    policy: PolicyEngine | None = None
    sandbox: Sandbox | None = None
    agent: Agent | None = None
    workspace: Workspace | None = None
    state_dir: Path = Path("/tmp/loopwright")


@dataclass
class EventCollector:
    """A :class:`~loopwright.workflow.Recorder` that keeps the events for the state write."""

    state: LoopState
    events: list[IterationEvent] = field(default_factory=list)

    def __call__(
        self, event_type: IterationEventType, message: str = "", *, iteration: int | None = None, **data: Any
    ) -> IterationEvent:
        event = IterationEvent(
            loop_id=self.state.loop_id,
            iteration=self.state.iteration if iteration is None else iteration,
            type=event_type,
            phase=self.state.phase,
            message=message,
            data={k: v for k, v in data.items() if v is not None},
        )
        self.events.append(event)
        return event


class _Step:
    """Load, change, save: the frame of every step function."""

    def __init__(self, event: StepInput, ports: CloudPorts) -> None:
        self.event = event
        self.ports = ports
        self.state = ports.store.get_state(event.loop_id)
        self.record = EventCollector(self.state)

    def save(self, **fields: Any) -> StepOutput:
        self.state = self.ports.store.save_state(self.state, self.record.events)
        self.record.events = []
        carried = {name: getattr(self.event, name) for name in StepInput.model_fields}
        return StepOutput.model_validate({**carried, "iteration": self.state.iteration, **fields})

    def end(self, decision: Decision) -> StepOutput:
        if decision.action is not NextAction.AWAIT_HUMAN and self.ports.checkpoints is not None:
            workflow.checkpoint_if_due(self.state, self.ports.checkpoints, self.record, final=True)
        workflow.finish(self.state, decision, self.record)
        return self.save(
            allowed=False, action=decision.action, outcome=decision.outcome, reason=decision.reason
        )


def _require(value: Any, name: str) -> Any:
    if value is None:
        raise ValueError(f"this step needs the {name} port")
    return value


def start_step(event: StepInput, ports: CloudPorts, *, agent_name: str = "agent") -> StepOutput:
    """Open a session of a stored loop (its first, or a resumed one): LOOP_STARTED/LOOP_RESUMED."""
    step = _Step(event, ports)
    workflow.start_session(step.state, step.record, agent_name=agent_name)
    return step.save()


def authorize_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """Cedar decides whether the next iteration runs; a denial (or a stop request) ends the loop."""
    step = _Step(event, ports)
    if step.state.outcome is not None:  # ended meanwhile (a retried execution): nothing to do
        return step.save(allowed=False, action=NextAction.STOP, outcome=step.state.outcome)
    step.state.is_active = True
    auth = workflow.authorize_next(step.state, _require(ports.policy, "policy"), step.record)
    if not auth.allowed:
        return step.end(decide(authorization=auth))
    stop = ports.store.stop_requested(event.loop_id)
    if stop is not None:
        return step.end(decide(stop_reason=stop))
    workflow.begin_iteration(step.state, step.record)
    return step.save(allowed=True)


def iterate_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """The agent works once; its changes are committed."""
    step = _Step(event, ports)
    workflow.run_iteration(
        step.state,
        _require(ports.agent, "agent"),
        _require(ports.workspace, "workspace"),
        step.record,
        state_dir=ports.state_dir,
    )
    return step.save()


def checkpoint_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """Checkpoint the loop when its interval says so."""
    step = _Step(event, ports)
    workflow.checkpoint_if_due(step.state, _require(ports.checkpoints, "checkpoints"), step.record)
    return step.save()


def evaluate_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """Evaluate every exit condition (unless a human asked the loop to stop)."""
    step = _Step(event, ports)
    stop = ports.store.stop_requested(event.loop_id)
    if stop is not None:
        return step.end(decide(stop_reason=stop))
    workflow.evaluate_conditions(step.state, _require(ports.sandbox, "sandbox"), step.record)
    return step.save()


def verify_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """gate:all over the latest evaluation."""
    step = _Step(event, ports)
    verification = workflow.verify_gate(step.state, step.record)
    return step.save(allowed=verification.passed, reason=verification.message)


def decide_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """What follows: CONTINUE (in this execution or, every ``iterations_per_execution``, in a new
    one), or the end (COMPLETE, STOP) or a pause for a human (AWAIT_HUMAN)."""
    step = _Step(event, ports)
    if step.state.outcome is not None:  # ended by an earlier step of this iteration
        return step.save(
            action=NextAction.STOP, outcome=step.state.outcome, reason=step.state.outcome_reason or ""
        )
    verification = verify(step.state.config, step.state.exit_conditions)  # recorded by verify_step
    decision = workflow.decide_next(
        step.state,
        step.record,
        verification=verification,
        stop_reason=ports.store.stop_requested(event.loop_id),
    )
    if decision.action is not NextAction.CONTINUE:
        return step.end(decision)
    first_of_generation = event.generation * event.iterations_per_execution
    handover = step.state.iteration - first_of_generation >= event.iterations_per_execution
    return step.save(
        action=NextAction.CONTINUE,
        handover=handover,
        generation=event.generation + 1 if handover else event.generation,
    )


def record_failure_step(event: StepInput, error: dict[str, Any], ports: CloudPorts) -> StepOutput:
    """A step failed after its retries: end the loop FAILED; its last checkpoint stays intact,
    so ``resume`` continues from it."""
    step = _Step(event, ports)
    reason = f"{error.get('Error', 'error')}: {str(error.get('Cause', ''))[:1000]}"
    step.record(IterationEventType.ERROR, reason)
    step.state.phase = LoopPhase.INTERRUPTED
    decision = Decision(action=NextAction.STOP, outcome=LoopOutcome.FAILED, reason=reason)
    workflow.finish(step.state, decision, step.record)
    return step.save(action=NextAction.STOP, outcome=LoopOutcome.FAILED, reason=reason)
