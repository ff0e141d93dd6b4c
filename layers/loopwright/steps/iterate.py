"""The iterate step: the agent works once on the worktree, and its changes are committed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loopwright.deferred import deferral_key, replayed_seconds
from loopwright.exceptions import AgentError, WorkspaceIntegrityError
from loopwright.models import AgentRequest, AgentResult, FeatureBrief, IterationResult, LoopState
from loopwright.ports import Agent, OutputCallback, StopCheck, Workspace
from loopwright.steps.evaluate import failures_for_agent
from loopwright.steps.features import broken_features, condition_name, conditions_in_scope, current_feature
from loopwright.steps.progress import history_lines

#: Fields of a failing condition handed to the agent (its stdout/stderr stay in the store).
AGENT_CONDITION_FIELDS = {
    "name",
    "type",
    "status",
    "summary",
    "details",
    "failures",
    "command",
    "exit_code",
}


def limits_left(state: LoopState) -> dict[str, Any]:
    """What is left of ``state``'s limits, as :class:`~loopwright.models.AgentRequest` fields:
    ``time_left_seconds`` (seconds, of ``max_duration_seconds``), ``tokens_left`` (tokens),
    ``cost_left_usd`` (US dollars), each None without that limit (never below 0), and
    ``prices`` (the loop's own model prices)."""
    config = state.config
    time_left = None
    if config.max_duration_seconds is not None:
        time_left = max(0.0, config.max_duration_seconds - state.elapsed_seconds)
    tokens_left = None if config.token_budget is None else max(0, config.token_budget - state.tokens_used)
    cost_left = None if config.cost_budget_usd is None else max(0.0, config.cost_budget_usd - state.cost_usd)
    return {
        "time_left_seconds": time_left,
        "tokens_left": tokens_left,
        "cost_left_usd": cost_left,
        "prices": dict(config.prices),
    }


def build_agent_request(state: LoopState, state_dir: Path, *, handoff: str | None = None) -> AgentRequest:
    """The request for the next iteration (``state.iteration + 1``).

    It carries the failures of the last evaluation (at most ``config.max_failures_for_agent``
    lines) and the policy warnings raised by the authorize step, so the agent sees both. With a
    feature list it names the current feature (:func:`feature_brief`) and shows only the failures
    of the exit conditions, of that feature and of done features that broke. ``session_id`` is the
    agent session to continue (None: a fresh one), ``handoff`` a fresh session's summary after a
    handoff (:func:`loopwright.sessions.handoff_summary`, passed in as ``handoff``). It also
    carries the loop's recent history (``config.progress_history_iterations`` iterations,
    :func:`~loopwright.steps.progress.history_lines`), what a reverted iteration broke, and the
    agent's progress notes, and what is left of the loop's limits (:func:`limits_left`): the
    agent is ended when they run out.
    """
    config = state.config
    failing = state.failing_conditions
    if config.features:
        scope = conditions_in_scope(config, state.exit_conditions, state.features_done)
        failing = [c for c in failing if c.name in scope]
    return AgentRequest(
        loop_id=state.loop_id,
        iteration=state.iteration + 1,
        goal=config.goal,
        worktree=state.worktree,
        state_dir=str(state_dir),
        max_iterations=config.max_iterations,
        tokens_used=state.tokens_used,
        token_budget=config.token_budget,
        elapsed_seconds=round(state.elapsed_seconds, 3),
        max_duration_seconds=config.max_duration_seconds,
        failures=failures_for_agent(failing, config.max_failures_for_agent),
        failing_conditions=[c.name for c in failing],
        conditions=[c.model_dump(mode="json", include=AGENT_CONDITION_FIELDS) for c in failing],
        warnings=list(state.pending_warnings),
        human_response=state.human_response,
        feature=feature_brief(state),
        session_id=state.agent_session_id,
        handoff=handoff,
        history=history_lines(state.progress, config.progress_history_iterations),
        regression=state.progress.regression,
        notes=state.progress.notes,
        **limits_left(state),
    )


def feature_brief(state: LoopState) -> FeatureBrief | None:
    """The current feature for the agent's request (None without a feature list, or when all are
    done), see :class:`~loopwright.models.FeatureBrief`."""
    config = state.config
    feature = current_feature(config, state.features_done)
    if feature is None:
        return None
    return FeatureBrief(
        name=feature.name,
        description=feature.description,
        position=config.features.index(feature) + 1,
        total=len(config.features),
        done=list(state.features_done),
        conditions=[condition_name(feature, c) for c in feature.acceptance_conditions],
        broken=[f.name for f in broken_features(config, state.exit_conditions, state.features_done)],
    )


def iterate(
    state: LoopState,
    agent: Agent,
    workspace: Workspace,
    *,
    state_dir: Path,
    should_stop: StopCheck | None = None,
    on_output: OutputCallback | None = None,
    handoff: str | None = None,
) -> IterationResult:
    """Run the agent for iteration ``state.iteration + 1`` and commit what it changed.

    An agent that cannot start (:class:`AgentError`) yields a failed :class:`AgentResult`
    rather than an exception: the iteration is recorded and the loop's policies decide what
    follows. A worktree that is not what loopwright left
    (:class:`~loopwright.exceptions.WorkspaceIntegrityError`: nothing was committed) yields
    ``workspace_problem``; other errors of the workspace
    (:class:`~loopwright.exceptions.WorkspaceError`) propagate.
    """
    request = build_agent_request(state, state_dir, handoff=handoff)
    started = time.monotonic()
    try:
        with deferral_key("agent"):  # a replayed step finds the agent's task again
            result = agent.run(request, should_stop=should_stop, on_output=on_output)
    except AgentError as exc:
        result = AgentResult(failed=True, summary=f"agent error: {exc}")
    summary = result.summary.strip() or ("agent failed" if result.failed else "agent finished")
    problem = None
    try:
        commit, changed = workspace.commit(
            state.loop_id, f"loopwright: iteration {request.iteration}\n\n{summary[:2000]}"
        )
    except WorkspaceIntegrityError as exc:
        commit, changed, problem = None, [], str(exc)
    return IterationResult(
        iteration=request.iteration,
        agent=result,
        commit=commit,
        changed_files=changed,
        withheld_files=workspace.withheld(state.loop_id),
        duration_seconds=round(max(time.monotonic() - started, replayed_seconds()), 6),
        workspace_problem=problem,
    )
