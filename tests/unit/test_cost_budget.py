"""Budgets in US dollars (issue 9, point 2): pricing an agent's tokens, the Cedar ``cost-budget``
policy and its warning, raising the budget, and a loop that the budget stops."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from rich.console import Console

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.command_agent import read_report
from loopwright.cli import display
from loopwright.config_loader import ConfigError, load_config
from loopwright.controls import ControlService
from loopwright.engine import LoopFramework
from loopwright.exceptions import ControlConflictError
from loopwright.models import (
    AgentRequest,
    ControlAction,
    ControlRequest,
    IterationEventType,
    LimitChange,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopResult,
    LoopState,
)
from loopwright.models.pricing import (
    DEFAULT_PRICES,
    PRICE_SOURCES,
    ModelPrice,
    base_model_name,
    iteration_cost,
    price_for,
)
from loopwright.steps.authorize import authorize, build_authorization_request, micro_usd
from tests.fakes import FakeWorkspace, MemoryStore, ScriptedSandbox

EV = IterationEventType
POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
ALICE = 'User::"alice"'
OPERATORS = 'Group::"default-operators"'


def _config(**kwargs: Any) -> LoopConfig:
    base: dict[str, Any] = {
        "goal": "make the checks pass",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 10,
        "git_isolation": False,
    }
    return LoopConfig.model_validate(base | kwargs)


@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine(POLICY_DIR)


def _cost(**fields: Any) -> tuple[float | None, str]:
    reported: dict[str, Any] = {
        "cost_usd": None,
        "model": None,
        "tokens_used": 0,
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
    }
    cost = iteration_cost(**(reported | fields))
    return cost.cost_usd, cost.basis


# ----------------------------------------------------------------------------- pricing
def test_the_agents_own_figure_wins_over_the_price_table() -> None:
    assert _cost(cost_usd=0.42, model="claude-sonnet-4-5", input_tokens=10**6, output_tokens=10**6) == (
        0.42,
        "agent",
    )


def test_tokens_are_priced_by_input_cached_input_and_output() -> None:
    # gpt-5.5: $5 input, $0.50 cached input, $30 output per million tokens; input_tokens count
    # the cached ones too (1,000,000 uncached + 200,000 cached).
    cost, basis = _cost(
        model="gpt-5.5",
        tokens_used=1_300_000,
        input_tokens=1_200_000,
        cached_input_tokens=200_000,
        output_tokens=100_000,
    )
    assert basis == "priced"
    assert cost == pytest.approx(5.0 + 0.1 + 3.0)


def test_a_dated_or_prefixed_model_name_finds_its_base_price() -> None:
    assert base_model_name("anthropic/claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert base_model_name("us.anthropic.claude-opus-4-1-20250805-v1:0") == "claude-opus-4-1"
    assert base_model_name("claude-opus-4-6[1m]") == "claude-opus-4-6"
    assert base_model_name("models/Gemini-2.5-Pro") == "gemini-2.5-pro"
    assert base_model_name("gpt-5-2026-04-01") == "gpt-5"
    assert price_for("claude-sonnet-4-5-20250929") == DEFAULT_PRICES["claude-sonnet-4-5"]
    # a similar name is not a prefix match: an unknown version has no price
    assert price_for("claude-opus-4-9") is None


def test_an_unknown_model_has_no_cost_rather_than_a_guess() -> None:
    assert _cost(model="my-local-llama", tokens_used=900, input_tokens=500, output_tokens=400) == (
        None,
        "unknown_model",
    )
    assert _cost(tokens_used=900, input_tokens=500, output_tokens=400) == (None, "no_model")
    # tokens without a breakdown cannot be priced (input and output differ up to 8x in price)
    assert _cost(model="gpt-5.5", tokens_used=900) == (None, "no_breakdown")
    assert _cost(model="gpt-5.5") == (0.0, "no_tokens")


def test_the_users_prices_override_and_extend_the_table() -> None:
    mine = {"my-model": ModelPrice(input=3.0, cached_input=0.3, output=15.0)}
    cheaper = {"gpt-5.5": ModelPrice(input=1.0, output=2.0)}
    assert _cost(model="my-model", input_tokens=10**6, output_tokens=10**6, prices=mine)[0] == pytest.approx(
        18
    )
    assert _cost(model="My-Model-20260101", input_tokens=10**6, prices=mine)[0] == pytest.approx(3)
    # without cached_input, cached tokens cost the input price
    assert _cost(model="gpt-5.5", cached_input_tokens=10**6, prices=cheaper)[0] == pytest.approx(1.0)


def test_every_default_price_names_its_source_and_date() -> None:
    assert set(PRICE_SOURCES) == set(DEFAULT_PRICES)
    assert {"claude-sonnet-4-5", "gpt-5.5", "gemini-2.5-pro"} <= set(DEFAULT_PRICES)
    for model, source in PRICE_SOURCES.items():
        assert source.startswith("https://") and "read 20" in source, model
        price = DEFAULT_PRICES[model]
        assert price.cached_input_price <= price.input <= price.output, model


@pytest.mark.parametrize(
    ("prices", "field"),
    [
        ({"m": {"input": 1, "output": 2, "cache_input": 1}}, "prices.m.cache_input: unknown field; allowed:"),
        ({"m": {"input": -1, "output": 2}}, "prices.m.input"),
        ({"m": {"input": 1}}, "prices.m.output: required field is missing"),
        ({"m": {"input": 1, "output": 1e9}}, "prices.m.output"),
        ({"m": {"input": "free", "output": 1}}, "prices.m.input"),
    ],
)
def test_bad_prices_are_refused_naming_the_field(prices: dict[str, Any], field: str, tmp_path: Path) -> None:
    overrides = {
        "goal": "g",
        "exit_conditions": [{"type": "ALL_TESTS_PASS"}],
        "agent": {"kind": "command", "command": "true"},
        "prices": prices,
    }
    with pytest.raises(ConfigError, match=rf"^command-line options: {field}"):
        load_config(tmp_path, overrides=overrides)


def test_prices_and_the_cost_budget_are_read_from_toml(tmp_path: Path) -> None:
    (tmp_path / "loopwright.toml").write_text(
        'goal = "g"\ncost_budget_usd = 5\nprices = { "my-model" = { input = 3.0, cached_input = 0.3, '
        'output = 15.0 } }\n[[exit_conditions]]\ntype = "ALL_TESTS_PASS"\n',
        encoding="utf-8",
    )
    config, _ = load_config(tmp_path)
    assert config.cost_budget_usd == 5.0
    assert config.prices == {"my-model": ModelPrice(input=3.0, cached_input=0.3, output=15.0)}


@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf"), "5", 2e9])
def test_a_bad_cost_budget_is_refused(budget: object) -> None:
    with pytest.raises(ValidationError, match="cost_budget_usd"):
        _config(cost_budget_usd=budget)


# ----------------------------------------------------------------------------- Cedar
def _state(cost: float, *, done: int = 3, **limits: Any) -> LoopState:
    return LoopState(loop_id="loop-cost", config=_config(**limits), iteration=done, cost_usd=cost)


def test_micro_dollars_round_to_the_nearest() -> None:
    assert micro_usd(0.1 + 0.2) == 300_000
    assert micro_usd(4.9999994) == 4_999_999
    assert micro_usd(1e30) == 10**16  # clamped: 100x still fits Cedar's 64-bit Long


def test_the_request_carries_budget_and_spend_in_micro_dollars() -> None:
    request = build_authorization_request(_state(1.25, cost_budget_usd=5.5))
    assert request.resource_attributes["cost_budget_micro_usd"] == 5_500_000
    assert request.context["cost_micro_usd"] == 1_250_000
    assert "cost_budget_micro_usd" not in build_authorization_request(_state(1.25)).resource_attributes


def test_a_spent_cost_budget_denies_the_next_iteration(engine: CedarPolicyEngine) -> None:
    result = authorize(_state(5.0, cost_budget_usd=5), engine)
    assert not result.allowed
    assert result.outcome is LoopOutcome.COST_BUDGET_EXHAUSTED
    assert result.denied_by == ["cost-budget"]
    assert result.reason == "policy 'cost-budget' denied iteration 4: $5.00 spent of a budget of $5.00"


def test_below_the_cost_budget_the_loop_continues(engine: CedarPolicyEngine) -> None:
    assert authorize(_state(4.999999, cost_budget_usd=5), engine).allowed


def test_the_cost_warning_applies_at_the_threshold(engine: CedarPolicyEngine) -> None:
    result = authorize(_state(4.0, cost_budget_usd=5), engine)
    assert result.allowed and result.warnings == ["cost-budget-warning"]
    assert result.warning_messages == ["$4.00 of $5.00 spent (80% of the cost budget, SC-008)"]
    assert authorize(_state(3.999999, cost_budget_usd=5), engine).warnings == []
    assert authorize(_state(0.9, cost_budget_usd=1, warning_threshold_percent=90), engine).warnings == [
        "cost-budget-warning"
    ]


def test_no_cost_budget_never_denies_or_warns(engine: CedarPolicyEngine) -> None:
    result = authorize(_state(10**9), engine)
    assert result.allowed and result.warnings == []


# ----------------------------------------------------------------------------- controls
def _request(limits: LimitChange) -> ControlRequest:
    return ControlRequest(
        loop_id="loop-cost",
        action=ControlAction.RAISE_LIMIT,
        principal=ALICE,
        groups=[OPERATORS],
        limits=limits,
    )


def test_an_operator_raises_the_cost_budget(engine: CedarPolicyEngine) -> None:
    store = MemoryStore()
    stopped = _state(5.0, cost_budget_usd=5)
    stopped.phase, stopped.outcome = LoopPhase.COMPLETED, LoopOutcome.COST_BUDGET_EXHAUSTED
    store.create_loop(stopped)
    result = ControlService(store, engine).submit(_request(LimitChange(cost_budget_usd=12.5)))
    assert result.status == "applied"
    state = store.get_state("loop-cost")
    assert state.config.cost_budget_usd == 12.5
    [event] = store.events
    assert event.type is EV.CONTROL_APPLIED and event.data["cost_budget_usd"] == 12.5
    assert authorize(state, engine).allowed


def test_a_cost_budget_below_the_spend_is_a_conflict_and_nothing_is_written(
    engine: CedarPolicyEngine,
) -> None:
    store = MemoryStore()
    store.create_loop(_state(3.5, cost_budget_usd=5))
    with pytest.raises(ControlConflictError, match=r"cost_budget_usd: 2 is below the \$3.5000 already spent"):
        ControlService(store, engine).submit(_request(LimitChange(cost_budget_usd=2)))
    assert store.get_state("loop-cost").config.cost_budget_usd == 5 and store.events == []


def test_a_limit_change_refuses_a_bad_cost_budget() -> None:
    with pytest.raises(ValidationError, match="cost_budget_usd"):
        LimitChange(cost_budget_usd=0)
    with pytest.raises(
        ValidationError, match="at least one of max_iterations, token_budget, cost_budget_usd"
    ):
        LimitChange()


# ----------------------------------------------------------------------------- a loop
def _loop(tmp_path: Path, config: LoopConfig, store: MemoryStore) -> LoopFramework:
    def respond(command: Sequence[str], _call: int) -> tuple[int, str]:
        return 1, "still failing"

    return LoopFramework(
        config,
        workspace=tmp_path,
        store=store,
        sandbox=ScriptedSandbox(respond),
        policy=CedarPolicyEngine(POLICY_DIR),
        workspace_adapter=FakeWorkspace(tmp_path),
    )


def test_a_cost_budget_stops_a_loop_of_priced_tokens(tmp_path: Path) -> None:
    # Given a $2.50 budget and an agent whose tokens of gpt-5.5 cost, each iteration,
    # 100,000 input x $5 / 1M + 20,000 output x $30 / 1M = $0.50 + $0.60 = $1.10
    store = MemoryStore()
    loop = _loop(tmp_path, _config(cost_budget_usd=2.5), store)

    def work(request: AgentRequest) -> dict[str, Any]:
        return {
            "tokens_used": 120_000,
            "input_tokens": 100_000,
            "output_tokens": 20_000,
            "model": "gpt-5.5-2026-04-23",
        }

    # When the loop runs
    result = loop.run(work_function=work)

    # Then iteration 3 runs with a warning ($2.20 is 88%) and iteration 4 is denied ($3.30 spent)
    assert result.outcome is LoopOutcome.COST_BUDGET_EXHAUSTED
    assert result.iterations == 3 and result.total_cost_usd == pytest.approx(3.3)
    assert loop.get_state().cost_usd == pytest.approx(3.3)
    [warning] = store.list_events(loop.loop_id, types=[EV.POLICY_WARNING])
    assert warning.iteration == 3 and warning.data["policy_id"] == "cost-budget-warning"
    assert warning.message == "$2.20 of $2.50 spent (88% of the cost budget, SC-008)"
    [denied] = store.list_events(loop.loop_id, types=[EV.POLICY_DENIED])
    assert denied.data["policy_ids"] == "cost-budget"
    assert denied.message == "policy 'cost-budget' denied iteration 4: $3.30 spent of a budget of $2.50"
    completed = store.list_events(loop.loop_id, types=[EV.AGENT_COMPLETED])
    assert [e.data["cost_usd"] for e in completed] == [pytest.approx(1.1)] * 3
    breakdown = {"input_tokens", "cached_input_tokens", "output_tokens", "model", "cost_basis"}
    assert {k: v for k, v in completed[0].data.items() if k in breakdown} == {
        "input_tokens": 100_000,
        "cached_input_tokens": 0,
        "output_tokens": 20_000,
        "model": "gpt-5.5-2026-04-23",
        "cost_basis": "priced",
    }


def test_an_unknown_model_is_reported_once_and_adds_no_cost(tmp_path: Path) -> None:
    store = MemoryStore()
    loop = _loop(tmp_path, _config(max_iterations=3, cost_budget_usd=1.0), store)

    def work(request: AgentRequest) -> dict[str, Any]:
        return {"tokens_used": 10, "input_tokens": 6, "output_tokens": 4, "model": "my-local-llama"}

    result = loop.run(work_function=work)

    assert result.outcome is LoopOutcome.ITERATION_LIMIT and result.total_cost_usd == 0.0
    [unknown] = store.list_events(loop.loop_id, types=[EV.COST_UNKNOWN])
    assert unknown.iteration == 1 and unknown.data["model"] == "my-local-llama"
    assert "'my-local-llama' has no price" in unknown.message
    assert 'prices = { "my-local-llama" = { input = ...' in unknown.message
    assert "the cost budget ($1) does not see them" in unknown.message
    assert loop.get_state().unpriced_models == ["my-local-llama"]
    completed = store.list_events(loop.loop_id, types=[EV.AGENT_COMPLETED])
    # no cost is recorded rather than a made-up one
    assert [("cost_usd" in e.data, e.data["cost_basis"]) for e in completed] == [(False, "unknown_model")] * 3


def test_the_agents_dollars_stop_the_loop_without_any_price(tmp_path: Path) -> None:
    store = MemoryStore()
    loop = _loop(tmp_path, _config(cost_budget_usd=0.05), store)
    result = loop.run(work_function=lambda request: {"cost_usd": 0.02, "model": "my-local-llama"})
    assert result.outcome is LoopOutcome.COST_BUDGET_EXHAUSTED
    assert result.iterations == 3 and result.total_cost_usd == pytest.approx(0.06)
    assert store.list_events(loop.loop_id, types=[EV.COST_UNKNOWN]) == []


# ----------------------------------------------------------------------------- report.json
def test_a_command_agents_report_gives_dollars_and_model(tmp_path: Path) -> None:
    folder = tmp_path / "loops" / "loop-cost"
    folder.mkdir(parents=True)
    report = folder / "report.json"
    report.write_text(json.dumps({"tokens_used": 7, "cost_usd": 0.25, "model": "claude-sonnet-4-5"}))
    parsed, error = read_report(report)
    assert error is None and parsed is not None
    assert (parsed.cost_usd, parsed.model) == (0.25, "claude-sonnet-4-5")

    report.write_text(json.dumps({"cost_usd": -1}))
    assert read_report(report) == (
        None,
        "invalid agent report report.json: cost_usd: Input should be greater than or equal to 0",
    )


# ----------------------------------------------------------------------------- what the user sees
def _render(renderable: Any) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_the_live_line_status_table_and_result_show_the_cost() -> None:
    state = _state(1.2345, cost_budget_usd=5)
    assert display.limits_line(state).startswith("iteration 3/10 · tokens 0 · cost $1.23/$5.00 · elapsed ")
    assert " cost $0.00 · " in display.limits_line(_state(0.0))
    state.unpriced_models = ["my-local-llama"]
    assert "cost $1.23/$5.00 (+ unpriced tokens)" in display.limits_line(state)
    assert "$1.23" in _render(display.loops_table([(state, "COMPLETED")]))

    state.phase, state.outcome = LoopPhase.COMPLETED, LoopOutcome.COST_BUDGET_EXHAUSTED
    result = LoopResult.from_state(state)
    assert result.total_cost_usd == 1.2345
    assert "· 0 tokens · $1.23 (+ unpriced tokens) ·" in _render(display.result_panel(result, state))


@pytest.mark.parametrize(
    ("dollars", "text"),
    [(0, "$0.00"), (1.234, "$1.23"), (1234.5, "$1,234.50"), (0.00042, "$0.00042"), (1e-7, "$0.00")],
)
def test_dollars_are_shown_to_the_cent_or_below_a_cent_to_the_micro_dollar(dollars: float, text: str) -> None:
    assert display.format_usd(dollars) == text
