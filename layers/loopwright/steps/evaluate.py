"""The evaluate step: check every exit condition and summarise the failures for the agent."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from loopwright.conditions import evaluate_condition
from loopwright.models import (
    ExitConditionConfig,
    ExitConditionStatus,
    ExitConditionStatusValue,
    LoopConfig,
)
from loopwright.ports import Sandbox
from loopwright.steps.features import all_conditions

#: Most conditions evaluated at the same time when ``parallel_conditions`` is set.
MAX_PARALLEL_CONDITIONS: Final = 8

#: A condition taking longer than this, in seconds, is flagged as slow (seed 000, SC-002: an
#: evaluation should take at most 30 s). Its timeout is ``timeout_seconds``, minutes by default.
SLOW_CONDITION_SECONDS: Final = 30.0

#: Characters of a condition's summary quoted in a pause reason.
_SUMMARY_CHARS: Final = 300


def evaluate(
    config: LoopConfig, sandbox: Sandbox, worktree: Path, iteration: int
) -> list[ExitConditionStatus]:
    """Evaluate every exit condition of ``config`` in ``worktree``, then each feature's acceptance
    conditions (:func:`~loopwright.steps.features.all_conditions`).

    Conditions run concurrently (at most :data:`MAX_PARALLEL_CONDITIONS` at once) when
    ``config.parallel_conditions`` is set, else one after the other; either way the result
    lists one status per condition in the order of ``config.exit_conditions``. Each condition
    is limited by its own ``timeout_seconds``.
    """
    conditions = all_conditions(config)

    def one(cfg: ExitConditionConfig) -> ExitConditionStatus:
        return evaluate_condition(cfg, sandbox, worktree, iteration)

    if not config.parallel_conditions or len(conditions) == 1:
        return [one(cfg) for cfg in conditions]
    workers = min(len(conditions), MAX_PARALLEL_CONDITIONS)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loopwright-eval") as pool:
        return list(pool.map(one, conditions))


def _lines_of(status: ExitConditionStatus) -> list[str]:
    prefix = f"{status.type.value} ({status.name}): "
    if status.failures:
        return [prefix + failure for failure in status.failures]
    return [f"{prefix}{status.status.value}: {status.summary or 'no details'}"]


def failures_for_agent(statuses: Sequence[ExitConditionStatus], limit: int) -> list[str]:
    """Lines telling the agent what is wrong, at most ``limit`` in total.

    One line per failure of each condition that is not MET, prefixed ``TYPE (name): ``
    (for example ``LINTING_CLEAN (lint): pkg/a.py:1:1 UP025 ...``); a condition without
    failure lines (a timeout, an error) gives one line with its status and summary. The
    ``limit`` is shared fairly: each condition gets a line in turn until the limit is reached
    or its lines run out. Lines are grouped by condition, in the order of ``statuses``.
    """
    per_condition = [_lines_of(s) for s in statuses if not s.is_met]
    quotas = [0] * len(per_condition)
    remaining = max(0, limit)
    while remaining:
        progressed = False
        for index, lines in enumerate(per_condition):
            if remaining and quotas[index] < len(lines):
                quotas[index] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
    return [line for lines, quota in zip(per_condition, quotas, strict=True) for line in lines[:quota]]


def slow_conditions(statuses: Sequence[ExitConditionStatus]) -> dict[str, float]:
    """Name -> duration (seconds, rounded to 0.1) of each condition that took longer than
    :data:`SLOW_CONDITION_SECONDS` (SC-002); a timed-out one counts, a skipped one does not."""
    return {
        s.name: round(s.duration_seconds, 1) for s in statuses if s.duration_seconds > SLOW_CONDITION_SECONDS
    }


def evaluation_problem(statuses: Sequence[ExitConditionStatus], *, baseline: bool) -> str | None:
    """Why the loop must pause for a human instead of handing ``statuses`` to the agent, or None.

    A required condition with status ERROR (its tool is missing, or its output was not
    understood) is not a failure of the code: the agent cannot fix it, and paying it to try
    helps nobody. A TIMEOUT pauses only at the ``baseline`` (before the agent ever ran: the suite
    is slower than its ``timeout_seconds``); after an iteration whose baseline finished in time,
    a timeout is most likely the agent's doing (a test that now hangs), so it is handed to the
    agent as a failure like NOT_MET. Optional conditions never pause the loop.

    The reason names each condition with its status and summary (bounded) and says what to do,
    for example ``exit condition 'lint' is ERROR: could not run: command not found: ruff ...``.
    """
    blocking = {ExitConditionStatusValue.ERROR}
    if baseline:
        blocking.add(ExitConditionStatusValue.TIMEOUT)
    problems = [s for s in statuses if s.required and s.status in blocking]
    if not problems:
        return None
    parts = [
        f"exit condition '{s.name}' is {s.status.value}: {(s.summary or 'no details')[:_SUMMARY_CHARS]}"
        for s in problems
    ]
    return (
        "; ".join(parts)
        + " (not a failure the agent can fix: fix the tool, its command or its timeout_seconds, "
        "then resume the loop)"
    )
