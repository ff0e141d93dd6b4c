"""Recording a loop's feature progress after each evaluation (issue 10.2), for both engines.

:func:`record_feature_progress` is called by :func:`loopwright.workflow.evaluate_conditions`: the
features that became done (:func:`loopwright.steps.features.newly_done`) are added to
``LoopState.features_done`` in order, each with a FEATURE_COMPLETED event whose data carries
``feature``, ``features_completed`` and ``features_total``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.models import IterationEventType, LoopState
from loopwright.steps.features import current_feature, newly_done

if TYPE_CHECKING:
    from loopwright.workflow import Recorder


def record_feature_progress(state: LoopState, record: Recorder) -> list[str]:
    """Mark the features the latest evaluation completes as done; their names, in order."""
    config = state.config
    names = [f.name for f in newly_done(config, state.exit_conditions, state.features_done)]
    for name in names:
        state.features_done = [*state.features_done, name]
        following = current_feature(config, state.features_done)
        record(
            IterationEventType.FEATURE_COMPLETED,
            f"feature {len(state.features_done)} of {len(config.features)} done: {name}"
            + (f"; next: {following.name}" if following else "; all features are done"),
            feature=name,
            features_completed=len(state.features_done),
            features_total=len(config.features),
            next_feature=following.name if following else None,
        )
    return names
