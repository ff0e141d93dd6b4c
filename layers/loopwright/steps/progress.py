"""Progress memory and stuck facts (issue 10, points 1 and 4): plain functions over
:class:`~loopwright.models.progress.LoopProgress`.

* :func:`note_iteration` records an iteration's digest (after the agent's commit) and updates
  ``iterations_without_change`` and ``tree_seen_before``;
* :func:`note_evaluation` completes it with the evaluation (failing required conditions, the
  failure signature) and updates ``repeated_failure_count`` and the best evaluation;
* :func:`stuck_facts` gives the authorize step's Cedar context entries;
* :func:`history_lines` is the compact history each prompt carries, bounded.

:mod:`loopwright.progress` applies them to a loop's state and records the events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from loopwright.models import ExitConditionStatus, ExitConditionStatusValue, IterationResult, LoopState
from loopwright.models.progress import (
    MAX_CHANGED_PATHS,
    MAX_FAILING_NAMES,
    MAX_HISTORY,
    MAX_NOTES_BYTES,
    MAX_OLDER_CHANGED_PATHS,
    MAX_SUMMARY_CHARS,
    MAX_TREES,
    IterationDigest,
    LoopProgress,
)
from loopwright.ports import Workspace

#: Changed paths sent to Cedar as ``context.changed_paths`` (the newest iteration's).
MAX_CEDAR_CHANGED_PATHS = 100
#: Changed paths named per iteration in the prompt's history.
PROMPT_PATHS_PER_ITERATION = MAX_OLDER_CHANGED_PATHS
#: Characters of an agent's summary shown per iteration in the prompt.
PROMPT_SUMMARY_CHARS = 160
#: The mark put before the kept (newest) part of progress notes that were too long.
NOTES_CUT_MARK = "[... earlier notes cut: the file keeps its newest 16 KiB ...]\n"

_NOT_FAILING = (ExitConditionStatusValue.MET, ExitConditionStatusValue.PENDING)


#: Iterations the one-line summary's failing trend covers (:func:`progress_summary`).
SUMMARY_ITERATIONS = 5


def failing_required(statuses: Sequence[ExitConditionStatus]) -> list[str]:
    """Names of the required conditions that do not hold (PENDING ones are not failing)."""
    return [s.name for s in statuses if s.required and s.status not in _NOT_FAILING]


def failure_signature(statuses: Sequence[ExitConditionStatus]) -> str | None:
    """SHA-256 (hex) of the failing required conditions' names, statuses and failure lines
    (sorted): two evaluations with the same signature failed the same way (summaries, which
    often hold durations, are left out). None when no required condition fails."""
    failing = sorted(
        (s.name, s.status.value, sorted(s.failures))
        for s in statuses
        if s.required and s.status not in _NOT_FAILING
    )
    if not failing:
        return None
    return hashlib.sha256(json.dumps(failing).encode()).hexdigest()


def bounded_notes(text: str) -> str:
    """``text`` when it fits :data:`~loopwright.models.progress.MAX_NOTES_BYTES` (UTF-8), else
    its newest part (whole characters) after :data:`NOTES_CUT_MARK`."""
    data = text.encode("utf-8")
    if len(data) <= MAX_NOTES_BYTES:
        return text
    room = MAX_NOTES_BYTES - len(NOTES_CUT_MARK.encode("utf-8"))
    return NOTES_CUT_MARK + data[-room:].decode("utf-8", errors="ignore")


def note_iteration(
    progress: LoopProgress,
    *,
    iteration: int,
    summary: str,
    failed: bool,
    changed_paths: Sequence[str],
    commit: str | None,
    tree: str | None,
    start_tree: str | None = None,
    changes_known: bool = True,
) -> IterationDigest:
    """Add iteration ``iteration``'s digest (the oldest dropped past
    :data:`~loopwright.models.progress.MAX_HISTORY`) and update the change facts.

    ``tree`` is the worktree's tree hash after the iteration, ``start_tree`` the one before it
    (remembered when no tree was seen yet: the loop's start). An iteration whose agent finished
    without changing anything adds one to ``iterations_without_change`` (a ``failed`` run, counted
    by the consecutive failures, leaves it as it is); one that changed files, or one whose changes
    cannot be seen (``changes_known`` false: no git isolation, nothing is committed), resets it;
    one that changed files sets
    ``tree_seen_before`` when ``tree`` is one already seen (A, B, A).
    """
    if start_tree and not progress.trees:
        progress.trees = [start_tree]
    changed = bool(changed_paths)
    if changed or not changes_known:  # without git isolation nothing is committed: unknown
        progress.iterations_without_change = 0
    elif not failed:  # a failed run is the consecutive failures' business: it leaves the count
        progress.iterations_without_change += 1
    progress.tree_seen_before = bool(changed and tree and tree in progress.trees)
    if tree and tree not in progress.trees:
        progress.trees = [*progress.trees, tree][-MAX_TREES:]
    digest = IterationDigest(
        iteration=iteration,
        summary=" ".join(summary.split())[:MAX_SUMMARY_CHARS],
        changed_paths=list(changed_paths[:MAX_CHANGED_PATHS]),
        changed_count=len(changed_paths),
        commit=commit,
        tree=tree,
        failed=failed,
    )
    kept = [d for d in progress.history if d.iteration != iteration]
    for older in kept:  # only the newest iteration's paths go to Cedar: keep the state small
        older.changed_paths = older.changed_paths[:MAX_OLDER_CHANGED_PATHS]
    progress.history = [*kept, digest][-MAX_HISTORY:]
    return digest


def note_evaluation(
    progress: LoopProgress, statuses: Sequence[ExitConditionStatus], *, iteration: int, commit: str | None
) -> bool:
    """Account for the evaluation of iteration ``iteration`` (0: the baseline) at ``commit``.

    Sets the iteration's digest's failing conditions, ``failing_count``, and
    ``repeated_failure_count`` (one more when the failure signature equals the previous
    evaluation's and the failing conditions report failure lines, else 0: a silent check
    cannot tell a repeat from progress). The best evaluation (fewest failing required conditions; the newest
    of equals) moves here when this one is at least as good. Evaluating the same iteration again
    (a resumed loop) changes the counts but counts no repeat. Returns True when this evaluation
    is worse than the best so far (a regression), False otherwise.
    """
    failing = failing_required(statuses)
    signature = failure_signature(statuses)
    # A check that reports no failure line (a silent exit code) fails alike whatever the agent
    # did: its repeats say nothing, only iterations without change can show it is stuck.
    told = any(s.failures for s in statuses if s.name in failing)
    again = progress.evaluated_iteration == iteration
    if not again:
        repeated = told and signature is not None and signature == progress.signature
        progress.repeated_failure_count = progress.repeated_failure_count + 1 if repeated else 0
    progress.signature = signature
    progress.evaluated_iteration = iteration
    progress.failing_count = len(failing)
    if iteration == 0:
        progress.baseline_failing_count = len(failing)
    for digest in progress.history:
        if digest.iteration == iteration:
            digest.failing = failing[:MAX_FAILING_NAMES]
            digest.failing_count = len(failing)
    best = progress.best_failing_count
    if best is None or len(failing) <= best:
        progress.best_failing_count = len(failing)
        progress.best_iteration = iteration
        progress.best_failing = failing[:MAX_FAILING_NAMES]
        progress.best_commit = commit
        return False
    return True


def stuck_facts(progress: LoopProgress) -> dict[str, Any]:
    """The authorize step's Cedar context entries from ``progress``: ``iterations_without_change``,
    ``repeated_failure_count``, ``tree_seen_before`` (Bool), ``failing_count`` and
    ``best_failing_count`` (required conditions; 0 before any evaluation) and ``changed_paths``
    (the newest iteration's, at most :data:`MAX_CEDAR_CHANGED_PATHS`; a Cedar Set of String)."""
    last = progress.last
    failing = progress.failing_count or 0
    best = progress.best_failing_count
    return {
        "iterations_without_change": progress.iterations_without_change,
        "repeated_failure_count": progress.repeated_failure_count,
        "tree_seen_before": progress.tree_seen_before,
        "failing_count": failing,
        "best_failing_count": failing if best is None else best,
        "changed_paths": list(last.changed_paths[:MAX_CEDAR_CHANGED_PATHS]) if last else [],
    }


def history_lines(progress: LoopProgress, count: int) -> list[str]:
    """The prompt's history: one line for each of the last ``count`` iterations (newest last),
    then the trend of failing required conditions, e.g. ``failing required conditions: 3 -> 2 ->
    2 (best 2, at iteration 4)``. Each line is bounded (summary :data:`PROMPT_SUMMARY_CHARS`
    characters, :data:`PROMPT_PATHS_PER_ITERATION` paths), so the section stays under about
    ``count`` x 700 characters. Empty when ``count`` is 0 or nothing ran yet."""
    shown = progress.history[-count:] if count > 0 else []
    if not shown:
        return []
    lines = []
    for digest in shown:
        paths = digest.changed_paths[:PROMPT_PATHS_PER_ITERATION]
        more = digest.changed_count - len(paths)
        files = (
            "no file changed"
            if digest.changed_count == 0
            else f"{digest.changed_count} file{'s' if digest.changed_count != 1 else ''} changed: "
            + ", ".join(paths)
            + (f" (+{more} more)" if more > 0 else "")
        )
        if digest.failing_count is None:
            result = "not evaluated"
        elif digest.failing_count == 0:
            result = "no required condition failing"
        else:
            result = f"{digest.failing_count} failing: {', '.join(digest.failing or [])}"
        summary = digest.summary[:PROMPT_SUMMARY_CHARS] or ("agent failed" if digest.failed else "no summary")
        flags = " [reverted]" if digest.reverted else ""
        lines.append(f"- iteration {digest.iteration}{flags}: {summary} · {files} · {result}")
    trend = failing_trend(progress, count)
    if trend:
        lines.append(f"- failing required conditions: {trend}")
    return lines


def failing_trend(progress: LoopProgress, count: int) -> str | None:
    """The failing required conditions over the last ``count`` iterations (the baseline first
    when iteration 1 is among them), with the best so far: ``3 -> 2 -> 2 (best 2, at iteration
    4)``; None before any evaluation."""
    shown = progress.history[-count:] if count > 0 else []
    counts = [str(d.failing_count) for d in shown if d.failing_count is not None]
    if shown and shown[0].iteration == 1 and progress.baseline_failing_count is not None:
        counts.insert(0, str(progress.baseline_failing_count))
    if not counts:
        return None
    best = (
        f" (best {progress.best_failing_count}, at iteration {progress.best_iteration})"
        if progress.best_failing_count is not None
        else ""
    )
    return " -> ".join(counts) + best


def progress_summary(progress: LoopProgress, max_stuck_iterations: int | None) -> str | None:
    """One line for ``loopwright status`` and the dashboard: the failing trend of the last
    :data:`SUMMARY_ITERATIONS` iterations and the stuck facts that are not zero, with the count
    at which the ``stuck-no-progress`` policy pauses the loop, e.g. ``failing 3 -> 2 -> 2 (best
    2, at iteration 2) · same failures 2 times in a row (pauses at 3)``; None before the first
    iteration."""
    if not progress.history:
        return None
    parts = []
    trend = failing_trend(progress, SUMMARY_ITERATIONS)
    if trend:
        parts.append(f"failing {trend}")
    if progress.iterations_without_change:
        n = progress.iterations_without_change
        parts.append(f"{n} iteration{'s' if n != 1 else ''} without change")
    if progress.repeated_failure_count:
        n = progress.repeated_failure_count
        parts.append(f"same failures {n} time{'s' if n != 1 else ''} in a row")
    stuck = progress.iterations_without_change or progress.repeated_failure_count
    if stuck and max_stuck_iterations is not None:
        parts[-1] += f" (pauses at {max_stuck_iterations})"
    if progress.tree_seen_before:
        parts.append("the last iteration went back to an earlier tree")
    return " · ".join(parts) if parts else None


def remember_iteration(
    state: LoopState, result: IterationResult, workspace: Workspace, previous_head: str | None
) -> IterationDigest:
    """Note ``result`` in ``state.progress`` (:func:`note_iteration`) with the worktree's tree
    hashes (:meth:`~loopwright.ports.Workspace.tree_hash`; the one before the iteration only
    while no tree was seen), take the agent's progress notes when it returned them (bounded by
    :func:`bounded_notes`), and clear the regression note the iteration's prompt carried."""
    progress = state.progress
    head = result.commit or previous_head
    start = None
    if previous_head and not progress.trees:
        start = workspace.tree_hash(state.loop_id, previous_head)
    tree = workspace.tree_hash(state.loop_id, head) if head else None
    progress.regression = None
    if result.agent.notes is not None:
        progress.notes = bounded_notes(result.agent.notes)
    return note_iteration(
        progress,
        iteration=result.iteration,
        summary=result.agent.summary,
        failed=result.agent.failed,
        changed_paths=result.changed_files,
        commit=result.commit,
        tree=tree,
        start_tree=start,
        changes_known=state.config.git_isolation,
    )


def resume_after_stuck(state: LoopState) -> bool:
    """A session starts on a loop the stuck policies paused (``progress.stuck_reason``): the
    human who resumed it gives it another chance, so the stuck counters start over and the
    agent's next prompt says why it was paused. Returns True when that was the case."""
    progress = state.progress
    reason = progress.stuck_reason
    if reason is None:
        return False
    progress.iterations_without_change = 0
    progress.repeated_failure_count = 0
    progress.tree_seen_before = False
    progress.stuck_reason = None
    note = (
        f"The loop was paused because it made no progress ({reason[:500]}); a human resumed it. "
        "Do not repeat what the history shows: try a different approach."
    )
    state.human_response = f"{state.human_response}\n\n{note}" if state.human_response else note
    return True
