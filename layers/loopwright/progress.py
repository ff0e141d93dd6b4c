"""Regression handling (issue 10, point 5): ``on_regression = "revert"`` in the loop.

After an iteration is evaluated (:func:`loopwright.workflow.evaluate_conditions` noted the
evaluation in ``state.progress``), :func:`revert_regression` compares it with the best evaluation
so far. With ``LoopConfig.on_regression = "revert"``, an iteration that leaves more required
conditions failing than the best one is reverted: its commit is kept on
``refs/loopwright/<loop_id>/set-aside/regression-iteration-<n>``, the loop's branch moves back to
the best evaluation's commit, ITERATION_REVERTED is recorded and the agent's next prompt says
what it broke (``LoopProgress.regression``). Both engines call it: the in-process one after its
evaluation (:mod:`loopwright.engine.drive`), the Step Functions one in its Evaluate step
(:func:`loopwright.cloud.steps.evaluate_step`).
"""

from __future__ import annotations

from loopwright.models import ExitConditionStatusValue, IterationEventType, LoopState
from loopwright.ports import Workspace
from loopwright.steps.progress import failing_required
from loopwright.workflow import Recorder

#: Condition names listed in the note to the agent and in the event.
MAX_LISTED_CONDITIONS = 20


def regression_to_revert(state: LoopState) -> bool:
    """True when the loop's last evaluation should be reverted: ``on_regression`` is "revert",
    git isolation is on, it evaluated an iteration (not the baseline) that left more required
    conditions failing than the best evaluation, whose commit is known and is not the head, and
    no required condition is ERROR (that pauses the loop for a human instead)."""
    progress = state.progress
    if state.config.on_regression != "revert" or not state.config.git_isolation:
        return False
    if state.iteration == 0 or progress.evaluated_iteration != state.iteration:
        return False
    best, failing = progress.best_failing_count, progress.failing_count
    if best is None or failing is None or failing <= best:
        return False
    if any(s.required and s.status is ExitConditionStatusValue.ERROR for s in state.exit_conditions):
        return False
    return progress.best_commit is not None and progress.best_commit != state.head_commit


def revert_regression(state: LoopState, workspace: Workspace, record: Recorder) -> bool:
    """Revert the last iteration when :func:`regression_to_revert` says so (see the module
    docstring); returns True when it was reverted. ``state.head_commit`` becomes the best
    evaluation's commit; ``state.exit_conditions`` stay the reverted iteration's (what it broke,
    as the agent's next prompt lists them). Raises
    :class:`~loopwright.exceptions.WorkspaceError` when the branch cannot be moved back."""
    if not regression_to_revert(state):
        return False
    progress = state.progress
    best = progress.best_commit
    assert best is not None  # regression_to_revert checked it
    number = state.iteration
    commit = state.head_commit
    failing = failing_required(state.exit_conditions)
    broke = [name for name in failing if name not in progress.best_failing][:MAX_LISTED_CONDITIONS]
    saved = workspace.set_aside(state.loop_id, best, f"regression-iteration-{number}")
    workspace.reset(state.loop_id, best)
    state.head_commit = best
    for digest in progress.history:
        if digest.iteration == number:
            digest.reverted = True
    ref = saved.ref if saved else None
    where = f"best: {progress.best_failing_count} at iteration {progress.best_iteration}"
    progress.regression = (
        f"Iteration {number} left {len(failing)} required conditions failing ({where}), so it was "
        f"reverted to commit {best[:12]}"
        + (f"; your change is kept on {ref}" if ref else "")
        + (f". It broke: {', '.join(broke)}" if broke else "")
        + ". The failures below are those of the reverted change: do not repeat it."
    )
    record(
        IterationEventType.ITERATION_REVERTED,
        f"iteration {number}: {len(failing)} required conditions failing ({where}); reverted to "
        f"{best[:12]}"
        + (f", kept on {ref}" if ref else "")
        + (f"; broke {', '.join(broke)}" if broke else ""),
        iteration=number,
        commit=commit,
        reverted_to=best,
        ref=ref,
        failing_count=len(failing),
        best_failing_count=progress.best_failing_count,
        best_iteration=progress.best_iteration,
        broke=broke or None,
    )
    return True
