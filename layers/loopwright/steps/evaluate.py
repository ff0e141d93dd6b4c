"""The evaluate step: check every exit condition and summarise the failures for the agent."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from loopwright.conditions import evaluate_condition
from loopwright.models import ExitConditionConfig, ExitConditionStatus, LoopConfig
from loopwright.ports import Sandbox

#: Most conditions evaluated at the same time when ``parallel_conditions`` is set.
MAX_PARALLEL_CONDITIONS: Final = 8


def evaluate(
    config: LoopConfig, sandbox: Sandbox, worktree: Path, iteration: int
) -> list[ExitConditionStatus]:
    """Evaluate every exit condition of ``config`` in ``worktree``.

    Conditions run concurrently (at most :data:`MAX_PARALLEL_CONDITIONS` at once) when
    ``config.parallel_conditions`` is set, else one after the other; either way the result
    lists one status per condition in the order of ``config.exit_conditions``. Each condition
    is limited by its own ``timeout_seconds``.
    """
    conditions = config.exit_conditions

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
