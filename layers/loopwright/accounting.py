"""Accounting of one agent run: its cost (added to the loop's spend) and its failure cause
(the failure counters and the cause's event). Called by :func:`loopwright.workflow.run_iteration`
for both engines."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from loopwright.models import FAILURE_CAUSE_EVENTS, AgentResult, IterationEventType, LoopState, utcnow
from loopwright.models.pricing import IterationCost, iteration_cost
from loopwright.steps.failures import counts_as_failure, failure_cause, is_transient, retry_backoff_seconds

if TYPE_CHECKING:
    from loopwright.workflow import Recorder

_EV = IterationEventType


def account_failure(state: LoopState, agent: AgentResult, record: Recorder) -> None:
    """Classify the agent run's failure, update the failure counters and record its cause event."""
    cause = failure_cause(agent)
    state.last_failure_cause = cause
    if cause is None:
        state.consecutive_failures = 0
        return
    if counts_as_failure(cause):
        state.consecutive_failures += 1
    retry_at = None
    if is_transient(cause):
        state.uncounted_iterations += 1
        wait = retry_backoff_seconds(agent, max(state.consecutive_failures, 1))
        retry_at = utcnow() + timedelta(seconds=wait)
        state.resume_at = retry_at
    limit = state.config.max_consecutive_failures
    record(
        FAILURE_CAUSE_EVENTS[cause],
        f"{cause.value}: {agent.summary.strip()[:300] or 'no message'}"
        + (f" (retry at {retry_at.isoformat(timespec='seconds')}, not counted)" if retry_at else "")
        + (
            f" ({state.consecutive_failures} of {limit} failures in a row)"
            if counts_as_failure(cause)
            else ""
        ),
        iteration=state.iteration,
        cause=cause.value,
        consecutive_failures=state.consecutive_failures,
        retry_at=retry_at.isoformat() if retry_at else None,
    )


def account_cost(state: LoopState, agent: AgentResult, record: Recorder) -> IterationCost:
    """Add the agent run's cost to ``state.cost_usd``. Tokens that cannot be priced (no model
    named, a model without a price, no token breakdown) are reported once per model by a
    COST_UNKNOWN event (``state.unpriced_models`` remembers which; "" for no model)."""
    cost = iteration_cost(
        cost_usd=agent.cost_usd,
        model=agent.model,
        tokens_used=agent.tokens_used,
        input_tokens=agent.input_tokens,
        cached_input_tokens=agent.cached_input_tokens,
        output_tokens=agent.output_tokens,
        prices=state.config.prices,
    )
    if cost.cost_usd is not None:
        state.cost_usd += cost.cost_usd
        return cost
    key = agent.model or ""
    if key in state.unpriced_models:
        return cost
    state.unpriced_models = [*state.unpriced_models, key]
    if cost.basis == "unknown_model":
        why = (
            f"model {key!r} has no price; price it in loopwright.toml: "
            f'prices = {{ "{key}" = {{ input = ..., cached_input = ..., output = ... }} }} '
            "(US dollars per million tokens)"
        )
    elif cost.basis == "no_model":
        why = "the agent named no model (AgentResult.model), so its tokens cannot be priced"
    else:
        why = (
            f"the agent gave no input/cached/output breakdown of its tokens, so model {key!r} "
            "cannot be priced"
        )
    budget = state.config.cost_budget_usd
    record(
        _EV.COST_UNKNOWN,
        f"{why}; its tokens add nothing to the loop's cost"
        + (f" and the cost budget (${budget:g}) does not see them" if budget else ""),
        iteration=state.iteration,
        model=agent.model,
        cost_basis=cost.basis,
    )
    return cost
