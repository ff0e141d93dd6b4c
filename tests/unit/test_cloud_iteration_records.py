"""The agent's record of each iteration on the Step Functions path (issue 9, point 3): the cloud
steps, chained as the state machine chains them over the in-memory store, write the record the
in-process engine writes; a retried step leaves one record; a store that cannot keep records
never fails a step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.cloud.steps import evaluate_step, iterate_step, start_step
from loopwright.cloud.steps_compact import next_input, run_iteration_step
from loopwright.engine import LoopFramework
from loopwright.exceptions import LoopFrameworkError, WorkspaceError
from loopwright.models import (
    AgentRequest,
    AgentResult,
    ExitConditionStatusValue,
    LoopOutcome,
    NextAction,
    StepInput,
)
from loopwright.models.records import DiffStat, IterationRecord
from loopwright.ports import Agent, OutputCallback, StopCheck
from tests.fakes import FakeWorkspace, MemoryStore
from tests.unit.test_cloud_steps import Scenario, _cloud_ports, _config, _create, run_state_machine

#: The record's fields that depend on when it was written, not on what it says.
TIMES = {"started_at", "updated_at", "evaluated_at", "duration_seconds"}
NOT_MET, MET = ExitConditionStatusValue.NOT_MET, ExitConditionStatusValue.MET


class ReportingScenario(Scenario):
    """:class:`Scenario` whose agent reports usage and output in its result."""

    def work(self, request: AgentRequest) -> AgentResult:
        super().work(request)
        return AgentResult(
            tokens_used=10,
            output_tokens=4,
            cost_usd=0.02,
            summary=f"fixed {request.iteration}",
            exit_code=0,
            output=f"agent output of iteration {request.iteration}\n",
        )


class StreamingAgent(Agent):
    """An agent in another process: it writes its output as it works (``on_output``)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        self.scenario.runs = request.iteration
        assert on_output is not None, "the iterate step collects the agent's output"
        on_output("stdout", f"working on {request.iteration}\n")
        on_output("stderr", "warning: slow\n")
        return AgentResult(tokens_used=7, exit_code=0, output="only the tail")


class StatWorkspace(FakeWorkspace):
    """A workspace that knows what each commit changed."""

    def diff_stat(self, loop_id: str, commit: str) -> DiffStat | None:
        return DiffStat(files_changed=1, insertions=int(commit[1:]), deletions=0)


def _records(store: MemoryStore, loop_id: str) -> list[IterationRecord]:
    found = [store.get_iteration_record(loop_id, s.iteration) for s in store.list_iteration_records(loop_id)]
    return [r for r in found if r is not None]


def _content(record: IterationRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude=TIMES | {"loop_id"})


def test_the_cloud_steps_write_the_record_the_engine_writes(tmp_path: Path) -> None:
    # Given the same loop for the in-process engine and the cloud steps, the check passing after
    # the agent's 3rd iteration
    engine_store, cloud_store = MemoryStore(), MemoryStore()
    local = ReportingScenario(3)
    LoopFramework(
        _config(),
        workspace=tmp_path,
        loop_id="same",
        store=engine_store,
        sandbox=local.sandbox(),
        policy=CedarPolicyEngine(),
        workspace_adapter=StatWorkspace(tmp_path),
    ).run(work_function=local.work)
    cloud = ReportingScenario(3)
    _create(cloud_store, _config(), "same", tmp_path)
    ports = _cloud_ports(tmp_path, cloud, cloud_store)
    ports.workspace = StatWorkspace(tmp_path)
    ports.state_dir = tmp_path / ".loopwright"  # the engine's, named in the prompt

    # When the state machine's steps run it
    decisions = run_state_machine(ports, "same")

    # Then each iteration has its record: prompt, output, usage, commit, diff stat, conditions
    assert decisions[-1].outcome is LoopOutcome.CONDITIONS_MET
    records = _records(cloud_store, "same")
    assert [r.iteration for r in records] == [1, 2, 3]
    first = records[0]
    assert "# loopwright: iteration 1 of 5" in first.prompt and "make the check pass" in first.prompt
    assert first.output.text() == "agent output of iteration 1\n"
    assert first.usage is not None and (first.usage.tokens_used, first.usage.cost_usd) == (10, 0.02)
    assert (first.exit_code, first.summary, first.commit) == (0, "fixed 1", "c1")
    assert first.diff_stat == DiffStat(files_changed=1, insertions=1, deletions=0)
    assert not first.agent_running and first.evaluated_at is not None
    assert [[(c.name, c.status) for c in r.conditions] for r in records] == [
        [("a", NOT_MET)],
        [("a", NOT_MET)],
        [("a", MET)],
    ]
    # And they say what the in-process engine's records say
    assert [_content(r) for r in records] == [_content(r) for r in _records(engine_store, "same")]


def test_the_output_the_agent_streams_is_recorded(tmp_path: Path) -> None:
    # Given an agent that writes its output while it works
    store = MemoryStore()
    scenario = Scenario(1)
    _create(store, _config(), "stream", tmp_path)
    ports = _cloud_ports(tmp_path, scenario, store)
    ports.agent = StreamingAgent(scenario)
    # When the loop runs on the cloud steps
    assert run_state_machine(ports, "stream")[-1].outcome is LoopOutcome.CONDITIONS_MET
    # Then its record holds all it wrote, not only the tail its result carries
    record = store.get_iteration_record("stream", 1)
    assert record is not None and record.output.text() == "working on 1\nwarning: slow\n"
    assert record.usage is not None and record.usage.tokens_used == 7


def test_a_retried_step_leaves_the_same_one_record(tmp_path: Path) -> None:
    # Given an iteration whose Iterate and Evaluate steps ran
    store = MemoryStore()
    scenario = ReportingScenario(99)
    _create(store, _config(), "retry", tmp_path)
    ports = _cloud_ports(tmp_path, scenario, store)
    outputs = run_state_machine(ports, "retry")
    before = store.get_iteration_record("retry", 5)
    assert outputs[-1].outcome is LoopOutcome.ITERATION_LIMIT and before is not None

    # When Step Functions retries the Evaluate step with the same input
    again = evaluate_step(StepInput(loop_id="retry", iteration=5), ports)

    # Then the iteration still has one record, saying the same
    after = store.get_iteration_record("retry", 5)
    assert again.outcome is None and after is not None
    assert [s.iteration for s in store.list_iteration_records("retry")] == [1, 2, 3, 4, 5]
    assert _content(after) == _content(before)


def test_a_retried_iterate_step_rewrites_its_iterations_record(tmp_path: Path) -> None:
    # Given an iterate step that ran iteration 1 (the state saved, the record written)
    store = MemoryStore()
    scenario = ReportingScenario(99)
    _create(store, _config(), "rerun", tmp_path)
    ports = _cloud_ports(tmp_path, scenario, store)
    state = store.get_state("rerun")
    writes = store.record_writes
    iterate_step(StepInput(loop_id="rerun"), ports)
    first = store.get_iteration_record("rerun", 1)
    # When the step is tried again on the state it had before (its state write lost)
    state.version = store.get_state("rerun").version
    store.save_state(state, [])
    iterate_step(StepInput(loop_id="rerun"), ports)
    # Then iteration 1 has one record, the same one
    second = store.get_iteration_record("rerun", 1)
    assert store.record_writes == writes + 2
    assert [s.iteration for s in store.list_iteration_records("rerun")] == [1]
    assert first is not None and second is not None
    assert _content(second) == _content(first) | {"commit": "c2"}  # the workspace's next commit


class _FailingStore(MemoryStore):
    def save_iteration_record(self, record: IterationRecord) -> None:
        raise LoopFrameworkError("throttled")

    def get_iteration_record(self, loop_id: str, iteration: int) -> IterationRecord | None:
        raise LoopFrameworkError("throttled")


class _NoRecords(MemoryStore):
    def save_iteration_record(self, record: IterationRecord) -> None:
        raise NotImplementedError

    def get_iteration_record(self, loop_id: str, iteration: int) -> IterationRecord | None:
        raise NotImplementedError


class _BrokenStatWorkspace(FakeWorkspace):
    def diff_stat(self, loop_id: str, commit: str) -> DiffStat | None:
        raise WorkspaceError("git is gone")


@pytest.mark.parametrize("store_type", [_FailingStore, _NoRecords])
def test_a_store_that_cannot_keep_records_never_fails_a_step(
    tmp_path: Path, store_type: type[MemoryStore], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a store whose record writes and reads fail (or that keeps none)
    store = store_type()
    _create(store, _config(), "flaky", tmp_path)
    # When the loop runs on the cloud steps
    decisions = run_state_machine(_cloud_ports(tmp_path, Scenario(2), store), "flaky")
    # Then it converges as without records, the errors logged
    assert decisions[-1].outcome is LoopOutcome.CONDITIONS_MET
    assert store.get_state("flaky").iteration == 2
    if store_type is _FailingStore:
        assert "the record of iteration 1 of loop 'flaky' was not stored: throttled" in caplog.text


def test_a_diff_stat_that_fails_leaves_the_record_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    _create(store, _config(), "nostat", tmp_path)
    ports = _cloud_ports(tmp_path, Scenario(1), store)
    ports.workspace = _BrokenStatWorkspace(tmp_path)
    assert run_state_machine(ports, "nostat")[-1].outcome is LoopOutcome.CONDITIONS_MET
    record = store.get_iteration_record("nostat", 1)
    assert record is not None and record.commit == "c1" and record.diff_stat is None
    assert record.conditions and "git is gone" in caplog.text


def test_the_compact_step_writes_the_same_records_as_the_six_steps(tmp_path: Path) -> None:
    # Given the same loop for both variants
    steps_store, compact_store = MemoryStore(), MemoryStore()
    for store in (steps_store, compact_store):
        _create(store, _config(), "same", tmp_path)
    run_state_machine(_cloud_ports(tmp_path, ReportingScenario(2), steps_store), "same")
    # When the compact variant runs one call per iteration
    ports = _cloud_ports(tmp_path, ReportingScenario(2), compact_store)
    event = StepInput(loop_id="same", baseline=True)
    event = StepInput.model_validate({**start_step(event, ports).model_dump(), "baseline": True})
    for _ in range(5):
        out = run_iteration_step(event, ports)
        if out.action is not NextAction.CONTINUE:
            break
        event = next_input(out)
    # Then both wrote the same records
    assert out.outcome is LoopOutcome.CONDITIONS_MET
    assert [_content(r) for r in _records(compact_store, "same")] == [
        _content(r) for r in _records(steps_store, "same")
    ]
    assert [r.iteration for r in _records(compact_store, "same")] == [1, 2]
