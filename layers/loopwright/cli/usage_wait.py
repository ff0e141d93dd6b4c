"""Waiting out a usage limit in ``loopwright run`` and ``resume``.

When the agent's model provider answers with a usage limit (a CLI backend reads it from the CLI's
output, a command agent reports ``usage_limit_resets_at``), the loop pauses with ``resume_at``
set (phase PAUSED; the engine never waits inside a run). On AWS an EventBridge Scheduler
schedule resumes it at that time; locally this module does the same in the process that ran it:
it waits until ``resume_at`` and runs the loop again, like a ``loopwright resume`` at that time.

The wait ends early, and the command returns the loop's state as it is, when the loop is no
longer paused until that time: a human stopped it (``loopwright stop``: it is idle, so the stop
applies at once), resumed it elsewhere, or changed it; or when the user presses Ctrl-C, which
leaves it PAUSED (``loopwright resume LOOP_ID`` continues it later). ``--no-wait`` skips the
wait altogether. The wall clock keeps running while it waits, so ``max_duration_seconds`` (Cedar
policy ``time-limit``) still bounds the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console

from loopwright.exceptions import LoopNotFoundError
from loopwright.models import AgentFailureCause, LoopPhase, LoopState, utcnow
from loopwright.ports import LoopStore

#: Seconds between two looks at the stored state while waiting (a stop is seen within this).
POLL_SECONDS = 1.0


def usage_limit_reset(state: LoopState) -> datetime | None:
    """When ``state``'s loop continues by itself: its ``resume_at``, if it is PAUSED with one."""
    if state.phase is LoopPhase.PAUSED and state.outcome is None and state.resume_at is not None:
        return state.resume_at
    return None


def describe_wait(seconds: float) -> str:
    """``seconds`` as a short duration: ``45 s``, ``12 min``, ``2 h 05 min``."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _why(store: LoopStore, loop_id: str) -> str:
    """Why the loop waits: "usage limit", or a retry after a rate limit or a provider outage."""
    try:
        cause = store.get_state(loop_id).last_failure_cause
    except LoopNotFoundError:
        cause = None
    if cause is AgentFailureCause.RATE_LIMIT:
        return "rate limit (a retry, not counted as an iteration)"
    if cause is AgentFailureCause.PROVIDER_OUTAGE:
        return "provider outage (a retry, not counted as an iteration)"
    return "usage limit"


def wait_for_reset(
    store: LoopStore,
    loop_id: str,
    resume_at: datetime,
    *,
    console: Console | None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until ``resume_at`` (UTC) while the stored loop stays PAUSED until then.

    Returns True when the time came and the loop is still paused until it (run it again), False
    when the loop changed meanwhile (stopped, resumed elsewhere, deleted). ``console`` (None:
    silent) gets one line saying how long and how to leave. KeyboardInterrupt propagates.
    """
    if console is not None:
        wait = (resume_at - utcnow()).total_seconds()
        console.print(
            f"{_why(store, loop_id)}: loop {loop_id} is paused until {resume_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(in {describe_wait(wait)}); waiting to continue it. Ctrl-C leaves it paused "
            f"(`loopwright resume {loop_id}` continues it later).",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    while True:
        try:
            state = store.get_state(loop_id)
        except LoopNotFoundError:
            return False
        if usage_limit_reset(state) != resume_at:
            return False
        left = (resume_at - utcnow()).total_seconds()
        if left <= 0:
            return True
        sleep(min(POLL_SECONDS, left))
