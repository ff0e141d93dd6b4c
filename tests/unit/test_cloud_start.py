"""Starting a loop in AWS: validation, storage and the idempotent execution name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loopwright.cloud.runtime import check_agent_for_adapters
from loopwright.cloud.start import await_human, execution_name, start_loop
from loopwright.cloud.steps import CloudPorts
from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import AgentResult, IterationEventType, LoopPhase, StartLoopRequest, StepInput
from tests.fakes import MemoryStore

CONFIG = {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}]}


def test_start_stores_the_loop_and_starts_generation_0() -> None:
    store, started = MemoryStore(), []
    event = start_loop(
        StartLoopRequest(loop_id="l1", config=CONFIG),
        CloudPorts(store=store),
        lambda name, payload: started.append((name, payload)) or "arn",
    )
    assert event.loop_id == "l1"
    # The first execution asks for the baseline: a new loop evaluates its conditions before the agent
    assert started == [("l1-g0", StepInput(loop_id="l1", baseline=True).model_dump_json())]
    assert store.types("l1") == [IterationEventType.LOOP_STARTED]
    assert store.get_state("l1").sessions_used == 1


def test_bad_config_names_the_field_and_stores_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(ConfigError, match="config: exit_conditions: required field is missing"):
        start_loop(StartLoopRequest(config={"goal": "g"}), CloudPorts(store=store), lambda n, p: "arn")
    assert store.states == {}


def test_an_agent_the_adapters_cannot_run_is_refused_before_anything_is_stored() -> None:
    store, started = MemoryStore(), []
    config = {**CONFIG, "agent": {"kind": "python", "function": "pkg.mod:work"}}
    with pytest.raises(ConfigError, match=r"agent\.kind"):
        start_loop(
            StartLoopRequest(config=config, repository="https://example.com/r.git"),
            CloudPorts(store=store),
            lambda name, payload: started.append((name, payload)) or "arn",
            check_agent=lambda c: check_agent_for_adapters(c, "aws", repository="https://example.com/r.git"),
        )
    assert store.states == {} and started == []


def test_an_agent_s_reset_time_without_a_zone_is_utc() -> None:
    result = AgentResult(usage_limit_resets_at=datetime(2030, 1, 1, 12))
    assert result.usage_limit_resets_at == datetime(2030, 1, 1, 12, tzinfo=UTC)


def test_a_second_start_with_the_same_id_is_refused() -> None:
    store = MemoryStore()
    request = StartLoopRequest(loop_id="l1", config=CONFIG)
    start_loop(request, CloudPorts(store=store), lambda n, p: "arn")
    with pytest.raises(LoopFrameworkError):
        start_loop(request, CloudPorts(store=store), lambda n, p: "arn")


def test_await_human_keeps_the_task_token() -> None:
    store = MemoryStore()
    start_loop(StartLoopRequest(loop_id="l1", config=CONFIG), CloudPorts(store=store), lambda n, p: "arn")
    await_human(StepInput(loop_id="l1", task_token="tok-123"), CloudPorts(store=store))
    state = store.get_state("l1")
    assert (state.task_token, state.phase) == ("tok-123", LoopPhase.AWAITING_RESPONSE)


def test_execution_names_fit_the_80_character_quota() -> None:
    assert len(execution_name("x" * 72, 99_999)) <= 80
    with pytest.raises(ValueError, match="loop_id"):
        StartLoopRequest(loop_id="x" * 73, config=CONFIG)
