"""``loopwright init``: look at the project and write a commented ``loopwright.toml`` for it.

What is detected (:func:`detect`), in the workspace folder:

- agent CLIs on ``PATH``, looked up like the loop's commands are (``Sandbox.find_program``):
  ``claude`` (kind ``claude-code``), ``codex``, ``gemini``, ``aider``. The first found is the
  agent unless ``--agent KIND`` chooses; with none, the ``[agent]`` table is written commented
  out, with a command agent to fill in;
- pytest: ``[tool.pytest.ini_options]`` in ``pyproject.toml``, a ``pytest.ini``, or Python files
  under ``tests/`` -> ALL_TESTS_PASS;
- ruff: ``[tool.ruff]`` in ``pyproject.toml``, ``ruff.toml`` or ``.ruff.toml`` -> LINTING_CLEAN;
- Node: the ``test`` and ``lint`` scripts of ``package.json`` (not npm's placeholder test script)
  run with npm, or yarn / pnpm when their lock file is there -> CUSTOM;
- Go: ``go.mod`` -> CUSTOM ``go test ./...``; Rust: ``Cargo.toml`` -> CUSTOM ``cargo test``.

Nothing found gives a CUSTOM condition running ``./check.sh``, to replace (``loopwright run``
stops before iteration 1 while it does not exist). The file is validated like
``loopwright run`` reads it before it is written; an existing config is never overwritten
without ``--force`` (exit 2).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from rich.console import Console

from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.cli.common import EXIT_BAD_INPUT, EXIT_ERROR, JsonOpt, WorkspaceOpt, fail, workspace_path
from loopwright.config_loader import CONFIG_FILE_NAMES, find_config, format_validation_error
from loopwright.models import (
    DEFAULT_CONDITION_TIMEOUT_SECONDS,
    AgentConfig,
    AgentKind,
    ExitConditionType,
    LoopConfig,
)

#: Agent kinds driven by a CLI, and the program each runs, in the order ``init`` prefers them.
AGENT_PROGRAMS: Final = {
    AgentKind.CLAUDE_CODE: "claude",
    AgentKind.CODEX: "codex",
    AgentKind.GEMINI: "gemini",
    AgentKind.AIDER: "aider",
}
#: The command agent written when no CLI is chosen: a script to write, given the prompt's file.
PLACEHOLDER_AGENT: Final = ["./agent.sh", "{prompt_file}"]
#: The condition written when no tool is found: a script to write (exit code 0 = holds).
PLACEHOLDER_CHECK: Final = ["./check.sh"]
#: npm's generated test script (``npm init``), which always fails.
_NPM_PLACEHOLDER_TEST = 'echo "Error: no test specified" && exit 1'
#: Default exit-condition commands, shown beside the types that have one.
_DEFAULT_COMMANDS: Final = {
    ExitConditionType.ALL_TESTS_PASS: "python -m pytest -q -rfE -p no:cacheprovider",
    ExitConditionType.LINTING_CLEAN: "ruff check --no-cache --output-format json .",
}

ProgramFinder = Callable[[str], str | None]

#: The commented timeout line under each exit condition (its default, seconds).
TIMEOUT_LINE = (
    f"# timeout_seconds = {DEFAULT_CONDITION_TIMEOUT_SECONDS:g}  # seconds one evaluation may take (default)"
)


class AgentChoice(StrEnum):
    """The agents ``init --agent`` can write."""

    CLAUDE_CODE = AgentKind.CLAUDE_CODE.value
    CODEX = AgentKind.CODEX.value
    GEMINI = AgentKind.GEMINI.value
    AIDER = AgentKind.AIDER.value
    COMMAND = AgentKind.COMMAND.value


@dataclass(frozen=True)
class FoundCondition:
    """An exit condition for a tool the project uses; ``command`` None means the type's default."""

    tool: str  # what is shown: "pytest", "npm test"
    source: str  # where it was seen: "pyproject.toml [tool.pytest.ini_options]"
    type: ExitConditionType
    name: str | None = None
    command: list[str] | None = None


@dataclass
class Detection:
    """What :func:`detect` found in a project folder."""

    agents: dict[AgentKind, str] = field(default_factory=dict)  # kind -> its CLI's path, in preference order
    conditions: list[FoundCondition] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # files that could not be read


def detect(root: Path, find_program: ProgramFinder) -> Detection:
    """The agent CLIs ``find_program`` finds and the test and lint tools configured in ``root``."""
    found = Detection()
    for kind, program in AGENT_PROGRAMS.items():
        path = find_program(program)
        if path is not None:
            found.agents[kind] = path
    pyproject = _read_toml(root / "pyproject.toml", found.notes)
    tool = pyproject.get("tool", {}) if isinstance(pyproject.get("tool"), dict) else {}
    pytest_source = _pytest_source(root, tool)
    if pytest_source:
        found.conditions.append(FoundCondition("pytest", pytest_source, ExitConditionType.ALL_TESTS_PASS))
    ruff_source = (
        "pyproject.toml [tool.ruff]" if "ruff" in tool else _first_file(root, "ruff.toml", ".ruff.toml")
    )
    if ruff_source:
        found.conditions.append(FoundCondition("ruff", ruff_source, ExitConditionType.LINTING_CLEAN))
    found.conditions += _node_conditions(root, found.notes)
    if (root / "go.mod").is_file():
        found.conditions.append(_custom("go test", "go.mod", "go-test", ["go", "test", "./..."]))
    if (root / "Cargo.toml").is_file():
        found.conditions.append(_custom("cargo test", "Cargo.toml", "cargo-test", ["cargo", "test"]))
    return found


def _pytest_source(root: Path, tool: dict[str, Any]) -> str | None:
    """Where the project shows it uses pytest, or None."""
    if isinstance(tool.get("pytest"), dict) and "ini_options" in tool["pytest"]:
        return "pyproject.toml [tool.pytest.ini_options]"
    if (root / "pytest.ini").is_file():
        return "pytest.ini"
    tests = root / "tests"
    if tests.is_dir() and any(tests.rglob("*.py")):
        return "Python files in tests/"
    return None


def _first_file(root: Path, *names: str) -> str | None:
    return next((name for name in names if (root / name).is_file()), None)


def _custom(tool: str, source: str, name: str, command: list[str]) -> FoundCondition:
    return FoundCondition(tool, source, ExitConditionType.CUSTOM, name=name, command=command)


def _read_toml(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        notes.append(f"{path.name} was not read: {exc}")
        return {}


def _node_conditions(root: Path, notes: list[str]) -> list[FoundCondition]:
    path = root / "package.json"
    if not path.is_file():
        return []
    try:
        scripts = json.loads(path.read_text(encoding="utf-8")).get("scripts") or {}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        notes.append(f"package.json was not read: {exc}")
        return []
    runner = (
        "pnpm" if (root / "pnpm-lock.yaml").is_file() else "yarn" if (root / "yarn.lock").is_file() else "npm"
    )
    found = []
    if isinstance(scripts.get("test"), str) and scripts["test"].strip() != _NPM_PLACEHOLDER_TEST:
        found.append(
            _custom(f"{runner} test", 'package.json "scripts.test"', f"{runner}-test", [runner, "test"])
        )
    if isinstance(scripts.get("lint"), str):
        found.append(
            _custom(
                f"{runner} run lint", 'package.json "scripts.lint"', f"{runner}-lint", [runner, "run", "lint"]
            )
        )
    return found


def agent_defaults(kind: AgentKind) -> BaseModel:
    """The config of agent ``kind`` with every field at its default (``kind`` alone)."""
    adapter: TypeAdapter[BaseModel] = TypeAdapter(AgentConfig)
    return adapter.validate_python({"kind": kind.value})


# ------------------------------------------------------------------------------------------- text

_HEADER = '''\
# loopwright.toml: what a loop works towards, under which limits, with which agent.
# Written by `loopwright init`; edit it freely, then start a loop with `loopwright run`.

# What the agent must achieve, handed to it every iteration. Say what you want done.
goal = """
Make every exit condition below hold: fix the failing tests and the lint findings, without
deleting or weakening tests.
"""

# Limits. Before every iteration the Cedar policy named beside each one denies an iteration that
# would pass it, and the loop ends with that outcome.
max_iterations = 10               # policy iteration-limit: iterations (one agent run each)
# token_budget = 2000000          # policy token-budget: tokens the agent reports, in all
# max_duration_seconds = 7200     # policy time-limit: wall-clock seconds from the loop's start
# cost_budget_usd = 10.0          # policy cost-budget: US dollars the agent spends, in all
warning_threshold_percent = 80    # policies iteration-warning, token-budget-warning,
                                  # cost-budget-warning and time-limit-warning tell the agent
                                  # at this share of a limit

# Pinned checks: an iteration that changes the tests, the test/lint/scan configuration, this file
# or a path below is reverted and waits for you (policy pinned-checks; docs/pinned-checks.md).
# protected_paths = ["migrations/", "golden/*"]
# allow_test_changes = true       # for a goal about the tests (or a list of paths)
'''


def render(detection: Detection, agent: AgentKind | None) -> str:
    """The commented ``loopwright.toml`` for ``detection``, with ``agent`` as its agent (None: a
    commented-out command agent)."""
    parts = [_HEADER, _render_conditions(detection.conditions), _render_agent(detection, agent)]
    return "\n".join(parts)


def _render_conditions(conditions: list[FoundCondition]) -> str:
    lines = ["# Exit conditions: the loop completes when every required one holds."]
    if not conditions:
        lines += [
            "# No test or lint tool was found: name the command that checks the project (it holds",
            "# when it exits with 0). `loopwright run` stops before it starts while ./check.sh is missing.",
            "[[exit_conditions]]",
            'type = "CUSTOM"',
            'name = "check"',
            f"command = {json.dumps(PLACEHOLDER_CHECK)}",
            TIMEOUT_LINE,
            "",
        ]
    for condition in conditions:
        lines += [f"# {condition.tool}: found {condition.source}", "[[exit_conditions]]"]
        default = _DEFAULT_COMMANDS.get(condition.type)
        lines.append(f'type = "{condition.type.value}"' + (f"   # runs: {default}" if default else ""))
        if condition.name:
            lines.append(f"name = {json.dumps(condition.name)}")
        if condition.command:
            lines.append(f"command = {json.dumps(condition.command)}")
        lines += [TIMEOUT_LINE, ""]
    return "\n".join(lines)


def _render_agent(detection: Detection, agent: AgentKind | None) -> str:
    others = [AGENT_PROGRAMS[kind] for kind in detection.agents if kind is not agent]
    also = [f"# Also on PATH: {', '.join(others)} (set kind to use one)."] if others else []
    if agent is None:
        return "\n".join(
            [
                "# The agent. No agent CLI (claude, codex, gemini, aider) was found on PATH: install one and",
                '# set kind = "claude-code", "codex", "gemini" or "aider", or run any command as the agent',
                "# ({prompt_file}: a file holding the iteration's prompt). `loopwright run` needs one.",
                *also,
                "# [agent]",
                '# kind = "command"',
                f"# command = {json.dumps(PLACEHOLDER_AGENT)}",
                "# timeout_seconds = 1800",
                "",
            ]
        )
    if agent is AgentKind.COMMAND:
        return "\n".join(
            [
                "# The agent: any command, run in the loop's worktree each iteration ({prompt_file}: a file",
                "# holding the iteration's prompt; {iteration} and {loop_id} are replaced too).",
                *also,
                "[agent]",
                'kind = "command"',
                f"command = {json.dumps(PLACEHOLDER_AGENT)}",
                "timeout_seconds = 1800            # seconds one agent run may take",
                "idle_timeout_seconds = 900        # seconds without output nor file change: ended; 0: off",
                "",
            ]
        )
    program = AGENT_PROGRAMS[agent]
    where = detection.agents.get(agent)
    seen = f"found at {where}" if where else "NOT found on PATH: install it before `loopwright run`"
    defaults = agent_defaults(agent)
    lines = [
        f"# The agent: `{program}` ({seen}), run in the loop's worktree each iteration.",
        *also,
        "# Its settings, at their defaults (see docs/agents.md and examples/agents/README.md):",
        "[agent]",
        f'kind = "{agent.value}"',
    ]
    for name, info in type(defaults).model_fields.items():
        if name != "kind":
            setting = f"# {name} = {_toml_value(getattr(defaults, name), info.annotation)}"
            choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
            note = f"one of: {', '.join(map(str, choices))}" if choices else info.description
            lines.append(f"{setting:<40}# {note}" if note else setting)
    return "\n".join([*lines, ""])


def _toml_value(value: object, annotation: object) -> str:
    """``value`` written as TOML; None (the CLI decides) as a placeholder to fill in."""
    if value is None:
        return '"..."' if str in get_args(annotation) else "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item, None) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v, None)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return json.dumps(str(value))


def check_rendered(text: str, path: Path) -> LoopConfig:
    """``text`` read as ``loopwright run`` reads a config; ConfigError-like exit 1 if it is not one."""
    try:
        return LoopConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:  # a bug in render(): say so, write nothing
        fail(f"init produced invalid TOML for {path} ({exc}); nothing was written", EXIT_ERROR)
    except ValidationError as exc:
        fail(
            f"init produced an invalid config: {format_validation_error(exc, str(path))}; nothing was written"
        )


# ------------------------------------------------------------------------------------------- command


def init(
    workspace: WorkspaceOpt = Path("."),
    agent: Annotated[
        AgentChoice | None,
        typer.Option("--agent", help="The agent to write (default: the first agent CLI found on PATH)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing loopwright config.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Detect the agent CLIs and the project's test and lint tools; write a commented loopwright.toml."""
    root = workspace_path(workspace)
    existing = find_config(root)
    if existing is not None and not force:
        fail(f"{existing} already exists; pass --force to overwrite it", EXIT_BAD_INPUT)
    sandbox = SubprocessSandbox()
    detection = detect(root, lambda name: sandbox.find_program(name, cwd=root))
    chosen = AgentKind(agent.value) if agent is not None else next(iter(detection.agents), None)
    path = root / CONFIG_FILE_NAMES[0]
    text = render(detection, chosen)
    config = check_rendered(text, path)
    path.write_text(text, encoding="utf-8")
    if existing is not None and existing != path:  # --force with a YAML config: it stays, unread
        detection.notes.append(f"{existing.name} is kept but no longer read: {path.name} comes first")
    missing = _missing_programs(config, lambda name: sandbox.find_program(name, cwd=root))
    if as_json:
        summary = {
            "path": str(path),
            "agent": chosen.value if chosen else None,
            "agents_found": {kind.value: where for kind, where in detection.agents.items()},
            "exit_conditions": [c.key for c in config.exit_conditions],
            "missing_programs": missing,
            "notes": detection.notes,
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(Console(soft_wrap=True), detection, chosen, path, config, missing)


def _missing_programs(config: LoopConfig, find_program: ProgramFinder) -> list[str]:
    """The programs the config's conditions and agent name that are not on PATH."""
    wanted = [
        c.command[0] if c.command else _DEFAULT_COMMANDS.get(c.type, "").split(" ")[0]
        for c in config.exit_conditions
    ]
    if config.agent is not None and config.agent.kind in AGENT_PROGRAMS:
        wanted.append(AGENT_PROGRAMS[config.agent.kind])
    return [name for name in dict.fromkeys(wanted) if name and "/" not in name and find_program(name) is None]


def _print_summary(
    console: Console,
    detection: Detection,
    agent: AgentKind | None,
    path: Path,
    config: LoopConfig,
    missing: list[str],
) -> None:
    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    agents = ", ".join(f"{AGENT_PROGRAMS[k]} ({where})" for k, where in detection.agents.items())
    say(f"agent CLIs on PATH: {agents or 'none of claude, codex, gemini, aider'}")
    checks = ", ".join(f"{c.tool} ({c.source})" for c in detection.conditions)
    say(f"checks found: {checks or 'none (a ./check.sh placeholder is written)'}")
    for note in detection.notes:
        say(f"note: {note}")
    if missing:
        say(f"not on PATH: {', '.join(missing)} (install before `loopwright run`)")
    shown = agent.value if agent else "none yet (commented out)"
    say(f"wrote {path}: agent {shown}, {len(config.exit_conditions)} exit condition(s)")
    step = "set the goal" + ("" if agent else " and an agent")
    say(f"next: {step} in {path.name}, then run `loopwright run`")
