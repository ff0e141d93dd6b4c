"""The user's working tree as one commit, and secrets kept out of every commit (issue 9, point 5).

:func:`snapshot_working_tree` records the working tree as the user sees it (tracked changes,
staged or not, and untracked files that are not ignored) as one commit on top of ``HEAD``,
"loopwright: snapshot of the working tree at start". It works on a private copy of the user's
index (``GIT_INDEX_FILE``: ``git add -A``, ``write-tree``, ``commit-tree``), so the user's index,
working tree, stash, ``HEAD`` and branches are never touched; the commit is reachable only from
the loop's branch and ``refs/loopwright/<loop_id>/snapshot``.

:func:`withhold_secrets` takes the staged paths that :func:`~loopwright.adapters.local.
secret_files.looks_like_secret` back out of an index before anything is written from it; the
snapshot, every iteration's commit, salvaged work and the initial commit of a new repository go
through it. A secret file already committed (in the user's ``HEAD``) stays as it is, since it is
the user's history, but changes to it are not committed by loopwright.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from loopwright.adapters.local.git_cli import IDENTITY, GitCli
from loopwright.adapters.local.secret_files import secret_paths
from loopwright.models.workspace import MAX_LISTED_PATHS, SAVED_WORK_REF_PREFIX, WorkspaceSnapshot

#: Message of the commit that holds the user's working tree when a loop starts.
SNAPSHOT_MESSAGE = "loopwright: snapshot of the working tree at start"


def snapshot_ref(loop_id: str) -> str:
    """``refs/loopwright/<loop_id>/snapshot``: the snapshot a loop's branch started from."""
    return f"{SAVED_WORK_REF_PREFIX}{loop_id}/snapshot"


def split_z(output: str) -> list[str]:
    """The non-empty fields of NUL-separated git output (``-z``)."""
    return [field for field in output.split("\0") if field]


def withhold_secrets(
    git: GitCli,
    paths: list[str],
    *,
    root: Path,
    reset_to: str | None,
    env: dict[str, str] | None = None,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
) -> list[str]:
    """Unstage the paths of ``paths`` (staged, relative to ``root``) that look like secrets.

    Their index entries go back to those of commit ``reset_to`` (``git reset``: removed when it
    has none), or are removed (``git rm --cached``) when there is no commit yet (None). The files
    themselves are left alone. ``env`` (a private ``GIT_INDEX_FILE``), ``git_dir`` and
    ``work_tree`` are passed to git. Returns the withheld paths. Raises WorkspaceError.
    """
    secrets = secret_paths(paths, root)
    if secrets:
        args = ["reset", "-q", reset_to] if reset_to else ["rm", "-q", "--cached"]
        git.run(
            [*args, "--", *secrets],
            cwd=root,
            env={**(env or {}), "GIT_LITERAL_PATHSPECS": "1"},  # a name like '*.pem' is a name
            git_dir=git_dir,
            work_tree=work_tree,
        )
    return secrets


def snapshot_working_tree(git: GitCli, toplevel: Path, head: str) -> WorkspaceSnapshot | None:
    """The working tree of the checkout at ``toplevel`` as a commit on top of ``head``.

    Returns None when the working tree matches ``head`` (build noise and ignored files aside);
    a snapshot whose ``commit`` is None when only files that look like secrets differ. Costs a
    copy of the user's index and five git calls (``ls-files``, ``add``, ``diff-index``,
    ``write-tree``, ``commit-tree``); ``git add -A`` reads every changed file. Raises
    :class:`~loopwright.exceptions.WorkspaceError` when git fails.
    """
    with tempfile.TemporaryDirectory(prefix="loopwright-snapshot-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        user_index = Path(git.output(["rev-parse", "--git-path", "index"], cwd=toplevel).strip())
        user_index = user_index if user_index.is_absolute() else toplevel / user_index
        if user_index.is_file():  # its stat data spares git re-reading unchanged files
            shutil.copyfile(user_index, env["GIT_INDEX_FILE"])
        else:
            git.run(["read-tree", head], cwd=toplevel, env=env)
        listed = git.run(["ls-files", "-z", "--others", "--exclude-standard"], cwd=toplevel, env=env)[1]
        untracked = set(split_z(listed))
        git.run(["add", "-A"], cwd=toplevel, env=env)
        changes = split_z(
            git.run(["diff-index", "--cached", "--name-only", "-z", head], cwd=toplevel, env=env)[1]
        )
        withheld = withhold_secrets(git, changes, root=toplevel, reset_to=head, env=env)
        kept = [path for path in changes if path not in set(withheld)]
        tree = git.run(["write-tree"], cwd=toplevel, env=env)[1].strip() if kept else ""
    if not kept:
        return WorkspaceSnapshot(commit=None, head=head, withheld=withheld) if withheld else None
    commit = git.output([*IDENTITY, "commit-tree", tree, "-p", head, "-m", SNAPSHOT_MESSAGE], cwd=toplevel)
    new = [path for path in kept if path in untracked]
    changed = [path for path in kept if path not in untracked]
    return WorkspaceSnapshot(
        commit=commit.strip(),
        head=head,
        untracked=new[:MAX_LISTED_PATHS],
        untracked_count=len(new),
        uncommitted=changed[:MAX_LISTED_PATHS],
        uncommitted_count=len(changed),
        withheld=withheld,
    )
