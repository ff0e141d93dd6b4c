"""What each loop transition of :mod:`loopwright.workflow` records and changes, to the field: the
events' types and data, the counters (tokens, cost, errors_recovered), the bookkeeping
(is_active, phase, ended_at, the final checkpoint) and every branch, for both engines."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loopwright import workflow
from loopwright.models import (
    AgentResult,
    AuthorizationResult,
    CommandResult,
    ControlAction,
    ControlRequest,
    Decision,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    NextAction,
    VerificationResult,
)
from loopwright.models.controls import LimitChange
from loopwright.models.pricing import DEFAULT_PRICES, ModelPrice
from loopwright.ports import OutputCallback, Sandbox
from loopwright.steps import iterate as iterate_module
from loopwright.steps.evaluate import SLOW_CONDITION_SECONDS
from tests.fakes import MemoryStore
from tests.unit.test_iterate_step import RecordingAgent, RecordingWorkspace

_EV = IterationEventType
_S = ExitConditionStatusValue


class Recorded(SimpleNamespace):
    type: IterationEventType
    message: str
    iteration: int | None
    data: dict[str, Any]


class Recorder:
    """The engine's ``emit_event`` as a list."""

    def __init__(self) -> None:
        self.events: list[Recorded] = []

    def __call__(
        self, event_type: IterationEventType, message: str = "", *, iteration: int | None = None, **data: Any
    ) -> object:
        self.events.append(Recorded(type=event_type, message=message, iteration=iteration, data=data))
        return None

    @property
    def types(self) -> list[IterationEventType]:
        return [e.type for e in self.events]

    def one(self, event_type: IterationEventType) -> Recorded:
        [found] = [e for e in self.events if e.type is event_type]
        return found


class TableSandbox(Sandbox):
    """Answers ``check-<name>`` with ``table[name]``: (exit code, seconds, timed out)."""

    def __init__(self, table: Mapping[str, tuple[int | None, float, bool]]) -> None:
        self.table = table
        self.cwds: list[Path] = []

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        return f"/bin/{name}"

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> CommandResult:
        self.cwds.append(cwd)
        code, seconds, timed_out = self.table[command[0].removeprefix("check-")]
        return CommandResult(
            command=list(command), exit_code=code, duration_seconds=seconds, timed_out=timed_out
        )


def _config(**changes: Any) -> LoopConfig:
    data: dict[str, Any] = {
        "goal": "make the checks pass",
        "exit_conditions": [
            {"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"},
            {"type": "CUSTOM", "name": "b", "command": "check-b", "parser": "exit_code"},
        ],
        "max_iterations": 9,
        "git_isolation": False,
    }
    data.update(changes)
    return LoopConfig.model_validate(data)


def _state(**changes: Any) -> LoopState:
    state = LoopState(loop_id="wf-1", config=_config(), worktree="/tmp/wt")
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def _status(name: str, value: ExitConditionStatusValue, *, evaluated: bool = True) -> ExitConditionStatus:
    return ExitConditionStatus(
        name=name,
        type=ExitConditionType.CUSTOM,
        status=value,
        evaluated_at=datetime(2026, 1, 1, tzinfo=UTC) if evaluated else None,
    )


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every iteration takes 2.5 s by the iterate step's clock."""
    ticks = iter(x * 2.5 for x in range(1000))
    monkeypatch.setattr(iterate_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))


def _run(state: LoopState, result: AgentResult, workspace: RecordingWorkspace | None = None) -> Recorder:
    record = Recorder()
    workflow.run_iteration(
        state, RecordingAgent(result), workspace or RecordingWorkspace(), record, state_dir=Path("/s")
    )
    return record


# ---------------------------------------------------------------------------------- run_iteration
@pytest.mark.usefixtures("fixed_clock")
def test_a_completed_iteration_is_counted_and_recorded_with_its_tokens_cost_and_commit() -> None:
    state = _state(iteration=2, tokens_used=100, cost_usd=0.5, errors_recovered=1, head_commit="old")
    state.human_response = "go on"
    state.workspace_problem = "stale"
    agent = AgentResult(
        summary="fixed it",
        tokens_used=1500,
        input_tokens=1000,
        cached_input_tokens=200,
        output_tokens=500,
        model="gpt-x",
        cost_usd=0.25,
    )
    record = _run(state, agent)

    assert state.iteration == 3
    assert state.agent_seconds == 2.5
    assert state.tokens_used == 1600
    assert state.cost_usd == 0.75
    assert state.errors_recovered == 1
    assert state.head_commit == "sha-1"
    assert state.human_request is None and state.human_response is None and state.resume_at is None
    assert state.workspace_problem is None
    assert state.unpriced_models == []
    assert record.types == [_EV.AGENT_COMPLETED]
    event = record.events[0]
    assert event.message == "fixed it" and event.iteration is None
    assert event.data == {
        "tokens_used": 1500,
        "input_tokens": 1000,
        "cached_input_tokens": 200,
        "output_tokens": 500,
        "model": "gpt-x",
        "cost_usd": 0.25,
        "cost_basis": "agent",
        "commit": "sha-1",
        "changed_files": 2,
        "withheld_files": None,
        "duration_seconds": 2.5,
    }


@pytest.mark.usefixtures("fixed_clock")
def test_a_failed_iteration_is_recorded_as_agent_failed_and_counts_one_error_recovered() -> None:
    state = _state(iteration=4, errors_recovered=2)
    record = _run(state, AgentResult(summary="crashed", failed=True))
    assert record.types == [_EV.AGENT_FAILED, _EV.AGENT_CRASHED]  # its cause follows (issue 15.3)
    assert state.errors_recovered == 3
    assert record.events[0].data["cost_basis"] == "no_tokens" and record.events[0].data["cost_usd"] == 0.0
    assert state.iteration == 5


@pytest.mark.usefixtures("fixed_clock")
def test_withheld_files_are_recorded_and_named_in_the_message() -> None:
    state = _state()
    record = _run(state, AgentResult(summary="done"), RecordingWorkspace(withheld=[".env", "key.pem"]))
    event = record.one(_EV.AGENT_COMPLETED)
    assert event.data["withheld_files"] == [".env", "key.pem"]
    assert event.message == "done (not committed, they look like secrets: .env, key.pem)"


@pytest.mark.usefixtures("fixed_clock")
def test_the_message_is_the_summary_cut_at_500_characters() -> None:
    record = _run(_state(), AgentResult(summary="y" * 600))
    assert record.one(_EV.AGENT_COMPLETED).message == "y" * 500


@pytest.mark.usefixtures("fixed_clock")
def test_a_question_and_a_usage_limit_are_kept_for_the_decide_step() -> None:
    resets = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    state = _state()
    _run(state, AgentResult(needs_human="which branch?", usage_limit_resets_at=resets))
    assert state.human_request == "which branch?"
    assert state.resume_at == resets


@pytest.mark.usefixtures("fixed_clock")
def test_a_tampered_worktree_keeps_the_head_commit_and_records_an_error() -> None:
    from loopwright.exceptions import WorkspaceIntegrityError

    state = _state(iteration=1, head_commit="c7")
    problem = "HEAD moved " + "z" * 2100
    record = _run(
        state, AgentResult(summary="ok"), RecordingWorkspace(error=WorkspaceIntegrityError(problem))
    )
    assert state.head_commit == "c7"
    assert state.workspace_problem == problem
    assert record.types == [_EV.AGENT_COMPLETED, _EV.ERROR]
    assert record.events[0].data["commit"] is None and record.events[0].data["changed_files"] == 0
    error = record.events[1]
    assert error.message == problem[:2000] and error.iteration == 2 and error.data == {}


# ----------------------------------------------------------------------------------------- the cost
@pytest.mark.usefixtures("fixed_clock")
def test_tokens_are_priced_by_the_configured_price_when_the_agent_gives_no_cost() -> None:
    price = ModelPrice(input=3.0, cached_input=0.3, output=15.0)
    state = _state(cost_usd=1.0)
    state.config = _config(prices={"house-model": price.model_dump()})
    record = _run(
        state,
        AgentResult(
            tokens_used=1500,
            input_tokens=1000,
            cached_input_tokens=200,
            output_tokens=500,
            model="house-model",
        ),
    )
    expected = price.cost_usd(1000, 200, 500)
    assert expected > 0
    assert state.cost_usd == pytest.approx(1.0 + expected)
    data = record.one(_EV.AGENT_COMPLETED).data
    assert data["cost_usd"] == expected and data["cost_basis"] == "priced"
    assert _EV.COST_UNKNOWN not in record.types


@pytest.mark.usefixtures("fixed_clock")
def test_an_unknown_model_is_reported_once_and_adds_no_cost() -> None:
    state = _state(cost_usd=0.5, unpriced_models=["other"])
    agent = AgentResult(tokens_used=30, input_tokens=20, output_tokens=10, model="mystery-model")
    record = _run(state, agent)

    assert record.types == [_EV.COST_UNKNOWN, _EV.AGENT_COMPLETED]
    unknown = record.events[0]
    assert unknown.iteration == 1
    assert unknown.data == {"model": "mystery-model", "cost_basis": "unknown_model"}
    assert "'mystery-model' has no price" in unknown.message
    assert state.unpriced_models == ["other", "mystery-model"]
    assert state.cost_usd == 0.5
    completed = record.events[1].data
    assert completed["cost_usd"] is None and completed["cost_basis"] == "unknown_model"

    again = _run(state, agent)
    assert again.types == [_EV.AGENT_COMPLETED]
    assert state.unpriced_models == ["other", "mystery-model"]
    assert state.tokens_used == 60


@pytest.mark.usefixtures("fixed_clock")
def test_no_model_is_reported_once_under_the_empty_name() -> None:
    state = _state()
    agent = AgentResult(tokens_used=30, input_tokens=20, output_tokens=10)
    record = _run(state, agent)
    assert record.one(_EV.COST_UNKNOWN).data == {"model": None, "cost_basis": "no_model"}
    assert state.unpriced_models == [""]
    assert _run(state, agent).types == [_EV.AGENT_COMPLETED]


@pytest.mark.usefixtures("fixed_clock")
def test_a_known_model_without_a_token_breakdown_is_reported_once() -> None:
    model = next(iter(DEFAULT_PRICES))
    state = _state()
    state.config = _config(cost_budget_usd=5.0)
    record = _run(state, AgentResult(tokens_used=300, model=model))
    unknown = record.one(_EV.COST_UNKNOWN)
    assert unknown.data == {"model": model, "cost_basis": "no_breakdown"}
    assert "cost budget ($5)" in unknown.message
    assert state.unpriced_models == [model]
    assert state.cost_usd == 0.0


@pytest.mark.usefixtures("fixed_clock")
def test_an_agent_that_used_no_tokens_cost_nothing_and_is_not_reported() -> None:
    state = _state(cost_usd=0.25)
    record = _run(state, AgentResult(model="mystery-model"))
    assert record.types == [_EV.AGENT_COMPLETED]
    assert state.unpriced_models == [] and state.cost_usd == 0.25


# ---------------------------------------------------------------------------------- the checkpoints
def test_save_checkpoint_stores_the_state_at_its_head_commit_and_records_it() -> None:
    store = MemoryStore()
    state = _state(iteration=3, head_commit="c3")
    record = Recorder()
    ckpt = workflow.save_checkpoint(state, store, record)

    assert state.phase is LoopPhase.CHECKPOINTING
    assert state.last_checkpoint_id == ckpt.checkpoint_id
    assert state.checkpointed_iteration == 3
    assert ckpt.iteration == 3 and ckpt.commit == "c3"
    assert [c.checkpoint_id for c in store.list_checkpoints("wf-1")] == [ckpt.checkpoint_id]  # type: ignore[union-attr]
    assert record.types == [_EV.CHECKPOINT_SAVED]
    assert record.events[0].data == {"checkpoint_id": ckpt.checkpoint_id, "commit": "c3"}
    assert record.events[0].iteration is None


def test_save_checkpoint_keeps_the_configured_number_of_checkpoints() -> None:
    store = MemoryStore()
    state = _state(head_commit="c")
    state.config = _config(checkpoint_retention=2)
    for iteration in (1, 2, 3):
        state.iteration = iteration
        workflow.save_checkpoint(state, store, Recorder())
    assert [c.iteration for c in store.list_checkpoints("wf-1")] == [3, 2]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("iteration", "checkpointed", "saved"),
    [(0, 0, False), (1, 0, True), (3, 3, False), (3, 2, True)],
)
def test_the_final_checkpoint_is_taken_once_per_iteration_and_never_before_the_first(
    iteration: int, checkpointed: int, saved: bool
) -> None:
    state = _state(iteration=iteration, checkpointed_iteration=checkpointed)
    state.config = _config(checkpoint_interval=5)
    record = Recorder()
    ckpt = workflow.checkpoint_if_due(state, MemoryStore(), record, final=True)
    assert (ckpt is not None) is saved
    assert record.types == ([_EV.CHECKPOINT_SAVED] if saved else [])
    if saved:
        assert state.checkpointed_iteration == iteration


@pytest.mark.parametrize(("iteration", "saved"), [(0, False), (3, False), (4, True), (6, False), (8, True)])
def test_a_checkpoint_is_due_every_interval(iteration: int, saved: bool) -> None:
    state = _state(iteration=iteration)
    state.config = _config(checkpoint_interval=4)
    record = Recorder()
    assert (workflow.checkpoint_if_due(state, MemoryStore(), record) is not None) is saved
    assert record.types == ([_EV.CHECKPOINT_SAVED] if saved else [])


# ---------------------------------------------------------------------------------- the evaluation
def test_evaluate_conditions_records_statuses_and_summaries_and_keeps_them_in_the_state() -> None:
    state = _state(iteration=2)
    record = Recorder()
    statuses = workflow.evaluate_conditions(
        state, TableSandbox({"a": (0, 1.0, False), "b": (1, 2.0, False)}), record
    )

    assert [s.status for s in statuses] == [_S.MET, _S.NOT_MET]
    assert all(s.iteration == 2 for s in statuses)
    assert state.exit_conditions == statuses
    assert state.evaluated_iteration == 2
    assert state.phase is LoopPhase.EVALUATING
    [event] = record.events
    assert event.type is _EV.EXIT_CONDITIONS_EVALUATED and event.iteration is None
    assert event.data == {
        "statuses": {"a": "MET", "b": "NOT_MET"},
        "summaries": {"a": statuses[0].summary, "b": statuses[1].summary},
        "baseline": None,
        "slow": None,
        "cached": None,
        "cached_conditions": None,
        "tree": None,
    }
    assert event.message == "1/2 exit conditions met: a=MET, b=NOT_MET"


def test_a_baseline_evaluation_and_a_slow_condition_are_recorded() -> None:
    state = _state()
    record = Recorder()
    slow = SLOW_CONDITION_SECONDS + 12.34
    workflow.evaluate_conditions(
        state, TableSandbox({"a": (0, slow, False), "b": (0, 1.0, False)}), record, baseline=True
    )
    [event] = record.events
    assert event.data["baseline"] is True
    assert event.data["slow"] == {"a": round(slow, 1)}
    assert event.message.startswith("baseline: 2/2 exit conditions met")
    assert f"a {round(slow, 1):g} s" in event.message


def test_baseline_due_for_a_new_loop_and_one_whose_baseline_could_not_be_evaluated() -> None:
    assert workflow.baseline_due(_state())
    assert workflow.baseline_due(_state(exit_conditions=[_status("a", _S.PENDING, evaluated=False)]))
    # evaluated and fine: no second baseline (one evaluated condition is enough to tell)
    assert not workflow.baseline_due(
        _state(exit_conditions=[_status("a", _S.MET), _status("b", _S.PENDING, evaluated=False)])
    )
    assert not workflow.baseline_due(_state(exit_conditions=[_status("a", _S.NOT_MET)]))
    # a required ERROR or, at the baseline, a TIMEOUT: evaluate again
    assert workflow.baseline_due(_state(exit_conditions=[_status("a", _S.ERROR)]))
    assert workflow.baseline_due(_state(exit_conditions=[_status("a", _S.TIMEOUT)]))


def test_baseline_due_after_an_iteration_only_when_its_evaluation_errored() -> None:
    errored = [_status("a", _S.ERROR)]
    assert workflow.baseline_due(_state(iteration=2, evaluated_iteration=2, exit_conditions=errored))
    assert not workflow.baseline_due(_state(iteration=2, evaluated_iteration=1, exit_conditions=errored))
    assert not workflow.baseline_due(
        _state(iteration=2, evaluated_iteration=2, exit_conditions=[_status("a", _S.TIMEOUT)])
    )
    assert not workflow.baseline_due(
        _state(iteration=2, evaluated_iteration=2, exit_conditions=[_status("a", _S.NOT_MET)])
    )


def test_a_green_baseline_completes_the_loop_before_the_agent_runs() -> None:
    state = _state()
    record = Recorder()
    decision = workflow.evaluate_baseline(
        state, TableSandbox({"a": (0, 1.0, False), "b": (0, 1.0, False)}), record
    )
    assert decision.action is NextAction.COMPLETE and decision.outcome is LoopOutcome.CONDITIONS_MET
    assert record.types == [_EV.EXIT_CONDITIONS_EVALUATED, _EV.VERIFICATION_PASSED]
    assert record.events[0].data["baseline"] is True
    assert state.phase is LoopPhase.VERIFYING


def test_a_failing_baseline_continues_and_a_timed_out_one_pauses() -> None:
    record = Recorder()
    decision = workflow.evaluate_baseline(
        _state(), TableSandbox({"a": (0, 1.0, False), "b": (1, 1.0, False)}), record
    )
    assert decision.action is NextAction.CONTINUE
    assert record.types == [_EV.EXIT_CONDITIONS_EVALUATED, _EV.VERIFICATION_FAILED]

    timed_out = TableSandbox({"a": (0, 1.0, False), "b": (None, 99.0, True)})
    assert workflow.evaluate_baseline(_state(), timed_out, Recorder()).action is NextAction.PAUSE


def test_a_check_after_an_iteration_is_no_baseline_and_hands_a_timeout_to_the_agent() -> None:
    record = Recorder()
    state = _state(iteration=3)
    timed_out = TableSandbox({"a": (0, 1.0, False), "b": (None, 99.0, True)})
    decision = workflow.evaluate_baseline(state, timed_out, record)
    assert decision.action is NextAction.CONTINUE
    assert record.events[0].data["baseline"] is None


def test_verify_gate_records_passed_or_failed_with_its_message() -> None:
    record = Recorder()
    state = _state(exit_conditions=[_status("a", _S.MET), _status("b", _S.MET)])
    assert workflow.verify_gate(state, record).passed
    state.exit_conditions[1] = _status("b", _S.NOT_MET)
    failed = workflow.verify_gate(state, record)
    assert not failed.passed
    assert record.types == [_EV.VERIFICATION_PASSED, _EV.VERIFICATION_FAILED]
    assert record.events[1].message == failed.message and failed.message
    assert record.events[1].data == {} and state.phase is LoopPhase.VERIFYING


# ------------------------------------------------------------------------------------- the decision
_FAILED = VerificationResult(passed=False, failing=["b"], message="1/2 conditions met")


def test_decide_next_records_the_action_and_the_tokens() -> None:
    state = _state(iteration=4, tokens_used=777)
    record = Recorder()
    decision = workflow.decide_next(state, record, verification=_FAILED, stop_reason=None)
    assert decision.action is NextAction.CONTINUE
    assert state.phase is LoopPhase.DECIDING
    [event] = record.events
    assert event.type is _EV.ITERATION_COMPLETED
    assert event.data == {"action": "CONTINUE", "tokens_used": 777}
    assert event.message == "iteration 4: CONTINUE"


def test_decide_next_stops_pauses_and_asks_a_human() -> None:
    stop = workflow.decide_next(_state(), Recorder(), verification=_FAILED, stop_reason="by alice")
    assert (stop.action, stop.outcome) == (NextAction.STOP, LoopOutcome.STOPPED)
    paused = workflow.decide_next(
        _state(), Recorder(), verification=_FAILED, stop_reason=None, pause_reason="lunch"
    )
    assert paused.action is NextAction.PAUSE and "lunch" in paused.reason
    tampered = workflow.decide_next(
        _state(workspace_problem="HEAD moved"), Recorder(), verification=_FAILED, stop_reason=None
    )
    assert tampered.action is NextAction.PAUSE and "HEAD moved" in tampered.reason
    errored = workflow.decide_next(
        _state(exit_conditions=[_status("a", _S.ERROR)]), Recorder(), verification=_FAILED, stop_reason=None
    )
    assert errored.action is NextAction.PAUSE
    # after an iteration a timeout goes to the agent (no baseline)
    timed_out = workflow.decide_next(
        _state(exit_conditions=[_status("a", _S.TIMEOUT)]), Recorder(), verification=_FAILED, stop_reason=None
    )
    assert timed_out.action is NextAction.CONTINUE
    asks = workflow.decide_next(
        _state(human_request="which?"), Recorder(), verification=_FAILED, stop_reason=None
    )
    assert asks.action is NextAction.AWAIT_HUMAN and "which?" in asks.reason
    resets = datetime(2030, 1, 1, tzinfo=UTC)
    waits = workflow.decide_next(_state(resume_at=resets), Recorder(), verification=_FAILED, stop_reason=None)
    assert waits.action is NextAction.PAUSE and waits.resume_at == resets


# ---------------------------------------------------------------------------------------- finishing
def test_finish_completes_the_loop_with_its_outcome() -> None:
    state = _state(iteration=6, tokens_used=4321, is_active=True)
    record = Recorder()
    decision = Decision(action=NextAction.COMPLETE, outcome=LoopOutcome.CONDITIONS_MET, reason="all met")
    workflow.finish(state, decision, record)

    assert state.is_active is False
    assert state.phase is LoopPhase.COMPLETED
    assert state.outcome is LoopOutcome.CONDITIONS_MET and state.outcome_reason == "all met"
    assert state.ended_at is not None and state.resume_at is None
    [event] = record.events
    assert event.type is _EV.LOOP_COMPLETED
    assert event.data == {"outcome": "CONDITIONS_MET", "iterations": 6, "tokens_used": 4321}
    assert event.message == "CONDITIONS_MET: all met"


def test_finish_without_an_outcome_records_none() -> None:
    record = Recorder()
    state = _state(is_active=True)
    workflow.finish(state, Decision(action=NextAction.STOP, reason="gone"), record)
    assert record.events[0].data["outcome"] is None and state.outcome is None
    assert state.is_active is False and state.phase is LoopPhase.COMPLETED


def test_finish_pauses_until_the_limit_resets_and_leaves_the_loop_inactive_and_unended() -> None:
    resets = datetime(2030, 1, 1, 8, 30, tzinfo=UTC)
    state = _state(is_active=True)
    record = Recorder()
    workflow.finish(state, Decision(action=NextAction.PAUSE, reason="usage limit", resume_at=resets), record)

    assert state.is_active is False
    assert state.phase is LoopPhase.PAUSED
    assert state.resume_at == resets and state.outcome_reason == "usage limit"
    assert state.ended_at is None and state.outcome is None
    [event] = record.events
    assert event.type is _EV.LOOP_PAUSED and event.message == "usage limit"
    assert event.data == {"resume_at": resets.isoformat()}


def test_a_pause_by_a_human_has_no_resume_time() -> None:
    state = _state(is_active=True, resume_at=datetime(2030, 1, 1, tzinfo=UTC))
    record = Recorder()
    workflow.finish(state, Decision(action=NextAction.PAUSE, reason="paused: lunch"), record)
    assert state.resume_at is None and record.events[0].data == {"resume_at": None}
    assert state.is_active is False


def test_finish_waits_for_a_human_answer() -> None:
    state = _state(is_active=True)
    record = Recorder()
    workflow.finish(state, Decision(action=NextAction.AWAIT_HUMAN, reason="agent asks: which?"), record)
    assert state.is_active is False
    assert state.phase is LoopPhase.AWAITING_RESPONSE
    assert state.human_request == "agent asks: which?"
    assert state.ended_at is None and state.outcome is None
    [event] = record.events
    assert (
        event.type is _EV.HUMAN_INPUT_REQUESTED and event.message == "agent asks: which?" and event.data == {}
    )


# ------------------------------------------------------------------------------ sessions and controls
def test_the_first_session_starts_the_loop_and_records_what_it_runs_under() -> None:
    state = _state(branch="loopwright/wf-1", base_commit="c0", policy_files={"a.cedar": "sha"})
    state.human_request = "old"
    state.workspace_problem = "old"
    state.resume_at = datetime(2030, 1, 1, tzinfo=UTC)
    state.outcome_reason = "old"
    record = Recorder()
    workflow.start_session(state, record, agent_name="claude-code", environment="python 3.11", extra=1)

    assert state.sessions_used == 1 and state.is_active is True
    assert state.human_request is None and state.workspace_problem is None
    assert state.resume_at is None and state.outcome_reason is None
    assert state.phase is LoopPhase.AUTHORIZING
    [event] = record.events
    assert event.type is _EV.LOOP_STARTED
    assert event.data == {
        "agent": "claude-code",
        "branch": "loopwright/wf-1",
        "base_commit": "c0",
        "max_iterations": 9,
        "policy_files": {"a.cedar": "sha"},
        "extra": 1,
    }
    assert event.message == "goal: make the checks pass · python 3.11"


def test_a_later_session_resumes_the_loop() -> None:
    state = _state(sessions_used=2, iteration=3)
    record = Recorder()
    workflow.start_session(state, record, extra="x")
    assert state.sessions_used == 3 and state.is_active is True
    [event] = record.events
    assert event.type is _EV.LOOP_RESUMED
    assert event.data == {"agent": "agent", "extra": "x"}
    assert event.message == "resumed at iteration 3 (session 3)"


def _control(action: ControlAction, reason: str = "", **limits: Any) -> ControlRequest:
    return ControlRequest(
        loop_id="wf-1",
        action=action,
        principal='User::"alice"',
        reason=reason,
        limits=LimitChange(**limits) if limits else None,
    )


def test_a_raised_limit_changes_the_config_now_and_is_recorded() -> None:
    state = _state()
    record = Recorder()
    raise_limit = _control(ControlAction.RAISE_LIMIT, max_iterations=20, token_budget=9000)
    halt = workflow.apply_controls(state, [raise_limit], record)

    assert state.config.max_iterations == 20 and state.config.token_budget == 9000
    assert halt == workflow.Halt(None, None, [raise_limit.control_id])
    [event] = record.events
    assert event.type is _EV.CONTROL_APPLIED
    assert event.data == {
        "control": "RAISE_LIMIT",
        "principal": 'User::"alice"',
        "max_iterations": 20,
        "token_budget": 9000,
    }


def test_the_first_stop_and_the_first_pause_are_returned_for_the_decide_step() -> None:
    controls = [
        _control(ControlAction.STOP),
        _control(ControlAction.STOP, "second"),
        _control(ControlAction.PAUSE, "lunch"),
        _control(ControlAction.PAUSE, "later"),
    ]
    record = Recorder()
    halt = workflow.apply_controls(_state(), controls, record)
    assert halt == workflow.Halt('by User::"alice"', "lunch", [])
    assert record.events == []

    halt = workflow.apply_controls(
        _state(), [_control(ControlAction.STOP, "done"), _control(ControlAction.PAUSE)], record
    )
    assert halt == workflow.Halt("done", 'by User::"alice"', [])


def test_begin_iteration_marks_the_next_iteration_started() -> None:
    state = _state(iteration=4)
    record = Recorder()
    assert workflow.begin_iteration(state, record) == 5
    assert state.phase is LoopPhase.ITERATING and state.iteration == 4
    [event] = record.events
    assert event.type is _EV.ITERATION_STARTED and event.iteration == 5 and event.data == {}


# ------------------------------------------------------------------------------------ authorization
def _authorize_returns(monkeypatch: pytest.MonkeyPatch, auth: AuthorizationResult) -> None:
    monkeypatch.setattr(workflow, "authorize", lambda state, policy: auth)


def test_a_denial_is_recorded_with_its_policies_and_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = AuthorizationResult(
        allowed=False,
        iteration=10,
        denied_by=["iteration-limit", "other"],
        outcome=LoopOutcome.ITERATION_LIMIT,
        reason="10 > 9",
        warnings=["w"],
        warning_messages=["never kept"],
    )
    _authorize_returns(monkeypatch, auth)
    state = _state(pending_warnings=["earlier"])
    record = Recorder()
    assert workflow.authorize_next(state, None, record) is auth  # type: ignore[arg-type]
    [event] = record.events
    assert event.type is _EV.POLICY_DENIED and event.iteration == 10 and event.message == "10 > 9"
    assert event.data == {"policy_ids": "iteration-limit,other", "outcome": "ITERATION_LIMIT"}
    assert state.pending_warnings == ["earlier"]
    assert state.phase is LoopPhase.AUTHORIZING


def test_a_denial_without_an_outcome_records_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _authorize_returns(monkeypatch, AuthorizationResult(allowed=False, iteration=1, denied_by=["x"]))
    record = Recorder()
    workflow.authorize_next(_state(), None, record)  # type: ignore[arg-type]
    assert record.events[0].data["outcome"] is None and record.events[0].message == "denied"


def test_new_warnings_are_recorded_once_and_kept_for_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = AuthorizationResult(
        allowed=True,
        iteration=3,
        warnings=["token-warning", "time-warning"],
        warning_messages=["80% of the tokens", "80% of the time"],
    )
    _authorize_returns(monkeypatch, auth)
    state = _state(pending_warnings=["80% of the tokens"])
    record = Recorder()
    workflow.authorize_next(state, None, record)  # type: ignore[arg-type]
    [event] = record.events
    assert event.type is _EV.POLICY_WARNING and event.iteration == 3
    assert event.message == "80% of the time" and event.data == {"policy_id": "time-warning"}
    assert state.pending_warnings == ["80% of the tokens", "80% of the time"]


def test_warnings_that_no_longer_apply_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    _authorize_returns(monkeypatch, AuthorizationResult(allowed=True, iteration=2))
    state = _state(pending_warnings=["old"])
    record = Recorder()
    workflow.authorize_next(state, None, record)  # type: ignore[arg-type]
    assert record.events == [] and state.pending_warnings == []


# ----------------------------------------------------------------------------- the events' messages
@pytest.mark.usefixtures("fixed_clock")
def test_the_agent_event_message_is_stripped_and_names_at_most_20_withheld_files() -> None:
    withheld = [f"s{n}.pem" for n in range(25)]
    record = _run(_state(), AgentResult(summary="\n done"), RecordingWorkspace(withheld=withheld))
    event = record.one(_EV.AGENT_COMPLETED)
    assert event.message == "done (not committed, they look like secrets: " + ", ".join(withheld[:20]) + ")"
    assert event.data["withheld_files"] == withheld
    assert _run(_state(), AgentResult(summary="  done  ")).one(_EV.AGENT_COMPLETED).message == "done"


@pytest.mark.usefixtures("fixed_clock")
def test_cost_unknown_says_why_and_whether_the_budget_misses_the_tokens() -> None:
    state = _state()
    record = _run(state, AgentResult(tokens_used=30, input_tokens=20, output_tokens=10, model="mystery"))
    assert record.one(_EV.COST_UNKNOWN).message == (
        "model 'mystery' has no price; price it in loopwright.toml: "
        'prices = { "mystery" = { input = ..., cached_input = ..., output = ... } } '
        "(US dollars per million tokens); its tokens add nothing to the loop's cost"
    )
    state.config = _config(cost_budget_usd=2.5)
    record = _run(state, AgentResult(tokens_used=30))
    assert record.one(_EV.COST_UNKNOWN).message == (
        "the agent named no model (AgentResult.model), so its tokens cannot be priced; its tokens "
        "add nothing to the loop's cost and the cost budget ($2.5) does not see them"
    )
    model = next(iter(DEFAULT_PRICES))
    record = _run(state, AgentResult(tokens_used=30, model=model))
    assert record.one(_EV.COST_UNKNOWN).message == (
        f"the agent gave no input/cached/output breakdown of its tokens, so model {model!r} cannot be "
        "priced; its tokens add nothing to the loop's cost and the cost budget ($2.5) does not see them"
    )


def test_a_slow_condition_is_named_in_the_message() -> None:
    record = Recorder()
    workflow.evaluate_conditions(
        _state(), TableSandbox({"a": (1, 42.04, False), "b": (0, 31.26, False)}), record, baseline=True
    )
    assert record.events[0].message == (
        "baseline: 1/2 exit conditions met: a=NOT_MET, b=MET (slow, over 30 s: a 42 s, b 31.3 s)"
    )
    assert record.events[0].data["slow"] == {"a": 42.0, "b": 31.3}


def test_the_start_message_keeps_200_characters_of_the_goal() -> None:
    goal = "g" * 199 + " " + "h" * 50
    state = _state()
    state.config = _config(goal=goal)
    record = Recorder()
    workflow.start_session(state, record)
    assert record.events[0].message == "goal: " + goal[:200]
    state = _state()
    state.config = _config(goal=goal)
    workflow.start_session(state, record, environment="venv .venv")
    assert record.events[1].message == "goal: " + "g" * 199 + " · venv .venv"


def test_the_second_session_is_a_resume() -> None:
    state = _state(sessions_used=1, iteration=1)
    record = Recorder()
    workflow.start_session(state, record, environment="venv .venv")
    assert record.types == [_EV.LOOP_RESUMED] and state.sessions_used == 2
    assert record.events[0].message == "resumed at iteration 1 (session 2) · venv .venv"


def test_a_raised_limit_changes_only_what_it_names_and_says_so() -> None:
    state = _state()
    state.config = _config(token_budget=5000, max_duration_seconds=600)
    record = Recorder()
    workflow.apply_controls(state, [_control(ControlAction.RAISE_LIMIT, max_iterations=20)], record)
    assert state.config.max_iterations == 20
    assert state.config.token_budget == 5000 and state.config.max_duration_seconds == 600
    [event] = record.events
    assert event.message == 'limits changed by User::"alice": max_iterations=20'
    assert event.data == {"control": "RAISE_LIMIT", "principal": 'User::"alice"', "max_iterations": 20}


def test_several_raised_limits_all_apply_in_order() -> None:
    state = _state()
    record = Recorder()
    first = _control(ControlAction.RAISE_LIMIT, max_iterations=20)
    second = _control(ControlAction.RAISE_LIMIT, max_iterations=30, cost_budget_usd=4.5)
    halt = workflow.apply_controls(state, [first, _control(ControlAction.PAUSE, "p"), second], record)
    assert halt.applied == [first.control_id, second.control_id] and halt.pause_reason == "p"
    assert state.config.max_iterations == 30 and state.config.cost_budget_usd == 4.5
    assert (
        record.events[1].message == 'limits changed by User::"alice": max_iterations=30, cost_budget_usd=4.5'
    )


def test_a_loop_ended_without_an_outcome_says_ended() -> None:
    record = Recorder()
    workflow.finish(_state(), Decision(action=NextAction.STOP, reason="gone"), record)
    assert record.events[0].message == "ended: gone"


def test_a_new_warning_is_recorded_even_when_another_was_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = AuthorizationResult(allowed=True, iteration=2, warnings=["p1", "p2"], warning_messages=["m1"])
    _authorize_returns(monkeypatch, auth)
    state = _state(pending_warnings=["m0"])
    record = Recorder()
    workflow.authorize_next(state, None, record)  # type: ignore[arg-type]
    assert [(e.message, e.data) for e in record.events] == [("m1", {"policy_id": "p1"})]
    assert state.pending_warnings == ["m1"]


def test_run_iteration_hands_the_state_folder_the_stop_check_and_the_output_to_the_agent() -> None:
    agent = RecordingAgent()

    def stop() -> bool:
        return False

    def output(stream: str, text: str) -> None:
        return None

    workflow.run_iteration(
        _state(),
        agent,
        RecordingWorkspace(),
        Recorder(),
        state_dir=Path("/st"),
        should_stop=stop,
        on_output=output,
    )
    [(request, should_stop, on_output)] = agent.calls
    assert request.state_dir == "/st" and should_stop is stop and on_output is output


def test_the_conditions_run_in_the_worktree() -> None:
    sandbox = TableSandbox({"a": (0, 1.0, False), "b": (0, 1.0, False)})
    workflow.evaluate_conditions(_state(worktree="/tmp/the-worktree"), sandbox, Recorder())
    assert sandbox.cwds and set(sandbox.cwds) == {Path("/tmp/the-worktree")}


def test_the_checkpoint_and_iteration_start_messages() -> None:
    record = Recorder()
    ckpt = workflow.save_checkpoint(_state(iteration=3), MemoryStore(), record)
    workflow.begin_iteration(_state(iteration=3), record)
    assert [e.message for e in record.events] == [
        f"checkpoint {ckpt.checkpoint_id} at iteration 3",
        "iteration 4 started",
    ]
