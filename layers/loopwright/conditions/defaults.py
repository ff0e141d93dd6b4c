"""Default command and output parser of each exit-condition type.

Every default command runs in the worktree (``.``), never through a shell, and leaves the
worktree untouched, so conditions can run concurrently and the agent's commits hold only its
own changes:

=====================  ================================================================  ==========
type                   command                                                           parser
=====================  ================================================================  ==========
ALL_TESTS_PASS         ``python -m pytest -q -rfE -p no:cacheprovider``                  pytest
LINTING_CLEAN          ``ruff check --no-cache --output-format json .``                  ruff
BUILD_SUCCEEDS         ``python -X pycache_prefix=<scratch dir> -m compileall -q         compileall
                       -x <excluded dirs> .``
SECURITY_SCAN_CLEAN    ``bandit -r . -f json -q --severity-level medium -x <excluded>``  bandit
CUSTOM                 none: the configuration must give ``command``                     exit_code
=====================  ================================================================  ==========

Choices:

* pytest: ``-rfE`` lists each failed and erroring test (the parser's ``failures``);
  ``-p no:cacheprovider`` and the sandbox's ``PYTHONDONTWRITEBYTECODE=1`` keep ``.pytest_cache``
  and ``__pycache__`` out of the worktree.
* compileall always writes byte code; ``-X pycache_prefix`` sends it to a scratch folder
  instead of ``__pycache__`` folders in the worktree. The runner gives a fresh private
  temporary folder per evaluation (so every file is compiled every time, and no byte code
  planted in a shared folder is ever read); without one, byte code goes to ``__pycache__``.
  Virtual environments, VCS folders and loopwright's own folder are skipped (``-x``).
* bandit reports only MEDIUM and HIGH severity. LOW findings are mostly ``assert`` in tests
  (B101) and ``import subprocess`` (B404), which a scan of a normal project always reports and
  an agent cannot sensibly "fix". Give a ``command`` to scan differently (for example
  ``bandit -r . -f json -q -c bandit.yaml``). bandit's ``-x`` replaces its built-in exclusions,
  so they are repeated here.
* ruff finds its configuration in the project as usual and skips ``.gitignore``-d files.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Final, Literal

from loopwright.exceptions import ConfigError
from loopwright.models import ExitConditionConfig, ExitConditionType

ParserName = Literal["pytest", "ruff", "bandit", "compileall", "exit_code"]

#: Folders no default tool looks into (virtual environments, VCS, caches, loopwright's state).
EXCLUDED_DIRS: Final = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".eggs",
    ".loopwright",
    "node_modules",
    "__pycache__",
)

#: compileall ``-x``: a regular expression searched in each path it visits.
COMPILEALL_EXCLUDE: Final = r"(^|[/\\])(" + "|".join(re.escape(d) for d in EXCLUDED_DIRS) + r")([/\\]|$)"

#: bandit ``-x``: paths (relative to the worktree) whose files are not scanned.
BANDIT_EXCLUDE: Final = ",".join(f"./{d}" for d in EXCLUDED_DIRS)

DEFAULT_PARSERS: Final[dict[ExitConditionType, ParserName]] = {
    ExitConditionType.ALL_TESTS_PASS: "pytest",
    ExitConditionType.LINTING_CLEAN: "ruff",
    ExitConditionType.BUILD_SUCCEEDS: "compileall",
    ExitConditionType.SECURITY_SCAN_CLEAN: "bandit",
    ExitConditionType.CUSTOM: "exit_code",
}


def default_command(condition_type: ExitConditionType, scratch_dir: Path | None = None) -> list[str]:
    """The default argv of ``condition_type`` (see the module table); ``scratch_dir`` is where
    BUILD_SUCCEEDS writes byte code (None: ``__pycache__`` folders next to the sources).

    Raises :class:`ConfigError` for CUSTOM, which has no default.
    """
    if condition_type is ExitConditionType.ALL_TESTS_PASS:
        return ["python", "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"]
    if condition_type is ExitConditionType.LINTING_CLEAN:
        return ["ruff", "check", "--no-cache", "--output-format", "json", "."]
    if condition_type is ExitConditionType.BUILD_SUCCEEDS:
        prefix = [] if scratch_dir is None else ["-X", f"pycache_prefix={scratch_dir}"]
        return ["python", *prefix, "-m", "compileall", "-q", "-x", COMPILEALL_EXCLUDE, "."]
    if condition_type is ExitConditionType.SECURITY_SCAN_CLEAN:
        return [
            "bandit",
            "-r",
            ".",
            "-f",
            "json",
            "-q",
            "--severity-level",
            "medium",
            "-x",
            BANDIT_EXCLUDE,
        ]
    raise ConfigError(f"exit condition type {condition_type.value} has no default command; give 'command'")


def resolve_command(cfg: ExitConditionConfig, scratch_dir: Path | None = None) -> list[str]:
    """The argv to run for ``cfg``: its ``command`` or the default of its type
    (``scratch_dir``: see :func:`default_command`).

    Raises :class:`ConfigError` for a CUSTOM condition without ``command``.
    """
    if cfg.command is not None:
        return list(cfg.command)
    return default_command(cfg.type, scratch_dir)


def needs_scratch_dir(cfg: ExitConditionConfig) -> bool:
    """True when ``cfg`` runs a default command that writes to a scratch folder (BUILD_SUCCEEDS)."""
    return cfg.command is None and cfg.type is ExitConditionType.BUILD_SUCCEEDS


def _names_tool(command: list[str], tool: str) -> bool:
    """True when an argument is ``tool`` (or a path ending in it) or ``-m tool``."""
    return any(Path(arg).name == tool for arg in command)


def _asks_json(command: list[str], *flags: str) -> bool:
    """True when ``command`` contains ``<flag> json`` or ``<flag>=json`` for one of ``flags``."""
    pairs = itertools.pairwise(command)
    return any(a in flags and b == "json" for a, b in pairs) or any(
        arg == f"{flag}=json" for arg in command for flag in flags
    )


def resolve_parser(cfg: ExitConditionConfig) -> ParserName:
    """The parser for ``cfg``'s output.

    An explicit ``parser`` wins. With ``auto``: the type's parser for the default command;
    for a given command, the type's parser when it can understand it (``pytest`` for tests,
    since its summary line is found in any pytest output and it falls back to the exit code;
    ``ruff``/``bandit`` only when the command runs that tool with JSON output;
    ``compileall`` for builds, which reads the exit code and error lines of any build), else
    ``exit_code``.
    """
    if cfg.parser != "auto":
        return cfg.parser
    default = DEFAULT_PARSERS[cfg.type]
    if cfg.command is None:
        return default
    command = list(cfg.command)
    if cfg.type is ExitConditionType.LINTING_CLEAN:
        ok = _names_tool(command, "ruff") and _asks_json(command, "--output-format")
        return default if ok else "exit_code"
    if cfg.type is ExitConditionType.SECURITY_SCAN_CLEAN:
        ok = _names_tool(command, "bandit") and _asks_json(command, "-f", "--format")
        return default if ok else "exit_code"
    return default
