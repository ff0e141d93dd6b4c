"""Pinned checks (issue 15.1): the files a loop's exit conditions depend on, and a change to them
that is held for a human.

A :class:`PinnedChange` is one pinned file an iteration changed; a :class:`PinnedChangeHold` is
an iteration that changed pinned files the ``pinned-checks`` Cedar policy did not allow: its
commit is kept on a ref, the branch is moved back, and the loop waits for a human
(:mod:`loopwright.pinning`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

#: What a pinned file is to the loop (the Cedar context's ``kind``):
#: ``tests`` test files and the test runner's configuration (ALL_TESTS_PASS),
#: ``lint-config`` the linter's (LINTING_CLEAN), ``scan-config`` the scanner's
#: (SECURITY_SCAN_CLEAN), ``condition-command`` a file a condition's command names,
#: ``loop-config`` loopwright.toml/.yaml and the Cedar policies, ``protected`` a path of
#: ``LoopConfig.protected_paths``.
PinKind = Literal["tests", "lint-config", "scan-config", "condition-command", "loop-config", "protected"]
#: How the iteration changed the file.
ChangeKind = Literal["added", "modified", "deleted"]


def _glob(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/") or "\x00" in value:
        raise ValueError(
            f"{value!r} must be a path or glob relative to the repository without '..' "
            '(for example "tests/golden/*" or "conftest.py")'
        )
    return value


#: A path or glob relative to the repository's root: ``*`` matches across folders; a pattern
#: without ``/`` matches a file's name in any folder; a pattern ending in ``/`` a whole folder.
PathGlob = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_glob)]


def _allow_kind(value: Any) -> str:
    return "paths" if isinstance(value, list | tuple) else "bool"


#: ``LoopConfig.allow_test_changes``: true/false, or a list of :data:`PathGlob` (an error names
#: the branch: ``allow_test_changes.paths.0`` or ``allow_test_changes.bool``).
AllowTestChanges = Annotated[
    Annotated[bool, Tag("bool")] | Annotated[list[PathGlob], Tag("paths")],
    Discriminator(_allow_kind),
]


class PinnedChange(BaseModel):
    """One pinned file an iteration changed (a path relative to the worktree's root)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    kind: PinKind
    change: ChangeKind
    allowed_by_config: bool = Field(
        default=False, description="LoopConfig.allow_test_changes lets this change through"
    )


class PinnedChangeHold(BaseModel):
    """An iteration whose change to pinned files waits for a human (phase AWAITING_RESPONSE).

    ``commit`` is the iteration's commit, kept on ``ref``; the loop's branch was moved back to
    ``reverted_to``. ``answered`` is set by the APPROVE control, with ``accepted_by`` (the
    operator's Cedar uid) when the change is accepted: the engine then moves the branch to
    ``commit`` (the pin moves with it); otherwise the change stays reverted.
    """

    model_config = ConfigDict(extra="forbid")

    iteration: int = Field(ge=1)
    commit: str
    ref: str | None = None
    reverted_to: str
    changes: list[PinnedChange] = Field(min_length=1)
    denied_by: list[str] = Field(default_factory=list, description="@id of the denying Cedar policies")
    answered: bool = False
    accepted_by: str | None = None

    def describe(self) -> str:
        """One line: the files and where the change is kept."""
        paths = ", ".join(c.path for c in self.changes[:10]) + (" ..." if len(self.changes) > 10 else "")
        kept = f" (kept on {self.ref})" if self.ref else f" (commit {self.commit[:12]})"
        return f"iteration {self.iteration} changed pinned files: {paths}{kept}"
