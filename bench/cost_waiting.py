"""What an iteration costs when its agent and its checks take minutes (issue 12.5): the
orchestrator must not pay a Lambda to wait for them.

From a run's no-wait counts per iteration (``bench_cost.measure``), two ways to wait:

- **blocking** (``LOOPWRIGHT_BACKGROUND_COMMANDS=false``, or an ``agentcore_runtime`` agent): the
  iterate Lambda waits for the agent and the evaluate Lambda for the checks (compact: the one
  RunIteration Lambda for both), billed for every second at the function's memory;
- **background** (the default on AWS, :mod:`loopwright.deferred`): each command is awaited
  ``inline`` seconds in the step, then the step returns pending and the state machine polls it,
  each poll a Wait, the task and its Pending? Choice (three transitions), one short invocation
  (``poll_seconds``: its AWS calls, a GetItem, the session's status, a few session commands and
  ``getTask``; an estimate, not measured here), its idempotency record (a PutItem and an
  UpdateItem), its store read and its log lines. The waits come from
  :func:`loopwright.deferred.next_wait`, the function the steps use: ``steady`` when the agent
  and the checks take as long as last time, ``slower`` when the agent works
  :data:`SLOWER_FACTOR` times longer, ``first`` for iteration 1 (the checks' duration known from
  the baseline, the agent's not).

The checks are one command of ``checks_seconds`` (several sequential checks poll more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cost_prices import LAMBDA_PLATFORM_LOG_BYTES, price_table

from loopwright.deferred import (
    DEFAULT_INLINE_SECONDS,
    DEFAULT_MAX_WAIT_SECONDS,
    DEFAULT_MIN_WAIT_SECONDS,
    next_wait,
)

#: Targets of issue 12.5, US dollars per iteration.
TARGET_WAITING_USD = 0.0005
TARGET_NO_WAIT_USD = 0.0002
#: The scenario of issue 12.5.
AGENT_SECONDS = 300.0
CHECKS_SECONDS = 120.0
#: Iterations of the loop whose mean cost per iteration is reported (its first, then ``slower`` ones).
LOOP_ITERATIONS = 10
#: How much longer than last time the agent works in the ``slower`` mode.
SLOWER_FACTOR = 1.2
#: Assumed duration of one poll invocation (see the module docstring), seconds.
POLL_SECONDS = 1.0
#: Bytes a poll invocation logs besides Lambda's own lines (the pending step's metric line).
POLL_LOG_BYTES = 300
#: Bytes the state machine logs for a poll's three states (entered and exited, with the state's
#: data: about 1 KB each).
POLL_STATE_LOG_BYTES = 6 * 1024


@dataclass(frozen=True)
class Polls:
    """How one background command is polled: ``polls`` invocations after the first, the command
    found done ``late_seconds`` after it ended."""

    polls: int
    late_seconds: float


def polls_for(
    seconds: float,
    expected: float | None,
    *,
    inline: float = DEFAULT_INLINE_SECONDS,
    minimum: int = DEFAULT_MIN_WAIT_SECONDS,
    maximum: int = DEFAULT_MAX_WAIT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> Polls:
    """The polls of a command running ``seconds``, the loop expecting ``expected`` (None: no idea)."""
    elapsed, polls = inline, 0
    while elapsed < seconds:
        elapsed += next_wait(elapsed, expected, minimum=minimum, maximum=maximum) + poll_seconds
        polls += 1
    return Polls(polls, max(0.0, elapsed - seconds))


def _memory_gb(figures: Mapping[str, Any], name: str) -> float:
    return float(figures["memory_mb"][name]) / 1024


def waiting_per_iteration(
    figures: Mapping[str, Any],
    mode: str,
    *,
    agent_seconds: float = AGENT_SECONDS,
    checks_seconds: float = CHECKS_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The per-iteration counts of ``figures`` plus the waiting of ``mode`` (``blocking``,
    ``steady``, ``slower`` or ``first``), and what it is made of."""
    per = dict(figures["per_iteration"])
    compact = figures["state_machine"] == "compact"
    agent_fn, checks_fn = ("run_iteration", "run_iteration") if compact else ("iterate", "evaluate")
    detail: dict[str, Any] = {"mode": mode}
    if mode == "blocking":
        waited = agent_seconds * _memory_gb(figures, agent_fn)
        waited += checks_seconds * _memory_gb(figures, checks_fn)
        per["lambda_gb_seconds"] += waited
        detail["lambda_waiting_gb_seconds"] = waited
        return per, detail
    ran = agent_seconds * SLOWER_FACTOR if mode == "slower" else agent_seconds
    agent = polls_for(ran, None if mode == "first" else agent_seconds, poll_seconds=poll_seconds)
    checks = polls_for(checks_seconds, checks_seconds, poll_seconds=poll_seconds)
    polls = agent.polls + checks.polls
    per["state_transitions"] += 3 * polls
    per["lambda_invocations"] += polls
    per["lambda_gb_seconds"] += (DEFAULT_INLINE_SECONDS + agent.polls * poll_seconds) * _memory_gb(
        figures, agent_fn
    ) + (DEFAULT_INLINE_SECONDS + checks.polls * poll_seconds) * _memory_gb(figures, checks_fn)
    per["idempotency_wru"] += 2 * polls
    per["dynamodb_rru"] += polls
    log_bytes = polls * (LAMBDA_PLATFORM_LOG_BYTES + POLL_LOG_BYTES + POLL_STATE_LOG_BYTES)
    per["log_gb"] = per.get("log_gb", 0.0) + log_bytes / 1024**3
    detail |= {
        "agent_polls": agent.polls,
        "agent_found_late_seconds": agent.late_seconds,
        "checks_polls": checks.polls,
        "checks_found_late_seconds": checks.late_seconds,
    }
    return per, detail


def waiting_report(figures: Mapping[str, Any], *, poll_seconds: float = POLL_SECONDS) -> list[str]:
    """Lines: the no-wait iteration against its target, then each way of waiting for a
    ``AGENT_SECONDS`` agent and ``CHECKS_SECONDS`` of checks, priced, against the waiting target."""
    no_wait = price_table(figures["per_iteration"])["total"] / 1000
    verdict = "PASS" if no_wait < TARGET_NO_WAIT_USD else "MISS"
    lines = [
        f"  {figures['state_machine']:<8} checkpoint_interval {figures['checkpoint_interval']:<3} "
        f"no-wait iteration ${no_wait:.6f} (target < ${TARGET_NO_WAIT_USD}: {verdict})"
    ]
    usd_of: dict[str, float] = {}
    for mode in ("blocking", "steady", "slower", "first"):
        per, detail = waiting_per_iteration(figures, mode, poll_seconds=poll_seconds)
        usd = usd_of[mode] = price_table(per)["total"] / 1000
        verdict = "PASS" if usd < TARGET_WAITING_USD else "MISS"
        what = {
            "blocking": "a Lambda waits for them",
            "steady": "background, durations as last time",
            "slower": f"background, agent {SLOWER_FACTOR - 1:.0%} slower than last time",
            "first": "background, iteration 1 (agent's duration unknown)",
        }[mode]
        polls = (
            f"; {detail['agent_polls']} + {detail['checks_polls']} polls, found "
            f"{detail['agent_found_late_seconds']:.0f} s / {detail['checks_found_late_seconds']:.0f} s after "
            "they ended"
            if mode != "blocking"
            else ""
        )
        lines.append(f"      {what:<52} ${usd:.6f} (target < ${TARGET_WAITING_USD}: {verdict}){polls}")
    loop = (usd_of["first"] + (LOOP_ITERATIONS - 1) * usd_of["slower"]) / LOOP_ITERATIONS
    verdict = "PASS" if loop < TARGET_WAITING_USD else "MISS"
    what = f"background, a {LOOP_ITERATIONS}-iteration loop (first, then slower), mean"
    lines.append(f"      {what:<52} ${loop:.6f} (target < ${TARGET_WAITING_USD}: {verdict})")
    return lines
