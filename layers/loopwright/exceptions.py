"""Exceptions raised by loopwright (names from seed 001, T017-T020).

Every error loopwright raises derives from :class:`LoopFrameworkError`, so a caller can catch
the whole family in one clause. Messages are written for the person who must fix the cause:
they name the field or object concerned and what to do.
"""

from __future__ import annotations


class LoopFrameworkError(Exception):
    """Base class of every loopwright error."""


class ConfigError(LoopFrameworkError):
    """A loop configuration is invalid; the message names the field and what is allowed."""


class PolicyViolationError(LoopFrameworkError):
    """A Cedar policy denied the next transition of a loop.

    Attributes:
        policy_ids: the ``@id`` of each policy that determined the denial.
        outcome: the name of the :class:`~loopwright.models.LoopOutcome` the denial maps to.
    """

    def __init__(self, message: str, *, policy_ids: list[str], outcome: str) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids
        self.outcome = outcome


class CheckpointRecoveryError(LoopFrameworkError):
    """No usable checkpoint could be loaded (none stored, or every stored one is corrupt)."""


class CheckpointNotFoundError(CheckpointRecoveryError):
    """The checkpoint named (by its id) is not among the loop's stored checkpoints."""


class ExitConditionEvaluationError(LoopFrameworkError):
    """An exit condition could not be evaluated at all (as opposed to evaluating to NOT_MET)."""


class LoopAlreadyRunningError(LoopFrameworkError):
    """``run()`` was called on a loop that is already running (re-entry prevention, seed T033)."""


class LoopNotFoundError(LoopFrameworkError):
    """No loop with the given id exists in the store."""


class WorkspaceError(LoopFrameworkError):
    """The workspace (a git repository and the loop's worktree) could not be prepared or used."""


class SandboxSessionEndedError(LoopFrameworkError):
    """The loop's sandbox session is gone (AWS: its Code Interpreter session timed out or was
    stopped): the files in it went with it. The next step's ports replace the session and restore
    the loop's clone (see :func:`loopwright.cloud.runtime.with_loop_sandbox`)."""

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class WorkspaceIntegrityError(WorkspaceError):
    """The loop's worktree is not what loopwright left (its ``.git`` file removed or changed, its
    ``HEAD`` moved off the loop's branch): nothing was committed, and the loop pauses for a
    human instead of writing anywhere else."""


class PolicySetChangedError(LoopFrameworkError):
    """The Cedar policy files differ from those the loop started under; the loop runs again only
    when an operator accepts the change (``loopwright resume --accept-policy-change``)."""


class AgentError(LoopFrameworkError):
    """The agent could not be started or failed in a way that ends the iteration."""


class ControlDeniedError(LoopFrameworkError):
    """Cedar refused a human control (``policies/controls.cedar``); nothing was written.

    Attributes:
        policy_ids: the ``@id`` of each policy that determined the denial (empty: no permit).
    """

    def __init__(self, message: str, *, policy_ids: list[str]) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids


class ControlConflictError(LoopFrameworkError):
    """A control does not apply to the loop as it is now (approve a loop that is not awaiting a
    response, resume a finished loop, lower a limit below what is used...); nothing was written."""


class PullRequestError(LoopFrameworkError):
    """A loop's pull request could not be opened (issue 15): no such remote, the push failed,
    ``gh`` failed. ``bad_input`` is True when nothing was tried (a precondition the user can fix:
    a missing remote, a branch to name), False when git or ``gh`` ran and failed."""

    def __init__(self, message: str, *, bad_input: bool = False) -> None:
        super().__init__(message)
        self.bad_input = bad_input
