"""Time travel (issue 10): roll a loop back to one of its checkpoints, or fork a new loop from one.

:class:`TimeTravel` is what :class:`~loopwright.controls.ControlService` applies a ROLLBACK or a
FORK with, once Cedar allowed it (``RollbackLoop``, ``ForkLoop`` in ``policies/controls.cedar``).
A checkpoint is named by the iteration it was taken at (``loopwright events LOOP_ID --type
CHECKPOINT_SAVED`` lists them); the newest valid checkpoint of that iteration is used.

Rollback: the loop must not be running. Its uncommitted changes are kept on
``refs/loopwright/<loop_id>/salvage/rollback-<n>``, the branch's commits after the checkpoint on
``refs/loopwright/<loop_id>/set-aside/rollback-<n>``, then the branch and worktree are reset to
the checkpoint's commit and the loop's state becomes the checkpoint's (limits, policy set and
sessions as stored), PAUSED with no outcome: ``loopwright resume`` continues it from there. A
fresh checkpoint of that state is saved, so a resume from the newest checkpoint starts there too.
LOOP_ROLLED_BACK records it.

Fork: a new loop (its own id, branch ``loopwright/<new>`` at the checkpoint's commit, worktree
and limits counted from zero) with the parent's configuration (a new ``goal`` if given), its
``parent_loop_id`` and ``forked_from_iteration`` set; LOOP_FORKED is recorded on both loops.
The caller then starts it (the control service's resumer).

Every check (loop known and idle, checkpoint valid with a commit, new id free) is made before
anything is written; a failed check raises :class:`~loopwright.exceptions.ControlConflictError`.

**Without a workspace at hand** (``workspace_for`` None: the dashboard's control Lambda on AWS,
whose loops' clones live in their Code Interpreter sessions) only the stored state moves: the
rolled-back loop's ``head_commit`` is the checkpoint's commit, and the first step of its next run
moves the clone's branch back to it, keeping the later commits on a set-aside ref
(COMMITS_SET_ASIDE; :func:`loopwright.cloud.runtime_aws.rewind_workspace`). A fork's branch is
made by its first step the same way, from the checkpoint's commit. ``check_loop`` refuses what
that deployment cannot do (on AWS: a fork of a loop that does not push its branch, whose commits
a new session could not fetch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loopwright.exceptions import ControlConflictError, LoopFrameworkError, LoopNotFoundError
from loopwright.models import (
    Checkpoint,
    ControlRequest,
    ExitConditionStatus,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopPhase,
    LoopState,
)
from loopwright.models.state import new_id
from loopwright.models.types import loop_id_problem
from loopwright.models.workspace import BRANCH_PREFIX
from loopwright.ports import CheckpointStore, LoopStore, Workspace
from loopwright.steps.restore import restored_state

#: Gives the workspace a loop's branch lives in (locally a git worktree workspace).
WorkspaceFor = Callable[[LoopState], Workspace]
#: Refuses a time travel this deployment cannot apply to a loop: raises ControlConflictError.
LoopCheck = Callable[[LoopState, ControlRequest], None]


def find_checkpoint(state: LoopState, checkpoints: CheckpointStore, iteration: int) -> Checkpoint:
    """The newest valid checkpoint of ``state``'s loop taken at ``iteration``, with a commit.

    Raises :class:`ControlConflictError` naming the iterations that have one otherwise.
    """
    entries = [e for e in checkpoints.list_checkpoints(state.loop_id) if isinstance(e, Checkpoint)]
    valid = [e for e in entries if e.loop_id == state.loop_id and e.is_valid()]
    for ckpt in valid:
        if ckpt.iteration == iteration:
            if not ckpt.commit:
                raise ControlConflictError(
                    f"checkpoint {ckpt.checkpoint_id} of loop {state.loop_id!r} has no git commit "
                    "(the loop ran without git_isolation): nothing to go back to"
                )
            return ckpt
    known = sorted({ckpt.iteration for ckpt in valid})
    listed = ", ".join(str(i) for i in known) if known else "none"
    raise ControlConflictError(
        f"loop {state.loop_id!r} has no valid checkpoint of iteration {iteration} "
        f"(checkpoints of iterations: {listed})"
    )


class TimeTravel:
    """Applies ROLLBACK and FORK (see the module docstring) over the store, the checkpoints and
    the workspace ``workspace_for`` gives for a loop (None: only the stored state moves, and the
    loop's next run moves its branch). ``check_loop`` refuses what the deployment cannot do, before
    anything is written."""

    def __init__(
        self,
        store: LoopStore,
        checkpoints: CheckpointStore,
        workspace_for: WorkspaceFor | None,
        *,
        check_loop: LoopCheck | None = None,
    ) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self.workspace_for = workspace_for
        self.check_loop = check_loop

    def rollback(self, state: LoopState, request: ControlRequest) -> LoopState:
        """Reset the idle loop ``state`` to its checkpoint of ``request.iteration``; returns the
        stored state. Raises ControlConflictError (nothing written) for an unknown checkpoint;
        :class:`~loopwright.exceptions.WorkspaceError` when git fails."""
        assert request.iteration is not None  # checked by ControlRequest
        ckpt = find_checkpoint(state, self.checkpoints, request.iteration)
        assert ckpt.commit is not None
        if self.check_loop is not None:
            self.check_loop(state, request)
        salvaged = aside = None
        if self.workspace_for is not None:
            workspace = self.workspace_for(state)
            label = f"rollback-{ckpt.iteration}"
            workspace.prepare(state.loop_id)
            salvaged = workspace.salvage(state.loop_id, label)
            aside = workspace.set_aside(state.loop_id, ckpt.commit, label)
            workspace.reset(state.loop_id, ckpt.commit)
        rolled = restored_state(state, ckpt)
        rolled.head_commit = ckpt.commit
        rolled.evaluation_cache = state.evaluation_cache  # keyed by content: true whatever the time
        # The checkpoint's state again, as the newest checkpoint: a resume from "latest" starts here.
        fresh = Checkpoint.from_loop_state(rolled, ckpt.commit)
        reason = f"rolled back to iteration {ckpt.iteration} by {request.principal}"
        rolled.phase = LoopPhase.PAUSED
        rolled.outcome = None
        rolled.outcome_reason = reason + (f": {request.reason}" if request.reason else "")
        rolled.ended_at = rolled.resume_at = None
        rolled.is_active = False
        rolled.human_request = rolled.human_response = None
        rolled.pinned_hold = None
        rolled.task_token = None
        rolled.last_checkpoint_id, rolled.checkpointed_iteration = fresh.checkpoint_id, fresh.iteration
        self.checkpoints.save(fresh, retention=rolled.config.checkpoint_retention)
        data: dict[str, Any] = {
            "control": request.action.value,
            "principal": request.principal,
            "to_iteration": ckpt.iteration,
            "from_iteration": state.iteration,
            "checkpoint_id": ckpt.checkpoint_id,
            "new_checkpoint_id": fresh.checkpoint_id,
            "commit": ckpt.commit,
            "set_aside_ref": aside.ref if aside else None,
            "set_aside_commits": aside.commits if aside else None,
            "salvage_ref": salvaged.ref if salvaged else None,
        }
        if self.workspace_for is None:
            kept = "; the branch moves back when the loop next runs, its later commits set aside on a ref"
        else:
            kept = f"; later commits kept on {aside.ref}" if aside else ""
        event = IterationEvent(
            loop_id=state.loop_id,
            iteration=ckpt.iteration,
            type=IterationEventType.LOOP_ROLLED_BACK,
            phase=rolled.phase,
            message=f"{reason} (commit {ckpt.commit[:12]}){kept}",
            data={k: v for k, v in data.items() if v is not None},
        )
        return self.store.save_state(rolled, [event])

    def check_fork(self, parent: LoopState, request: ControlRequest) -> tuple[Checkpoint, str, LoopConfig]:
        """What a FORK of ``parent`` needs, checked before anything is written: the checkpoint,
        the new loop's id (free) and configuration. Raises ControlConflictError."""
        assert request.iteration is not None  # checked by ControlRequest
        ckpt = find_checkpoint(parent, self.checkpoints, request.iteration)
        if self.check_loop is not None:
            self.check_loop(parent, request)
        child_id = request.new_loop_id or new_id("loop")
        problem = loop_id_problem(child_id)
        if problem is not None:
            raise ControlConflictError(f"new loop id: {problem}")
        try:
            self.store.get_state(child_id)
        except LoopNotFoundError:
            pass
        else:
            raise ControlConflictError(f"loop {child_id!r} exists already; choose another new loop id")
        config = parent.config
        if request.goal is not None:
            config = LoopConfig.model_validate({**config.model_dump(), "goal": request.goal})
        return ckpt, child_id, config

    def fork(self, parent: LoopState, request: ControlRequest) -> LoopState:
        """Create the loop forked from ``parent``'s checkpoint of ``request.iteration`` (see the
        module docstring); returns its stored state (INITIALIZING: not started yet)."""
        ckpt, child_id, config = self.check_fork(parent, request)
        assert ckpt.commit is not None
        worktree = ""
        branch: str | None = BRANCH_PREFIX + child_id  # both made by the child's first step
        if self.workspace_for is not None:
            workspace = self.workspace_for(parent)
            try:
                workspace.branch_from(child_id, ckpt.commit)
            except NotImplementedError as exc:
                raise ControlConflictError("this workspace cannot fork loops (no git history)") from exc
            except LoopFrameworkError as exc:
                raise ControlConflictError(f"cannot fork loop {parent.loop_id!r}: {exc}") from exc
            made, branch, _ = workspace.prepare(child_id)
            worktree = str(made)
        child = LoopState(
            loop_id=child_id,
            project=parent.project,
            config=config,
            workspace=parent.workspace,
            worktree=worktree,
            branch=branch,
            base_commit=ckpt.commit,
            head_commit=ckpt.commit,
            exit_conditions=[
                ExitConditionStatus(name=c.key, type=c.type, required=c.required)
                for c in config.exit_conditions
            ],
            parent_loop_id=parent.loop_id,
            forked_from_iteration=ckpt.iteration,
        )
        common = {
            "control": request.action.value,
            "principal": request.principal,
            "from_iteration": ckpt.iteration,
            "checkpoint_id": ckpt.checkpoint_id,
            "commit": ckpt.commit,
        }
        child = self.store.create_loop(child)
        child_event = IterationEvent(
            loop_id=child_id,
            iteration=0,
            type=IterationEventType.LOOP_FORKED,
            phase=child.phase,
            message=f"forked from loop {parent.loop_id} at iteration {ckpt.iteration} by {request.principal}",
            data={**common, "parent_loop_id": parent.loop_id, "branch": branch},
        )
        parent_event = IterationEvent(
            loop_id=parent.loop_id,
            iteration=parent.iteration,
            type=IterationEventType.LOOP_FORKED,
            phase=parent.phase,
            message=f"loop {child_id} forked from iteration {ckpt.iteration} by {request.principal}",
            data={**common, "child_loop_id": child_id, "branch": branch},
        )
        self.store.append_events([child_event, parent_event])
        return child


def children_of(store: LoopStore, state: LoopState, *, limit: int = 1_000) -> list[LoopState]:
    """The loops forked from ``state``'s loop (in its project; at most ``limit`` loops looked at)."""
    return [s for s in store.list_loops(state.project, limit=limit) if s.parent_loop_id == state.loop_id]
