"""The authorize step: may the next iteration of a loop run, and which limit warnings apply.

Before each iteration the engine asks the Cedar policies (``policies/``) two questions about
the iteration about to run (``state.iteration + 1``), with the loop's limits as the attributes
of its ``Loop`` entity and its counters as the context:

1. ``ContinueIteration``: denied by ``iteration-limit``, ``token-budget``, ``cost-budget``,
   ``time-limit`` or ``consecutive-failures`` (or any other forbid); the first denying policy's
   ``@outcome`` annotation gives the :class:`LoopOutcome` (``POLICY_DENIED`` when missing or
   not a denial outcome).
2. ``EvaluateWarnings`` (only when allowed): the permit policies that apply are the warnings,
   at ``warning_threshold_percent`` of a limit (seed 000 SC-008: 80%).

A decision carrying evaluation errors is a denial (fail closed): Cedar skips an erroring policy,
so an erroring ``forbid`` would otherwise let the loop run past its limit.

Cedar has no floating-point numbers: the cost budget and the spend, US dollars in the models
(``LoopConfig.cost_budget_usd``, ``LoopState.cost_usd``), are sent as whole micro-dollars
(millionths of a dollar, rounded to the nearest; :func:`micro_usd`).
"""

from __future__ import annotations

from typing import Any

from loopwright.models import (
    AuthorizationRequest,
    AuthorizationResult,
    LoopOutcome,
    LoopState,
    PolicyDecision,
    operators_group,
    parse_entity_uid,
)
from loopwright.ports import PolicyEngine
from loopwright.steps.progress import stuck_facts

#: Cedar action asked before every iteration.
CONTINUE_ITERATION = 'Action::"ContinueIteration"'
#: Cedar action asked for the warning policies that apply (warnings.cedar).
EVALUATE_WARNINGS = 'Action::"EvaluateWarnings"'

#: ``@outcome`` values a denying policy may name; any other value maps to POLICY_DENIED.
_DENIAL_OUTCOMES = {
    LoopOutcome.ITERATION_LIMIT,
    LoopOutcome.TOKEN_BUDGET_EXHAUSTED,
    LoopOutcome.COST_BUDGET_EXHAUSTED,
    LoopOutcome.TIME_LIMIT,
    LoopOutcome.AGENT_FAILING,
    LoopOutcome.SESSION_LIMIT,
    LoopOutcome.STUCK,
    LoopOutcome.POLICY_DENIED,
}


#: Micro-dollars in a US dollar: the Cedar unit of money.
MICRO_USD_PER_USD = 1_000_000
#: Highest spend sent to Cedar, micro-dollars ($10 billion): above every budget a LoopConfig accepts,
#: and 100 times it (the warning's percentage) still fits Cedar's 64-bit Long.
MAX_CEDAR_MICRO_USD = 10**16


def micro_usd(usd: float) -> int:
    """``usd`` US dollars as whole micro-dollars, rounded to the nearest, at most
    :data:`MAX_CEDAR_MICRO_USD`: ``0.3`` -> ``300000`` (0.1 + 0.2 dollars too)."""
    return min(MAX_CEDAR_MICRO_USD, max(0, round(usd * MICRO_USD_PER_USD)))


def loop_principal(loop_id: str) -> str:
    """The Cedar uid of a loop's agent: ``Agent::"<loop_id>"``."""
    return f'Agent::"{loop_id}"'


def loop_resource(loop_id: str) -> str:
    """The Cedar uid of a loop: ``Loop::"<loop_id>"``."""
    return f'Loop::"{loop_id}"'


def loop_attributes(state: LoopState) -> dict[str, Any]:
    """The ``Loop`` entity's attributes: ``project``, the limits of ``state.config`` and
    ``operators``, the project's operators group (an entity reference, ``{"__entity": ...}``).

    ``token_budget`` (tokens), ``cost_budget_micro_usd`` (micro-dollars, from
    ``cost_budget_usd``), ``max_duration_seconds`` (seconds) and ``max_stuck_iterations``
    (iterations; stuck.cedar) are left out when unset.
    """
    config = state.config
    attributes: dict[str, Any] = {
        "project": state.project,
        "operators": {"__entity": parse_entity_uid(operators_group(state.project))},
        "max_iterations": config.max_iterations,
        "warning_threshold_percent": config.warning_threshold_percent,
        "max_consecutive_failures": config.max_consecutive_failures,
    }
    if config.token_budget is not None:
        attributes["token_budget"] = config.token_budget
    if config.cost_budget_usd is not None:
        attributes["cost_budget_micro_usd"] = micro_usd(config.cost_budget_usd)
    if config.max_duration_seconds is not None:
        attributes["max_duration_seconds"] = config.max_duration_seconds
    if config.max_sessions is not None:
        attributes["max_sessions"] = config.max_sessions
    if config.max_stuck_iterations is not None:
        attributes["max_stuck_iterations"] = config.max_stuck_iterations
    return attributes


def build_authorization_request(
    state: LoopState, action: str = CONTINUE_ITERATION, *, principal: str | None = None
) -> AuthorizationRequest:
    """The Cedar request about the next iteration of ``state`` (shared with the AWS adapter).

    Context: ``iteration`` = ``state.iteration + 1 - state.uncounted_iterations`` (1-based, the
    counted iteration about to run: retries after a rate limit or an outage do not count),
    ``tokens_used`` (tokens), ``cost_micro_usd`` (US dollars spent, as :func:`micro_usd`),
    ``elapsed_seconds`` (wall clock, whole seconds rounded down), ``consecutive_failures``
    (agent iterations failed in a row) and, after a failed one, ``last_failure_cause`` (an
    :class:`~loopwright.models.AgentFailureCause` value); ``sessions_used`` (agent sessions
    started) and ``starts_session`` (the iteration would start a fresh agent session:
    :func:`loopwright.sessions.starts_session`); and the stuck facts of
    :func:`~loopwright.steps.progress.stuck_facts` (``iterations_without_change``,
    ``repeated_failure_count``, ``tree_seen_before``, ``failing_count``, ``best_failing_count``,
    ``changed_paths``), which stuck.cedar reads.
    ``principal`` defaults to :func:`loop_principal`, the resource is :func:`loop_resource`.
    """
    return AuthorizationRequest(
        principal=principal or loop_principal(state.loop_id),
        action=action,
        resource=loop_resource(state.loop_id),
        resource_attributes=loop_attributes(state),
        context=_counters(state),
    )


def _counters(state: LoopState) -> dict[str, Any]:
    counters: dict[str, Any] = {
        "iteration": max(state.iteration + 1 - state.uncounted_iterations, 1),
        "tokens_used": state.tokens_used,
        "cost_micro_usd": micro_usd(state.cost_usd),
        "elapsed_seconds": int(state.elapsed_seconds),
        "consecutive_failures": state.consecutive_failures,
        "sessions_used": state.agent_sessions,
        # the same rule as loopwright.sessions.starts_session: no session to resume, or a handoff
        "starts_session": state.agent_session_id is None or state.pending_handoff is not None,
    }
    if state.last_failure_cause is not None:
        counters["last_failure_cause"] = state.last_failure_cause.value
    counters.update(stuck_facts(state.progress))
    return counters


def authorize(state: LoopState, policy: PolicyEngine, *, principal: str | None = None) -> AuthorizationResult:
    """Ask ``policy`` whether iteration ``state.iteration + 1`` may run, and which warnings apply.

    Returns an :class:`AuthorizationResult`: when denied, ``denied_by`` (policy ``@id``s),
    ``outcome`` and a ``reason`` naming the policy and the figures, e.g. "policy
    'iteration-limit' denied iteration 11: limit is 10 iterations"; when allowed, the ``@id`` of
    each warning policy that applies and a sentence for each. Does not raise for a denial.
    """
    request = build_authorization_request(state, CONTINUE_ITERATION, principal=principal)
    warn_request = request.model_copy(update={"action": EVALUATE_WARNINGS})
    iteration = int(request.context["iteration"])
    # Both questions in one call; the warnings answer is only used when the iteration may run.
    decision, warn_decision = policy.is_authorized_batch([request, warn_request])
    if decision.errors:
        return AuthorizationResult(
            allowed=False,
            iteration=iteration,
            denied_by=decision.policy_ids,
            outcome=LoopOutcome.POLICY_DENIED,
            reason=(
                f"Cedar could not evaluate the policies for iteration {iteration}, "
                f"so it is denied (fail closed): {'; '.join(decision.errors)}"
            ),
        )
    if not decision.allowed:
        decision = _limits_first(decision)
        if not decision.policy_ids:
            reason = f"no policy permits iteration {iteration} (Cedar denies by default)"
            outcome = LoopOutcome.POLICY_DENIED
        else:
            sentences = [
                _denial_sentence(pid, decision.annotations.get(pid, {}), request)
                for pid in decision.policy_ids
            ]
            reason = "; ".join(sentences)
            first = decision.annotations.get(decision.policy_ids[0], {})
            outcome = _outcome(first.get("outcome"))
        return AuthorizationResult(
            allowed=False,
            iteration=iteration,
            denied_by=decision.policy_ids,
            outcome=outcome,
            reason=reason,
            pause=bool(decision.policy_ids) and _pauses(decision.annotations, decision.policy_ids),
        )
    warnings, messages = _warnings(warn_request, warn_decision)
    return AuthorizationResult(
        allowed=True, iteration=iteration, warnings=warnings, warning_messages=messages
    )


def _limits_first(decision: PolicyDecision) -> PolicyDecision:
    """A denial by limits and by pausing policies (``@on_deny("pause")``) at once is the limits'
    alone: a loop at its limit ends, whether or not it was also stuck."""
    notes = decision.annotations
    ending = [pid for pid in decision.policy_ids if notes.get(pid, {}).get("on_deny") != "pause"]
    if not ending or len(ending) == len(decision.policy_ids):
        return decision
    return decision.model_copy(update={"policy_ids": ending})


def _pauses(annotations: dict[str, dict[str, str]], policy_ids: list[str]) -> bool:
    """True when every denying policy is annotated ``@on_deny("pause")``: the loop pauses for a
    human (resumable) instead of ending; one denial without it ends the loop."""
    return all(annotations.get(pid, {}).get("on_deny") == "pause" for pid in policy_ids)


def _outcome(value: str | None) -> LoopOutcome:
    """The denial outcome an ``@outcome`` annotation names; POLICY_DENIED if none or unknown."""
    outcome = LoopOutcome.__members__.get(value or "")
    return outcome if outcome in _DENIAL_OUTCOMES else LoopOutcome.POLICY_DENIED


def _denial_sentence(policy_id: str, annotations: dict[str, str], request: AuthorizationRequest) -> str:
    limits, counters = request.resource_attributes, request.context
    head = f"policy '{policy_id}' denied iteration {counters['iteration']}"
    outcome = _outcome(annotations.get("outcome"))
    if outcome is LoopOutcome.ITERATION_LIMIT:
        return f"{head}: limit is {limits['max_iterations']} iterations"
    if outcome is LoopOutcome.TOKEN_BUDGET_EXHAUSTED and "token_budget" in limits:
        return f"{head}: {counters['tokens_used']} tokens used of a budget of {limits['token_budget']} tokens"
    if outcome is LoopOutcome.COST_BUDGET_EXHAUSTED and "cost_budget_micro_usd" in limits:
        return (
            f"{head}: {_usd(int(counters['cost_micro_usd']))} spent of a budget of "
            f"{_usd(int(limits['cost_budget_micro_usd']))}"
        )
    if outcome is LoopOutcome.TIME_LIMIT and "max_duration_seconds" in limits:
        return (
            f"{head}: {counters['elapsed_seconds']} s elapsed of a limit of "
            f"{limits['max_duration_seconds']} s"
        )
    if outcome is LoopOutcome.AGENT_FAILING and "consecutive_failures" in counters:
        cause = counters.get("last_failure_cause", "unknown")
        return (
            f"{head}: the agent failed {counters['consecutive_failures']} iterations in a row "
            f"(limit {limits.get('max_consecutive_failures', '?')}); last cause: {cause}"
        )
    if outcome is LoopOutcome.SESSION_LIMIT and "max_sessions" in limits:
        return (
            f"{head}: it would start agent session {int(counters['sessions_used']) + 1} of a limit "
            f"of {limits['max_sessions']} sessions"
        )
    if outcome is LoopOutcome.STUCK and "iterations_without_change" in counters:
        changed = ", ".join(list(counters.get("changed_paths", []))[:10]) or "none"
        return (
            f"{head}: {annotations.get('message', 'no progress')} ("
            f"{counters['iterations_without_change']} iterations in a row without a change, "
            f"{counters['repeated_failure_count']} with the same failures, limit "
            f"{limits.get('max_stuck_iterations', '?')}; tree seen before: "
            f"{'yes' if counters.get('tree_seen_before') else 'no'}; "
            f"{counters['failing_count']} required conditions failing, best "
            f"{counters['best_failing_count']}; last changed: {changed})"
        )
    message = annotations.get("message")
    return f"{head}: {message}" if message else head


def _warnings(request: AuthorizationRequest, decision: PolicyDecision) -> tuple[list[str], list[str]]:
    """The warning policies that apply, from the ``decision`` of an EvaluateWarnings request."""
    messages: list[str] = []
    if decision.errors:
        messages.append(f"warning policies could not be evaluated: {'; '.join(decision.errors)}")
    if not decision.allowed:
        return [], messages
    for policy_id in decision.policy_ids:
        messages.append(_warning_sentence(policy_id, decision.annotations.get(policy_id, {}), request))
    return list(decision.policy_ids), messages


def _warning_sentence(policy_id: str, annotations: dict[str, str], request: AuthorizationRequest) -> str:
    limits, counters = request.resource_attributes, request.context
    warns = annotations.get("warns")
    if warns == LoopOutcome.ITERATION_LIMIT:
        used, limit = int(counters["iteration"]), int(limits["max_iterations"])
        return f"iteration {used} of {limit} ({_percent(used, limit)}% of the iteration limit, SC-008)"
    if warns == LoopOutcome.TOKEN_BUDGET_EXHAUSTED and "token_budget" in limits:
        used, limit = int(counters["tokens_used"]), int(limits["token_budget"])
        return f"{used} of {limit} tokens used ({_percent(used, limit)}% of the token budget, SC-008)"
    if warns == LoopOutcome.COST_BUDGET_EXHAUSTED and "cost_budget_micro_usd" in limits:
        used, limit = int(counters["cost_micro_usd"]), int(limits["cost_budget_micro_usd"])
        return f"{_usd(used)} of {_usd(limit)} spent ({_percent(used, limit)}% of the cost budget, SC-008)"
    if warns == LoopOutcome.TIME_LIMIT and "max_duration_seconds" in limits:
        used, limit = int(counters["elapsed_seconds"]), int(limits["max_duration_seconds"])
        return f"{used} of {limit} s elapsed ({_percent(used, limit)}% of the time limit, SC-008)"
    message = annotations.get("message")
    return f"policy '{policy_id}': {message}" if message else f"policy '{policy_id}' applies"


def _percent(used: int, limit: int) -> int:
    """``used`` as a whole percentage of ``limit``, rounded down."""
    return used * 100 // limit if limit > 0 else 100


def _usd(micro: int) -> str:
    """Micro-dollars as dollars, exact, at least to the cent: ``4250000`` -> ``$4.25``,
    ``4999999`` -> ``$4.999999``, ``1234`` -> ``$0.001234``."""
    whole, fraction = divmod(micro, MICRO_USD_PER_USD)
    digits = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return f"${whole:,}.{digits}"
