"""Project environments for tests whose conditions use the tools of loopwright's own venv."""

from __future__ import annotations

import sys

from loopwright.adapters.local.project_env import InterpreterSource, ProjectEnvironment
from loopwright.adapters.local.sandbox import SubprocessSandbox


def loopwright_venv() -> ProjectEnvironment:
    """loopwright's venv as the project's (its pytest, ruff and bandit), as ``python = sys.executable``
    in a config gives it."""
    return ProjectEnvironment(
        python=sys.executable,
        source=InterpreterSource.CONFIG,
        found_by="loopwright's venv (tests)",
        venv=sys.prefix if sys.prefix != sys.base_prefix else None,
        base_prefix=sys.base_prefix,
    )


def tools_sandbox() -> SubprocessSandbox:
    """An unbound sandbox whose commands run in loopwright's venv (see :func:`loopwright_venv`)."""
    return SubprocessSandbox(environment=loopwright_venv())
