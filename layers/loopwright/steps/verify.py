"""The verify step: gate:all. The loop may complete only when every required condition holds."""

from __future__ import annotations

from collections.abc import Sequence

from loopwright.models import ExitConditionStatus, LoopConfig, VerificationResult
from loopwright.steps.features import all_conditions, feature_holds


def verify(config: LoopConfig, statuses: Sequence[ExitConditionStatus]) -> VerificationResult:
    """Pass when every required condition of ``config`` was evaluated and is MET.

    A required condition missing from ``statuses`` counts as failing, so a partial evaluation
    can never complete a loop. The features' acceptance conditions count like exit conditions
    (:func:`~loopwright.steps.features.all_conditions`): a loop with a feature list passes only
    when every feature holds; the message names the features that do not.
    """
    by_name = {s.name: s for s in statuses}
    failing = [
        c.key
        for c in all_conditions(config)
        if c.required and not (c.key in by_name and by_name[c.key].is_met)
    ]
    if failing:
        open_features = [f.name for f in config.features if not feature_holds(f, statuses)]
        features = f" (features not done: {', '.join(open_features)})" if open_features else ""
        return VerificationResult(
            passed=False,
            failing=failing,
            message=f"gate:all failed: {', '.join(failing)} not met{features}",
        )
    done = f" and all {len(config.features)} features are done" if config.features else ""
    return VerificationResult(
        passed=True, message=f"gate:all passed: every required exit condition holds{done}"
    )
