"""Git for plans: each task's loop starts from its dependencies' results, and gate:all runs on
the merge of every task's result.

A task's loop works in its own worktree on branch ``loopwright/<plan_id>.<task_id>`` (see
:mod:`loopwright.adapters.local.git_workspace`). A task without dependencies starts from the
workspace's ``HEAD``; a task with one starts from that dependency's result (its loop's head
commit); with several, from their merge. Verification merges the results of the completed tasks
that no other completed task builds on into branch ``loopwright/verify_<plan_id>`` and runs the
gates in its worktree, ``<state_dir>/worktrees/verify_<plan_id>``.

Merges are made without touching any checkout: ``git merge-tree --write-tree`` (git 2.38 or
later) computes the merged tree, ``git commit-tree`` records it with both parents, as user
``loopwright``. A merge that conflicts raises :class:`MergeConflictError` naming the paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404 - argv lists only, shell=False
from collections.abc import Sequence
from pathlib import Path

from loopwright.adapters.local.git_workspace import BRANCH_PREFIX, GIT_TIMEOUT_SECONDS, GitWorktreeWorkspace
from loopwright.exceptions import WorkspaceError
from loopwright.plans.errors import MergeConflictError
from loopwright.plans.ports import PlanWorkspace

#: Identity of the merge commits, whatever the user's configuration or environment.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "loopwright",
    "GIT_AUTHOR_EMAIL": "loopwright@localhost",
    "GIT_COMMITTER_NAME": "loopwright",
    "GIT_COMMITTER_EMAIL": "loopwright@localhost",
}


def _git_env() -> dict[str, str]:
    # GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE ... would redirect git elsewhere: drop every GIT_*.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_IDENTITY, LC_ALL="C", LANGUAGE="C", GIT_TERMINAL_PROMPT="0")
    return env


class GitPlanWorkspace(PlanWorkspace):
    """:class:`PlanWorkspace` over the user's git repository.

    Args:
        workspace: the user's project folder (as given to the loops).
        state_dir: loopwright's folder (default ``<workspace>/.loopwright``).

    Methods raise :class:`WorkspaceError` naming the git command when git fails.
    """

    def __init__(self, workspace: Path, state_dir: Path | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.state_dir = Path(state_dir).resolve() if state_dir else self.workspace / ".loopwright"
        self._env = _git_env()
        self._git_exe: str | None = None

    # ----------------------------------------------------------------------------- port
    def integrate(self, run_id: str, heads: Sequence[str], *, isolated: bool = True) -> Path:
        """The worktree of branch ``loopwright/<run_id>`` at the merge of ``heads`` (the
        workspace's ``HEAD`` when empty), created or reset; the workspace itself when not
        ``isolated``. Raises :class:`MergeConflictError`."""
        if not isolated:
            return self.workspace
        target = self.merge(heads) if heads else None
        worktrees = GitWorktreeWorkspace(self.workspace, self.state_dir)
        path, _, _ = worktrees.prepare(run_id)  # a new branch starts at HEAD
        worktrees.reset(run_id, target or self._git(["rev-parse", "--verify", "HEAD^{commit}"]))
        return path

    def changed_files(self, base: str | None, head: str | None) -> list[str]:
        """Paths changed from ``base`` to ``head`` (``git diff --name-only``); empty when either
        is None or they are equal."""
        if not base or not head or base == head:
            return []
        names = self._git(["diff", "--name-only", "-z", base, head])
        return [name for name in names.split("\0") if name]

    # ----------------------------------------------------------------------------- tasks
    def start_branch(self, loop_id: str, heads: Sequence[str]) -> str | None:
        """Create the branch of loop ``loop_id`` at the merge of ``heads``; returns that commit.

        Nothing is done (None returned) without ``heads`` (the loop starts from ``HEAD``) or when
        the branch exists already (a resumed loop keeps its work). Raises
        :class:`MergeConflictError` when the heads conflict.
        """
        if not heads or self._branch_exists(BRANCH_PREFIX + loop_id):
            return None
        commit = self.merge(heads)
        self._git(["branch", BRANCH_PREFIX + loop_id, commit])
        return commit

    def merge(self, heads: Sequence[str]) -> str:
        """One commit holding the changes of every commit of ``heads`` (the first one when the
        others are its ancestors). Raises :class:`MergeConflictError` naming conflicting paths."""
        if not heads:
            raise ValueError("merge needs at least one commit")
        current = heads[0]
        for other in heads[1:]:
            if self._is_ancestor(other, current):
                continue
            if self._is_ancestor(current, other):
                current = other
                continue
            code, out, err = self._run(
                ["merge-tree", "--write-tree", "--name-only", "--no-messages", current, other]
            )
            lines = [line for line in out.splitlines() if line]
            if code == 1:
                paths = sorted(set(lines[1:]))
                raise MergeConflictError(
                    f"the changes of commits {current[:12]} and {other[:12]} conflict in "
                    f"{', '.join(paths) or 'some paths'}",
                    paths=paths,
                )
            if code != 0 or not lines:
                raise WorkspaceError(f"git merge-tree {current[:12]} {other[:12]} failed: {err.strip()}")
            current = self._git(
                ["commit-tree", lines[0], "-p", current, "-p", other, "-m", f"loopwright: merge {other[:12]}"]
            )
        return current

    # ----------------------------------------------------------------------------- internals
    def _branch_exists(self, branch: str) -> bool:
        return self._run(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"])[0] == 0

    def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self._run(["merge-base", "--is-ancestor", ancestor, descendant])[0] == 0

    def _git(self, args: list[str]) -> str:
        code, out, err = self._run(args)
        if code != 0:
            raise WorkspaceError(f"git {' '.join(args[:3])} failed in {self.workspace}: {err.strip()}")
        return out.strip()

    def _run(self, args: list[str]) -> tuple[int, str, str]:
        if self._git_exe is None:
            found = shutil.which("git")
            if found is None:
                raise WorkspaceError("git is not installed (or not on PATH); plans need it")
            self._git_exe = found
        try:
            done = subprocess.run(  # nosec B603 - argv list, no shell
                [self._git_exe, *args],
                cwd=self.workspace,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkspaceError(
                f"git {' '.join(args[:3])} could not run in {self.workspace}: {exc}"
            ) from exc
        return done.returncode, done.stdout, done.stderr


class TaskWorktreeWorkspace(GitWorktreeWorkspace):
    """A task loop's worktree that reports the commit it started from (its dependencies' merge)
    as its base commit, so a loop resumed before its first checkpoint restarts from there."""

    def __init__(self, workspace: Path, state_dir: Path | None, start_commits: dict[str, str]) -> None:
        super().__init__(workspace, state_dir)
        self._starts = start_commits

    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        """As :meth:`GitWorktreeWorkspace.prepare`, with the task's start commit as the base."""
        path, branch, base = super().prepare(loop_id)
        return path, branch, self._starts.get(loop_id, base)
