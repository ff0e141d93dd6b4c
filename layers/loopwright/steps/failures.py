"""Why an agent iteration did no work, and what follows from it (issue 15.3).

Each :class:`~loopwright.models.AgentFailureCause` has one outcome:

* ``USAGE_LIMIT``: the loop pauses until the limit resets (``resume_at``);
* ``RATE_LIMIT``, ``PROVIDER_OUTAGE``: the loop pauses for a backoff (:func:`retry_backoff_seconds`)
  and retries; the iteration does not count against ``max_iterations``;
* ``AUTHENTICATION``: the loop pauses for a human (retrying cannot help);
* ``CRASH``, ``TIMEOUT``, ``IDLE``: the iteration counts, and the loop continues.

Every cause but ``USAGE_LIMIT`` and ``AUTHENTICATION`` (which pause the loop anyway) adds one to
``LoopState.consecutive_failures``; an iteration that did work resets it. Cedar's
``consecutive-failures`` policy stops the loop at ``LoopConfig.max_consecutive_failures`` with
outcome ``AGENT_FAILING`` and the last cause in its reason.
"""

from __future__ import annotations

from loopwright.models import TRANSIENT_FAILURE_CAUSES, AgentFailureCause, AgentResult

#: First backoff after a rate limit or an outage, seconds; doubled for each one in a row.
BASE_BACKOFF_SECONDS = 30.0
#: Longest backoff, seconds (15 minutes).
MAX_BACKOFF_SECONDS = 900.0

#: Causes that pause the loop whatever their count: they are not counted as consecutive failures.
PAUSING_CAUSES = frozenset({AgentFailureCause.USAGE_LIMIT, AgentFailureCause.AUTHENTICATION})


def failure_cause(agent: AgentResult) -> AgentFailureCause | None:
    """Why ``agent`` did no work: its ``failure_cause``; else ``USAGE_LIMIT`` when it names a
    ``usage_limit_resets_at``, ``CRASH`` when it ``failed``; None for an iteration that worked."""
    if agent.failure_cause is not None:
        return agent.failure_cause
    if agent.usage_limit_resets_at is not None:
        return AgentFailureCause.USAGE_LIMIT
    if agent.failed:
        return AgentFailureCause.CRASH
    return None


def counts_as_failure(cause: AgentFailureCause | None) -> bool:
    """True when ``cause`` adds one to the consecutive failures (see the module docstring)."""
    return cause is not None and cause not in PAUSING_CAUSES


def is_transient(cause: AgentFailureCause | None) -> bool:
    """True for a rate limit or a provider outage: retried after a backoff, not an iteration."""
    return cause in TRANSIENT_FAILURE_CAUSES


def retry_backoff_seconds(agent: AgentResult, attempt: int) -> float:
    """Seconds to wait before retrying after the ``attempt``-th (1-based) transient failure in a row.

    The provider's own ``retry_after_seconds`` when it gave one, else
    :data:`BASE_BACKOFF_SECONDS` doubled per attempt; at most :data:`MAX_BACKOFF_SECONDS`.
    Raises :class:`ValueError` when ``attempt`` is below 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more (got {attempt})")
    if agent.retry_after_seconds is not None:
        return min(agent.retry_after_seconds, MAX_BACKOFF_SECONDS)
    return min(BASE_BACKOFF_SECONDS * float(2 ** min(attempt - 1, 30)), MAX_BACKOFF_SECONDS)
