"""The deterministic planner: one task per failing exit condition of the inspected loop.

:class:`ConditionPlanner` needs no model and gives the same plan for the same packet, so it is
the local default and a fallback anywhere. Each failing condition becomes a task whose loop has
that one condition as its exit condition and the packet's goal plus the condition's failures as
its goal; the loop's other settings (agent, limits, git isolation) are the inspected loop's.

Dependencies follow the order in which fixes build on each other (tiers):

* tier 0, BUILD_SUCCEEDS: nothing else can be fixed in code that does not compile;
* tier 1, ALL_TESTS_PASS, SECURITY_SCAN_CLEAN, CUSTOM: independent fixes, run in parallel;
* tier 2, LINTING_CLEAN: last, as lint fixes touch every file the other fixes changed (fewer
  merge conflicts).

A task depends on the failing tasks of the nearest lower tier that has any. The gates are the
inspected loop's required exit conditions, all of them (also those that held, so a fix that
breaks them fails verification), named ``gate:<name>``.
"""

from __future__ import annotations

import re

from loopwright.models import ExitConditionConfig, ExitConditionType
from loopwright.models.plans import (
    MAX_DESCRIPTION_CHARS,
    MAX_GOAL_CHARS,
    GateConfig,
    InspectionPacket,
    PlanDraft,
    PlanTaskDraft,
)
from loopwright.plans.errors import PlanGenerationError
from loopwright.plans.ports import Planner

#: Tier of each condition type (see the module docstring).
TIERS: dict[ExitConditionType, int] = {
    ExitConditionType.BUILD_SUCCEEDS: 0,
    ExitConditionType.ALL_TESTS_PASS: 1,
    ExitConditionType.SECURITY_SCAN_CLEAN: 1,
    ExitConditionType.CUSTOM: 1,
    ExitConditionType.LINTING_CLEAN: 2,
}
#: Failures of a condition quoted in its task's goal.
MAX_FAILURES_IN_GOAL = 20
#: LoopConfig fields not carried from the inspected loop into the plan's defaults.
_NOT_DEFAULTS = {"goal", "project", "exit_conditions"}


def task_id_for(name: str, taken: set[str]) -> str:
    """A task id from a condition name: letters, digits, '_' and '-' (others become '-'), at most
    48 characters, made unique against ``taken`` with a ``-2``, ``-3`` ... suffix."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:44] or "condition"
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}-{number}"
    taken.add(candidate)
    return candidate


class ConditionPlanner(Planner):
    """One task per failing condition of the packet, in dependency tiers (module docstring)."""

    def plan(self, packet: InspectionPacket, *, model: str | None = None) -> PlanDraft:
        """The draft for ``packet`` (``model`` is ignored: no model is used).

        Raises :class:`PlanGenerationError` when the loop has no failing condition (nothing to
        plan) or a failing condition is not in its config.
        """
        if not packet.failing_conditions:
            raise PlanGenerationError(
                f"loop {packet.loop_id} has no failing exit condition (outcome "
                f"{packet.outcome.value if packet.outcome else 'none'}): nothing to decompose"
            )
        configs = {c.key: c for c in packet.loop_config.exit_conditions}
        taken: set[str] = set()
        tiers: dict[int, list[str]] = {}
        tasks: list[PlanTaskDraft] = []
        for status in sorted(packet.failing_conditions, key=lambda s: TIERS[s.type]):
            config = configs.get(status.name)
            if config is None:
                raise PlanGenerationError(
                    f"failing condition {status.name!r} of loop {packet.loop_id} is not in its config"
                )
            tier = TIERS[status.type]
            lower = [t for t in sorted(tiers) if t < tier]
            task_id = task_id_for(config.key, taken)
            tasks.append(
                PlanTaskDraft(
                    task_id=task_id,
                    description=f"Make the exit condition '{config.key}' ({config.type.value}) hold"[
                        :MAX_DESCRIPTION_CHARS
                    ],
                    priority=tier + 1,
                    depends_on=list(tiers[lower[-1]]) if lower else [],
                    loop={
                        "goal": _goal(packet, config, status.summary, status.failures),
                        "exit_conditions": [config.model_dump(mode="json", exclude_defaults=True)],
                    },
                )
            )
            tiers.setdefault(tier, []).append(task_id)
        defaults = {
            k: v for k, v in packet.loop_config.model_dump(mode="json").items() if k not in _NOT_DEFAULTS
        }
        gates = [
            GateConfig(name=f"gate:{c.key[:59]}", **c.model_dump(exclude={"name"}))
            for c in packet.loop_config.exit_conditions
            if c.required
        ]
        return PlanDraft(goal=packet.goal, tasks=tasks, defaults=defaults, gates=gates)


def _goal(packet: InspectionPacket, config: ExitConditionConfig, summary: str, failures: list[str]) -> str:
    lines: list[str] = [
        packet.goal,
        "",
        f"This task (one of a plan made from loop {packet.loop_id}): make the exit condition "
        f"'{config.key}' ({config.type.value}) hold without breaking the others.",
    ]
    if summary:
        lines.append(f"Its last result: {summary}")
    if failures:
        lines.append("Failures:")
        lines.extend(f"- {f}" for f in failures[:MAX_FAILURES_IN_GOAL])
    return "\n".join(lines)[:MAX_GOAL_CHARS]
