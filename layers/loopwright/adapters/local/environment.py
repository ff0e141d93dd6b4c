"""What a command a loop starts may see of loopwright: its environment and how its program is found.

Anything a loop starts (the agent and the exit-condition commands, which run the agent's code) is
the agent. It must not reach loopwright's venv, policies or controls as the user, so:

* the child's environment is loopwright's (``os.environ``) overlaid with the caller's ``env``,
  plus ``PYTHONDONTWRITEBYTECODE=1``, **minus** ``LOOPWRIGHT_POLICY_DIR`` (where the Cedar
  policies are), **minus** ``VIRTUAL_ENV`` when it names loopwright's own venv (``sys.prefix``),
  and with loopwright's venv ``bin`` folder (the folder of ``sys.executable``, when loopwright
  runs in a venv) removed from ``PATH``: nothing is ever prepended to ``PATH``;
* ``command[0]`` is resolved by :func:`resolve_program`: ``python``/``python3`` is
  ``sys.executable`` (so ``python -m pytest`` runs with loopwright's interpreter and its
  installed tools; another issue will switch it to the project's interpreter); a name found on
  the child's ``PATH`` runs from there; a name not found there but present in the folder of
  ``sys.executable`` (pytest, ruff, bandit, installed next to loopwright by its ``tools``
  extra) runs by that absolute path. Only ``command[0]`` is resolved this way, ``PATH`` stays
  clean, and the name ``loopwright`` is never resolved from that folder.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from loopwright.adapters.local.cedar_policy import POLICY_DIR_ENV

#: ``command[0]`` values replaced by the running interpreter (``sys.executable``).
PYTHON_ALIASES = frozenset({"python", "python3"})
#: Names never resolved from loopwright's own ``bin`` folder.
NEVER_FROM_LOOPWRIGHT_BIN = frozenset({"loopwright"})


class ProgramNotFoundError(Exception):
    """``command[0]`` cannot be run; the message is the :class:`CommandResult` ``error``."""


def loopwright_bin_dir() -> Path:
    """The folder of ``sys.executable`` (loopwright's venv ``bin`` folder, in a venv)."""
    return Path(sys.executable).parent


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def _same_path(a: str, b: Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def build_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The child's environment (see the module docstring): ``os.environ`` overlaid with ``env``,
    ``PYTHONDONTWRITEBYTECODE=1``, without ``LOOPWRIGHT_POLICY_DIR``, without ``VIRTUAL_ENV``
    naming loopwright's venv, and without loopwright's venv ``bin`` folder on ``PATH``."""
    merged = dict(os.environ)
    if env:
        merged.update(env)
    merged["PYTHONDONTWRITEBYTECODE"] = "1"
    merged.pop(POLICY_DIR_ENV, None)
    virtual_env = merged.get("VIRTUAL_ENV")
    if virtual_env is not None and _same_path(virtual_env, Path(sys.prefix)):
        del merged["VIRTUAL_ENV"]
    if _in_venv() and "PATH" in merged:
        own_bin = loopwright_bin_dir()
        kept = [entry for entry in merged["PATH"].split(os.pathsep) if not _same_path(entry, own_bin)]
        merged["PATH"] = os.pathsep.join(kept)
    return merged


def resolve_program(name: str, *, cwd: Path, path: str | None) -> tuple[str, str]:
    """``(program, argv0)`` for a command whose ``argv[0]`` is ``name``, run in ``cwd`` with
    ``PATH`` ``path`` (see the module docstring for the rules): ``program`` is the absolute
    path to execute; ``argv0`` is ``name``, except for ``python``/``python3`` and for a tool
    found next to loopwright, where it is ``program`` (an interpreter finds its prefix from it).

    Raises :class:`ProgramNotFoundError` with the message for the user: ``command not found:
    NAME (...)`` or ``permission denied: NAME (not executable?)``.
    """
    if name in PYTHON_ALIASES:
        return sys.executable, sys.executable
    argv0 = name
    if os.sep in name:
        candidate = Path(name) if os.path.isabs(name) else Path(cwd) / name
    else:
        found = shutil.which(name, path=path or "")
        if found is not None:
            return os.path.abspath(found), name
        candidate = loopwright_bin_dir() / name
        if name in NEVER_FROM_LOOPWRIGHT_BIN or not candidate.is_file():
            raise ProgramNotFoundError(
                f"command not found: {name} (not on PATH; install it or give its full path)"
            )
        argv0 = str(candidate)
    if not candidate.exists():
        raise ProgramNotFoundError(f"command not found: {name} (no such file)")
    if candidate.is_dir() or not os.access(candidate, os.X_OK):
        raise ProgramNotFoundError(f"permission denied: {name} (not executable?)")
    return str(candidate), argv0
