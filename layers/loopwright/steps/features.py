"""Feature lists (issue 10.2, seed 002): which features of a loop are done, and which is next.

A loop given ``LoopConfig.features`` works on one feature at a time, in list order. Each
feature's acceptance conditions are evaluated with the loop's exit conditions, every
iteration, under the names ``<feature name>:<condition key>`` (:func:`all_conditions`), so the
evaluate and verify steps of both engines see them. After an evaluation, the features are walked
in order (:func:`newly_done`): a feature is done when each of its required conditions holds and
every earlier feature still holds; the first feature that is not done is the current one
(:func:`current_feature`), the one the agent's prompt names. gate:all (the verify step) requires
every required condition, the features' included, so a loop completes only when all its features
are done and its exit conditions hold.
"""

from __future__ import annotations

from collections.abc import Sequence

from loopwright.models import ExitConditionConfig, ExitConditionStatus, FeatureConfig, LoopConfig


def condition_name(feature: FeatureConfig, condition: ExitConditionConfig) -> str:
    """The name a feature's condition is evaluated under: ``<feature name>:<condition key>``."""
    return f"{feature.name}:{condition.key}"


def feature_conditions(feature: FeatureConfig) -> list[ExitConditionConfig]:
    """``feature``'s acceptance conditions, each named as :func:`condition_name` says."""
    return [
        condition.model_copy(update={"name": condition_name(feature, condition)})
        for condition in feature.acceptance_conditions
    ]


def all_conditions(config: LoopConfig) -> list[ExitConditionConfig]:
    """Every condition a loop evaluates: its exit conditions, then each feature's, in order."""
    conditions = list(config.exit_conditions)
    for feature in config.features:
        conditions += feature_conditions(feature)
    return conditions


def feature_holds(feature: FeatureConfig, statuses: Sequence[ExitConditionStatus]) -> bool:
    """True when every required acceptance condition of ``feature`` is MET in ``statuses`` (a
    condition missing from them does not hold)."""
    by_name = {s.name: s for s in statuses}
    return all(
        condition_name(feature, c) in by_name and by_name[condition_name(feature, c)].is_met
        for c in feature.acceptance_conditions
        if c.required
    )


def newly_done(
    config: LoopConfig, statuses: Sequence[ExitConditionStatus], done: Sequence[str]
) -> list[FeatureConfig]:
    """The features that become done with ``statuses``, in list order: walking the list, each
    feature that holds is done (those in ``done`` already are skipped), until the first that
    does not hold. A done feature that no longer holds stops the walk too: no later feature is
    marked done while an earlier one is broken."""
    found: list[FeatureConfig] = []
    for feature in config.features:
        if not feature_holds(feature, statuses):
            break
        if feature.name not in done:
            found.append(feature)
    return found


def current_feature(config: LoopConfig, done: Sequence[str]) -> FeatureConfig | None:
    """The first feature not in ``done`` (the one the agent works on), or None when all are."""
    return next((f for f in config.features if f.name not in done), None)


def broken_features(
    config: LoopConfig, statuses: Sequence[ExitConditionStatus], done: Sequence[str]
) -> list[FeatureConfig]:
    """The done features whose conditions no longer hold in ``statuses`` (evaluated ones only)."""
    if not any(s.evaluated_at is not None for s in statuses):
        return []
    return [f for f in config.features if f.name in done and not feature_holds(f, statuses)]


def conditions_in_scope(
    config: LoopConfig, statuses: Sequence[ExitConditionStatus], done: Sequence[str]
) -> set[str]:
    """The condition names whose failures the agent is shown: the loop's exit conditions, the
    current feature's and those of done features that broke; a later feature's failures are
    not the agent's concern yet."""
    names = {c.key for c in config.exit_conditions}
    current = current_feature(config, done)
    for feature in [*([current] if current else []), *broken_features(config, statuses, done)]:
        names |= {condition_name(feature, c) for c in feature.acceptance_conditions}
    return names
