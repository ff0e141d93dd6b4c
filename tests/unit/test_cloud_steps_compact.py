"""The compact state machine's one step (loopwright.cloud.steps_compact) against in-memory ports:
an iteration in one call records what the six steps record when Step Functions chains them."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.cloud.steps import (
    CloudPorts,
    authorize_step,
    checkpoint_step,
    decide_step,
    evaluate_step,
    iterate_step,
    start_step,
    verify_step,
)
from loopwright.cloud.steps_compact import ITERATION_STEPS, next_input, run_iteration_step
from loopwright.models import (
    LoopOutcome,
    NextAction,
    StepInput,
    StepOutput,
)
from tests.fakes import MemoryStore
from tests.unit.test_cloud_steps import Scenario, _cloud_ports, _config, _create


def _steps_iteration(event: StepInput, ports: CloudPorts) -> StepOutput:
    """One iteration as the ``steps`` definition chains its tasks (Allowed? after Authorize)."""
    out = authorize_step(event, ports)
    if out.allowed:
        for step in (iterate_step, checkpoint_step, evaluate_step, verify_step):
            out = step(next_input(out), ports)
    return decide_step(next_input(out), ports)


def _run(ports: CloudPorts, loop_id: str, *, compact: bool, per_execution: int = 500) -> list[StepOutput]:
    """Start the loop, then iterate while the action is CONTINUE; every iteration's output."""
    event = next_input(start_step(StepInput(loop_id=loop_id, iterations_per_execution=per_execution), ports))
    outputs: list[StepOutput] = []
    for _ in range(50):
        out = run_iteration_step(event, ports) if compact else _steps_iteration(event, ports)
        outputs.append(out)
        if out.action is not NextAction.CONTINUE:
            return outputs
        event = next_input(out)
    raise AssertionError("the loop did not end")


@pytest.mark.parametrize(
    ("passes_at", "outcome"), [(3, LoopOutcome.CONDITIONS_MET), (99, LoopOutcome.ITERATION_LIMIT)]
)
def test_one_call_per_iteration_records_what_the_six_steps_record(
    tmp_path: Path, passes_at: int, outcome: LoopOutcome
) -> None:
    # Given the same scripted loop for both variants
    steps_store, compact_store = MemoryStore(), MemoryStore()
    _create(steps_store, _config(), "same", tmp_path)
    _create(compact_store, _config(), "same", tmp_path)
    # When the steps run one task each, and the compact step one call per iteration
    by_steps = _run(_cloud_ports(tmp_path, Scenario(passes_at), steps_store), "same", compact=False)
    by_compact = _run(_cloud_ports(tmp_path, Scenario(passes_at), compact_store), "same", compact=True)
    # Then both end the same way, with the same outputs and the same event types in the same order
    assert by_compact[-1].outcome is by_steps[-1].outcome is outcome
    assert [o.model_dump(exclude={"reason"}) for o in by_compact] == [
        o.model_dump(exclude={"reason"}) for o in by_steps
    ]
    assert compact_store.types("same") == steps_store.types("same")
    assert compact_store.get_state("same").iteration == steps_store.get_state("same").iteration


def test_the_compact_step_hands_over_every_k_iterations(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, _config(max_iterations=7), "long", tmp_path)
    outputs = _run(_cloud_ports(tmp_path, Scenario(99), store), "long", compact=True, per_execution=3)
    assert [(o.iteration, o.generation) for o in outputs if o.handover] == [(3, 1), (6, 2)]
    assert outputs[-1].outcome is LoopOutcome.ITERATION_LIMIT


def test_work_ports_are_built_only_for_an_iteration_that_runs(tmp_path: Path) -> None:
    # Given a loop at its iteration limit, and work ports that count their builds
    store = MemoryStore()
    _create(store, _config(max_iterations=1), "limit", tmp_path)
    ports = _cloud_ports(tmp_path, Scenario(99), store)
    built: list[int] = []

    def work_ports(base: CloudPorts) -> CloudPorts:
        built.append(1)
        return base

    event = next_input(start_step(StepInput(loop_id="limit"), ports))
    # When the first iteration runs, then the second is denied by Cedar
    first = run_iteration_step(event, ports, work_ports=work_ports)
    second = run_iteration_step(next_input(first), ports, work_ports=work_ports)
    # Then the work ports were built once, for the iteration that ran
    assert (first.action, second.outcome) == (NextAction.CONTINUE, LoopOutcome.ITERATION_LIMIT)
    assert built == [1]


def test_a_stop_request_ends_the_loop_before_the_agent_runs(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, _config(), "stop", tmp_path)
    store.request_stop("stop", "operator")
    outputs = _run(_cloud_ports(tmp_path, Scenario(99), store), "stop", compact=True)
    assert outputs[-1].outcome is LoopOutcome.STOPPED
    assert store.get_state("stop").iteration == 0


def test_the_iteration_runs_the_steps_of_the_definition_in_order() -> None:
    assert (
        (iterate_step, "iterate"),  # the agent and the checks may run in the background: pending
        (checkpoint_step, None),
        (evaluate_step, "evaluate"),
        (verify_step, None),
    ) == ITERATION_STEPS
