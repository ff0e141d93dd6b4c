"""The hard limits of one agent run (issue 10 point 8): what ends an agent mid-run.

An :class:`~loopwright.models.AgentRequest` carries what is left of the loop's limits
(``time_left_seconds``, ``tokens_left``, ``cost_left_usd``). For one run, :class:`RunLimits`

* gives the sandbox the agent's effective timeout: its own ``timeout_seconds``, or the time left
  until the loop's deadline when that comes first (a run timed out then was ended by the
  deadline, :attr:`~loopwright.models.HardLimit.DEADLINE`, not by its own timeout);
* gives the sandbox a ``should_stop`` check (:meth:`RunLimits.check`) that answers True once the
  usage the agent has streamed so far (:class:`UsageSoFar`, from a parser that reads it) reaches
  what is left of the token budget (``TOKEN_BUDGET``) or the cost budget (``COST_BUDGET``: the
  CLI's own dollar figure, else the streamed tokens priced by model), or once the engine's own
  check answers True (``stop --now``: ``STOP_NOW``);
* says afterwards which of them ended the run (:meth:`RunLimits.ended_by`) and in what words
  (:func:`ended_summary`).

A run ended so is not a failed run: its usage so far is accounted, and the loop's policies decide
what follows (the next authorization is denied by the limit reached; a stop ends the loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from loopwright.models import AgentRequest, AgentResult, CommandResult, HardLimit
from loopwright.models.pricing import iteration_cost
from loopwright.models.types import MAX_TOKENS
from loopwright.ports import StopCheck

#: Shortest effective timeout given to an agent whose loop's deadline is (nearly) reached, seconds.
MIN_RUN_SECONDS = 0.05


class UsageSoFar(NamedTuple):
    """What an agent CLI has reported of a run's usage while it runs (tokens; US dollars)."""

    tokens: int
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    model: str | None = None


#: Reads a run's streamed usage; None when nothing was reported yet (or never is).
UsageReader = Callable[[], "UsageSoFar | None"]


class RunLimits:
    """The hard limits of one run of ``request``'s agent, whose own timeout is
    ``timeout_seconds``; ``should_stop`` is the engine's check (``stop --now``), ``usage``
    reads the usage streamed so far (None: the agent streams none, budgets are then only checked
    between iterations); ``model`` prices streamed tokens that name no model (the configured one)."""

    def __init__(
        self,
        request: AgentRequest,
        timeout_seconds: float,
        should_stop: StopCheck | None = None,
        usage: UsageReader | None = None,
        model: str | None = None,
    ) -> None:
        self._request = request
        self._model = model
        self._should_stop = should_stop
        self._usage = usage
        self._ended_by: HardLimit | None = None
        left = request.time_left_seconds
        self.deadline_first = left is not None and left < timeout_seconds
        self.own_timeout = timeout_seconds
        self.timeout_seconds = (
            max(MIN_RUN_SECONDS, left) if self.deadline_first and left is not None else timeout_seconds
        )

    @property
    def watches(self) -> bool:
        """True when :meth:`check` can ever answer True (give it to the sandbox then)."""
        budgets = self._request.tokens_left is not None or self._request.cost_left_usd is not None
        return self._should_stop is not None or (self._usage is not None and budgets)

    def check(self) -> bool:
        """The sandbox's ``should_stop``: True once a budget is crossed or the engine asks."""
        if self._ended_by is not None:
            return True
        crossed = self.crossed()
        if crossed is not None:
            self._ended_by = crossed
            return True
        if self._should_stop is not None and self._should_stop():
            self._ended_by = HardLimit.STOP_NOW
            return True
        return False

    def crossed(self) -> HardLimit | None:
        """The budget the streamed usage has reached (tokens first), if any."""
        usage = self._usage() if self._usage is not None else None
        if usage is None:
            return None
        request = self._request
        if request.tokens_left is not None and usage.tokens >= request.tokens_left:
            return HardLimit.TOKEN_BUDGET
        if request.cost_left_usd is not None:
            cost = iteration_cost(
                cost_usd=usage.cost_usd,
                model=usage.model or self._model,
                tokens_used=usage.tokens,
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens,
                prices=request.prices,
            ).cost_usd
            if cost is not None and cost >= request.cost_left_usd:
                return HardLimit.COST_BUDGET
        return None

    def ended_by(self, outcome: CommandResult) -> HardLimit | None:
        """Which hard limit ended the run that gave ``outcome`` (None: none did)."""
        if outcome.stopped:
            return self._ended_by or HardLimit.STOP_NOW
        if outcome.timed_out and self.deadline_first:
            return HardLimit.DEADLINE
        return None


def ended_summary(ended_by: HardLimit, request: AgentRequest, left_running: list[str]) -> str:
    """One line saying which hard limit ended the agent, with the figures."""
    if ended_by is HardLimit.DEADLINE:
        limit = request.max_duration_seconds
        said = f"the agent was ended at the loop's deadline (max_duration_seconds = {limit} s)"
    elif ended_by is HardLimit.TOKEN_BUDGET:
        said = (
            f"the agent was ended: its streamed usage reached the {request.tokens_left} tokens left "
            f"of the token budget ({request.token_budget} tokens)"
        )
    elif ended_by is HardLimit.COST_BUDGET:
        left = request.cost_left_usd or 0.0
        said = f"the agent was ended: its streamed usage reached the ${left:.4f} left of the cost budget"
    else:
        said = "the agent was ended by `loopwright stop --now`"
    if left_running:
        said += f"; {len(left_running)} of its processes could not be ended: {'; '.join(left_running[:5])}"
    return said


def ended_result(
    result: AgentResult,
    ended_by: HardLimit,
    request: AgentRequest,
    outcome: CommandResult,
    usage: UsageSoFar | None,
) -> AgentResult:
    """``result`` of a run a hard limit ended (``ended_by``): not a failure, with the usage the
    CLI streamed before it was ended (``usage``: the parser's ``usage_so_far()``) when its final
    record (with the run's totals) never came."""
    update: dict[str, Any] = {
        "ended_by": ended_by,
        "failed": False,
        "failure_cause": None,
        "retry_after_seconds": None,
        "summary": ended_summary(ended_by, request, outcome.left_running),
    }
    if usage is not None and usage.tokens > result.tokens_used:
        update |= {
            "tokens_used": min(usage.tokens, MAX_TOKENS),
            "input_tokens": min(usage.input_tokens, MAX_TOKENS),
            "cached_input_tokens": min(usage.cached_input_tokens, MAX_TOKENS),
            "output_tokens": min(usage.output_tokens, MAX_TOKENS),
            "cost_usd": usage.cost_usd if usage.cost_usd is not None else result.cost_usd,
            "model": result.model or usage.model,
        }
    return result.model_copy(update=update)
