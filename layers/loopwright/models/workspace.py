"""What a workspace keeps instead of losing it (issue 11): an interrupted iteration's uncommitted
changes, and the commits a resume moved the loop's branch back past; and what a new loop's
branch started from (issue 9): a snapshot of the user's working tree."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Namespace of the refs that keep a loop's saved work: ``refs/loopwright/<loop_id>/...``.
SAVED_WORK_REF_PREFIX = "refs/loopwright/"


def salvage_ref(loop_id: str, label: str) -> str:
    """``refs/loopwright/<loop_id>/salvage/<label>``: an interrupted iteration's changes."""
    return f"{SAVED_WORK_REF_PREFIX}{loop_id}/salvage/{label}"


#: The branch of loop ``<loop_id>``: ``loopwright/<loop_id>`` (every workspace names it so).
BRANCH_PREFIX = "loopwright/"


def set_aside_ref(loop_id: str, label: str) -> str:
    """``refs/loopwright/<loop_id>/set-aside/<label>``: commits a resume moved past."""
    return f"{SAVED_WORK_REF_PREFIX}{loop_id}/set-aside/{label}"


class SavedWork(BaseModel):
    """Work kept reachable on a git ref: ``ref`` points at ``commit``.

    ``files``: paths changed (for salvaged changes, relative to the worktree's root);
    ``commits``: ``"<sha> <subject>"`` of each commit set aside, newest first.
    """

    model_config = ConfigDict(extra="forbid")

    ref: str
    commit: str
    files: list[str] = Field(default_factory=list)
    commits: list[str] = Field(default_factory=list)
    earlier: bool = Field(default=False, description="kept by an earlier attempt, not now")


#: Paths named in a snapshot's record, per list (the counts cover every path).
MAX_LISTED_PATHS = 20


def _named(paths: list[str], count: int) -> str:
    shown = ", ".join(paths[:MAX_LISTED_PATHS])
    return shown + (f" and {count - MAX_LISTED_PATHS} more" if count > MAX_LISTED_PATHS else "")


class WorkspaceSnapshot(BaseModel):
    """Where a new loop's branch started when the user's working tree was not clean (issue 9).

    ``commit``: the snapshot commit ("loopwright: snapshot of the working tree at start") on
    top of ``head`` (the user's ``HEAD``), holding the working tree as the user sees it; None
    when only withheld files differed, and the branch started at ``head``. ``untracked``: new
    files git did not track; ``uncommitted``: tracked files changed or deleted (staged or not);
    each lists at most :data:`MAX_LISTED_PATHS` paths, the ``*_count`` fields count them all.
    ``withheld``: files that look like secrets, left out of the snapshot (and so out of the
    loop's worktree). Paths are relative to the repository's top folder.
    """

    model_config = ConfigDict(extra="forbid")

    commit: str | None
    head: str
    untracked: list[str] = Field(default_factory=list)
    untracked_count: int = Field(default=0, ge=0)
    uncommitted: list[str] = Field(default_factory=list)
    uncommitted_count: int = Field(default=0, ge=0)
    withheld: list[str] = Field(default_factory=list)

    def describe(self) -> str:
        """One line for the user, for example ``started from your working tree: snapshot 1a2b3c4d
        of 2 files on HEAD 5e6f7a8b (1 untracked: agent.sh; 1 uncommitted: app.py)``."""
        parts = []
        if self.untracked_count:
            parts.append(f"{self.untracked_count} untracked: {_named(self.untracked, self.untracked_count)}")
        if self.uncommitted_count:
            parts.append(
                f"{self.uncommitted_count} uncommitted: {_named(self.uncommitted, self.uncommitted_count)}"
            )
        if self.commit is not None:
            files = self.untracked_count + self.uncommitted_count
            line = (
                f"started from your working tree: snapshot {self.commit[:8]} of {files} "
                f"file{'s' if files != 1 else ''} on HEAD {self.head[:8]} ({'; '.join(parts)})"
            )
        else:
            line = f"started from HEAD {self.head[:8]}"
        if self.withheld:
            line += (
                f"; not committed, they look like secrets (not in the loop's worktree): "
                f"{_named(self.withheld, len(self.withheld))}"
            )
        return line
