"""What the evidence bundle reads from git: a commit's tracked files and their contents."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from loopwright.evidence import EvidenceError, sha256_hex


def _git(repo: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EvidenceError(f"git {' '.join(args)} in {repo}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise EvidenceError(f"git {' '.join(args)} in {repo}: {message[-1] if message else done.returncode}")
    return done.stdout


def tracked_files(repo: Path, commit: str) -> list[str]:
    """The paths (``/`` separators) of the files ``commit`` holds. Raises :class:`EvidenceError`
    when git fails (not a repository, an unknown commit)."""
    return [p for p in _git(repo, "ls-tree", "-r", "-z", "--name-only", commit).decode().split("\0") if p]


def files_sha256_at(repo: Path, commit: str, paths: Iterable[str]) -> dict[str, str]:
    """Path -> SHA-256 (hex) of the file's content at ``commit``; paths it does not hold are left
    out. Raises :class:`EvidenceError` when git fails."""
    held = set(tracked_files(repo, commit))
    return {path: sha256_hex(_git(repo, "show", f"{commit}:{path}")) for path in paths if path in held}


def head_commit(repo: Path) -> str | None:
    """The commit checked out in ``repo``, or None when it is not a git checkout."""
    try:
        return _git(repo, "rev-parse", "HEAD").decode().strip()
    except EvidenceError:
        return None


def git_version() -> str:
    """``git --version`` without its ``git version`` prefix, or ``unknown``."""
    try:
        return _git(Path.cwd(), "--version").decode().strip().removeprefix("git version ")
    except EvidenceError:
        return "unknown"
