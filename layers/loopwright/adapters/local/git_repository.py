"""The user's repository as loopwright prepares it once, before a loop's worktree is added.

* A workspace that is not a git repository (or one without any commit) is given one: ``git
  init`` if needed, whose ``info/exclude`` (git's own file, not one of the user's) then lists
  :data:`DEFAULT_IGNORES` (virtualenvs, ``node_modules``, build output, caches); then a commit
  of its current files, "loopwright: initial snapshot", without the files that look like secrets
  (:mod:`loopwright.adapters.local.secret_files`; they stay untracked). Callers serialize this
  per workspace (:func:`loopwright.engine.lock.workspace_lock`): concurrent first runs would
  race on it.
* ``.loopwright/`` is appended to ``info/exclude`` so ``git status`` stays clean.
* loopwright's excludes file (``<state_dir>/git-excludes``) lists the build noise, then the
  user's global excludes (``-c core.excludesFile`` replaces them, so they are copied in).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from loopwright.adapters.local.git_cli import IDENTITY, GitCli
from loopwright.adapters.local.git_snapshot import split_z, withhold_secrets
from loopwright.exceptions import WorkspaceError

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
#: What a folder that loopwright makes a repository ignores (its ``.git/info/exclude``): the
#: build noise, then the virtualenv, dependency and build folders of GitHub's
#: ``Python.gitignore`` and ``Node.gitignore`` templates, and loopwright's own folder.
DEFAULT_IGNORES = (
    *NOISE_PATTERNS,
    ".venv/",
    "venv/",
    "env/",
    "node_modules/",
    "build/",
    "dist/",
    ".tox/",
    ".nox/",
    ".loopwright/",
)


@dataclass(frozen=True)
class Repository:
    """Where the workspace sits in its repository: ``toplevel`` (the user's checkout),
    ``common_dir`` (its ``.git``, shared by every worktree) and ``prefix`` (the workspace's path
    inside the checkout, ``""`` or ending in ``/``)."""

    toplevel: Path
    common_dir: Path
    prefix: str
    withheld: tuple[str, ...] = ()  # secrets left out of an initial commit made just now


def ensure_repository(git: GitCli, workspace: Path, state_dir: Path) -> Repository:
    """Make ``workspace`` a repository with a commit if needed, write the excludes file and
    exclude the state folder. Raises :class:`WorkspaceError`."""
    code, out, err = git.run(
        ["rev-parse", "--show-toplevel", "--git-common-dir", "--show-prefix"], cwd=workspace, check=False
    )
    if code != 0:
        if "not a git repository" not in err:
            raise WorkspaceError(f"`git rev-parse` failed in {workspace}: {err.strip()}")
        git.output(["init", "-q"], cwd=workspace)
        # Our own repository: keep build noise out of the user's `git status` too.
        exclude = workspace / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as handle:
            handle.write(
                "# virtualenvs, dependencies, build output (added by loopwright)\n"
                + "\n".join(DEFAULT_IGNORES)
                + "\n"
            )
        return ensure_repository(git, workspace, state_dir)
    toplevel_text, common_text, prefix = [*out.split("\n"), "", "", ""][:3]
    repository = Repository(Path(toplevel_text), (workspace / common_text).resolve(), prefix)
    write_excludes_file(git, workspace)
    _exclude_state_dir(state_dir, repository)
    code, _, _ = git.run(["rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd=workspace, check=False)
    if code != 0:  # no commit yet: snapshot the current files
        top = repository.toplevel
        git.output(["add", "-A"], cwd=top)
        staged = split_z(git.output(["diff", "--cached", "--name-only", "-z"], cwd=top))
        withheld = withhold_secrets(git, staged, root=top, reset_to=None)
        git.output(
            [*IDENTITY, "commit", "-q", "--no-verify", "--allow-empty", "-m", INITIAL_COMMIT_MESSAGE], cwd=top
        )
        return Repository(repository.toplevel, repository.common_dir, prefix, tuple(withheld))
    return repository


def write_excludes_file(git: GitCli, workspace: Path) -> None:
    """Write ``git.excludes_file``: the noise patterns, then the user's global excludes."""
    lines = ["# written by loopwright: never committed by a loop", *NOISE_PATTERNS]
    code, out, _ = git.run(
        ["config", "--path", "--get", "core.excludesFile"],
        cwd=workspace,
        check=False,
        overrides=False,  # the user's own setting, not ours
    )
    user_file = Path(out.strip()) if code == 0 and out.strip() else _default_global_excludes()
    if user_file is not None and user_file != git.excludes_file and user_file.is_file():
        lines += ["", f"# from {user_file}", user_file.read_text(errors="replace")]
    text = "\n".join(lines) + "\n"
    git.excludes_file.parent.mkdir(parents=True, exist_ok=True)
    if not git.excludes_file.is_file() or git.excludes_file.read_text() != text:
        git.excludes_file.write_text(text)


def _exclude_state_dir(state_dir: Path, repository: Repository) -> None:
    """Append the state folder to ``info/exclude`` once (nothing if it is outside the repo)."""
    if state_dir.name == ".loopwright":
        pattern = ".loopwright/"
    elif state_dir.is_relative_to(repository.toplevel):
        pattern = f"/{state_dir.relative_to(repository.toplevel).as_posix()}/"
    else:
        return
    exclude = repository.common_dir / "info" / "exclude"
    current = exclude.read_text(errors="replace") if exclude.is_file() else ""
    if pattern in (line.strip() for line in current.splitlines()):
        return
    exclude.parent.mkdir(parents=True, exist_ok=True)
    separator = "" if not current or current.endswith("\n") else "\n"
    with exclude.open("a") as handle:
        handle.write(f"{separator}# loopwright's state (database, worktrees)\n{pattern}\n")


def _default_global_excludes() -> Path | None:
    """Git's default global excludes file, ``$XDG_CONFIG_HOME/git/ignore``."""
    base = os.environ.get("XDG_CONFIG_HOME") or (str(Path.home() / ".config") if "HOME" in os.environ else "")
    return Path(base) / "git" / "ignore" if base else None
