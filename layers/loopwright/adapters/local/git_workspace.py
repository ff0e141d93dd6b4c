"""Local workspaces: a git worktree per loop (the default), or the workspace itself.

:class:`GitWorktreeWorkspace` gives each loop its own worktree,
``<state_dir>/worktrees/<loop_id>``, on its own branch ``loopwright/<loop_id>``, started from the
user's ``HEAD``. The loop commits there after every iteration; the user's checkout, index and
current branch are never touched, with two exceptions made once:

* a workspace that is not a git repository (or one without any commit) is given one: ``git
  init`` if needed (its ``info/exclude`` then also lists the build noise below), then a commit
  of its current files, "loopwright: initial snapshot";
* ``.loopwright/`` is appended to ``.git/info/exclude`` so ``git status`` stays clean.

Git is run as a subprocess with argv lists (never a shell), without the user's identity
(``user.name=loopwright``), without hooks or signing, and with an excludes file that keeps
build noise (``__pycache__/``, ``*.pyc``, tool caches, ``*.egg-info/``) out of the commits.
The user's global excludes file is appended to it, since ``-c core.excludesFile`` replaces it.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404 - argv lists only, shell=False
from pathlib import Path

from loopwright.exceptions import WorkspaceError
from loopwright.ports import Workspace

#: Branch prefix of the loops' branches: ``loopwright/<loop_id>``.
BRANCH_PREFIX = "loopwright/"
#: Message of the commit made when the workspace had none.
INITIAL_COMMIT_MESSAGE = "loopwright: initial snapshot"
#: Patterns never committed by a loop (build and tool caches).
NOISE_PATTERNS = (
    "__pycache__/",
    "*.pyc",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mypy_cache/",
    "*.egg-info/",
)
#: Seconds any one git command may take (``git add -A`` of a large tree included).
GIT_TIMEOUT_SECONDS = 600.0
#: Identity of the loop's commits, independent of the user's git configuration.
_IDENTITY = ("-c", "user.name=loopwright", "-c", "user.email=loopwright@localhost")
#: Environment variables that would redirect git to another repository, index or identity.
_GIT_ENV_DROPPED = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
    }
)


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROPPED}
    env.update(LC_ALL="C", LANGUAGE="C", GIT_TERMINAL_PROMPT="0")  # parseable messages, no prompt
    return env


class GitWorktreeWorkspace(Workspace):
    """A git worktree per loop, on branch ``loopwright/<loop_id>``.

    Args:
        workspace: the user's project folder (a git repository, a folder inside one, or a plain
            folder, which is made a repository).
        state_dir: loopwright's folder; default ``<workspace>/.loopwright``. Worktrees go in
            ``<state_dir>/worktrees/``, the excludes file is ``<state_dir>/git-excludes``.

    Every method raises :class:`~loopwright.exceptions.WorkspaceError` naming the git command
    and its stderr when git fails, or when git is not installed.
    """

    def __init__(self, workspace: Path, state_dir: Path | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.state_dir = Path(state_dir).resolve() if state_dir else self.workspace / ".loopwright"
        self.excludes_file = self.state_dir / "git-excludes"
        self._git_exe: str | None = None
        self._env = _git_env()
        self._prefix: str | None = None  # the workspace's path inside its repository
        self._known_heads: dict[str, str] = {}  # loop id -> the head loopwright last saw

    # ----------------------------------------------------------------------------- port
    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        """Create the loop's worktree from the user's ``HEAD``, or reopen it if it exists.

        Returns (folder the loop works in, branch, base commit). The folder is the worktree, or
        the same sub-folder of it when the workspace is a sub-folder of its repository. The base
        commit is ``HEAD`` for a new worktree and, for a reopened one, the merge base of ``HEAD``
        and the loop's branch.

        Uncommitted changes in the user's checkout are *not* in the worktree: it starts from the
        last commit (commit or stash them first to give them to the loop).
        """
        toplevel = self._ensure_repository()
        path, branch = self._worktree_path(loop_id), BRANCH_PREFIX + loop_id
        base: str | None
        head: str | None = None  # known without asking git only for a branch created here
        if (path / ".git").exists():
            self._remove_stale_index_lock(path)
            base = self._merge_base(branch)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self._branch_head(branch) is None:
                base = self._git(["rev-parse", "--verify", "HEAD^{commit}"], cwd=self.workspace)
                base = head = base.strip()
                self._git(["worktree", "add", "-q", "-b", branch, str(path), base], cwd=toplevel)
            else:  # the branch outlived its worktree (removed or deleted by hand)
                self._git(["worktree", "prune"], cwd=toplevel)
                self._git(["worktree", "add", "-q", str(path), branch], cwd=toplevel)
                base = self._merge_base(branch)
        workdir = path / self._prefix if self._prefix else path
        workdir.mkdir(parents=True, exist_ok=True)  # a sub-folder with no tracked file yet
        head = head or self._branch_head(branch)
        if head:
            self._known_heads[loop_id] = head
        return workdir, branch, base

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        """Stage every change in the loop's worktree (build noise excluded) and commit it.

        Returns (new head commit, changed paths relative to the worktree), or (None, []) when
        nothing changed; that case costs one ``git status`` call. An agent that committed by
        itself leaves nothing to commit but moves the branch: then its head and the paths its
        commits changed are returned.
        """
        path = self._worktree_path(loop_id)
        status = self._git(
            ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal"], cwd=path
        )
        records = [r for r in status.split("\0") if r]
        head = next((r.split(" ", 2)[2] for r in records if r.startswith("# branch.oid ")), None)
        if not any(not r.startswith("# ") for r in records):
            known = self._known_heads.get(loop_id)
            if head is None or known is None or head == known:
                return None, []
            names = self._git(["diff", "--name-only", "-z", known, head], cwd=path)
            self._known_heads[loop_id] = head
            return head, [name for name in names.split("\0") if name]
        self._git(["add", "-A"], cwd=path)
        names = self._git(["diff", "--cached", "--name-only", "-z"], cwd=path)
        changed = [name for name in names.split("\0") if name]
        if not changed:
            return None, []
        self._git([*_IDENTITY, "commit", "-q", "--no-verify", "-m", message], cwd=path)
        new_head = self._git(["rev-parse", "HEAD"], cwd=path).strip()
        self._known_heads[loop_id] = new_head
        return new_head, changed

    def reset(self, loop_id: str, commit: str) -> None:
        """Move the loop's branch to ``commit`` and discard every change in its worktree:
        ``git reset --hard`` then ``git clean -fd``. Ignored files (caches, virtualenvs) are
        kept. A lock left by a killed git process in the worktree is removed first."""
        path = self._worktree_path(loop_id)
        self._remove_stale_index_lock(path)
        self._git(["reset", "-q", "--hard", commit], cwd=path)
        self._git(["clean", "-q", "-f", "-d"], cwd=path)
        self._known_heads[loop_id] = self._git(["rev-parse", "HEAD"], cwd=path).strip()

    def head(self, loop_id: str) -> str | None:
        """The commit the loop's branch points at, or None when the branch does not exist."""
        return self._branch_head(BRANCH_PREFIX + loop_id)

    # ----------------------------------------------------------------------------- extra
    def remove(self, loop_id: str) -> None:
        """Delete the loop's worktree (with any uncommitted change); its branch is kept."""
        path = self._worktree_path(loop_id)
        if (path / ".git").exists():
            self._git(["worktree", "remove", "--force", str(path)], cwd=self.workspace)
        else:
            self._git(["worktree", "prune"], cwd=self.workspace)

    def worktree_path(self, loop_id: str) -> Path:
        """``<state_dir>/worktrees/<loop_id>``, the root of the loop's worktree."""
        return self._worktree_path(loop_id)

    # ----------------------------------------------------------------------------- internals
    def _worktree_path(self, loop_id: str) -> Path:
        if not loop_id or "/" in loop_id or loop_id in (".", ".."):
            raise WorkspaceError(f"invalid loop id {loop_id!r} for a worktree folder")
        return self.state_dir / "worktrees" / loop_id

    def _git(self, args: list[str], *, cwd: Path) -> str:
        """Run ``git <args>`` in ``cwd``; its stdout. Raises WorkspaceError when it fails."""
        return self._run(args, cwd=cwd)[1]

    def _run(
        self, args: list[str], *, cwd: Path, check: bool = True, overrides: bool = True
    ) -> tuple[int, str, str]:
        """Run ``git <args>`` in ``cwd``: (exit code, stdout, stderr). ``overrides`` adds the
        excludes file, an empty hooks path and no signing. Raises WorkspaceError when git
        cannot run, and when it fails if ``check``."""
        argv = [self._git_executable()]
        if overrides:
            argv += ["-c", f"core.excludesFile={self.excludes_file}"]
            argv += ["-c", f"core.hooksPath={self.state_dir / 'no-git-hooks'}"]  # no hooks run
            argv += ["-c", "commit.gpgSign=false"]
        argv += args
        try:
            done = subprocess.run(  # nosec B603 - argv list, shell=False
                argv,
                cwd=cwd,
                env=self._env,
                capture_output=True,
                encoding="utf-8",
                errors="surrogateescape",
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise WorkspaceError(
                f"`git {' '.join(args)}` in {cwd} took more than {GIT_TIMEOUT_SECONDS:.0f} s"
            ) from exc
        except OSError as exc:  # cwd missing, or git vanished
            raise WorkspaceError(f"cannot run `git {' '.join(args)}` in {cwd}: {exc}") from exc
        if check and done.returncode != 0:
            raise WorkspaceError(
                f"`git {' '.join(args)}` failed in {cwd} (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done.returncode, done.stdout, done.stderr

    def _git_executable(self) -> str:
        if self._git_exe is None:
            found = shutil.which("git")
            if found is None:
                raise WorkspaceError(
                    "git was not found on PATH: install git, or set git_isolation = false to "
                    "let the agent work in the workspace itself (no branch, no commits)"
                )
            self._git_exe = found
        return self._git_exe

    def _ensure_repository(self) -> Path:
        """Make the workspace a repository with a commit if needed, write the excludes file and
        exclude the state folder; returns the repository's top level."""
        code, out, err = self._run(
            ["rev-parse", "--show-toplevel", "--git-common-dir", "--show-prefix"],
            cwd=self.workspace,
            check=False,
        )
        if code != 0:
            if "not a git repository" not in err:
                raise WorkspaceError(f"`git rev-parse` failed in {self.workspace}: {err.strip()}")
            self._git(["init", "-q"], cwd=self.workspace)
            # Our own repository: keep build noise out of the user's `git status` too.
            exclude = self.workspace / ".git" / "info" / "exclude"
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a") as handle:
                handle.write("# build noise (added by loopwright)\n" + "\n".join(NOISE_PATTERNS) + "\n")
            return self._ensure_repository()
        toplevel_text, common_text, prefix = [*out.split("\n"), "", "", ""][:3]
        toplevel = Path(toplevel_text)
        common_dir = (self.workspace / common_text).resolve()
        self._prefix = prefix
        self._write_excludes_file()
        self._exclude_state_dir(toplevel, common_dir)
        code, _, _ = self._run(
            ["rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd=self.workspace, check=False
        )
        if code != 0:  # no commit yet: snapshot the current files
            self._git(["add", "-A"], cwd=toplevel)
            self._git(
                [
                    *_IDENTITY,
                    "commit",
                    "-q",
                    "--no-verify",
                    "--allow-empty",
                    "-m",
                    INITIAL_COMMIT_MESSAGE,
                ],
                cwd=toplevel,
            )
        return toplevel

    def _write_excludes_file(self) -> None:
        """Write the excludes file: the noise patterns, then the user's global excludes."""
        lines = ["# written by loopwright: never committed by a loop", *NOISE_PATTERNS]
        code, out, _ = self._run(
            ["config", "--path", "--get", "core.excludesFile"],
            cwd=self.workspace,
            check=False,
            overrides=False,  # the user's own setting, not ours
        )
        user_file = Path(out.strip()) if code == 0 and out.strip() else _default_global_excludes()
        if user_file is not None and user_file != self.excludes_file and user_file.is_file():
            lines += ["", f"# from {user_file}", user_file.read_text(errors="replace")]
        text = "\n".join(lines) + "\n"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.excludes_file.is_file() or self.excludes_file.read_text() != text:
            self.excludes_file.write_text(text)

    def _exclude_state_dir(self, toplevel: Path, common_dir: Path) -> None:
        """Append the state folder to ``info/exclude`` once (nothing if it is outside the repo)."""
        if self.state_dir.name == ".loopwright":
            pattern = ".loopwright/"
        elif self.state_dir.is_relative_to(toplevel):
            pattern = f"/{self.state_dir.relative_to(toplevel).as_posix()}/"
        else:
            return
        exclude = common_dir / "info" / "exclude"
        current = exclude.read_text(errors="replace") if exclude.is_file() else ""
        if pattern in (line.strip() for line in current.splitlines()):
            return
        exclude.parent.mkdir(parents=True, exist_ok=True)
        separator = "" if not current or current.endswith("\n") else "\n"
        with exclude.open("a") as handle:
            handle.write(f"{separator}# loopwright's state (database, worktrees)\n{pattern}\n")

    def _merge_base(self, branch: str) -> str | None:
        """The merge base of the user's HEAD and ``branch`` (None for unrelated histories)."""
        code, out, _ = self._run(["merge-base", "HEAD", branch], cwd=self.workspace, check=False)
        return out.strip() if code == 0 and out.strip() else None

    def _branch_head(self, branch: str) -> str | None:
        code, out, _ = self._run(
            ["rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}"],
            cwd=self.workspace,
            check=False,
        )
        return out.strip() if code == 0 and out.strip() else None

    def _remove_stale_index_lock(self, path: Path) -> None:
        """Remove ``index.lock`` of the worktree, left when a git process was killed.

        Safe because one engine process at most holds a loop (its loop lock) and this runs
        before the agent starts.
        """
        dot_git = path / ".git"
        if not dot_git.is_file():
            return
        text = dot_git.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            lock = (path / text.removeprefix("gitdir:").strip()) / "index.lock"
            lock.unlink(missing_ok=True)


def _default_global_excludes() -> Path | None:
    """Git's default global excludes file, ``$XDG_CONFIG_HOME/git/ignore``."""
    base = os.environ.get("XDG_CONFIG_HOME") or (str(Path.home() / ".config") if "HOME" in os.environ else "")
    return Path(base) / "git" / "ignore" if base else None


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
