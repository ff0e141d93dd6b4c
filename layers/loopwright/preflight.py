"""Preflight: every program a loop will run exists, checked before anything is written.

Before a new loop is stored (no loop row, no worktree, no branch yet) and again when a loop is
resumed (before its agent runs), :func:`preflight` resolves, through the loop's
:class:`~loopwright.ports.Sandbox` (:meth:`~loopwright.ports.Sandbox.find_program`, the same
lookup its ``run`` uses):

* every executable the agent needs (:meth:`~loopwright.ports.Agent.required_programs`), and
* the executable of every exit condition (``command[0]`` of its command, or of its type's
  default command from :mod:`loopwright.conditions.defaults`).

A bare name (``ruff``) is looked up as the sandbox runs it (``PATH``; ``python`` is the sandbox's
interpreter); a relative path (``./agent.sh``) is looked up in ``cwd``: the user's workspace
for a new loop (its worktree does not exist yet and starts from what the workspace holds), the
loop's worktree on resume. Every missing program is reported at once, one clause each, in one
line: a :class:`PreflightError`, which the CLI turns into exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loopwright.conditions.defaults import resolve_command
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig
from loopwright.ports import Agent, Sandbox
from loopwright.steps.features import all_conditions


class PreflightError(ConfigError):
    """Programs the loop needs cannot be found; nothing was written.

    Attributes:
        problems: one message per missing program, each naming it, what needs it and the fix
            (``command not found: ruff (exit condition 'linting_clean'): install it ...``).
    """

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def _fix(name: str, cwd: Path, change: str) -> str:
    if "/" in name and not Path(name).is_absolute():
        return f"no executable file {name} in {cwd}: create it (and chmod +x) or {change}"
    if "/" in name:
        return f"no executable file {name}: create it (and chmod +x) or {change}"
    return f"install it in the project's environment or {change}"


def missing_programs(config: LoopConfig, agent: Agent | None, sandbox: Sandbox, *, cwd: Path) -> list[str]:
    """One message per program of ``agent`` and of ``config``'s exit conditions that ``sandbox``
    cannot find in ``cwd``, in the order they are needed (agent first, then each condition);
    [] when every one is found. A program needed by several conditions is named once, with all
    of them. Raises :class:`ConfigError` for a CUSTOM condition without a command."""
    users: dict[str, list[str]] = {}
    if agent is not None:
        for name in agent.required_programs():
            users.setdefault(name, []).append("the agent")
    for cfg in all_conditions(config):
        users.setdefault(resolve_command(cfg)[0], []).append(f"exit condition '{cfg.key}'")
    problems = []
    for name, needed_by in users.items():
        if sandbox.find_program(name, cwd=cwd) is not None:
            continue
        if needed_by == ["the agent"]:
            change = "change the agent in the config"
        elif len(needed_by) == 1:
            change = "change its command"
        else:
            change = "change their commands"
        problems.append(f"command not found: {name} ({', '.join(needed_by)}): {_fix(name, cwd, change)}")
    return problems


def preflight(config: LoopConfig, agent: Agent | None, sandbox: Sandbox, *, cwd: Path) -> None:
    """Check that every program the loop runs can be found (see the module docstring).

    Args:
        config: the loop's configuration (its exit conditions).
        agent: the loop's agent, or None when it is not known yet (only conditions are checked).
        sandbox: the sandbox the loop runs its agent and conditions through.
        cwd: where relative program paths are looked up (the workspace, or the loop's worktree).

    Raises :class:`PreflightError` listing every missing program, and :class:`ConfigError` for a
    CUSTOM condition without a command.
    """
    problems = missing_programs(config, agent, sandbox, cwd=cwd)
    if problems:
        raise PreflightError(problems)
