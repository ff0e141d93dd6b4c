"""Pinned checks in the Step Functions steps (loopwright.cloud.steps, steps_compact): Iterate
holds an iteration that changed pinned files, Checkpoint skips it, Evaluate parks the loop for a
human instead of evaluating it, Verify and Decide pass the AWAIT_HUMAN on; after the answer,
Authorize routes to Evaluate (``settle_pins``), which applies it and evaluates that iteration."""

from __future__ import annotations

from pathlib import Path

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.python_agent import PythonAgent
from loopwright.cloud.idempotency import step_key
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
from loopwright.cloud.steps_compact import next_input, run_iteration_step
from loopwright.models import (
    AgentRequest,
    AgentResult,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    NextAction,
    StepInput,
    StepOutput,
)
from loopwright.models.workspace import SavedWork
from tests.fakes import FakeWorkspace, MemoryStore, ScriptedSandbox

EV = IterationEventType
LOOP = "loop-pin"


class PinWorkspace(FakeWorkspace):
    """Commit 1 changes the pinned ``test_calc.py``, later ones ``calc.py``; ``current``: the
    commit the worktree is at."""

    current = "c0"

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        head, _ = super().commit(loop_id, message)
        self.current = head or self.current
        return head, ["test_calc.py"] if self.commits == 1 else ["calc.py"]

    def reset(self, loop_id: str, commit: str) -> None:
        super().reset(loop_id, commit)
        self.current = commit

    def file_text(self, loop_id: str, commit: str, path: str) -> str | None:
        return f"{path} at {commit}" if commit != "c0" else None

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        return SavedWork(ref=f"refs/loopwright/{loop_id}/set-aside/{label}", commit=f"c{self.commits}")


class Loop:
    """A loop of the steps with a scripted agent; its check passes when the worktree is at
    commit ``passes_at``."""

    def __init__(self, tmp_path: Path, passes_at: str) -> None:
        self.runs = 0
        self.store = MemoryStore()
        self.workspace = PinWorkspace(tmp_path)
        self.passes_at = passes_at
        config = LoopConfig.model_validate(
            {
                "goal": "make the tests pass",
                "exit_conditions": [
                    {"type": "CUSTOM", "name": "t", "command": "check", "parser": "exit_code"}
                ],
                "max_iterations": 5,
                "protected_paths": ["test_calc.py"],
            }
        )
        self.store.create_loop(
            LoopState(loop_id=LOOP, config=config, worktree=str(tmp_path), head_commit="c0")
        )
        self.ports = CloudPorts(
            store=self.store,
            checkpoints=self.store,
            policy=CedarPolicyEngine(),
            sandbox=ScriptedSandbox(
                lambda command, call: (0 if self.workspace.current == self.passes_at else 1, "")
            ),
            agent=PythonAgent(self.work),
            workspace=self.workspace,
            state_dir=tmp_path / "state",
        )
        start_step(StepInput(loop_id=LOOP), self.ports)

    def work(self, request: AgentRequest) -> AgentResult:
        self.runs += 1
        return AgentResult(tokens_used=1)

    def state(self) -> LoopState:
        return self.store.get_state(LOOP)

    def types(self) -> list[IterationEventType]:
        return [e.type for e in self.store.list_events(LOOP)]

    def approve(self, *, accept: bool) -> None:
        """What the control service saves on APPROVE (loopwright.controls), then the resumer."""
        state = self.state()
        assert state.pinned_hold is not None
        state.pinned_hold.answered = True
        state.pinned_hold.accepted_by = 'User::"alice"' if accept else None
        state.human_response = "approved"
        state.phase, state.task_token = LoopPhase.AUTHORIZING, None
        self.store.save_state(state)


def _held_iteration(loop: Loop) -> StepOutput:
    """Authorize, then the steps variant's chain after it; Decide's output."""
    out = authorize_step(StepInput(loop_id=LOOP), loop.ports)
    assert out.allowed and not out.settle_pins
    for step in (iterate_step, checkpoint_step, evaluate_step, verify_step):
        out = step(next_input(out), loop.ports)
    return decide_step(next_input(out), loop.ports)


def test_a_held_iteration_is_not_checkpointed_nor_evaluated_and_waits_for_a_human(tmp_path: Path) -> None:
    loop = Loop(tmp_path, passes_at="c1")
    decided = _held_iteration(loop)
    # Then Decide passes on the hold's AWAIT_HUMAN (Action? -> AwaitHuman)
    assert (decided.action, decided.allowed) == (NextAction.AWAIT_HUMAN, False)
    assert "--accept-pinned-change" in decided.reason
    state = loop.state()
    assert state.phase is LoopPhase.AWAITING_RESPONSE and state.pinned_hold is not None
    assert (state.head_commit, loop.workspace.resets) == ("c0", ["c0"])
    assert state.evaluated_iteration == 0 and state.iteration == 1
    assert loop.store.list_checkpoints(LOOP) == []
    types = loop.types()
    assert EV.PINNED_CHANGE_REVERTED in types and EV.HUMAN_INPUT_REQUESTED in types
    assert EV.EXIT_CONDITIONS_EVALUATED not in types and EV.CHECKPOINT_SAVED not in types


def test_an_accepted_change_is_evaluated_before_another_iteration_is_authorized(tmp_path: Path) -> None:
    loop = Loop(tmp_path, passes_at="c1")
    _held_iteration(loop)
    loop.approve(accept=True)
    # When the execution goes on to Authorize (after AwaitHuman: the Decide output, unchanged)
    out = authorize_step(StepInput(loop_id=LOOP, iteration=1), loop.ports)
    # Then no iteration is authorized: Allowed? goes to Evaluate with settle_pins
    assert (out.allowed, out.settle_pins, out.action) == (False, True, None)
    assert EV.ITERATION_STARTED not in loop.types()[-1:]
    out = evaluate_step(next_input(out), loop.ports)
    assert out.settle_pins  # carried: Verify's and Decide's idempotency keys differ from the hold's
    out = verify_step(next_input(out), loop.ports)
    decided = decide_step(next_input(out), loop.ports)
    # And the kept commit was evaluated and met the condition; the agent ran once
    assert (decided.action, decided.outcome) == (NextAction.COMPLETE, LoopOutcome.CONDITIONS_MET)
    state = loop.state()
    assert (state.head_commit, state.pinned_hold, state.evaluated_iteration) == ("c1", None, 1)
    assert loop.workspace.resets == ["c0", "c1"] and loop.runs == 1
    assert EV.PINNED_CHANGE_ACCEPTED in loop.types()


def test_a_refused_change_is_evaluated_reverted_and_the_next_iteration_runs(tmp_path: Path) -> None:
    loop = Loop(tmp_path, passes_at="c2")
    _held_iteration(loop)
    loop.approve(accept=False)
    out = authorize_step(StepInput(loop_id=LOOP, iteration=1), loop.ports)
    assert out.settle_pins
    for step in (evaluate_step, verify_step):
        out = step(next_input(out), loop.ports)
    decided = decide_step(next_input(out), loop.ports)
    # Then the reverted tree was evaluated (not met) and the loop continues, the agent told
    assert decided.action is NextAction.CONTINUE
    state = loop.state()
    assert (state.head_commit, state.pinned_hold, state.human_request) == ("c0", None, None)
    assert "was reverted" in (state.human_response or "")
    assert EV.PINNED_CHANGE_REJECTED in loop.types()
    # And the next Authorize clears settle_pins and authorizes iteration 2, which meets it
    out = authorize_step(next_input(decided), loop.ports)
    assert (out.allowed, out.settle_pins) == (True, False)
    for step in (iterate_step, checkpoint_step, evaluate_step, verify_step):
        out = step(next_input(out), loop.ports)
    assert decide_step(next_input(out), loop.ports).outcome is LoopOutcome.CONDITIONS_MET
    assert loop.runs == 2


def test_the_compact_variant_holds_then_evaluates_the_accepted_iteration(tmp_path: Path) -> None:
    loop = Loop(tmp_path, passes_at="c1")
    held = run_iteration_step(StepInput(loop_id=LOOP), loop.ports)
    assert held.action is NextAction.AWAIT_HUMAN and loop.state().pinned_hold is not None
    loop.approve(accept=True)
    done = run_iteration_step(next_input(held), loop.ports)
    assert (done.action, done.outcome) == (NextAction.COMPLETE, LoopOutcome.CONDITIONS_MET)
    assert loop.runs == 1 and loop.state().head_commit == "c1"


def test_settle_pins_is_part_of_the_idempotency_key() -> None:
    event = StepInput(loop_id=LOOP, iteration=1).model_dump(mode="json")
    assert "settle_pins" not in (step_key(event) or {})
    assert (step_key({**event, "settle_pins": True}) or {})["settle_pins"] is True
