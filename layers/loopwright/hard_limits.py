"""Hard limits (issue 10 point 8), the engine-neutral part: what the agent is told of the loop's
remaining limits, and what happens after an agent a hard limit ended mid-run.

Before each iteration :func:`loopwright.steps.iterate.limits_left` gives the agent's request
what is left of the loop's time (``max_duration_seconds`` minus
:attr:`~loopwright.models.LoopState.elapsed_seconds`), tokens and dollars; an agent adapter ends
the agent when the time runs out, when the usage it streams crosses a budget, or at
``loopwright stop --now``, and reports it in :attr:`~loopwright.models.AgentResult.ended_by`.

After such an iteration :func:`set_aside_partial_work` keeps what the agent had done on a ref
(``refs/loopwright/<loop_id>/set-aside/<limit>-iteration-<n>``), moves the branch back to the
commit before it (the partial work is not evaluated), and records AGENT_ENDED_AT_LIMIT. The
iteration's tokens and cost (the usage so far) are accounted as for any iteration, so the next
authorization is denied by the limit's own Cedar policy (``time-limit``, ``token-budget``,
``cost-budget``): the loop ends with that policy's outcome. A ``stop --now`` ends it STOPPED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.models import HardLimit, IterationEventType, IterationResult, LoopState
from loopwright.ports import Workspace

if TYPE_CHECKING:
    from loopwright.workflow import Recorder

#: The ref label of each hard limit's set-aside work.
_LABELS = {
    HardLimit.DEADLINE: "deadline",
    HardLimit.TOKEN_BUDGET: "token-budget",
    HardLimit.COST_BUDGET: "cost-budget",
    HardLimit.STOP_NOW: "stop-now",
}


def set_aside_partial_work(
    state: LoopState,
    result: IterationResult,
    previous_head: str | None,
    workspace: Workspace,
    record: Recorder,
) -> HardLimit | None:
    """After iteration ``result``: when a hard limit ended its agent, keep its committed partial
    work on a ref and move the branch back to ``previous_head`` (the branch's commit before the
    iteration); the last evaluation still describes the tree then, so ``state.evaluated_iteration``
    becomes the iteration (it is not evaluated). Records AGENT_ENDED_AT_LIMIT (``limit``, ``ref``,
    ``commit``, the usage so far). Returns the limit, or None when the agent ended by itself
    (nothing is done). Raises :class:`~loopwright.exceptions.WorkspaceError` when the branch
    cannot be moved back.
    """
    ended_by = result.agent.ended_by
    if ended_by is None:
        return None
    ref = None
    commit = result.commit
    if commit is not None and previous_head is not None and commit != previous_head:
        saved = workspace.set_aside(
            state.loop_id, previous_head, f"{_LABELS[ended_by]}-iteration-{result.iteration}"
        )
        workspace.reset(state.loop_id, previous_head)
        state.head_commit = previous_head
        ref = saved.ref if saved else None
    state.evaluated_iteration = state.iteration
    kept = f"; its partial work is kept on {ref}" if ref else "; it had changed nothing"
    record(
        IterationEventType.AGENT_ENDED_AT_LIMIT,
        f"iteration {result.iteration}: {result.agent.summary[:300]}{kept}",
        iteration=result.iteration,
        limit=ended_by.value,
        ref=ref,
        commit=commit if ref else None,
        reverted_to=previous_head if ref else None,
        tokens_used=result.agent.tokens_used,
        changed_files=len(result.changed_files),
    )
    return ended_by
