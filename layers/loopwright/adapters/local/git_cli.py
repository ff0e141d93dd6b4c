"""How loopwright runs git: argv lists (never a shell), a clean environment, and settings that an
agent with write access to the repository cannot turn against the user.

Every call passes ``-c`` overrides so that nothing from the repository's own configuration runs a
program: no hooks (``core.hooksPath`` points at an empty folder), no file-system monitor
(``core.fsmonitor=false``), no signing, no external diff; build noise is excluded by
loopwright's own excludes file. The environment drops every variable that would redirect git to
another repository, index or identity (``GIT_DIR``, ``GIT_INDEX_FILE``, ``GIT_AUTHOR_*``...).

Calls on a loop's worktree name its git directory and work tree explicitly (``--git-dir``,
``--work-tree``), so a worktree whose ``.git`` file was deleted can never make git fall back to
the repository above it (the user's checkout).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess  # nosec B404 - argv lists only, shell=False
from collections.abc import Mapping, Sequence
from pathlib import Path

from loopwright.exceptions import WorkspaceError

#: Seconds any one git command may take (``git add -A`` of a large tree included).
GIT_TIMEOUT_SECONDS = 600.0
#: Identity of the loop's commits, independent of the user's git configuration.
IDENTITY = ("-c", "user.name=loopwright", "-c", "user.email=loopwright@localhost")
#: Environment variables that would redirect git to another repository, index or identity.
GIT_ENV_DROPPED = frozenset(
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
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_EXTERNAL_DIFF",
        "GIT_SSH_COMMAND",
    }
)
#: C0 control characters other than tab and newline, and DEL: never in a commit message or ref.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str) -> str:
    """``text`` without NUL and the other control characters (tab and newline are kept): what an
    agent wrote may reach git's argv (a NUL there cannot be passed at all) or a file name."""
    return _CONTROL.sub("", text)


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without :data:`GIT_ENV_DROPPED`, with C-locale messages (parseable), no
    terminal prompt, and ``extra`` (for example ``GIT_INDEX_FILE`` of a private index)."""
    env = {
        k: v for k, v in os.environ.items() if k not in GIT_ENV_DROPPED and not k.startswith("GIT_CONFIG_")
    }
    env.update(LC_ALL="C", LANGUAGE="C", GIT_TERMINAL_PROMPT="0")
    if extra:
        env.update(extra)
    return env


class GitCli:
    """Runs git for one state folder (its excludes file and empty hooks folder live there).

    Args:
        state_dir: loopwright's folder; ``<state_dir>/git-excludes`` and ``<state_dir>/no-git-hooks``.

    Raises :class:`WorkspaceError` naming the command and git's message when git fails, cannot
    run, takes more than :data:`GIT_TIMEOUT_SECONDS`, or is not installed.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.excludes_file = state_dir / "git-excludes"
        self._exe: str | None = None
        self._env = git_environment()

    def executable(self) -> str:
        """The git on ``PATH``. Raises WorkspaceError when there is none."""
        if self._exe is None:
            found = shutil.which("git")
            if found is None:
                raise WorkspaceError(
                    "git was not found on PATH: install git, or set git_isolation = false to "
                    "let the agent work in the workspace itself (no branch, no commits)"
                )
            self._exe = found
        return self._exe

    def output(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        git_dir: Path | None = None,
        work_tree: Path | None = None,
    ) -> str:
        """Run ``git <args>``; its stdout. Raises WorkspaceError when it fails."""
        return self.run(args, cwd=cwd, git_dir=git_dir, work_tree=work_tree)[1]

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        check: bool = True,
        overrides: bool = True,
        git_dir: Path | None = None,
        work_tree: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """Run ``git <args>`` in ``cwd``: (exit code, stdout, stderr).

        ``git_dir``/``work_tree`` name the repository explicitly; ``overrides`` adds the safety
        settings of the module docstring (off only to read the user's own configuration); ``env``
        adds variables. Raises WorkspaceError when git cannot run, and when it fails if ``check``.
        """
        argv = [self.executable()]
        if git_dir is not None:
            argv.append(f"--git-dir={git_dir}")
        if work_tree is not None:
            argv.append(f"--work-tree={work_tree}")
        if overrides:
            argv += ["-c", f"core.excludesFile={self.excludes_file}"]
            argv += ["-c", f"core.hooksPath={self.state_dir / 'no-git-hooks'}"]  # no hooks run
            argv += ["-c", "core.fsmonitor=false", "-c", "commit.gpgSign=false"]
        argv += list(args)
        shown = " ".join(args)
        try:
            done = subprocess.run(  # nosec B603 - argv list, shell=False
                argv,
                cwd=cwd,
                env=self._env if env is None else {**self._env, **env},
                capture_output=True,
                encoding="utf-8",
                errors="surrogateescape",
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise WorkspaceError(
                f"`git {shown}` in {cwd} took more than {GIT_TIMEOUT_SECONDS:.0f} s"
            ) from exc
        except (OSError, ValueError) as exc:  # cwd missing, git vanished, a NUL in an argument
            raise WorkspaceError(f"cannot run `git {shown}` in {cwd}: {exc}") from exc
        if check and done.returncode != 0:
            raise WorkspaceError(
                f"`git {shown}` failed in {cwd} (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done.returncode, done.stdout, done.stderr
