"""Issue 11, finding 8: numbers are numbers, and limits fit what Cedar and JSON readers keep exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.command_agent import read_report
from loopwright.models import AgentResult, LimitChange, LoopConfig
from loopwright.models.types import MAX_TOKENS

BASE = {"goal": "g", "exit_conditions": [{"type": "CUSTOM", "command": "true"}]}


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("max_iterations", True, "valid integer"),
        ("max_iterations", "3", "valid integer"),
        ("token_budget", 2**63, "less than or equal to 9007199254740991"),
        ("token_budget", MAX_TOKENS + 1, "less than or equal"),
        ("max_duration_seconds", 1.5, "valid integer"),
        ("checkpoint_interval", False, "valid integer"),
    ],
)
def test_a_loop_config_refuses_what_is_not_a_whole_number_in_range(
    field: str, value: object, why: str
) -> None:
    with pytest.raises(ValidationError, match=why) as caught:
        LoopConfig.model_validate({**BASE, field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_the_largest_token_budget_is_accepted() -> None:
    assert LoopConfig.model_validate({**BASE, "token_budget": MAX_TOKENS}).token_budget == MAX_TOKENS


def test_a_limit_change_is_as_strict_as_the_config() -> None:
    with pytest.raises(ValidationError, match="valid integer"):
        LimitChange.model_validate({"max_iterations": True})
    with pytest.raises(ValidationError, match="less than or equal"):
        LimitChange.model_validate({"token_budget": 2**63})


def test_an_agent_report_with_tokens_as_a_string_is_an_error_naming_the_field(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"tokens_used": "12", "summary": "done"}')
    parsed, error = read_report(report)
    assert parsed is None and error is not None
    assert "tokens_used" in error and "integer" in error


def test_an_agent_result_refuses_coerced_tokens() -> None:
    with pytest.raises(ValidationError):
        AgentResult.model_validate_json('{"tokens_used": "12"}')
    assert AgentResult.model_validate_json('{"tokens_used": 12}').tokens_used == 12
