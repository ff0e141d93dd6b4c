"""What a workspace keeps instead of losing it (issue 11): an interrupted iteration's uncommitted
changes, and the commits a resume moved the loop's branch back past."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Namespace of the refs that keep a loop's saved work: ``refs/loopwright/<loop_id>/...``.
SAVED_WORK_REF_PREFIX = "refs/loopwright/"


def salvage_ref(loop_id: str, label: str) -> str:
    """``refs/loopwright/<loop_id>/salvage/<label>``: an interrupted iteration's changes."""
    return f"{SAVED_WORK_REF_PREFIX}{loop_id}/salvage/{label}"


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
