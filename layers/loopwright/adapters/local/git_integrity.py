"""Is a loop's worktree still what loopwright left, and putting it back when it is not.

A loop's worktree is sound when its ``.git`` file points at the worktree's own git directory
(``<common>/worktrees/<name>``) and that directory's ``HEAD`` names the loop's branch. An agent
that deletes or rewrites the ``.git`` file would make git fall back to the repository above (the
user's checkout); one that checks out another branch would commit elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from loopwright.adapters.local.git_cli import GitCli
from loopwright.exceptions import WorkspaceError, WorkspaceIntegrityError


def check_integrity(path: Path, admin: Path, expected_ref: str, *, workspace: Path, loop_id: str) -> None:
    """Raise :class:`WorkspaceIntegrityError` unless ``<path>/.git`` points at ``admin`` (the
    worktree's git directory) and ``HEAD`` there is ``expected_ref`` (``refs/heads/...``).
    ``workspace`` and ``loop_id`` are named in the message (what to check, how to resume)."""
    dot_git = path / ".git"
    pointer = dot_git.read_text(errors="replace").strip() if dot_git.is_file() else None
    if pointer is None or gitdir_of(path, pointer) != admin.resolve():
        change = "removed" if not dot_git.exists() else "changed"
        raise WorkspaceIntegrityError(
            f"the agent {change} {dot_git}: git commands run there would reach the repository "
            f"above it (your checkout); nothing was committed. Check {workspace} for "
            f"changes the agent may have made there; `loopwright resume {loop_id}` restores "
            "the file and continues"
        )
    found = head_ref(admin)
    if found != expected_ref:
        raise WorkspaceIntegrityError(
            f"HEAD of the loop's worktree is {found}, not {expected_ref}: the agent changed "
            f"branches; nothing was committed. `loopwright resume {loop_id}` puts HEAD back on "
            "the loop's branch (the worktree's files are kept)"
        )


def repair(git: GitCli, path: Path, admin: Path, expected_ref: str) -> None:
    """Restore ``<path>/.git`` to point at ``admin`` and put ``HEAD`` back on ``expected_ref``.
    Raises :class:`WorkspaceError` when ``.git`` is a folder or a symbolic link."""
    dot_git = path / ".git"
    if dot_git.is_symlink() or dot_git.is_dir():
        raise WorkspaceError(f"{dot_git} is not git's worktree file; remove it and resume again")
    pointer = dot_git.read_text(errors="replace").strip() if dot_git.is_file() else None
    if pointer is None or gitdir_of(path, pointer) != admin.resolve():
        dot_git.write_text(f"gitdir: {admin}\n", encoding="utf-8")
    if head_ref(admin) != expected_ref:
        git.output(["symbolic-ref", "HEAD", expected_ref], cwd=path, git_dir=admin, work_tree=path)


def head_ref(admin: Path) -> str:
    """What the worktree's ``HEAD`` file names: ``refs/heads/<branch>``, or "a detached HEAD"
    (git keeps a worktree's ``HEAD`` as this plain file in its git directory)."""
    try:
        text = (admin / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return "a missing HEAD"
    return text.removeprefix("ref:").strip() if text.startswith("ref:") else "a detached HEAD"


def gitdir_of(worktree: Path, pointer: str) -> Path | None:
    """The folder a ``.git`` file's ``gitdir: <path>`` line names (relative to the worktree)."""
    if not pointer.startswith("gitdir:"):
        return None
    return (worktree / pointer.removeprefix("gitdir:").strip()).resolve()
