"""What a command a loop starts may see: the user's environment and the project's, never loopwright's.

Anything a loop starts (the agent and the exit-condition commands, which run the agent's code) is
the agent. It runs with the environment the user has, and the project's interpreter, and must not
reach loopwright's venv, policies or controls as the user. The child's environment, in order:

1. the **user's environment** (:func:`user_environment`): loopwright's ``os.environ`` **minus**
   ``LOOPWRIGHT_POLICY_DIR`` (where the Cedar policies are), **minus** ``VIRTUAL_ENV`` when it
   names loopwright's own venv (``sys.prefix``), and with loopwright's venv ``bin`` folder (the
   folder of ``sys.executable``, when loopwright runs in a venv) removed from ``PATH``;
2. the **project's environment** (a
   :class:`~loopwright.adapters.local.project_env.ProjectEnvironment`, given to the sandbox when
   it is bound to a loop): when the project's interpreter runs in a venv, that venv's ``bin``
   first on ``PATH`` and ``VIRTUAL_ENV`` naming it (``PYTHONHOME`` removed); the worktree's
   import roots first on ``PYTHONPATH``;
3. the loop's ``env`` (config), then the caller's ``env`` (a condition's ``env``, the agent's
   variables): what is set there is what the command gets, literally (a ``PATH`` given there
   replaces the one above);
4. ``PYTHONDONTWRITEBYTECODE=1``, and ``LOOPWRIGHT_POLICY_DIR`` removed again.

``command[0]`` is resolved by :func:`resolve_program`: ``python``/``python3`` is the project's
interpreter (:attr:`ProjectEnvironment.python`; without a project environment, the first
``python3``/``python`` on the child's ``PATH``); any other name is looked up on the child's
``PATH`` only. Nothing of loopwright's venv is a fallback, and the name ``loopwright`` is never
resolved to loopwright's own ``bin`` folder. Loopwright's venv is used only when it *is* the
project's (named by ``python`` in the config, or being the workspace's ``.venv``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from loopwright.adapters.local.cedar_policy import POLICY_DIR_ENV
from loopwright.adapters.local.project_env import ProjectEnvironment

#: ``command[0]`` values replaced by the project's interpreter.
PYTHON_ALIASES = frozenset({"python", "python3"})
#: Names never resolved to loopwright's own ``bin`` folder.
NEVER_FROM_LOOPWRIGHT_BIN = frozenset({"loopwright"})


class ProgramNotFoundError(Exception):
    """``command[0]`` cannot be run; the message is the :class:`CommandResult` ``error``."""


def loopwright_bin_dir() -> Path:
    """The folder of ``sys.executable`` (loopwright's venv ``bin`` folder, in a venv)."""
    return Path(sys.executable).parent


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def _same_path(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def user_environment() -> dict[str, str]:
    """The user's environment: ``os.environ`` without ``LOOPWRIGHT_POLICY_DIR``, without a
    ``VIRTUAL_ENV`` naming loopwright's venv, and without loopwright's venv ``bin`` on ``PATH``."""
    merged = dict(os.environ)
    merged.pop(POLICY_DIR_ENV, None)
    virtual_env = merged.get("VIRTUAL_ENV")
    if virtual_env is not None and _same_path(virtual_env, sys.prefix):
        del merged["VIRTUAL_ENV"]
    if _in_venv() and "PATH" in merged:
        own_bin = loopwright_bin_dir()
        kept = [entry for entry in merged["PATH"].split(os.pathsep) if not _same_path(entry, own_bin)]
        merged["PATH"] = os.pathsep.join(kept)
    return merged


def _prepend(first: list[str], value: str | None) -> str:
    """``first`` then the entries of the ``os.pathsep`` list ``value`` not already in it."""
    rest = [entry for entry in (value or "").split(os.pathsep) if entry and entry not in first]
    return os.pathsep.join([*first, *rest])


def build_environment(
    env: Mapping[str, str] | None, project: ProjectEnvironment | None = None
) -> dict[str, str]:
    """The child's environment (steps 1-4 of the module docstring): the user's environment, the
    ``project``'s venv and import roots, its ``env`` and then ``env`` over it."""
    merged = user_environment()
    if project is not None:
        if project.venv is not None:
            merged["PATH"] = _prepend([str(Path(project.venv) / "bin")], merged.get("PATH"))
            merged["VIRTUAL_ENV"] = project.venv
            merged.pop("PYTHONHOME", None)
        if project.import_roots:
            merged["PYTHONPATH"] = _prepend(list(project.import_roots), merged.get("PYTHONPATH"))
        merged.update(project.env)
    if env:
        merged.update(env)
    merged["PYTHONDONTWRITEBYTECODE"] = "1"
    merged.pop(POLICY_DIR_ENV, None)
    return merged


def resolve_python(path: str | None, project: ProjectEnvironment | None) -> str:
    """The interpreter ``python``/``python3`` means: the project's, else the first ``python3``
    or ``python`` on ``path``. Raises :class:`ProgramNotFoundError` when there is none."""
    if project is not None:
        if project.python is None:
            raise ProgramNotFoundError(
                f"command not found: python (no interpreter for the project: {project.found_by}; "
                'create the project\'s .venv or set python = "..." in the config)'
            )
        return project.python
    for name in ("python3", "python"):
        found = shutil.which(name, path=path or "")
        if found is not None:
            return os.path.abspath(found)
    raise ProgramNotFoundError("command not found: python (no python3 or python on PATH)")


def resolve_program(
    name: str, *, cwd: Path, path: str | None, project: ProjectEnvironment | None = None
) -> tuple[str, str]:
    """``(program, argv0)`` for a command whose ``argv[0]`` is ``name``, run in ``cwd`` with
    ``PATH`` ``path`` (see the module docstring for the rules): ``program`` is the absolute
    path to execute; ``argv0`` is ``name``, except for ``python``/``python3``, where it is
    ``program`` (an interpreter finds its venv from it).

    Raises :class:`ProgramNotFoundError` with the message for the user: ``command not found:
    NAME (...)`` or ``permission denied: NAME (not executable?)``.
    """
    if name in PYTHON_ALIASES:
        python = resolve_python(path, project)
        return python, python
    if os.sep in name:
        candidate = Path(name) if os.path.isabs(name) else Path(cwd) / name
    else:
        found = shutil.which(name, path=path or "")
        if found is not None and not (
            name in NEVER_FROM_LOOPWRIGHT_BIN and _same_path(Path(found).parent, loopwright_bin_dir())
        ):
            return os.path.abspath(found), name
        venv = f", nor in {project.venv}/bin" if project is not None and project.venv else ""
        raise ProgramNotFoundError(
            f"command not found: {name} (not on the user's PATH{venv}; install it in the project's "
            "environment or give its full path)"
        )
    if not candidate.exists():
        raise ProgramNotFoundError(f"command not found: {name} (no such file)")
    if candidate.is_dir() or not os.access(candidate, os.X_OK):
        raise ProgramNotFoundError(f"permission denied: {name} (not executable?)")
    return str(candidate), name
