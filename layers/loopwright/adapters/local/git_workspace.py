"""Local workspaces: a git worktree per loop (the default), or the workspace itself.

:class:`GitWorktreeWorkspace` gives each loop its own worktree,
``<state_dir>/worktrees/<loop_id>``, on its own branch ``loopwright/<loop_id>``, started from the
working tree as the user sees it: a snapshot commit of the uncommitted and untracked (not
ignored) files on top of the user's ``HEAD``, or ``HEAD`` itself when the tree is clean or
``start_from="head"`` (:mod:`loopwright.adapters.local.git_snapshot`). The loop commits there
after every iteration; the user's checkout, index, stash and current branch are never touched,
with two exceptions made once (see :mod:`loopwright.adapters.local.git_repository`): a folder
without a repository or commit is given one, and ``.loopwright/`` is added to ``info/exclude``.

Files that look like secrets (:mod:`loopwright.adapters.local.secret_files`: ``.env``, private
keys...) are never committed by loopwright: not in the snapshot, an iteration's commit or
salvaged work; :meth:`GitWorktreeWorkspace.started_from` and
:meth:`GitWorktreeWorkspace.withheld` name them. One already in the user's ``HEAD`` stays (it is
the user's history) but its changes are not committed. An agent that runs ``git commit`` itself
is not filtered: its commits are its own.

Containment: every git command on a loop's worktree names the worktree's own git directory and
work tree (``--git-dir``, ``--work-tree``; :mod:`loopwright.adapters.local.git_cli`), so git can
never fall back to the user's repository; and a commit is made only when the worktree's ``.git``
file still points at that git directory and its ``HEAD`` is the loop's branch. Otherwise
:class:`~loopwright.exceptions.WorkspaceIntegrityError` says what the agent changed, nothing is
committed, and the engine pauses the loop; :meth:`GitWorktreeWorkspace.prepare` (run on resume)
restores the ``.git`` file and puts ``HEAD`` back on the branch, keeping the worktree's files
(both in :mod:`loopwright.adapters.local.git_integrity`).

Nothing is lost on a reset: :meth:`~GitWorktreeWorkspace.salvage` keeps uncommitted changes on
``refs/loopwright/<loop_id>/salvage/<label>`` and :meth:`~GitWorktreeWorkspace.set_aside` keeps
the commits a resume moves past on ``refs/loopwright/<loop_id>/set-aside/<label>``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from loopwright.adapters.local.git_cli import GIT_TIMEOUT_SECONDS, IDENTITY, GitCli, clean_text
from loopwright.adapters.local.git_integrity import check_integrity, repair
from loopwright.adapters.local.git_repository import (
    INITIAL_COMMIT_MESSAGE,
    NOISE_PATTERNS,
    Repository,
    ensure_repository,
)
from loopwright.adapters.local.git_snapshot import (
    SNAPSHOT_MESSAGE,
    snapshot_ref,
    snapshot_working_tree,
    split_z,
    withhold_secrets,
)
from loopwright.adapters.local.no_isolation import NoIsolationWorkspace
from loopwright.exceptions import WorkspaceError
from loopwright.models.records import DiffStat
from loopwright.models.types import loop_id_problem
from loopwright.models.workspace import (
    BRANCH_PREFIX,
    SavedWork,
    WorkspaceSnapshot,
    salvage_ref,
    set_aside_ref,
)
from loopwright.ports import Workspace

__all__ = [
    "BRANCH_PREFIX",
    "GIT_TIMEOUT_SECONDS",
    "INITIAL_COMMIT_MESSAGE",
    "NOISE_PATTERNS",
    "SNAPSHOT_MESSAGE",
    "GitWorktreeWorkspace",
    "NoIsolationWorkspace",
]

#: Commits listed in a set-aside event (the ref keeps all of them).
MAX_LISTED_COMMITS = 50


class GitWorktreeWorkspace(Workspace):
    """A git worktree per loop, on branch ``loopwright/<loop_id>``.

    Args:
        workspace: the user's project folder (a git repository, a folder inside one, or a plain
            folder, which is made a repository).
        state_dir: loopwright's folder; default ``<workspace>/.loopwright``. Worktrees go in
            ``<state_dir>/worktrees/``, the excludes file is ``<state_dir>/git-excludes``.
        start_from: where a new loop's branch starts: ``"working-tree"``, a snapshot of the
            user's working tree (the loops' default, see :class:`~loopwright.models.LoopConfig`),
            or ``"head"``, the user's last commit (this class's default, used by plans).

    Every method raises :class:`~loopwright.exceptions.WorkspaceError` naming the git command
    and its stderr when git fails, or when git is not installed; :meth:`commit` raises
    :class:`~loopwright.exceptions.WorkspaceIntegrityError` (see the module docstring).
    """

    def __init__(
        self,
        workspace: Path,
        state_dir: Path | None = None,
        *,
        start_from: Literal["working-tree", "head"] = "head",
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.start_from = start_from
        self.state_dir = Path(state_dir).resolve() if state_dir else self.workspace / ".loopwright"
        self.git = GitCli(self.state_dir)
        self.excludes_file = self.git.excludes_file
        self._repository: Repository | None = None
        self._admin_dirs: dict[str, Path] = {}  # loop id -> the worktree's git directory
        self._known_heads: dict[str, str] = {}  # loop id -> the head loopwright last saw
        self._started: dict[str, WorkspaceSnapshot] = {}  # loop id -> what its new branch started from
        self._withheld: dict[str, list[str]] = {}  # loop id -> secrets its last commit left out
        self._trees: dict[str, str] = {}  # commit -> its tree (clean_tree)

    # ----------------------------------------------------------------------------- port
    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        """Create the loop's worktree from the user's working tree (or ``HEAD``), or reopen (and
        repair) it.

        Returns (folder the loop works in, branch, base commit). The folder is the worktree, or
        the same sub-folder of it when the workspace is a sub-folder of its repository. For a new
        branch the base commit is the snapshot of the user's working tree (see the module
        docstring; :meth:`started_from` describes it), or ``HEAD`` when the tree is clean or
        ``start_from`` is ``"head"``; for a reopened one, the snapshot it started from, else the
        merge base of ``HEAD`` and the loop's branch. Reopening restores a removed or altered
        ``.git`` file and puts ``HEAD`` back on the loop's branch (the worktree's files are kept).
        """
        repository = self._ensure_repository()
        path, branch = self._worktree_path(loop_id), BRANCH_PREFIX + loop_id
        base: str | None
        head: str | None = None  # known without asking git only for a branch created here
        admin = self._find_admin_dir(loop_id)
        if admin is not None and path.is_dir():
            repair(self.git, path, admin, f"refs/heads/{branch}")
            self._remove_stale_index_lock(admin)
            base = self._recorded_start(loop_id, branch) or self._merge_base(branch)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self._branch_head(branch) is None:
                base = self.git.output(["rev-parse", "--verify", "HEAD^{commit}"], cwd=self.workspace)
                base = head = self._start_commit(loop_id, repository, base.strip())
                self.git.output(
                    ["worktree", "add", "-q", "-b", branch, str(path), base], cwd=repository.toplevel
                )
            else:  # the branch outlived its worktree (removed or deleted by hand)
                self.git.output(["worktree", "prune"], cwd=repository.toplevel)
                self.git.output(["worktree", "add", "-q", str(path), branch], cwd=repository.toplevel)
                base = self._recorded_start(loop_id, branch) or self._merge_base(branch)
            self._admin_dirs.pop(loop_id, None)
        workdir = path / repository.prefix if repository.prefix else path
        workdir.mkdir(parents=True, exist_ok=True)  # a sub-folder with no tracked file yet
        head = head or self._branch_head(branch)
        if head:
            self._known_heads[loop_id] = head
        return workdir, branch, base

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        """Stage every change in the loop's worktree (build noise and files that look like
        secrets excluded: :meth:`withheld` names the latter) and commit it.

        Returns (new head commit, changed paths relative to the worktree), or (None, []) when
        nothing changed; that case costs one ``git status`` call. An agent that committed by
        itself leaves nothing to commit but moves the branch: then its head and the paths its
        commits changed are returned. Control characters (a NUL...) are dropped from ``message``.

        Raises :class:`WorkspaceIntegrityError` before anything is staged when the worktree's
        ``.git`` file or ``HEAD`` is not what loopwright left.
        """
        check_integrity(
            self._worktree_path(loop_id),
            self._admin_dir(loop_id),
            f"refs/heads/{BRANCH_PREFIX}{loop_id}",
            workspace=self.workspace,
            loop_id=loop_id,
        )
        self._withheld[loop_id] = []
        status = self._in_worktree(
            loop_id, ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal"]
        )
        records = [r for r in status.split("\0") if r]
        head = next((r.split(" ", 2)[2] for r in records if r.startswith("# branch.oid ")), None)
        if not any(not r.startswith("# ") for r in records):
            known = self._known_heads.get(loop_id)
            if head is None or known is None or head == known:
                return None, []
            names = self._in_worktree(loop_id, ["diff", "--no-ext-diff", "--name-only", "-z", known, head])
            self._known_heads[loop_id] = head
            return head, [name for name in names.split("\0") if name]
        self._in_worktree(loop_id, ["add", "-A"])
        names = self._in_worktree(loop_id, ["diff", "--no-ext-diff", "--cached", "--name-only", "-z"])
        changed = split_z(names)
        path = self._worktree_path(loop_id)
        withheld = withhold_secrets(
            self.git, changed, root=path, reset_to="HEAD", git_dir=self._admin_dir(loop_id), work_tree=path
        )
        self._withheld[loop_id] = withheld
        changed = [name for name in changed if name not in set(withheld)]
        if not changed:
            return None, []
        text = clean_text(message).strip() or "loopwright: iteration"
        self._in_worktree(loop_id, [*IDENTITY, "commit", "-q", "--no-verify", "-m", text])
        new_head = self._in_worktree(loop_id, ["rev-parse", "HEAD"]).strip()
        self._known_heads[loop_id] = new_head
        return new_head, changed

    def reset(self, loop_id: str, commit: str) -> None:
        """Move the loop's branch to ``commit`` and discard every change in its worktree:
        ``git reset --hard`` then ``git clean -fd``. Ignored files (caches, virtualenvs) are
        kept. ``HEAD`` is put back on the loop's branch and a lock left by a killed git process
        is removed first. Keep what matters with :meth:`salvage` and :meth:`set_aside` before."""
        admin = self._admin_dir(loop_id)
        repair(self.git, self._worktree_path(loop_id), admin, f"refs/heads/{BRANCH_PREFIX}{loop_id}")
        self._remove_stale_index_lock(admin)
        self._in_worktree(loop_id, ["reset", "-q", "--hard", commit])
        self._in_worktree(loop_id, ["clean", "-q", "-f", "-d"])
        self._known_heads[loop_id] = self._in_worktree(loop_id, ["rev-parse", "HEAD"]).strip()

    def head(self, loop_id: str) -> str | None:
        """The commit the loop's branch points at, or None when the branch does not exist."""
        return self._branch_head(BRANCH_PREFIX + loop_id)

    def salvage(self, loop_id: str, label: str) -> SavedWork | None:
        """Commit the worktree's uncommitted changes (untracked files included, ignored ones not)
        through a private index, onto ``refs/loopwright/<loop_id>/salvage/<label>`` (``-2``,
        ``-3``... when taken), without touching the worktree, its index or the branch. None when
        there are no changes; the earlier ref (``earlier=True``) when the same changes were
        already salvaged (by an attempt that may have died before recording it)."""
        admin = self._find_admin_dir(loop_id)
        path = self._worktree_path(loop_id)
        if admin is None or not path.is_dir():
            return None
        parent = self._branch_head(BRANCH_PREFIX + loop_id)
        if parent is None:
            return None
        with tempfile.TemporaryDirectory(prefix="loopwright-salvage-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            for args in (["read-tree", parent], ["add", "-A"]):
                self.git.run(args, cwd=path, env=env, git_dir=admin, work_tree=path)
            staged = self.git.run(
                ["diff-index", "--cached", "--name-only", "-z", parent],
                cwd=path,
                env=env,
                git_dir=admin,
                work_tree=path,
            )[1]
            withhold_secrets(
                self.git, split_z(staged), root=path, reset_to=parent, env=env, git_dir=admin, work_tree=path
            )
            tree = self.git.run(["write-tree"], cwd=path, env=env, git_dir=admin, work_tree=path)[1].strip()
        if tree == self._in_worktree(loop_id, ["rev-parse", f"{parent}^{{tree}}"]).strip():
            return None
        kept = self._existing_ref_with_tree(salvage_ref(loop_id, ""), tree)
        if kept is not None:  # kept by an earlier attempt (whose event may have died with it)
            ref, commit = kept
            names = self._in_worktree(loop_id, ["diff", "--no-ext-diff", "--name-only", "-z", parent, commit])
            return SavedWork(ref=ref, commit=commit, files=[n for n in names.split("\0") if n], earlier=True)
        message = f"loopwright: uncommitted work of {loop_id} kept before a reset ({label})"
        commit = self._in_worktree(loop_id, ["commit-tree", tree, "-p", parent, "-m", message]).strip()
        ref = self._free_ref(salvage_ref(loop_id, label))
        self._in_worktree(loop_id, ["update-ref", ref, commit])
        names = self._in_worktree(loop_id, ["diff", "--no-ext-diff", "--name-only", "-z", parent, commit])
        return SavedWork(ref=ref, commit=commit, files=[n for n in names.split("\0") if n])

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        """Point ``refs/loopwright/<loop_id>/set-aside/<label>`` at the branch's head when the
        branch has commits that ``commit`` does not contain (they stay reachable after a reset
        to ``commit``); the commits are listed newest first (at most :data:`MAX_LISTED_COMMITS`).
        None when there are none."""
        head = self._branch_head(BRANCH_PREFIX + loop_id)
        if head is None or head == commit:
            return None
        listed = self.git.output(
            ["log", "--format=%H %s", f"--max-count={MAX_LISTED_COMMITS}", f"{commit}..{head}"],
            cwd=self.workspace,
        )
        commits = [line for line in listed.splitlines() if line.strip()]
        if not commits:
            return None  # the branch is behind or at ``commit``: nothing would be lost
        ref = self._free_ref(set_aside_ref(loop_id, label))
        self.git.output(["update-ref", ref, head], cwd=self.workspace)
        return SavedWork(ref=ref, commit=head, commits=commits)

    def file_text(self, loop_id: str, commit: str, path: str) -> str | None:
        """``git show <commit>:<path>`` in the loop's worktree; None when the file is not there."""
        worktree = self._worktree_path(loop_id)
        code, out, _ = self.git.run(
            ["show", f"{commit}:{path}"],
            cwd=worktree,
            check=False,
            git_dir=self._admin_dir(loop_id),
            work_tree=worktree,
        )
        return out if code == 0 else None

    def tree_hash(self, loop_id: str, commit: str) -> str | None:
        """``git rev-parse <commit>^{tree}`` in the loop's worktree; None when ``commit`` is not
        a commit there."""
        worktree = self._worktree_path(loop_id)
        code, out, _ = self.git.run(
            ["rev-parse", "--verify", "-q", f"{commit}^{{tree}}"],
            cwd=worktree,
            check=False,
            git_dir=self._admin_dir(loop_id),
            work_tree=worktree,
        )
        return out.strip() if code == 0 and out.strip() else None

    def started_from(self, loop_id: str) -> WorkspaceSnapshot | None:
        """What the loop's branch started from when :meth:`prepare` created it in this object:
        the snapshot of the user's working tree, or only the secrets left out of it; None for
        a clean tree or a reopened worktree."""
        return self._started.get(loop_id)

    def withheld(self, loop_id: str) -> list[str]:
        """Paths (relative to the worktree's root) that the last :meth:`commit` left uncommitted
        because they look like secrets; they stay in the worktree, untracked or changed."""
        return list(self._withheld.get(loop_id, []))

    def clean_tree(self, loop_id: str) -> str | None:
        """``HEAD^{tree}`` of the loop's worktree when ``git status`` lists nothing (no change,
        no untracked file that is not ignored); else None. None too when the worktree is gone.
        One ``git status`` call; the tree of a commit is looked up once (it never changes)."""
        path = self._worktree_path(loop_id)
        admin = self._find_admin_dir(loop_id)
        if admin is None or not path.is_dir():
            return None
        code, out, _ = self.git.run(
            ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal", "--no-renames"],
            cwd=path,
            check=False,
            git_dir=admin,
            work_tree=path,
        )
        records = [r for r in out.split("\0") if r]
        if code != 0 or any(not r.startswith("# ") for r in records):
            return None
        head = next((r.split(" ", 2)[2] for r in records if r.startswith("# branch.oid ")), None)
        if head is None or len(head) < 40:  # "(initial)": no commit yet
            return None
        if head not in self._trees:
            self._trees[head] = self._in_worktree(loop_id, ["rev-parse", f"{head}^{{tree}}"]).strip()
        return self._trees[head] or None

    def branch_from(self, loop_id: str, commit: str) -> None:
        """``git branch loopwright/<loop_id> <commit>``; WorkspaceError when the branch exists."""
        problem = loop_id_problem(loop_id)
        if problem is not None:
            raise WorkspaceError(f"invalid loop id for a branch: {problem}")
        branch = BRANCH_PREFIX + loop_id
        if self._branch_head(branch) is not None:
            raise WorkspaceError(f"branch {branch!r} exists already; choose another loop id")
        self._ensure_repository()
        self.git.output(["branch", branch, f"{commit}^{{commit}}"], cwd=self.workspace)

    # ----------------------------------------------------------------------------- extra
    def diff_stat(self, loop_id: str, commit: str) -> DiffStat | None:
        """Files, insertions and deletions of ``commit`` against its first parent (``git diff
        --numstat``; a binary file counts as a file without lines). Raises WorkspaceError."""
        numstat = self.git.output(
            ["diff", "--no-ext-diff", "--no-renames", "--numstat", f"{commit}^", commit, "--"],
            cwd=self.workspace,
        )
        rows = [line.split("\t", 2) for line in numstat.splitlines() if line.count("\t") >= 2]
        return DiffStat(
            files_changed=len(rows),
            insertions=sum(int(row[0]) for row in rows if row[0].isdigit()),
            deletions=sum(int(row[1]) for row in rows if row[1].isdigit()),
        )

    def remove(self, loop_id: str) -> None:
        """Delete the loop's worktree (with any uncommitted change); its branch is kept."""
        path = self._worktree_path(loop_id)
        if (path / ".git").exists():
            self.git.output(["worktree", "remove", "--force", str(path)], cwd=self.workspace)
        else:
            self.git.output(["worktree", "prune"], cwd=self.workspace)
        self._admin_dirs.pop(loop_id, None)

    def worktree_path(self, loop_id: str) -> Path:
        """``<state_dir>/worktrees/<loop_id>``, the root of the loop's worktree."""
        return self._worktree_path(loop_id)

    # ----------------------------------------------------------------------------- internals
    def _start_commit(self, loop_id: str, repository: Repository, head: str) -> str:
        """The commit a new branch starts from: a snapshot of the working tree (kept on
        ``refs/loopwright/<loop_id>/snapshot``), or ``head``; records :meth:`started_from`."""
        self._started.pop(loop_id, None)
        snapshot: WorkspaceSnapshot | None = None
        if self.start_from == "working-tree":
            snapshot = snapshot_working_tree(self.git, repository.toplevel, head)
        if repository.withheld and (snapshot is None or not snapshot.withheld):
            snapshot = (snapshot or WorkspaceSnapshot(commit=None, head=head)).model_copy(
                update={"withheld": list(repository.withheld)}
            )
        if snapshot is None:
            return head
        self._started[loop_id] = snapshot
        if snapshot.commit is None:
            return head
        self.git.output(["update-ref", snapshot_ref(loop_id), snapshot.commit], cwd=self.workspace)
        return snapshot.commit

    def _recorded_start(self, loop_id: str, branch: str) -> str | None:
        """The snapshot the loop's branch started from, when it is still on the branch."""
        start = self._ref_target(snapshot_ref(loop_id))
        if start is None:
            return None
        code, _, _ = self.git.run(
            ["merge-base", "--is-ancestor", start, f"refs/heads/{branch}"], cwd=self.workspace, check=False
        )
        return start if code == 0 else None

    def _ensure_repository(self) -> Repository:
        self._repository = ensure_repository(self.git, self.workspace, self.state_dir)
        return self._repository

    def _common_dir(self) -> Path:
        if self._repository is None:
            out = self.git.output(["rev-parse", "--git-common-dir"], cwd=self.workspace).strip()
            return (self.workspace / out).resolve()
        return self._repository.common_dir

    def _worktree_path(self, loop_id: str) -> Path:
        problem = loop_id_problem(loop_id)
        if problem is not None:
            raise WorkspaceError(f"invalid loop id for a worktree folder: {problem}")
        return self.state_dir / "worktrees" / loop_id

    def _find_admin_dir(self, loop_id: str) -> Path | None:
        """The git directory of the loop's worktree (``<common>/worktrees/<name>``), found by its
        ``gitdir`` file, which names the worktree's ``.git`` path; None when git has none."""
        if loop_id in self._admin_dirs:
            return self._admin_dirs[loop_id]
        target = (self._worktree_path(loop_id) / ".git").resolve()
        folder = self._common_dir() / "worktrees"
        for candidate in sorted(folder.glob("*/gitdir")) if folder.is_dir() else []:
            named = candidate.read_text(errors="replace").strip()
            if named and Path(named).resolve() == target:
                self._admin_dirs[loop_id] = candidate.parent
                return candidate.parent
        return None

    def _admin_dir(self, loop_id: str) -> Path:
        admin = self._find_admin_dir(loop_id)
        if admin is None:
            raise WorkspaceError(
                f"the worktree of loop {loop_id!r} ({self._worktree_path(loop_id)}) is not registered "
                "with git any more; resume the loop to recreate it from its branch"
            )
        return admin

    def _in_worktree(self, loop_id: str, args: list[str]) -> str:
        """``git <args>`` on the loop's worktree, its git directory and work tree named."""
        path = self._worktree_path(loop_id)
        return self.git.output(args, cwd=path, git_dir=self._admin_dir(loop_id), work_tree=path)

    def _merge_base(self, branch: str) -> str | None:
        """The merge base of the user's HEAD and ``branch`` (None for unrelated histories)."""
        code, out, _ = self.git.run(["merge-base", "HEAD", branch], cwd=self.workspace, check=False)
        return out.strip() if code == 0 and out.strip() else None

    def _branch_head(self, branch: str) -> str | None:
        code, out, _ = self.git.run(
            ["rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}"],
            cwd=self.workspace,
            check=False,
        )
        return out.strip() if code == 0 and out.strip() else None

    def _ref_target(self, ref: str) -> str | None:
        code, out, _ = self.git.run(["rev-parse", "--verify", "-q", ref], cwd=self.workspace, check=False)
        return out.strip() if code == 0 and out.strip() else None

    def _free_ref(self, ref: str) -> str:
        """``ref``, or ``ref-2``, ``ref-3``... the first that does not exist yet."""
        candidate, number = ref, 1
        while self._ref_target(candidate) is not None:
            number += 1
            candidate = f"{ref}-{number}"
        return candidate

    def _existing_ref_with_tree(self, prefix: str, tree: str) -> tuple[str, str] | None:
        """(ref, commit) of a ref under ``prefix`` whose commit has ``tree``, or None."""
        listed = self.git.output(
            ["for-each-ref", "--format=%(refname) %(objectname) %(tree)", prefix.rstrip("/")],
            cwd=self.workspace,
        )
        for line in listed.splitlines():
            ref, commit, found = [*line.split(), "", "", ""][:3]
            if found == tree:
                return ref, commit
        return None

    @staticmethod
    def _remove_stale_index_lock(admin: Path) -> None:
        """Remove ``index.lock`` of the worktree, left when a git process was killed.

        Safe because one engine process at most holds a loop (its loop lock) and this runs
        before the agent starts.
        """
        (admin / "index.lock").unlink(missing_ok=True)

    def delete_branch(self, loop_id: str) -> bool:
        """Delete the loop's branch ``loopwright/<loop_id>`` (``git branch -D``: its commits are
        lost unless merged or referenced elsewhere); False when there is no such branch. Remove
        the worktree first (:meth:`remove`): git refuses to delete a branch checked out anywhere,
        the user's checkout included, and that refusal is raised as WorkspaceError."""
        problem = loop_id_problem(loop_id)
        if problem is not None:
            raise WorkspaceError(f"invalid loop id for a branch: {problem}")
        branch = BRANCH_PREFIX + loop_id
        if self._branch_head(branch) is None:
            return False
        self.git.output(["branch", "-D", branch], cwd=self.workspace)
        return True
