"""The workspace itself, for ``git_isolation = false`` (also importable from
:mod:`loopwright.adapters.local.git_workspace`)."""

from __future__ import annotations

from pathlib import Path

from loopwright.ports import Workspace


class NoIsolationWorkspace(Workspace):
    """The workspace itself, for ``git_isolation = false``: no branch, no commits, no reset.

    The agent's changes land directly in the user's folder and cannot be undone by loopwright.
    """

    def __init__(self, workspace: Path) -> None:
        self.workspace = Path(workspace).resolve()

    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        """(the workspace, None, None)."""
        return self.workspace, None, None

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        """(None, []): nothing is committed."""
        return None, []

    def reset(self, loop_id: str, commit: str) -> None:
        """Nothing to reset."""

    def head(self, loop_id: str) -> str | None:
        """None: there is no branch."""
        return None

    def remove(self, loop_id: str) -> None:
        """Nothing to remove (the workspace is the user's)."""
