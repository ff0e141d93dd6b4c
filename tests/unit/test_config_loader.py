"""Loading configs: TOML/YAML, CLI overrides, and one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.config_loader import load_config
from loopwright.exceptions import ConfigError
from loopwright.models import AgentKind, ExitConditionType

TOML = """
goal = "make lint clean"
max_iterations = 7

[[exit_conditions]]
type = "LINTING_CLEAN"

[[exit_conditions]]
type = "CUSTOM"
name = "smoke"
command = "python -c 'print(1)'"
timeout_seconds = 5

[agent]
kind = "command"
command = ["python", "agent.py", "{prompt_file}"]
"""


def test_toml_in_workspace_is_found_and_parsed(tmp_path: Path) -> None:
    (tmp_path / "loopwright.toml").write_text(TOML)
    config, source = load_config(tmp_path)
    assert source == tmp_path / "loopwright.toml"
    assert config.max_iterations == 7
    assert config.exit_conditions[1].command == ["python", "-c", "print(1)"]
    assert config.agent is not None and config.agent.kind is AgentKind.COMMAND


def test_yaml_with_overrides_replacing_fields(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text("goal: g\nexit_conditions:\n  - type: ALL_TESTS_PASS\nmax_iterations: 3\n")
    config, _ = load_config(tmp_path, path, {"max_iterations": 9, "token_budget": None})
    assert config.max_iterations == 9
    assert config.token_budget is None
    assert config.exit_conditions[0].type is ExitConditionType.ALL_TESTS_PASS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'goal = "g"\nmax_iterations = 0\n[[exit_conditions]]\ntype = "LINTING_CLEAN"',
            "max_iterations: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            'goal = "g"\n[[exit_conditions]]\ntype = "TESTS"',
            "exit_conditions.0.type: Input should be 'ALL_TESTS_PASS', 'LINTING_CLEAN'",
        ),
        (
            'goal = "g"\nmax_iteratons = 3\n[[exit_conditions]]\ntype = "LINTING_CLEAN"',
            "max_iteratons: unknown field; allowed: agent, allow_test_changes, checkpoint_interval",
        ),
        (
            'goal = "g"\n[[exit_conditions]]\ntype = "CUSTOM"',
            "exit_conditions.0: Value error, a CUSTOM exit condition needs a 'command'",
        ),
        (
            'goal = "g"\n[[exit_conditions]]\ntype = "LINTING_CLEAN"\ntimeout_seconds = -1',
            "exit_conditions.0.timeout_seconds: Input should be greater than 0",
        ),
        (
            'goal = "g"\n[[exit_conditions]]\ntype = "LINTING_CLEAN"\n'
            '[agent]\nkind = "python"\nfunction = "nocolon"',
            "agent.function: String should match pattern",
        ),
        (
            'goal = "g"\n[[exit_conditions]]\ntype = "LINTING_CLEAN"\n'
            '[[exit_conditions]]\ntype = "LINTING_CLEAN"',
            "name 'linting_clean' is used twice",
        ),
        (
            'goal = "g"\n[[exit_conditions]]\ntype = "LINTING_CLEAN"\n'
            '[agent]\nkind = "command"\ncommand = ["a"]\nidle_timeout_seconds = -5',
            "agent.idle_timeout_seconds: Input should be greater than or equal to 0 (got -5)",
        ),
        ('[[exit_conditions]]\ntype = "LINTING_CLEAN"', "goal: required field is missing"),
        ('goal = "g"\nexit_conditions = [', "invalid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "loopwright.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_config_and_no_overrides_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config: write loopwright\.toml"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path, tmp_path / "nope.toml")


def test_an_unknown_field_of_a_cli_backend_lists_that_backends_fields(tmp_path: Path) -> None:
    # A typo under a claude-code agent named the command/python/runtime fields, and the kind
    # as part of the field's name ("agent.claude-code.modle")
    (tmp_path / "loopwright.toml").write_text(
        'goal = "g"\n[[exit_conditions]]\ntype = "LINTING_CLEAN"\n'
        '[agent]\nkind = "claude-code"\nmodle = "sonnet"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert "agent.modle: unknown field; allowed: " in message
    assert "permission_mode" in message and "allowed_tools" in message
    assert "function" not in message and "agent_runtime_arn" not in message


def test_an_unknown_field_of_repository_credentials_lists_the_credentials_fields(tmp_path: Path) -> None:
    (tmp_path / "loopwright.toml").write_text(
        'goal = "g"\n[[exit_conditions]]\ntype = "LINTING_CLEAN"\n'
        '[repository]\nurl = "https://example.com/r.git"\n'
        "[repository.credentials]\n"
        'secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:t-AbCdEf"\n'
        'user = "x"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert "repository.credentials.user: unknown field; allowed: " in message
    assert "secret_arn" in message and "username" in message and "push" not in message


def test_the_idle_timeout_defaults_to_900_s_and_0_turns_it_off(tmp_path: Path) -> None:
    base = 'goal = "g"\n[[exit_conditions]]\ntype = "LINTING_CLEAN"\n[agent]\nkind = "codex"\n'
    (tmp_path / "loopwright.toml").write_text(base)
    agent = load_config(tmp_path)[0].agent
    assert agent is not None and getattr(agent, "idle_timeout_seconds", None) == 900
    (tmp_path / "loopwright.toml").write_text(base + "idle_timeout_seconds = 0\n")
    agent = load_config(tmp_path)[0].agent
    assert agent is not None and getattr(agent, "idle_timeout_seconds", None) == 0
