"""Errors of plans. Each derives from :class:`~loopwright.exceptions.LoopFrameworkError`."""

from __future__ import annotations

from loopwright.exceptions import ConfigError, LoopFrameworkError


class PlanError(LoopFrameworkError):
    """Base class of the errors of plans."""


class PlanValidationError(ConfigError, PlanError):
    """A plan (a draft, a plan file, a request body) is invalid; nothing was written.

    Attributes:
        field: the dotted path of the offending field, such as ``tasks.2.depends_on``.
        problem: what is wrong and how to fix it (the message without the field).
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class PlanNotFoundError(PlanError):
    """No plan (or inspection packet) with this id in this project."""


class PlanConflictError(PlanError):
    """The plan's status does not allow the transition (dispatch a plan that is not DRAFT, verify
    one whose tasks still run), or another writer changed it first; nothing was written."""


class PlanGenerationError(PlanError):
    """A planner could not decompose an inspection packet into a valid plan draft."""


class MergeConflictError(PlanError):
    """The changes of several tasks' loops cannot be merged into one tree.

    Attributes:
        paths: the conflicting paths, relative to the repository.
    """

    def __init__(self, message: str, *, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class PlanDeniedError(PlanError):
    """Cedar refused a change to a project's plans (``policies/plans.cedar``); nothing was written.

    Attributes:
        policy_ids: the ``@id`` of each policy that determined the denial (empty: no policy
            permits it, the caller is not in the project's operators group).
    """

    def __init__(self, message: str, *, policy_ids: list[str]) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids
