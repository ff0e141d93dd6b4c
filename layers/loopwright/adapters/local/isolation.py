"""Optional filesystem isolation of a loop's commands with bubblewrap (``isolation = "bubblewrap"``).

With it, the agent and the exit-condition commands (they run the agent's code) run under
Debian's ``bwrap`` (package ``bubblewrap``), built by :meth:`BubblewrapIsolation.wrap`. Mounts,
in this order (later ones lie over earlier ones):

=====================================  =====================================================
``/``                                  read-only (``--ro-bind / /``), with a new ``/dev`` and
                                       ``/proc`` (the sandbox's own PID namespace)
``/tmp``                               private (an empty tmpfs); ``TMPDIR=/tmp``
``$HOME``                              private (an empty tmpfs): nothing of the user's home
                                       is visible or writable
the user's loopwright state folder     hidden (an empty tmpfs; ``LOOPWRIGHT_STATE_HOME`` or
                                       ``$XDG_STATE_HOME/loopwright``): the evidence signing
                                       key, wherever it lies
loopwright's interpreter, its venv     read-only again where ``/tmp`` or ``$HOME`` hid them
and the command's program              (``sys.prefix``, ``sys.base_prefix``, the program file)
the user's repository                  read-only, ``.git`` included (no rewriting
                                       ``.git/config`` or hooks)
loopwright's state folder              hidden (a read-only empty tmpfs): the SQLite store,
``<workspace>/.loopwright``            locks, other loops' worktrees and files
the loop's worktree                    read-write (``.git`` of the repository read-only even
                                       when the worktree is the repository itself)
the loop's files folder                read-write (prompt.md, failures.json, report.json), its
``<state_dir>/loops/<loop_id>/``       ``processes/`` ledger read-only
the Cedar policy folder                read-only (also when it lies in a writable folder)
=====================================  =====================================================

and ``--unshare-pid --die-with-parent --new-session --cap-drop ALL`` (as root, bwrap would keep
every capability, enough to unmount the above), plus ``--unshare-net`` when
``isolation_network = false``. Git commands that write (``add``, ``commit``, ``stash``) fail
inside: the repository's ``.git`` is read-only, and loopwright commits the agent's work itself.

When ``isolation = "bubblewrap"`` and ``bwrap`` is missing or cannot make a sandbox here
(unprivileged user namespaces disabled, for example), :func:`check_isolation` raises a
:class:`~loopwright.exceptions.ConfigError` whose one line says how to fix it; the loop must not
start (never a silent fall back to no isolation).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from loopwright.adapters.local.cedar_policy import default_policy_dir
from loopwright.adapters.local.evidence_key import user_state_dir
from loopwright.adapters.local.safe_files import open_folder
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig

#: Value of ``LoopConfig.isolation`` that turns bubblewrap on.
BUBBLEWRAP = "bubblewrap"
#: How to install bubblewrap, for error messages.
INSTALL_HINT = (
    "install it (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap) "
    'or set isolation = "none"'
)
#: Seconds the availability probe may take.
PROBE_TIMEOUT_SECONDS = 15.0


def _resolved(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def find_bwrap() -> str:
    """The absolute path of ``bwrap`` on ``PATH``. Raises :class:`ConfigError` when missing."""
    found = shutil.which("bwrap")
    if found is None:
        raise ConfigError(f"isolation: {BUBBLEWRAP!r} needs bwrap, which is not installed; {INSTALL_HINT}")
    return os.path.abspath(found)


@functools.cache
def _probe(bwrap: str, network: bool) -> str | None:
    """Run ``true`` in a sandbox with the options loops use; None when it works, else why not."""
    true = shutil.which("true") or "/bin/true"
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    argv += ["--unshare-pid", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += [] if network else ["--unshare-net"]
    try:
        done = subprocess.run(  # nosec B603 - argv list, never a shell
            [*argv, "--", true],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def check_bubblewrap(*, network: bool = True) -> str:
    """The path of a ``bwrap`` that can make the sandbox loops use (probed once per process).

    Raises :class:`ConfigError` (one line, with how to fix it) when bwrap is missing or fails.
    """
    bwrap = find_bwrap()
    problem = _probe(bwrap, network)
    if problem is not None:
        raise ConfigError(
            f"isolation: {BUBBLEWRAP!r}: bwrap cannot make a sandbox here ({problem}); "
            "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1), "
            'or set isolation = "none"'
        )
    return bwrap


def check_isolation(config: LoopConfig) -> None:
    """Fail fast, before anything is written, when ``config`` asks for an isolation this
    machine cannot give. Raises :class:`ConfigError` (the CLI exits 2)."""
    if config.isolation == BUBBLEWRAP:
        check_bubblewrap(network=config.isolation_network)


def isolation_for(
    config: LoopConfig, *, workspace: Path, state_dir: Path, loop_id: str, worktree: Path
) -> BubblewrapIsolation | None:
    """The isolation ``config`` asks for, for the loop ``loop_id`` (None for ``"none"``), to
    pass to :meth:`SubprocessSandbox.attach`. Raises :class:`ConfigError` as
    :func:`check_isolation` does."""
    if config.isolation != BUBBLEWRAP:
        return None
    return BubblewrapIsolation(
        workspace=workspace,
        state_dir=state_dir,
        loop_id=loop_id,
        worktree=worktree,
        network=config.isolation_network,
    )


class BubblewrapIsolation:
    """Runs a loop's commands under ``bwrap`` (see the module docstring for what it mounts).

    Args:
        workspace: the user's repository.
        state_dir: loopwright's state folder (hidden from the command).
        loop_id: the loop (its files folder ``<state_dir>/loops/<loop_id>`` stays writable).
        worktree: the loop's worktree (writable).
        network: False to run without network (``--unshare-net``: only a loopback interface).
        policy_dir: the Cedar policy folder kept read-only; default: the policy engine's.
        bwrap: the ``bwrap`` executable; default: checked with :func:`check_bubblewrap`.

    Raises :class:`ConfigError` when bwrap is missing or cannot run.
    """

    def __init__(
        self,
        *,
        workspace: Path,
        state_dir: Path,
        loop_id: str,
        worktree: Path,
        network: bool = True,
        policy_dir: Path | None = None,
        bwrap: str | None = None,
    ) -> None:
        self.workspace = _resolved(workspace)
        self.state_dir = _resolved(state_dir)
        self.loop_id = loop_id
        self.worktree = _resolved(worktree)
        self.network = network
        self.loop_dir = self.state_dir / "loops" / loop_id
        if policy_dir is None:
            try:
                policy_dir = default_policy_dir()
            except ConfigError:
                policy_dir = None
        self.policy_dir = _resolved(policy_dir) if policy_dir is not None else None
        self.bwrap = bwrap or check_bubblewrap(network=network)

    def wrap(
        self,
        program: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        needed: Sequence[str] = (),
    ) -> list[str]:
        """The ``bwrap`` command line that runs ``program`` (absolute path) with ``argv`` in
        ``cwd`` (inside the sandbox, the same path); ``env`` is the environment the command
        gets (its ``HOME`` is made private); ``needed`` are folders made visible again, read-only,
        where ``/tmp`` or ``HOME`` hide them (the project's venv and interpreter). Creates the
        loop's files and ledger folders."""
        ledger_dir = self.loop_dir / "processes"
        with open_folder(ledger_dir, trusted=self.state_dir):
            pass
        args = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        hidden = [Path("/tmp")]
        home = env.get("HOME", "")
        if os.path.isabs(home) and os.path.isdir(home) and _resolved(home) != Path("/"):
            hidden.append(_resolved(home))
            args += ["--tmpfs", str(hidden[-1])]
        keys = _resolved(user_state_dir())  # the user's evidence signing key: never the agent's
        if keys.is_dir():
            hidden.append(keys)
            args += ["--tmpfs", str(keys)]
        for path in sorted({*self._needed_paths(program), *(_resolved(p) for p in needed)}):
            if any(_inside(path, folder) for folder in hidden):
                args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", str(self.workspace), str(self.workspace)]
        args += ["--tmpfs", str(self.state_dir)]
        args += ["--bind", str(self.worktree), str(self.worktree)]
        repository_git = self.workspace / ".git"
        if _inside(repository_git, self.worktree) and repository_git.exists():
            args += ["--ro-bind", str(repository_git), str(repository_git)]
        args += ["--bind", str(self.loop_dir), str(self.loop_dir)]
        args += ["--ro-bind", str(ledger_dir), str(ledger_dir)]
        args += ["--remount-ro", str(self.state_dir)]  # the tmpfs itself; its binds stay as they are
        policy = self.policy_dir
        if (
            policy is not None
            and policy.is_dir()
            and (_inside(policy, self.worktree) or _inside(policy, self.loop_dir))
        ):
            args += ["--ro-bind", str(policy), str(policy)]
        args += ["--chdir", str(_resolved(cwd)), "--setenv", "TMPDIR", "/tmp"]
        args += ["--unshare-pid", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if not self.network:
            args.append("--unshare-net")
        return [*args, "--", program, *argv[1:]]

    @staticmethod
    def _needed_paths(program: str) -> list[Path]:
        """What the command needs even where ``/tmp`` or ``$HOME`` hide it: loopwright's
        interpreter and venv (the ``python`` alias, the tools next to loopwright) and the program."""
        paths = {_resolved(sys.prefix), _resolved(sys.base_prefix), _resolved(sys.executable).parent}
        paths.add(_resolved(program))
        return sorted(paths)
