"""The iterate step: the agent works once on the worktree, and its changes are committed."""

from __future__ import annotations

import time
from pathlib import Path

from loopwright.deferred import deferral_key, replayed_seconds
from loopwright.exceptions import AgentError, WorkspaceIntegrityError
from loopwright.models import AgentRequest, AgentResult, IterationResult, LoopState
from loopwright.ports import Agent, OutputCallback, StopCheck, Workspace
from loopwright.steps.evaluate import failures_for_agent
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


def build_agent_request(state: LoopState, state_dir: Path) -> AgentRequest:
    """The request for the next iteration (``state.iteration + 1``).

    It carries the failures of the last evaluation (at most ``config.max_failures_for_agent``
    lines), the policy warnings raised by the authorize step, the loop's recent history
    (``config.progress_history_iterations`` iterations, :func:`~loopwright.steps.progress.history_lines`),
    what a reverted iteration broke, and the agent's progress notes.
    """
    config = state.config
    failing = state.failing_conditions
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
        history=history_lines(state.progress, config.progress_history_iterations),
        regression=state.progress.regression,
        notes=state.progress.notes,
    )


def iterate(
    state: LoopState,
    agent: Agent,
    workspace: Workspace,
    *,
    state_dir: Path,
    should_stop: StopCheck | None = None,
    on_output: OutputCallback | None = None,
) -> IterationResult:
    """Run the agent for iteration ``state.iteration + 1`` and commit what it changed.

    An agent that cannot start (:class:`AgentError`) yields a failed :class:`AgentResult`
    rather than an exception: the iteration is recorded and the loop's policies decide what
    follows. A worktree that is not what loopwright left
    (:class:`~loopwright.exceptions.WorkspaceIntegrityError`: nothing was committed) yields
    ``workspace_problem``; other errors of the workspace
    (:class:`~loopwright.exceptions.WorkspaceError`) propagate.
    """
    request = build_agent_request(state, state_dir)
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
