"""Time travel on AWS (issue 10): ROLLBACK and FORK from the dashboard's control Lambda.

The control Lambda holds no clone of a loop's repository: each loop's clone lives in its Code
Interpreter session. So :func:`session_time_travel` is a :class:`~loopwright.travel.TimeTravel`
without a workspace: it moves only the stored state, and the loop's next run moves the branch.

- **Rollback**: the loop's state becomes its checkpoint's (PAUSED, ``head_commit`` the
  checkpoint's commit, a fresh checkpoint of it saved in AgentCore Memory). A RESUME starts a new
  execution whose first step finds the session's clone ahead of ``head_commit``, keeps the later
  commits on ``refs/loopwright/<loop_id>/set-aside/session-<n>`` (COMMITS_SET_ASIDE; pushed with
  ``repository.push``) and resets the branch, force-pushing it
  (:func:`loopwright.cloud.runtime_aws.rewind_workspace`).
- **Fork**: the child loop is stored at the checkpoint (``head_commit`` and ``base_commit`` its
  commit) and started by :meth:`~loopwright.cloud.resume.StepFunctionsResumer.start_fork`. Its
  first step clones the repository in a new session and resets the new branch
  ``loopwright/<child>`` to the checkpoint's commit, which the clone has only when the parent's
  branch was pushed: a fork of a loop without ``repository.push`` is refused (409, nothing
  written).

:func:`check_session_loop` also refuses to roll back a loop whose execution is parked waiting for
a human (its task token is stored): that execution would wake into a loop that moved under it.
Stop the loop first (STOP releases the parked execution), then roll it back.
"""

from __future__ import annotations

from loopwright.cloud.runtime import loop_repository
from loopwright.exceptions import ConfigError, ControlConflictError
from loopwright.models import ControlRequest, LoopState
from loopwright.models.enums import ControlAction
from loopwright.ports import CheckpointStore, LoopStore
from loopwright.travel import TimeTravel


def check_session_loop(state: LoopState, request: ControlRequest) -> None:
    """Refuse (ControlConflictError, naming the fix) a time travel the AWS deployment cannot
    apply to ``state``'s loop (see the module docstring)."""
    if request.action is ControlAction.ROLLBACK and state.task_token:
        raise ControlConflictError(
            f"loop {state.loop_id!r} waits for a human in its execution; stop it "
            f"(POST /api/loops/{state.loop_id}/stop) before rolling it back"
        )
    if request.action is ControlAction.FORK:
        try:
            push = loop_repository(state.config, state.workspace).push
        except ConfigError as exc:
            raise ControlConflictError(f"cannot fork loop {state.loop_id!r}: {exc}") from exc
        if not push:
            raise ControlConflictError(
                f"cannot fork loop {state.loop_id!r} on AWS: its branch is not pushed "
                "(repository.push is off), so a new session cannot fetch the checkpoint's commit; "
                "fork it where its clone is, or start loops with repository.push = true"
            )


def session_time_travel(store: LoopStore, checkpoints: CheckpointStore) -> TimeTravel:
    """The control Lambda's :class:`TimeTravel`: no workspace, :func:`check_session_loop`."""
    return TimeTravel(store, checkpoints, None, check_loop=check_session_loop)
