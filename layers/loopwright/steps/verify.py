"""The verify step: gate:all. The loop may complete only when every required condition holds."""

from __future__ import annotations

from collections.abc import Sequence

from loopwright.models import ExitConditionStatus, LoopConfig, VerificationResult


def verify(config: LoopConfig, statuses: Sequence[ExitConditionStatus]) -> VerificationResult:
    """Pass when every required condition of ``config`` was evaluated and is MET.

    A required condition missing from ``statuses`` counts as failing, so a partial evaluation
    can never complete a loop.
    """
    by_name = {s.name: s for s in statuses}
    failing = [
        c.key
        for c in config.exit_conditions
        if c.required and not (c.key in by_name and by_name[c.key].is_met)
    ]
    if failing:
        return VerificationResult(
            passed=False, failing=failing, message=f"gate:all failed: {', '.join(failing)} not met"
        )
    return VerificationResult(passed=True, message="gate:all passed: every required exit condition holds")
