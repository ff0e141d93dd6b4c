"""The steps of the Step Functions state machine, one function per state.

Each function loads the loop's state from the store, applies one transition of
:mod:`loopwright.workflow`, saves the state with the events it recorded in one write, and
returns the :class:`~loopwright.models.StepOutput` the next Choice state branches on. The Lambda
handlers in ``functions/`` are one call to these; the functions take their ports as arguments,
so they are tested without AWS (``tests/unit/test_cloud_steps.py``) and run unchanged against the
local adapters when the synthesized state machine is executed locally.

The agent's record of each iteration (:mod:`loopwright.records`, as the in-process engine keeps
it) is written by :func:`iterate_step` after the state (prompt, output, usage, exit code,
duration, commit, diff stat) and completed by :func:`evaluate_step` with the conditions' results.
A record that cannot be written is logged and the step goes on; a retried step writes the same
record again, under the same key.

The loop's sandbox session (AWS: its Code Interpreter session, ``LoopState.sandbox_session_id``)
is stopped through the :class:`~loopwright.ports.SandboxSessions` port by the step that ends the
loop (COMPLETE, STOP, FAILED), and by the step that pauses it or parks it for a human when its
branch is pushed (``repository.push``: a new session restores it from the remote). Without push
a paused loop keeps its session, whose clone holds the only copy of the loop's work, until the
session's own timeout. A stop that fails never fails the step: it is recorded as an ERROR event.

Once a step's state and events are saved, the events that notify (an agent's question, a policy
warning, the loop's end: :mod:`loopwright.notifications`) are sent through the
:class:`~loopwright.ports.Notifier` port (AWS: the stack's SNS notifications topic), the question's
with the loop's page of the dashboard (``CloudPorts.dashboard_url``). A notification that cannot
be sent is logged and never fails the step; a retried step may send it again.

A step that ends a loop with CONDITIONS_MET then signs and stores its evidence bundle through
``CloudPorts.evidence`` (:mod:`loopwright.cloud.evidence_record`; never failing the step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopwright import halting, hard_limits, notifications, pinning, progress, records, workflow
from loopwright.cloud.evidence_record import EvidenceKeeper, record_evidence
from loopwright.deferred import DeferringSandbox
from loopwright.exceptions import LoopFrameworkError
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
from loopwright.ports import (
    Agent,
    CheckpointStore,
    LoopStore,
    Notifier,
    PolicyEngine,
    Sandbox,
    SandboxSessions,
    Workspace,
)
from loopwright.steps.decide import decide
from loopwright.steps.verify import verify

#: StepInput fields a step's output never carries: ``baseline`` (only an execution's input sets
#: it) and the deferred commands of a pending step (loopwright.cloud.deferral), which only a
#: pending output carries, back to the same step.
_NOT_CARRIED = frozenset({"baseline", "commands", "polls", "deferral_token", "pending_step"})


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
    sessions: SandboxSessions | None = None  # stops the loop's sandbox session (AWS)
    notifier: Notifier | None = None  # tells people of questions, warnings and ends (AWS: SNS)
    dashboard_url: str | None = None  # the dashboard's base URL: a question links the loop's page
    deferring: DeferringSandbox | None = None  # runs the agent and the checks in the background
    evidence: EvidenceKeeper | None = None  # signs and keeps a completed loop's evidence bundle


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
        self.state.generation = max(self.state.generation, event.generation)  # for a resume's next one
        self.record = EventCollector(self.state)
        self._applied: list[str] = []

    def halt(self) -> workflow.Halt:
        """Apply the loop's queued controls (cleared once the state is saved); the stop or pause
        they ask for, if any."""
        halt = workflow.apply_controls(
            self.state, self.ports.store.pending_controls(self.event.loop_id), self.record
        )
        self._applied += halt.applied
        return halt

    def save(self, **fields: Any) -> StepOutput:
        """Save the state with the recorded events, clear the applied controls, then send the
        events' notifications (never failing the step); the step's output with ``fields``."""
        events = self.record.events
        self.state = self.ports.store.save_state(self.state, events)
        self.record.events = []
        if self._applied:
            self.ports.store.clear_controls(self.event.loop_id, self._applied)
            self._applied = []
        found = notifications.notifications_for(self.state, events, dashboard_url=self.ports.dashboard_url)
        notifications.publish(self.ports.notifier, found)
        return self.output(**fields)

    def output(self, **fields: Any) -> StepOutput:
        """The step's output (without writing: the loop ended or paused in an earlier step): the
        input's fields, except ``baseline``, which only an execution's input sets."""
        carried = {
            name: getattr(self.event, name) for name in StepInput.model_fields if name not in _NOT_CARRIED
        }
        return StepOutput.model_validate({**carried, "iteration": self.state.iteration, **fields})

    def paused(self) -> StepOutput | None:
        """The PAUSE output when an earlier step of this iteration paused the loop, the
        AWAIT_HUMAN output when it parked it for a human (an iteration held for changing pinned
        files), else None."""
        if self.state.phase is LoopPhase.AWAITING_RESPONSE:
            return self.output(
                allowed=False, action=NextAction.AWAIT_HUMAN, reason=self.state.human_request or ""
            )
        if self.state.phase is not LoopPhase.PAUSED:
            return None
        return self.output(
            allowed=False,
            action=NextAction.PAUSE,
            reason=self.state.outcome_reason or "",
            resume_at=self.state.resume_at,
        )

    def end(self, decision: Decision) -> StepOutput:
        if decision.action is not NextAction.AWAIT_HUMAN and self.ports.checkpoints is not None:
            workflow.checkpoint_if_due(self.state, self.ports.checkpoints, self.record, final=True)
        workflow.finish(self.state, decision, self.record)
        self.release_session()
        # CONDITIONS_MET only; stored before the loop's end is saved, so a step that dies between
        # the two makes the bundle again when it is retried, and the event lands with the end
        record_evidence(self.state, self.ports.store, self.ports.evidence, self.record)
        return self.save(
            allowed=False,
            action=decision.action,
            outcome=decision.outcome,
            reason=decision.reason,
            resume_at=decision.resume_at,
        )

    def release_session(self) -> None:
        """Stop the loop's sandbox session when the loop ended, or paused with its branch pushed
        (see the module docstring); record SESSION_STOPPED, or an ERROR when the stop failed."""
        session_id, sessions = self.state.sandbox_session_id, self.ports.sessions
        if session_id is None or sessions is None:
            return
        repository = self.state.config.repository
        if self.state.outcome is None and not (repository is not None and repository.push):
            return  # paused without push: the session's clone is the only copy of the work
        try:
            sessions.stop(session_id)
        except LoopFrameworkError as exc:
            self.record(
                IterationEventType.ERROR,
                f"could not stop sandbox session {session_id!r} ({str(exc)[:500]}); it ends by itself "
                "at its timeout",
            )
            return
        self.state.sandbox_session_id = None
        self.record(
            IterationEventType.SESSION_STOPPED, f"stopped sandbox session {session_id!r}", session=session_id
        )


def _commands(ports: CloudPorts) -> Sandbox:
    """Where the exit conditions run: in the background when the step may be pending
    (``ports.deferring``, loopwright.cloud.deferral), else the loop's sandbox."""
    sandbox: Sandbox = _require(ports.deferring or ports.sandbox, "sandbox")
    return sandbox


def _watch_stop_now(event: StepInput, ports: CloudPorts) -> Callable[[], bool]:
    """The check of a queued ``stop --now``, also given to the background commands (the exit
    conditions are cancelled when it answers True; without background commands the blocking
    Code Interpreter call cannot be interrupted and the stop lands after it)."""

    def check() -> bool:
        return halting.stop_now_requested(ports.store, event.loop_id)

    if ports.deferring is not None:
        ports.deferring.watch_stop(check)
    return check


def _require(value: Any, name: str) -> Any:
    if value is None:
        raise ValueError(f"this step needs the {name} port")
    return value


def start_step(event: StepInput, ports: CloudPorts, *, agent_name: str = "agent") -> StepOutput:
    """Open a session of a stored loop (its first, or a resumed one): LOOP_STARTED/LOOP_RESUMED."""
    step = _Step(event, ports)
    if step.state.sessions_used > 0:  # a resumed loop: a stop or pause asked before is done with
        ports.store.clear_stop(event.loop_id)
    first = step.state.sessions_used == 0
    workflow.start_session(step.state, step.record, agent_name=agent_name)
    if first:  # the same events as the in-process engine
        pinning.record_pins(step.state, step.record)
    return step.save()


def authorize_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """Cedar decides whether the next iteration runs; a denial (or a stop request) ends the loop.

    A loop holding an iteration that changed pinned files (``LoopState.pinned_hold``: the
    execution went on after a human's approve, or a resumed loop) authorizes no new iteration:
    the output has ``allowed`` false and ``settle_pins`` true, and the ``Allowed?`` Choice goes to
    Evaluate, which applies the answer and evaluates the held iteration
    (:func:`evaluate_step`), as the in-process engine does (``evaluated_iteration < iteration``).
    """
    step = _Step(event.model_copy(update={"settle_pins": False}), ports)  # only a hold sets it
    if step.state.outcome is not None:  # ended meanwhile (a retried execution): nothing to do
        return step.save(allowed=False, action=NextAction.STOP, outcome=step.state.outcome)
    step.state.is_active = True
    if step.state.pinned_hold is not None:
        return step.save(allowed=False, settle_pins=True)
    halt = step.halt()  # a raised limit counts for this authorization
    auth = workflow.authorize_next(step.state, _require(ports.policy, "policy"), step.record)
    if not auth.allowed:
        return step.end(decide(authorization=auth))
    if halt.stop_reason is not None or halt.pause_reason is not None:
        return step.end(decide(stop_reason=halt.stop_reason, pause_reason=halt.pause_reason))
    workflow.begin_iteration(step.state, step.record)
    return step.save(allowed=True)


def iterate_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """The agent works once; its changes are committed. Once the state is saved, the iteration's
    record is written with the prompt, the agent's output and result, and its commit's diff stat.

    A commit that changed pinned files Cedar does not allow (:func:`loopwright.pinning.guard_pins`,
    ``ports.policy``) is reverted and kept on a set-aside ref, ``LoopState.pinned_hold`` is set,
    and :func:`evaluate_step` parks the loop for a human instead of evaluating it. Raises
    ValueError when the workspace, agent or policy port is missing,
    :class:`~loopwright.exceptions.WorkspaceError` when the branch cannot be moved back."""
    step = _Step(event, ports)
    workspace: Workspace = _require(ports.workspace, "workspace")
    policy: PolicyEngine = _require(ports.policy, "policy")
    record = records.start_record(step.state, ports.state_dir)
    output = records.OutputCollector()
    previous_head = step.state.head_commit
    result = workflow.run_iteration(
        step.state,
        _require(ports.agent, "agent"),
        workspace,
        step.record,
        state_dir=ports.state_dir,
        should_stop=lambda: halting.stop_now_requested(ports.store, event.loop_id),
        on_output=output,
    )
    # Nothing was committed after a workspace problem; an agent a hard limit ended has its work
    # set aside (not evaluated: Evaluate skips it); else the pins are guarded.
    ended = not step.state.workspace_problem and hard_limits.set_aside_partial_work(
        step.state, result, previous_head, workspace, step.record
    )
    if not step.state.workspace_problem and not ended:
        pinning.guard_pins(step.state, result, previous_head, workspace, policy, step.record)
    saved = step.save()
    done = records.finish_record(record, step.state, result, output.snapshot(), workspace)
    records.RecordKeeper(ports.store).save(done)
    return saved


def checkpoint_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """Checkpoint the loop when its interval says so; not an iteration held for changing pinned
    files (it is not evaluated either, as in the in-process engine)."""
    step = _Step(event, ports)
    if step.state.pinned_hold is not None:
        return step.output()
    workflow.checkpoint_if_due(step.state, _require(ports.checkpoints, "checkpoints"), step.record)
    return step.save()


def baseline_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """The exit conditions before the agent's next iteration, when
    :func:`~loopwright.workflow.baseline_due` (a new loop, or one resumed after a condition ERROR):
    :func:`~loopwright.workflow.evaluate_baseline`, as the local engine does before its first
    Authorize. Returns what :func:`decide_step` returns, for the same ``Action?`` Choice:
    COMPLETE (CONDITIONS_MET, 0 iterations, the agent never runs), PAUSE (a required condition
    could not be evaluated), STOP or PAUSE asked by a human, else CONTINUE (written, so iteration
    1's prompt lists the baseline's failures). CONTINUE without writing when no baseline is due
    (a retried start of an execution whose baseline was done)."""
    step = _Step(event, ports)
    if step.state.outcome is not None:  # ended meanwhile (a retried execution): nothing to do
        return step.output(
            action=NextAction.STOP, outcome=step.state.outcome, reason=step.state.outcome_reason or ""
        )
    if not workflow.baseline_due(step.state):
        return step.output(action=NextAction.CONTINUE)
    halt = step.halt()
    if halt.stop_reason is not None or halt.pause_reason is not None:
        return step.end(decide(stop_reason=halt.stop_reason, pause_reason=halt.pause_reason))
    decision = workflow.evaluate_baseline(step.state, _commands(ports), step.record, ports.workspace)
    if decision.action is not NextAction.CONTINUE:
        return step.end(decision)
    return step.save(action=NextAction.CONTINUE, reason=decision.reason)


def evaluation_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """The Evaluate Lambda's step: :func:`baseline_step` for an execution's input that asks for
    its baseline (``event.baseline``, the ``Baseline`` state), else :func:`evaluate_step`."""
    return baseline_step(event, ports) if event.baseline else evaluate_step(event, ports)


def evaluate_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """Evaluate every exit condition (unless a human asked the loop to stop); once the state is
    saved, their results are added to the iteration's record.

    Pinned checks (:mod:`loopwright.pinning`): an iteration Iterate held (``LoopState.pinned_hold``)
    is not evaluated: the loop waits for a human (the hold's AWAIT_HUMAN decision). With
    ``event.settle_pins`` (Authorize, after the human's answer) the answer is applied first
    (:func:`~loopwright.pinning.settle_hold`: an accepted change moves the branch to the kept
    commit) and the held iteration is evaluated. An iteration whose agent a hard limit ended
    (:func:`loopwright.hard_limits.set_aside_partial_work`) is not evaluated. Raises ValueError
    when settling without the workspace port."""
    step = _Step(event, ports)
    if step.state.pinned_hold is not None:
        if not event.settle_pins:
            return step.end(pinning.hold_decision(step.state))
        pinning.settle_hold(step.state, _require(ports.workspace, "workspace"), step.record)
        step.state.human_request = None  # the hold's question, answered (no agent asked it)
    halt = step.halt()
    pause_reason = halt.pause_reason or step.state.workspace_problem  # nothing was committed
    if halt.stop_reason is not None or pause_reason is not None:
        return step.end(decide(stop_reason=halt.stop_reason, pause_reason=pause_reason))
    if _set_aside(step.state):
        return step.save()  # an iteration a hard limit ended: set aside, nothing new to evaluate
    stop_now = _watch_stop_now(event, ports)
    workflow.evaluate_conditions(step.state, _commands(ports), step.record, workspace=ports.workspace)
    if stop_now():  # a condition may have been ended mid-run: its result means nothing, not kept
        step = _Step(event, ports)
        return step.end(decide(stop_reason=step.halt().stop_reason or "stop --now"))
    if progress.regression_to_revert(step.state):  # on_regression = "revert": back to the best commit
        progress.revert_regression(step.state, _require(ports.workspace, "workspace"), step.record)
        workflow.save_checkpoint(step.state, _require(ports.checkpoints, "checkpoints"), step.record)
    saved = step.save()
    records.RecordKeeper(ports.store).add_evaluation(step.state)
    return saved


def _set_aside(state: LoopState) -> bool:
    """True for an iteration whose agent a hard limit ended: Iterate set its work aside and
    marked it evaluated (:func:`loopwright.hard_limits.set_aside_partial_work`), so Evaluate and
    Verify have nothing to do (the phase is still Iterate's or Checkpoint's)."""
    return (
        state.iteration > 0
        and state.evaluated_iteration >= state.iteration
        and state.phase in (LoopPhase.ITERATING, LoopPhase.CHECKPOINTING)
    )


def verify_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """gate:all over the latest evaluation; nothing for an iteration Evaluate did not evaluate
    (its agent was ended by a hard limit, :mod:`loopwright.hard_limits`)."""
    step = _Step(event, ports)
    if step.state.outcome is not None or step.state.phase in (LoopPhase.PAUSED, LoopPhase.AWAITING_RESPONSE):
        return step.output(allowed=False)  # ended, paused or parked by evaluate
    if _set_aside(step.state):
        return step.output(allowed=False)  # not evaluated: a hard limit ended the agent
    verification = workflow.verify_gate(step.state, step.record)
    return step.save(allowed=verification.passed, reason=verification.message)


def decide_step(event: StepInput, ports: CloudPorts) -> StepOutput:
    """What follows: CONTINUE (in this execution or, every ``iterations_per_execution``, in a new
    one), or the end (COMPLETE, STOP), a pause for a human (AWAIT_HUMAN), or a pause by a human or
    until a usage limit resets (PAUSE, with ``resume_at``)."""
    step = _Step(event, ports)
    if step.state.outcome is not None:  # ended by an earlier step of this iteration
        return step.save(
            action=NextAction.STOP, outcome=step.state.outcome, reason=step.state.outcome_reason or ""
        )
    paused = step.paused()
    if paused is not None:
        return paused
    verification = verify(step.state.config, step.state.exit_conditions)  # recorded by verify_step
    halt = step.halt()
    decision = workflow.decide_next(
        step.state,
        step.record,
        verification=verification,
        stop_reason=halt.stop_reason,
        pause_reason=halt.pause_reason,
    )
    if decision.action is not NextAction.CONTINUE:
        return step.end(decision)
    handover = step.state.iteration - event.first_iteration >= event.iterations_per_execution
    return step.save(
        action=NextAction.CONTINUE,
        handover=handover,
        generation=event.generation + 1 if handover else event.generation,
        first_iteration=step.state.iteration if handover else event.first_iteration,
    )


def record_failure_step(event: StepInput, error: dict[str, Any], ports: CloudPorts) -> StepOutput:
    """A step failed after its retries: end the loop FAILED; its last checkpoint stays intact,
    so ``resume`` continues from it."""
    step = _Step(event, ports)
    if step.state.outcome is not None:  # ended meanwhile (a human stopped a loop awaiting an answer)
        return step.save(
            action=NextAction.STOP, outcome=step.state.outcome, reason=step.state.outcome_reason or ""
        )
    reason = f"{error.get('Error', 'error')}: {str(error.get('Cause', ''))[:1000]}"
    step.record(IterationEventType.ERROR, reason)
    step.state.phase = LoopPhase.INTERRUPTED
    decision = Decision(action=NextAction.STOP, outcome=LoopOutcome.FAILED, reason=reason)
    workflow.finish(step.state, decision, step.record)
    step.release_session()
    return step.save(action=NextAction.STOP, outcome=LoopOutcome.FAILED, reason=reason)
