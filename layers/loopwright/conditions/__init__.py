"""Exit conditions: default commands, output parsers and evaluation of one condition."""

from loopwright.conditions.defaults import (
    DEFAULT_PARSERS,
    ParserName,
    default_command,
    needs_scratch_dir,
    resolve_command,
    resolve_parser,
)
from loopwright.conditions.parsers import (
    MAX_FAILURE_CHARS,
    MAX_FAILURES,
    PARSERS,
    ParsedOutput,
    parse,
    parse_bandit,
    parse_compileall,
    parse_exit_code,
    parse_pytest,
    parse_ruff,
)
from loopwright.conditions.runner import evaluate_condition

__all__ = [
    "DEFAULT_PARSERS",
    "MAX_FAILURES",
    "MAX_FAILURE_CHARS",
    "PARSERS",
    "ParsedOutput",
    "ParserName",
    "default_command",
    "evaluate_condition",
    "needs_scratch_dir",
    "parse",
    "parse_bandit",
    "parse_compileall",
    "parse_exit_code",
    "parse_pytest",
    "parse_ruff",
    "resolve_command",
    "resolve_parser",
]
