"""The iterations of one session of the in-process engine: authorize -> iterate -> checkpoint ->
evaluate -> verify -> decide, until a decision other than CONTINUE.

Before the agent's first iteration the exit conditions are evaluated once (the baseline,
iteration 0; :func:`loopwright.workflow.evaluate_baseline`): a repository that already meets them
completes without calling the agent, one whose conditions cannot be evaluated pauses, and
otherwise iteration 1's prompt lists the baseline's failures.

:class:`SessionDriver` is mixed into :class:`~loopwright.engine.framework.LoopFramework`, which
sets up the ports and the session; this module holds only the order of the steps and when each
is written (see :mod:`loopwright.engine.step_writer`).
"""

from __future__ import annotations

from functools import cached_property

from loopwright import halting, hard_limits, pinning, progress, workflow
from loopwright.adapters.local.git_workspace import GitWorktreeWorkspace
from loopwright.engine.evidence_record import record_evidence
from loopwright.engine.host import EngineHost
from loopwright.engine.iteration_record import IterationRecorder
from loopwright.engine.tracing import Tracing
from loopwright.models import Decision, ExitConditionStatus, LoopResult, LoopState, NextAction
from loopwright.models.progress import LoopProgress
from loopwright.models.state import CachedEvaluation
from loopwright.ports import Agent, OutputCallback, PolicyEngine, Sandbox
from loopwright.steps.decide import decide
from loopwright.steps.verify import verify


class SessionDriver(EngineHost):
    """The step order of a session; the host class provides the ports and the event recorder."""

    sandbox: Sandbox
    policy: PolicyEngine
    _tracing: Tracing
    _output_observer: OutputCallback | None

    @cached_property
    def _records(self) -> IterationRecorder:
        """The agent's record of each iteration (:mod:`loopwright.engine.iteration_record`)."""
        return IterationRecorder(self.store)

    def _halt(self) -> workflow.Halt:
        """Apply the loop's queued controls; the stop or pause they ask for, if any."""
        halt = workflow.apply_controls(
            self.get_state(), self.store.pending_controls(self.loop_id), self.emit_event
        )
        if halt.applied:
            self._writer.save(self.get_state())
            self.store.clear_controls(self.loop_id, halt.applied)
        return halt

    def _stop_now(self) -> bool:
        """True when a ``stop --now`` is queued for the loop (the sandbox asks it while the agent
        or a condition runs, and ends it at once)."""
        return halting.stop_now_requested(self.store, self.loop_id)

    def _drive(self, agent: Agent) -> LoopResult:
        state = self.get_state()
        while True:
            if workflow.baseline_due(state):
                decision = self._baseline()
            elif state.evaluated_iteration < state.iteration:
                # Resumed after the agent's work of this iteration was checkpointed.
                decision = self._evaluate_and_decide()
            else:
                decision = self._authorize_and_iterate(agent)
            state = self.get_state()
            if decision.action is NextAction.CONTINUE:
                continue
            return self._finish(decision)

    def _authorize_and_iterate(self, agent: Agent) -> Decision:
        state = self.get_state()
        halt = self._halt()  # a raised limit counts for this authorization
        auth = workflow.authorize_next(state, self.policy, self.emit_event)
        if not auth.allowed:
            return decide(authorization=auth)
        if halt.stop_reason is not None or halt.pause_reason is not None:
            return decide(stop_reason=halt.stop_reason, pause_reason=halt.pause_reason)
        number = state.iteration + 1
        with self._tracing.span(
            "loopwright.iteration", {"loopwright.loop_id": self.loop_id, "loopwright.iteration": number}
        ):
            workflow.begin_iteration(state, self.emit_event)
            # An operator sees the iteration start while the agent works; an in-process agent's
            # start only if it works a while (see loopwright.engine.step_writer).
            if agent.in_process:
                self._writer.write_start_later(state)
            else:
                self._writer.save(self.get_state())
            self._records.begin(state, self.state_dir, live=not agent.in_process)
            previous_head = state.head_commit
            try:
                result = workflow.run_iteration(
                    state,
                    agent,
                    self._workspace(),
                    self.emit_event,
                    state_dir=self.state_dir,
                    should_stop=self._stop_now,
                    on_output=self._records.observer(self._output_observer),
                )
            finally:
                self._writer.settle(state)
            if state.workspace_problem:  # nothing was committed: a human looks before anything else
                self._writer.save(self.get_state())
                self._records.agent_done(state, result, self._workspace())
                return decide(pause_reason=state.workspace_problem)
            if hard_limits.set_aside_partial_work(
                state, result, previous_head, self._workspace(), self.emit_event
            ):  # ended mid-run: its work is on a ref; Cedar (or the stop) decides what follows
                workflow.checkpoint_if_due(state, self._writer.checkpoints, self.emit_event)
                self._writer.save(self.get_state())
                self._records.agent_done(state, result, self._workspace())
                halt = self._halt()
                return workflow.decide_next(
                    state,
                    self.emit_event,
                    verification=verify(state.config, state.exit_conditions),  # the last evaluation's
                    stop_reason=halt.stop_reason,
                    pause_reason=halt.pause_reason,
                )
            held = pinning.guard_pins(
                state, result, previous_head, self._workspace(), self.policy, self.emit_event
            )
            if held is not None:  # changed what the checks depend on: reverted, a human decides
                self._writer.save(self.get_state())
                self._records.agent_done(state, result, self._workspace())
                return held
            workflow.checkpoint_if_due(state, self._writer.checkpoints, self.emit_event)
            self._writer.save(self.get_state())
            self._records.agent_done(state, result, self._workspace())
            return self._evaluate_and_decide()

    def _baseline(self) -> Decision:
        """Evaluate the conditions before the agent runs (see :func:`workflow.baseline_due`);
        written at once, so a crash in the next iteration does not evaluate them again."""
        halt = self._halt()
        if halt.stop_reason is not None or halt.pause_reason is not None:
            return decide(stop_reason=halt.stop_reason, pause_reason=halt.pause_reason)
        state = self.get_state()
        before = _evaluation_snapshot(state)
        decision = workflow.evaluate_baseline(state, self.sandbox, self.emit_event, self._workspace())
        if self._stop_now():  # a condition may have been ended mid-run: evaluate again on resume
            _restore_evaluation(state, before)
            return decide(stop_reason=self._halt().stop_reason or "stop --now")
        if decision.action is NextAction.CONTINUE:
            self._writer.save(self.get_state())
        return decision

    def _evaluate_and_decide(self) -> Decision:
        state = self.get_state()
        halt = self._halt()
        if halt.stop_reason is not None or halt.pause_reason is not None:
            return decide(stop_reason=halt.stop_reason, pause_reason=halt.pause_reason)
        before = _evaluation_snapshot(state)
        workflow.evaluate_conditions(state, self.sandbox, self.emit_event, workspace=self._workspace())
        if self._stop_now():  # a condition may have been ended mid-run: its result means nothing
            _restore_evaluation(state, before)
            halt = self._halt()
            return decide(stop_reason=halt.stop_reason or "stop --now")
        if progress.regression_to_revert(state):  # on_regression = "revert": back to the best commit
            progress.revert_regression(state, self._workspace(), self.emit_event)
            workflow.save_checkpoint(state, self._writer.checkpoints, self.emit_event)
        self._records.evaluated(state)
        verification = workflow.verify_gate(state, self.emit_event)
        halt = self._halt()
        # Not written here: a CONTINUE is written with the next iteration (its start), any other
        # decision by _finish, both in the same transaction as what follows.
        return workflow.decide_next(
            state,
            self.emit_event,
            verification=verification,
            stop_reason=halt.stop_reason,
            pause_reason=halt.pause_reason,
        )

    def _finish(self, decision: Decision) -> LoopResult:
        state = self.get_state()
        workflow.checkpoint_if_due(state, self._writer.checkpoints, self.emit_event, final=True)
        workflow.finish(state, decision, self.emit_event)
        self._writer.save(self.get_state())
        if isinstance(self._workspace(), GitWorktreeWorkspace):  # records written: the bundle reads them
            record_evidence(
                self.store, state, repo=self.workspace, state_dir=self.state_dir, record=self.emit_event
            )
            self._writer.flush_events()
        return LoopResult.from_state(state)


_EvaluationSnapshot = tuple[list[ExitConditionStatus], int, LoopProgress, list[CachedEvaluation]]


def _evaluation_snapshot(state: LoopState) -> _EvaluationSnapshot:
    """What an evaluation changes in ``state`` (its results, the progress memory's facts and the
    evaluation cache), so a ``stop --now`` that ended a condition mid-run can throw it all away."""
    return (
        list(state.exit_conditions),
        state.evaluated_iteration,
        state.progress.model_copy(deep=True),
        list(state.evaluation_cache),
    )


def _restore_evaluation(state: LoopState, before: _EvaluationSnapshot) -> None:
    """Undo an evaluation a ``stop --now`` cut short (see :func:`_evaluation_snapshot`): a resume
    evaluates again, and neither the stuck facts nor the cache keep the ended run's result."""
    state.exit_conditions, state.evaluated_iteration, state.progress, state.evaluation_cache = before
