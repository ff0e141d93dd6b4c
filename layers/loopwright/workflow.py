"""One loop transition per function: the state changes and events of each step.

The steps in :mod:`loopwright.steps` compute results; the functions here apply a step to a
:class:`~loopwright.models.LoopState` and record its events, the same way for both engines: the
in-process :class:`~loopwright.engine.LoopFramework` calls them in a loop, and each Lambda of the
Step Functions state machine calls one of them between loading the state from the store and
saving it back. They never write to a store themselves (the caller saves the state with the
recorded events in one transaction), except the checkpoint, which goes to its own port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from loopwright import sessions
from loopwright.accounting import account_cost, account_failure
from loopwright.feature_progress import record_feature_progress
from loopwright.halting import Halt as Halt
from loopwright.halting import apply_controls as apply_controls
from loopwright.models import (
    AgentResult,
    AuthorizationResult,
    Checkpoint,
    Decision,
    ExitConditionStatus,
    IterationEventType,
    IterationResult,
    LoopPhase,
    LoopState,
    NextAction,
    VerificationResult,
    utcnow,
)
from loopwright.ports import (
    Agent,
    CheckpointStore,
    OutputCallback,
    PolicyEngine,
    Sandbox,
    StopCheck,
    Workspace,
)
from loopwright.steps.authorize import authorize
from loopwright.steps.checkpoint import checkpoint, checkpoint_due
from loopwright.steps.decide import decide
from loopwright.steps.evaluate import (
    SLOW_CONDITION_SECONDS,
    evaluation_problem,
    slow_conditions,
)
from loopwright.steps.evaluation_cache import evaluate_cached
from loopwright.steps.iterate import iterate
from loopwright.steps.progress import note_evaluation, remember_iteration, resume_after_stuck
from loopwright.steps.verify import verify

_EV = IterationEventType


class Recorder(Protocol):
    """Records one event of the loop (the engine's ``emit_event``, or a Lambda's collector)."""

    def __call__(
        self, event_type: IterationEventType, message: str = "", *, iteration: int | None = None, **data: Any
    ) -> object: ...


def start_session(
    state: LoopState,
    record: Recorder,
    *,
    agent_name: str = "agent",
    environment: str | None = None,
    **details: Any,
) -> None:
    """Open a session of the loop: the first (LOOP_STARTED) or a resumed one (LOOP_RESUMED).

    ``environment`` (one line: the project's interpreter and how it was found) ends the event's
    message; ``details`` go into its data.
    """
    resumed = state.sessions_used > 0
    state.sessions_used += 1
    state.is_active = True
    state.open_active_time()  # the time limit counts the sessions' running time (count_paused_time)
    state.human_request = None
    state.workspace_problem = None
    state.resume_at = None
    state.outcome_reason = None
    state.phase = LoopPhase.AUTHORIZING
    resume_after_stuck(state)  # a human gave a stuck loop another chance: its counters start over
    suffix = f" · {environment}" if environment else ""
    if resumed:
        record(
            _EV.LOOP_RESUMED,
            f"resumed at iteration {state.iteration} (session {state.sessions_used}){suffix}",
            agent=agent_name,
            **details,
        )
    else:
        record(
            _EV.LOOP_STARTED,
            f"goal: {state.config.goal[:200].rstrip() if suffix else state.config.goal[:200]}{suffix}",
            agent=agent_name,
            branch=state.branch,
            base_commit=state.base_commit,
            max_iterations=state.config.max_iterations,
            policy_files=state.policy_files,
            **details,
        )


def authorize_next(state: LoopState, policy: PolicyEngine, record: Recorder) -> AuthorizationResult:
    """Ask Cedar whether iteration ``state.iteration + 1`` may run; record a denial or new warnings.

    New warnings (not raised before) become POLICY_WARNING events; the current ones are kept in
    ``state.pending_warnings`` for the agent's prompt.
    """
    state.phase = LoopPhase.AUTHORIZING
    auth = authorize(state, policy)
    if not auth.allowed:
        record(
            _EV.POLICY_DENIED,
            auth.reason or "denied",
            iteration=auth.iteration,
            policy_ids=",".join(auth.denied_by),
            outcome=auth.outcome.value if auth.outcome else None,
        )
        state.progress.stuck_reason = auth.reason if auth.pause else None
        return auth
    for policy_id, message in zip(auth.warnings, auth.warning_messages, strict=False):
        if message not in state.pending_warnings:
            record(_EV.POLICY_WARNING, message, iteration=auth.iteration, policy_id=policy_id)
    state.pending_warnings = list(auth.warning_messages)
    return auth


def begin_iteration(state: LoopState, record: Recorder) -> int:
    """Mark iteration ``state.iteration + 1`` as started (save the state before the agent runs)."""
    state.phase = LoopPhase.ITERATING
    number = state.iteration + 1
    record(_EV.ITERATION_STARTED, f"iteration {number} started", iteration=number)
    return number


def run_iteration(
    state: LoopState,
    agent: Agent,
    workspace: Workspace,
    record: Recorder,
    *,
    state_dir: Path,
    should_stop: StopCheck | None = None,
    on_output: OutputCallback | None = None,
) -> IterationResult:
    """Run the agent once and account for it: iteration count, tokens, cost, head commit, failures.

    The iteration's cost (US dollars) is the agent's own figure, else its tokens priced by model
    (``config.prices``, then :data:`~loopwright.models.pricing.DEFAULT_PRICES`); it is added to
    ``state.cost_usd`` and recorded with the token breakdown in the AGENT_COMPLETED (or
    AGENT_FAILED) event. A model without a price adds no cost and is reported once per loop by a
    COST_UNKNOWN event.

    An agent's question for a human is kept in ``state.human_request`` for the decide step; a
    worktree that could not be committed (tampered with) in ``state.workspace_problem``, which
    pauses the loop (an ERROR event says why).

    An agent that did no work has a cause (:func:`~loopwright.steps.failures.failure_cause`),
    kept in ``state.last_failure_cause`` and recorded as its own event (``AGENT_CRASHED``,
    ``AGENT_RATE_LIMITED``, ... : :data:`~loopwright.models.FAILURE_CAUSE_EVENTS`) after
    AGENT_FAILED; ``state.consecutive_failures`` counts them (see :mod:`loopwright.steps.failures`).
    A rate limit or an outage adds one to ``state.uncounted_iterations`` and sets
    ``state.resume_at`` to now plus the backoff, so the decide step pauses until the retry.

    Agent sessions (:mod:`loopwright.sessions`): before the run the agent's session is continued
    or a fresh one started (SESSION_HANDOFF after a handoff); after it, whether the next run hands
    off is decided.
    """
    has_sessions = bool(getattr(agent, "supports_sessions", False))  # duck-typed agents: no sessions
    sessions.open_session(state, has_sessions, record)
    result = iterate(
        state,
        agent,
        workspace,
        state_dir=state_dir,
        should_stop=should_stop,
        on_output=on_output,
        handoff=sessions.handoff_summary(state),
    )
    sessions.account_session(state, result, has_sessions)
    state.iteration = result.iteration
    state.agent_seconds = result.duration_seconds
    state.tokens_used += result.agent.tokens_used
    cost = account_cost(state, result.agent, record)
    state.human_request = result.agent.needs_human
    state.human_response = None  # handed to the agent with this iteration's request
    state.resume_at = result.agent.usage_limit_resets_at
    remember_iteration(state, result, workspace, state.head_commit)  # progress memory, stuck facts
    if result.commit:
        state.head_commit = result.commit
    if result.agent.failed:
        state.errors_recovered += 1
    withheld = result.withheld_files
    record(
        _EV.AGENT_FAILED if result.agent.failed else _EV.AGENT_COMPLETED,
        (
            result.agent.summary[:500]
            + (f" (not committed, they look like secrets: {', '.join(withheld[:20])})" if withheld else "")
        ).strip(),
        tokens_used=result.agent.tokens_used,
        input_tokens=result.agent.input_tokens,
        cached_input_tokens=result.agent.cached_input_tokens,
        output_tokens=result.agent.output_tokens,
        model=result.agent.model,
        cost_usd=cost.cost_usd,
        cost_basis=cost.basis,
        commit=result.commit,
        changed_files=len(result.changed_files),
        withheld_files=withheld or None,
        duration_seconds=result.duration_seconds,
    )
    account_failure(state, result.agent, record)
    state.workspace_problem = result.workspace_problem
    if result.workspace_problem:
        record(_EV.ERROR, result.workspace_problem[:2000], iteration=result.iteration)
    return result


def save_checkpoint(state: LoopState, checkpoints: CheckpointStore, record: Recorder) -> Checkpoint:
    """Store a checkpoint of ``state`` at its head commit (pruned to ``checkpoint_retention``)."""
    state.phase = LoopPhase.CHECKPOINTING
    ckpt = checkpoint(state, checkpoints, state.head_commit)
    state.last_checkpoint_id = ckpt.checkpoint_id
    state.checkpointed_iteration = ckpt.iteration
    record(
        _EV.CHECKPOINT_SAVED,
        f"checkpoint {ckpt.checkpoint_id} at iteration {ckpt.iteration}",
        checkpoint_id=ckpt.checkpoint_id,
        commit=ckpt.commit,
    )
    return ckpt


def checkpoint_if_due(
    state: LoopState, checkpoints: CheckpointStore, record: Recorder, *, final: bool = False
) -> Checkpoint | None:
    """Checkpoint when ``checkpoint_interval`` says so, or, with ``final`` (the loop is ending),
    when the current iteration has no checkpoint yet; None otherwise."""
    if final:
        if state.iteration == 0 or state.checkpointed_iteration == state.iteration:
            return None
    elif not checkpoint_due(state):
        return None
    return save_checkpoint(state, checkpoints, record)


def evaluate_conditions(
    state: LoopState,
    sandbox: Sandbox,
    record: Recorder,
    *,
    baseline: bool = False,
    workspace: Workspace | None = None,
) -> list[ExitConditionStatus]:
    """Evaluate every exit condition in the worktree; the statuses become the state's.

    Records EXIT_CONDITIONS_EVALUATED with ``statuses`` and ``summaries`` (name -> value), with
    ``baseline: true`` for the evaluation before the agent's first iteration (see
    :func:`evaluate_baseline`), and with ``slow`` (name -> seconds) when a condition took
    longer than :data:`~loopwright.steps.evaluate.SLOW_CONDITION_SECONDS` (SC-002), also said in
    the message. The features that the evaluation completes are then recorded
    (:func:`~loopwright.feature_progress.record_feature_progress`: FEATURE_COMPLETED each).
    With ``workspace``, results are reused for a tree evaluated before
    (:mod:`loopwright.steps.evaluation_cache`; ``cached`` and ``tree`` in the event's data).
    """
    state.phase = LoopPhase.EVALUATING
    evaluation = evaluate_cached(state, sandbox, workspace)
    statuses = evaluation.statuses
    state.exit_conditions = statuses
    state.evaluated_iteration = state.iteration
    note_evaluation(
        state.progress, statuses, iteration=state.iteration, commit=state.head_commit or state.base_commit
    )
    met = sum(1 for s in statuses if s.is_met)
    slow = slow_conditions(statuses)
    message = (
        ("baseline: " if baseline else "")
        + f"{met}/{len(statuses)} exit conditions met: "
        + ", ".join(f"{s.name}={s.status.value}" for s in statuses)
        + evaluation.note()
    )
    if slow:
        message += (
            f" (slow, over {SLOW_CONDITION_SECONDS:g} s: "
            + ", ".join(f"{name} {seconds:g} s" for name, seconds in slow.items())
            + ")"
        )
    record(
        _EV.EXIT_CONDITIONS_EVALUATED,
        message,
        statuses={s.name: s.status.value for s in statuses},
        summaries={s.name: s.summary for s in statuses},
        baseline=True if baseline else None,
        slow=slow or None,
        **evaluation.event_data(),
    )
    record_feature_progress(state, record)  # FEATURE_COMPLETED for each feature now done
    return statuses


def baseline_due(state: LoopState) -> bool:
    """True when the exit conditions must be evaluated before the agent runs (again):

    * the loop has done no iteration and its conditions were never evaluated (a new loop), or
      its baseline paused because a condition could not be evaluated (fixed meanwhile, perhaps);
    * the last evaluation, after an iteration, paused the loop because a required condition was
      ERROR: a resumed loop checks again before the agent is paid to look at it.

    Otherwise False: a resumed loop does not evaluate its baseline again.
    """
    if state.iteration == 0:
        if not any(s.evaluated_at is not None for s in state.exit_conditions):
            return True
        return evaluation_problem(state.exit_conditions, baseline=True) is not None
    return (
        state.evaluated_iteration == state.iteration
        and evaluation_problem(state.exit_conditions, baseline=False) is not None
    )


def evaluate_baseline(
    state: LoopState, sandbox: Sandbox, record: Recorder, workspace: Workspace | None = None
) -> Decision:
    """Evaluate the exit conditions before the agent's next iteration (see :func:`baseline_due`):
    iteration 0's baseline, or the check of a loop resumed after a condition ERROR.

    Returns COMPLETE (CONDITIONS_MET) when gate:all passes, so an already-green repository never
    runs the agent; PAUSE when a required condition could not be evaluated (ERROR, or at the
    baseline TIMEOUT; :func:`~loopwright.steps.evaluate.evaluation_problem` gives the reason);
    else CONTINUE, and the statuses are what the agent's next prompt lists as failing.
    Records EXIT_CONDITIONS_EVALUATED (``baseline: true`` at iteration 0) and the verification.
    """
    statuses = evaluate_conditions(state, sandbox, record, baseline=state.iteration == 0, workspace=workspace)
    verification = verify_gate(state, record)
    problem = evaluation_problem(statuses, baseline=state.iteration == 0)
    return decide(verification=verification, condition_problem=problem)


def verify_gate(state: LoopState, record: Recorder) -> VerificationResult:
    """gate:all over the state's latest statuses."""
    state.phase = LoopPhase.VERIFYING
    verification = verify(state.config, state.exit_conditions)
    record(
        _EV.VERIFICATION_PASSED if verification.passed else _EV.VERIFICATION_FAILED,
        verification.message,
    )
    return verification


def decide_next(
    state: LoopState,
    record: Recorder,
    *,
    verification: VerificationResult,
    stop_reason: str | None,
    pause_reason: str | None = None,
) -> Decision:
    """Decide what follows the iteration and record it as ITERATION_COMPLETED (a required
    condition that ERRORed pauses the loop, see :func:`loopwright.steps.decide.decide`)."""
    state.phase = LoopPhase.DECIDING
    agent = AgentResult(needs_human=state.human_request) if state.human_request else None
    decision = decide(
        verification=verification,
        stop_reason=stop_reason,
        pause_reason=pause_reason or state.workspace_problem,
        condition_problem=evaluation_problem(state.exit_conditions, baseline=False),
        agent=agent,
        usage_limit_resets_at=state.resume_at,
        failure_cause=state.last_failure_cause,
    )
    record(
        _EV.ITERATION_COMPLETED,
        f"iteration {state.iteration}: {decision.action.value}",
        action=decision.action.value,
        tokens_used=state.tokens_used,
    )
    return decision


def finish(state: LoopState, decision: Decision, record: Recorder) -> None:
    """End the loop with the decision's outcome, or pause it: for a human (AWAITING_RESPONSE), or
    by a human or until a usage limit resets (PAUSED, ``resume_at``). The session's running time
    is added to ``state.active_seconds`` (a pause or a wait for a human does not count against
    ``max_duration_seconds`` unless ``count_paused_time``)."""
    state.is_active = False
    state.close_active_time()
    if decision.action is NextAction.PAUSE:
        state.phase = LoopPhase.PAUSED
        state.resume_at = decision.resume_at
        state.outcome_reason = decision.reason
        record(
            _EV.LOOP_PAUSED,
            decision.reason,
            resume_at=decision.resume_at.isoformat() if decision.resume_at else None,
        )
        return
    if decision.action is NextAction.AWAIT_HUMAN:
        state.phase = LoopPhase.AWAITING_RESPONSE
        state.human_request = decision.reason
        record(_EV.HUMAN_INPUT_REQUESTED, decision.reason)
        return
    state.phase = LoopPhase.COMPLETED
    state.outcome = decision.outcome
    state.outcome_reason = decision.reason
    state.ended_at = utcnow()
    record(
        _EV.LOOP_COMPLETED,
        f"{decision.outcome.value if decision.outcome else 'ended'}: {decision.reason}",
        outcome=decision.outcome.value if decision.outcome else None,
        iterations=state.iteration,
        tokens_used=state.tokens_used,
    )
