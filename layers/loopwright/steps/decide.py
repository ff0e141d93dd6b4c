"""The decide step: what the engine does after an iteration (or after a denied authorization)."""

from __future__ import annotations

from datetime import datetime

from loopwright.models import (
    TRANSIENT_FAILURE_CAUSES,
    AgentFailureCause,
    AgentResult,
    AuthorizationResult,
    Decision,
    LoopOutcome,
    NextAction,
    VerificationResult,
)


def decide(
    *,
    authorization: AuthorizationResult | None = None,
    verification: VerificationResult | None = None,
    stop_reason: str | None = None,
    pause_reason: str | None = None,
    condition_problem: str | None = None,
    agent: AgentResult | None = None,
    usage_limit_resets_at: datetime | None = None,
    failure_cause: AgentFailureCause | None = None,
) -> Decision:
    """Choose the next action, first match wins.

    1. a Cedar denial stops the loop with the policy's outcome, or pauses it for a human when
       the denying policies say ``@on_deny("pause")`` (stuck.cedar; resumable);
    2. gate:all passed completes it with CONDITIONS_MET (even if a stop was asked meanwhile);
    3. a human's stop request stops it with STOPPED;
    4. a human's pause request pauses it (PAUSE, phase PAUSED, resumed by a human);
    5. an exit condition that could not be evaluated pauses it for a human (PAUSE with
       ``condition_problem`` as the reason, see
       :func:`loopwright.steps.evaluate.evaluation_problem`): the agent is not paid to fix a
       missing tool;
    6. an agent that could not authenticate (``failure_cause`` AUTHENTICATION) pauses it for a
       human, without ``resume_at``: retrying cannot help;
    7. an agent that hit its model provider's usage limit pauses it until the limit resets
       (PAUSE with ``resume_at``; seed 002, scheduled continuation); after a rate limit or a
       provider outage (``failure_cause``) ``usage_limit_resets_at`` is the end of the backoff;
    8. an agent's question for a human pauses it (AWAIT_HUMAN, phase AWAITING_RESPONSE);
    9. otherwise the loop continues.
    """
    if authorization is not None and not authorization.allowed and authorization.pause:
        return Decision(action=NextAction.PAUSE, reason=f"paused for a human: {authorization.reason}")
    if authorization is not None and not authorization.allowed:
        return Decision(
            action=NextAction.STOP,
            outcome=authorization.outcome or LoopOutcome.POLICY_DENIED,
            reason=authorization.reason or "denied by policy",
        )
    if verification is not None and verification.passed:
        return Decision(
            action=NextAction.COMPLETE,
            outcome=LoopOutcome.CONDITIONS_MET,
            reason=verification.message,
        )
    if stop_reason is not None:
        return Decision(action=NextAction.STOP, outcome=LoopOutcome.STOPPED, reason=f"stopped: {stop_reason}")
    if pause_reason is not None:
        return Decision(action=NextAction.PAUSE, reason=f"paused: {pause_reason}")
    if condition_problem is not None:
        return Decision(action=NextAction.PAUSE, reason=f"paused: {condition_problem}")
    if failure_cause is AgentFailureCause.AUTHENTICATION:
        return Decision(
            action=NextAction.PAUSE,
            reason="paused: the agent could not authenticate with its model provider; fix its "
            "credentials (log in, or set its API key), then resume the loop",
        )
    resets_at = usage_limit_resets_at or (agent.usage_limit_resets_at if agent is not None else None)
    if resets_at is not None and failure_cause in TRANSIENT_FAILURE_CAUSES:
        what = "rate limit" if failure_cause is AgentFailureCause.RATE_LIMIT else "provider outage"
        return Decision(
            action=NextAction.PAUSE,
            reason=f"{what}: the agent is retried at {resets_at.isoformat()} (not counted as an iteration)",
            resume_at=resets_at,
        )
    if resets_at is not None:
        return Decision(
            action=NextAction.PAUSE,
            reason=f"usage limit reached; continues at {resets_at.isoformat()}",
            resume_at=resets_at,
        )
    if agent is not None and agent.needs_human:
        return Decision(action=NextAction.AWAIT_HUMAN, reason=f"agent asks: {agent.needs_human}")
    return Decision(action=NextAction.CONTINUE, reason=verification.message if verification else "")
