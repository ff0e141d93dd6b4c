"""``loopwright init``: what it detects in a project, and a config that ``loopwright run`` reads."""

from __future__ import annotations

import json
import os
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from loopwright.cli.app import app
from loopwright.cli.init_cmd import (
    AGENT_PROGRAMS,
    PLACEHOLDER_AGENT,
    PLACEHOLDER_CHECK,
    Detection,
    FoundCondition,
    agent_defaults,
    detect,
    render,
)
from loopwright.config_loader import load_config
from loopwright.models import AgentKind, ExitConditionType, LoopConfig

PYTEST = ("pytest", ExitConditionType.ALL_TESTS_PASS, None)
RUFF = ("ruff", ExitConditionType.LINTING_CLEAN, None)


def _project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _found(root: Path) -> list[tuple[str, ExitConditionType, list[str] | None]]:
    return [(c.tool, c.type, c.command) for c in detect(root, lambda name: None).conditions]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"pyproject.toml": "[tool.pytest.ini_options]\n[tool.ruff]\nline-length = 100\n"}, [PYTEST, RUFF]),
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, []),
        ({"pytest.ini": "[pytest]\n", "ruff.toml": ""}, [PYTEST, RUFF]),
        ({"tests/unit/test_a.py": "", ".ruff.toml": ""}, [PYTEST, RUFF]),
        ({"tests/a.test.js": ""}, []),
        (
            {"package.json": json.dumps({"scripts": {"test": "jest", "lint": "eslint ."}})},
            [
                ("npm test", ExitConditionType.CUSTOM, ["npm", "test"]),
                ("npm run lint", ExitConditionType.CUSTOM, ["npm", "run", "lint"]),
            ],
        ),
        (
            {"package.json": json.dumps({"scripts": {"test": "vitest run"}}), "yarn.lock": ""},
            [("yarn test", ExitConditionType.CUSTOM, ["yarn", "test"])],
        ),
        (
            {"package.json": json.dumps({"scripts": {"lint": "eslint ."}}), "pnpm-lock.yaml": ""},
            [("pnpm run lint", ExitConditionType.CUSTOM, ["pnpm", "run", "lint"])],
        ),
        # npm init's test script always fails: it is not a test suite
        (
            {"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})},
            [],
        ),
        ({"go.mod": "module x\n"}, [("go test", ExitConditionType.CUSTOM, ["go", "test", "./..."])]),
        ({"Cargo.toml": "[package]\n"}, [("cargo test", ExitConditionType.CUSTOM, ["cargo", "test"])]),
    ],
    ids=[
        "pyproject",
        "pyproject-no-tools",
        "ini-files",
        "tests-folder",
        "js-tests-folder",
        "npm",
        "yarn",
        "pnpm",
        "npm-placeholder",
        "go",
        "cargo",
    ],
)
def test_detects_the_projects_test_and_lint_tools(
    tmp_path: Path, files: dict[str, str], expected: list[tuple[str, ExitConditionType, list[str] | None]]
) -> None:
    assert _found(_project(tmp_path, files)) == expected


@pytest.mark.parametrize("name", ["pyproject.toml", "package.json"])
def test_an_unreadable_project_file_is_a_note_not_a_crash(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("{[ not valid")

    found = detect(tmp_path, lambda program: None)

    assert found.conditions == []
    assert len(found.notes) == 1
    assert found.notes[0].startswith(f"{name} was not read: ")


def test_detects_agent_clis_in_preference_order(tmp_path: Path) -> None:
    on_path = {"aider": "/bin/aider", "claude": "/opt/claude", "python": "/bin/python"}

    found = detect(tmp_path, on_path.get)

    assert list(found.agents.items()) == [
        (AgentKind.CLAUDE_CODE, "/opt/claude"),
        (AgentKind.AIDER, "/bin/aider"),
    ]


DETECTIONS = [
    Detection(),
    Detection(
        agents={AgentKind.CODEX: "/bin/codex"},
        conditions=[
            FoundCondition("pytest", "pytest.ini", ExitConditionType.ALL_TESTS_PASS),
            FoundCondition("ruff", "ruff.toml", ExitConditionType.LINTING_CLEAN),
            FoundCondition("npm test", "package.json", ExitConditionType.CUSTOM, "npm-test", ["npm", "test"]),
            FoundCondition("go test", "go.mod", ExitConditionType.CUSTOM, "go-test", ["go", "test", "./..."]),
        ],
    ),
]


def test_the_pinned_checks_lines_are_valid_once_uncommented() -> None:
    text = render(DETECTIONS[1], None)
    pinned = [
        line.removeprefix("# ")
        for line in text.splitlines()
        if line.startswith(("# protected_paths", "# allow_test_changes"))
    ]
    assert len(pinned) == 2
    config = LoopConfig.model_validate({**tomllib.loads(text), **tomllib.loads("\n".join(pinned))})
    assert config.protected_paths == ["migrations/", "golden/*"]
    assert config.allow_test_changes is True


@pytest.mark.parametrize("detection", DETECTIONS, ids=["nothing", "everything"])
@pytest.mark.parametrize("agent", [None, AgentKind.COMMAND, *AGENT_PROGRAMS])
def test_every_rendered_config_is_valid(detection: Detection, agent: AgentKind | None) -> None:
    config = LoopConfig.model_validate(tomllib.loads(render(detection, agent)))

    assert (config.agent.kind if config.agent else None) is agent
    names = [c.key for c in config.exit_conditions]
    assert names == ([c.name or c.type.value.lower() for c in detection.conditions] or ["check"])


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only fake programs (and the system's basics), so no real agent CLI is found."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return folder


def _fake(folder: Path, name: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def _init(workspace: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["init", "-w", str(workspace), *args])


def test_init_writes_a_config_loopwright_run_reads(tmp_path: Path, bin_dir: Path) -> None:
    # Given a Python project with pytest and ruff configured, and no agent CLI on PATH
    project = _project(tmp_path / "p", {"pyproject.toml": "[tool.pytest.ini_options]\n[tool.ruff]\n"})

    result = _init(project)

    assert result.exit_code == 0, result.output
    config, source = load_config(project)
    assert source == project / "loopwright.toml"
    assert [c.type for c in config.exit_conditions] == [
        ExitConditionType.ALL_TESTS_PASS,
        ExitConditionType.LINTING_CLEAN,
    ]
    assert config.agent is None  # commented out: `loopwright run` says to set one
    text = source.read_text()
    for policy in ("iteration-limit", "token-budget", "time-limit", "cost-budget", "iteration-warning"):
        assert policy in text  # each limit names the Cedar policy that enforces it
    assert "# [agent]" in text and '# kind = "command"' in text
    lines = result.stdout.splitlines()
    assert lines[0] == "agent CLIs on PATH: none of claude, codex, gemini, aider"
    assert lines[1] == (
        "checks found: pytest (pyproject.toml [tool.pytest.ini_options]), ruff (pyproject.toml [tool.ruff])"
    )
    assert lines[-1] == "next: set the goal and an agent in loopwright.toml, then run `loopwright run`"


def test_init_picks_the_first_agent_cli_found(tmp_path: Path, bin_dir: Path) -> None:
    for program in ("aider", "claude"):
        _fake(bin_dir, program)
    project = _project(tmp_path / "p", {"go.mod": "module x\n"})

    result = _init(project, "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["agents_found"] == {
        "claude-code": str(bin_dir / "claude"),
        "aider": str(bin_dir / "aider"),
    }
    config, _ = load_config(project)
    assert config.agent is not None and config.agent.kind is AgentKind.CLAUDE_CODE
    assert summary["agent"] == "claude-code"
    assert summary["exit_conditions"] == ["go-test"]


@pytest.mark.parametrize("kind", list(AGENT_PROGRAMS))
def test_agent_chooses_a_cli_kind_with_its_settings_commented_at_their_defaults(
    tmp_path: Path, bin_dir: Path, kind: AgentKind
) -> None:
    result = _init(tmp_path, "--agent", kind.value)

    assert result.exit_code == 0, result.output
    config, path = load_config(tmp_path)
    assert path is not None and config.agent is not None and config.agent.kind is kind
    assert f"not on PATH: {AGENT_PROGRAMS[kind]}" in result.stdout  # none of them is installed here
    # Uncommenting every setting that has a value gives the same agent: the defaults are right
    text = path.read_text()
    agent_table = text[text.index("[agent]") :]
    settings = [line.removeprefix("# ") for line in agent_table.splitlines() if line.startswith("# ")]
    concrete = [line for line in settings if " = " in line and "..." not in line.split("#")[0]]
    assert len(concrete) >= 5
    uncommented = tomllib.loads("\n".join(["[agent]", f'kind = "{kind.value}"', *concrete]))
    assert LoopConfig.model_validate({**tomllib.loads(text), **uncommented}).agent == agent_defaults(kind)


def test_agent_command_writes_a_command_agent_and_a_placeholder_check(tmp_path: Path, bin_dir: Path) -> None:
    result = _init(tmp_path, "--agent", "command")

    assert result.exit_code == 0, result.output
    config, _ = load_config(tmp_path)
    assert config.agent is not None and config.agent.kind is AgentKind.COMMAND
    assert list(config.agent.command) == PLACEHOLDER_AGENT
    assert [list(c.command or []) for c in config.exit_conditions] == [PLACEHOLDER_CHECK]
    assert "checks found: none (a ./check.sh placeholder is written)" in result.stdout


def test_an_unknown_agent_kind_is_bad_input(tmp_path: Path, bin_dir: Path) -> None:
    result = _init(tmp_path, "--agent", "gpt")

    assert result.exit_code == 2
    assert not (tmp_path / "loopwright.toml").exists()


@pytest.mark.parametrize("name", ["loopwright.toml", "loopwright.yaml"])
def test_init_never_overwrites_a_config_without_force(tmp_path: Path, bin_dir: Path, name: str) -> None:
    existing = tmp_path / name
    existing.write_text("mine\n")

    refused = _init(tmp_path)

    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == [
        f"loopwright: error: {existing} already exists; pass --force to overwrite it"
    ]
    assert existing.read_text() == "mine\n"

    forced = _init(tmp_path, "--force", "--agent", "command")

    assert forced.exit_code == 0, forced.output
    config, source = load_config(tmp_path)
    assert (source, config.agent is not None) == (tmp_path / "loopwright.toml", True)
    if name != "loopwright.toml":  # the YAML file is kept, and the summary says it is not read
        assert existing.read_text() == "mine\n"
        assert f"note: {name} is kept but no longer read: loopwright.toml comes first" in forced.stdout


def test_a_workspace_that_is_not_a_folder_is_bad_input(tmp_path: Path) -> None:
    result = _init(tmp_path / "missing")

    assert result.exit_code == 2
    assert "is not a folder" in result.stderr


def test_version_is_the_installed_distributions() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"loopwright {version('loopwright')}\n"
