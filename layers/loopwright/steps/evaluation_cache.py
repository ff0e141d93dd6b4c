"""The evaluation cache (issue 10): an exit condition's result is reused when the worktree is a
tree evaluated before with the same condition definition.

Key: the SHA-256 of the condition's definition (its whole JSON: type, command, cwd, env,
timeout, parser...) and the git tree hash of the worktree (``HEAD^{tree}``). The tree hash is
taken only when it covers the whole worktree (:meth:`~loopwright.ports.Workspace.clean_tree`: no
uncommitted change, no untracked file that git does not ignore); otherwise nothing is looked up
nor stored. What the key does not cover, and so what a cached result assumes unchanged: ignored
files (build output, caches, virtual environments), the environment outside the worktree (the
installed tools, the network, the clock). A condition that depends on them is evaluated afresh
with ``evaluation_cache = false``.

Only results the tool reported (MET, NOT_MET) are kept; ERROR and TIMEOUT are evaluated again
(a tool installed meanwhile, a slow machine). The cache lives in the loop's state
(``LoopState.evaluation_cache``, so a checkpoint and a resume keep it): at most
:data:`MAX_CACHED_TREES` trees and :data:`MAX_CACHED_ENTRIES` results, oldest dropped first, each
output cut to its last :data:`CACHED_OUTPUT_CHARS` characters, so the cache adds at most about
128 KiB of output to a stored state (DynamoDB items hold 400 KB).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from loopwright.exceptions import LoopFrameworkError
from loopwright.models import (
    ExitConditionConfig,
    ExitConditionStatus,
    ExitConditionStatusValue,
    LoopState,
    utcnow,
)
from loopwright.models.state import CachedEvaluation
from loopwright.ports import Sandbox, Workspace
from loopwright.steps.evaluate import evaluate
from loopwright.steps.features import all_conditions

#: Trees whose results a loop keeps.
MAX_CACHED_TREES: Final = 8
#: Results a loop keeps (conditions x trees), whatever the number of conditions.
MAX_CACHED_ENTRIES: Final = 32
#: Characters of a cached result's stdout and of its stderr kept (the end of each).
CACHED_OUTPUT_CHARS: Final = 2_048
#: Statuses worth reusing: the tool ran and said.
_CACHEABLE = frozenset({ExitConditionStatusValue.MET, ExitConditionStatusValue.NOT_MET})


def cache_key(cfg: ExitConditionConfig, tree: str) -> str:
    """SHA-256 hex of ``cfg``'s JSON definition and the git ``tree`` hash."""
    return hashlib.sha256(f"{cfg.model_dump_json()}\n{tree}".encode()).hexdigest()


@dataclass
class Evaluation:
    """The statuses of one evaluation, in ``config.exit_conditions`` order; ``cached`` names the
    conditions reused, ``tree`` the tree hash they were looked up by (None: no lookup) and
    ``from_iterations`` the iterations whose results were reused."""

    statuses: list[ExitConditionStatus]
    tree: str | None = None
    cached: list[str] = field(default_factory=list)
    from_iterations: list[int] = field(default_factory=list)

    def event_data(self) -> dict[str, Any]:
        """What EXIT_CONDITIONS_EVALUATED adds: ``cached: true`` when every condition was reused,
        ``cached_conditions`` (names) when only some were, ``tree`` when looked up."""
        every = bool(self.cached) and len(self.cached) == len(self.statuses)
        return {
            "cached": True if every else None,
            "cached_conditions": list(self.cached) if self.cached and not every else None,
            "tree": self.tree,
        }

    def note(self) -> str:
        """A message suffix saying what was reused, or ''."""
        if not self.cached:
            return ""
        iterations = ", ".join(str(i) for i in sorted(set(self.from_iterations)))
        return (
            f" (cached: {', '.join(self.cached)} from iteration {iterations}, tree {(self.tree or '')[:12]})"
        )


def workspace_tree(state: LoopState, workspace: Workspace | None) -> str | None:
    """The tree hash to look results up by, or None: the cache is off (``evaluation_cache``),
    there is no workspace, the worktree holds what the hash does not cover, or git failed."""
    if workspace is None or not state.config.evaluation_cache:
        return None
    with contextlib.suppress(LoopFrameworkError, NotImplementedError):
        return workspace.clean_tree(state.loop_id)
    return None


def evaluate_cached(state: LoopState, sandbox: Sandbox, workspace: Workspace | None) -> Evaluation:
    """Evaluate ``state``'s exit conditions in its worktree, reusing cached results for its tree
    (see the module docstring) and remembering the fresh ones."""
    config, worktree = state.config, Path(state.worktree)
    tree = workspace_tree(state, workspace)
    if tree is None:
        return Evaluation(evaluate(config, sandbox, worktree, state.iteration))
    entries = {entry.key: entry for entry in state.evaluation_cache}
    conditions = all_conditions(config)  # the exit conditions, then each feature's
    hits = {cfg.key: entries.get(cache_key(cfg, tree)) for cfg in conditions}
    missing = [cfg for cfg in conditions if hits[cfg.key] is None]
    fresh = (
        evaluate(
            config.model_copy(update={"exit_conditions": missing, "features": []}),
            sandbox,
            worktree,
            state.iteration,
        )
        if missing
        else []
    )
    by_name = {status.name: status for status in fresh}
    result = Evaluation([], tree=tree)
    for cfg in conditions:
        hit = hits[cfg.key]
        if hit is None:
            result.statuses.append(by_name[cfg.key])
            continue
        result.statuses.append(_reused(hit, state.iteration))
        result.cached.append(cfg.key)
        result.from_iterations.append(hit.iteration)
    _remember(state, tree, missing, fresh)
    return result


def _reused(entry: CachedEvaluation, iteration: int) -> ExitConditionStatus:
    status = entry.status.model_copy(deep=True)
    status.iteration = iteration
    status.duration_seconds = 0.0
    status.evaluated_at = utcnow()
    status.details = {**status.details, "cached_from_iteration": entry.iteration}
    return status


def _remember(
    state: LoopState, tree: str, conditions: list[ExitConditionConfig], statuses: list[ExitConditionStatus]
) -> None:
    added = [
        CachedEvaluation(
            key=cache_key(cfg, tree), tree=tree, iteration=state.iteration, status=_trimmed(status)
        )
        for cfg, status in zip(conditions, statuses, strict=True)
        if status.status in _CACHEABLE
    ]
    if not added:
        return
    kept = [*state.evaluation_cache, *added]
    trees = list(dict.fromkeys(entry.tree for entry in reversed(kept)))[:MAX_CACHED_TREES]
    state.evaluation_cache = [entry for entry in kept if entry.tree in trees][-MAX_CACHED_ENTRIES:]


def _trimmed(status: ExitConditionStatus) -> ExitConditionStatus:
    cut = len(status.stdout) > CACHED_OUTPUT_CHARS or len(status.stderr) > CACHED_OUTPUT_CHARS
    return status.model_copy(
        update={
            "stdout": status.stdout[-CACHED_OUTPUT_CHARS:],
            "stderr": status.stderr[-CACHED_OUTPUT_CHARS:],
            "output_truncated": status.output_truncated or cut,
        }
    )
