"""Pinned checks through the SYNTHESIZED state machine (both variants), executed by moto with the
real handlers and the local adapters (loopwright.engine.stepfunctions): an agent that makes the
tests pass by editing them is reverted, the execution parks in AwaitHuman (AWAITING_RESPONSE), and
the operator's approve (loopwright.cloud.resume, SendTaskSuccess) either accepts the change (the
held iteration is evaluated: CONDITIONS_MET) or leaves it reverted (the agent fixes the code)."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud.resume import StepFunctionsResumer
from loopwright.cloud.start import execution_name
from loopwright.controls import ControlService
from loopwright.engine.stepfunctions import LocalStepFunctions
from loopwright.engine.stepfunctions_loops import create_loop
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import (
    ControlRequest,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    StepInput,
)
from loopwright.models.enums import ControlAction
from tests.integration.helpers import git, make_repo

EV = IterationEventType

#: The agent: its first iteration cheats (it rewrites the test so it always passes), later ones
#: fix the code. It counts its runs in the file named by its first argument.
AGENT = textwrap.dedent(
    """
    import pathlib, sys
    count = pathlib.Path(sys.argv[1])
    n = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(n))
    if n == 1:
        pathlib.Path("test_calc.py").write_text("def test_add():\\n    assert True\\n")
    else:
        pathlib.Path("calc.py").write_text("def add(a, b):\\n    return a + b\\n")
    """
)


@pytest.fixture(scope="module", params=["steps", "compact"])
def template(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One synth per variant (cached under build/ across sessions)."""
    synthesized: dict[str, Any] = synthesize_template(state_machine=request.param)
    return synthesized


def _loop(tmp_path: Path) -> tuple[LoopConfig, Path]:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    config = LoopConfig.model_validate(
        {
            "goal": "make the tests pass",
            "max_iterations": 4,
            "python": sys.executable,
            "exit_conditions": [{"type": "ALL_TESTS_PASS"}],
            "agent": {"kind": "command", "command": [sys.executable, str(agent), str(tmp_path / "count")]},
        }
    )
    repo = make_repo(
        tmp_path / "ws",
        {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        },
    )
    return config, repo


def _parked(store: SqliteStore, loop_id: str, timeout_seconds: float = 60.0) -> LoopState:
    """The loop once its execution waits in AwaitHuman (its task token stored)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        state = store.get_state(loop_id)
        if state.phase is LoopPhase.AWAITING_RESPONSE and state.task_token:
            return state
        assert state.outcome is None, (state.outcome, state.outcome_reason)
        if time.monotonic() > deadline:
            raise TimeoutError(f"loop {loop_id} never waited for a human (phase {state.phase.value})")
        time.sleep(0.02)


def _approve(local: LocalStepFunctions, store: SqliteStore, loop_id: str, *, accept: bool) -> None:
    """An operator's approve through the cloud's control service and resumer (SendTaskSuccess)."""
    resumer = StepFunctionsResumer(store, local.client, local.state_machine_arn)
    ControlService(store, CedarPolicyEngine(), resumer).submit(
        ControlRequest(
            loop_id=loop_id,
            action=ControlAction.APPROVE,
            principal='User::"alice"',
            groups=['Group::"default-operators"'],
            response="fix calc.py" if not accept else None,
            accept_pinned_change=accept,
        )
    )


def _held(
    tmp_path: Path, template: dict[str, Any], loop_id: str, *, accept: bool
) -> tuple[Path, dict[str, Any], list[str]]:
    """Run the loop until it waits on its held iteration, check the hold, approve; the repository,
    the PINNED_CHANGE_REVERTED event's data and the states the execution entered."""
    config, repo = _loop(tmp_path)
    state_dir = repo / ".loopwright"
    with LocalStepFunctions(template, state_dir) as local:
        store = SqliteStore(state_dir / "loopwright.db")
        create_loop(config, repo, loop_id)
        name = execution_name(loop_id, 0)
        local.start(name, StepInput(loop_id=loop_id, baseline=True))
        # When iteration 1 rewrites the pinned test
        state = _parked(store, loop_id)
        # Then it is reverted and kept on the set-aside ref, not evaluated, and the loop waits
        (reverted,) = store.list_events(loop_id, types=[EV.PINNED_CHANGE_REVERTED])
        assert reverted.data["paths"] == ["test_calc.py"]
        assert reverted.data["policy_ids"] == ["pinned-checks"]
        assert reverted.data["ref"] == f"refs/loopwright/{loop_id}/set-aside/pinned-iteration-1"
        evaluated = store.list_events(loop_id, types=[EV.EXIT_CONDITIONS_EVALUATED])
        assert [e.iteration for e in evaluated] == [0]  # the baseline only
        assert state.pinned_hold is not None and state.iteration == 1
        assert state.head_commit == reverted.data["reverted_to"]
        assert git(repo, "rev-parse", f"loopwright/{loop_id}").strip() == reverted.data["reverted_to"]
        assert git(repo, "rev-parse", reverted.data["ref"]).strip() == reverted.data["commit"]
        assert "--accept-pinned-change" in (state.human_request or "")
        # When the operator answers
        _approve(local, store, loop_id, accept=accept)
        summary = local.wait(name, 60)
        assert summary.status == "SUCCEEDED", summary.output
        history = local.history(local.execution_arn(name))
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    return repo, reverted.data, entered


@pytest.mark.slow
def test_an_accepted_pinned_change_is_evaluated_and_the_loop_completes(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    repo, reverted, entered = _held(tmp_path, template, "pin-a", accept=True)
    # Then the branch moved to the kept commit and that iteration met the condition
    store = SqliteStore(repo / ".loopwright" / "loopwright.db")
    state = store.get_state("pin-a")
    assert (state.outcome, state.iteration, state.pinned_hold) == (LoopOutcome.CONDITIONS_MET, 1, None)
    (accepted,) = store.list_events("pin-a", types=[EV.PINNED_CHANGE_ACCEPTED])
    assert accepted.data["commit"] == reverted["commit"]
    assert git(repo, "rev-parse", "loopwright/pin-a").strip() == reverted["commit"]
    evaluated = store.list_events("pin-a", types=[EV.EXIT_CONDITIONS_EVALUATED])
    assert [e.iteration for e in evaluated] == [0, 1]
    assert (tmp_path / "count").read_text() == "1"  # the agent was not asked again
    types = [e.type for e in store.list_events("pin-a")]
    assert types.index(EV.PINNED_CHANGE_ACCEPTED) < types.index(EV.LOOP_COMPLETED)
    # And the steps variant went from AwaitHuman through Allowed? straight to Evaluate
    after = entered[entered.index("AwaitHuman") + 1 :]
    if "Allowed?" in entered:
        assert after[:3] == ["Authorize", "Allowed?", "Evaluate"], after
        assert "Iterate" not in after
    else:
        assert after[0] == "RunIteration", after


@pytest.mark.slow
def test_a_refused_pinned_change_stays_reverted_and_the_agent_fixes_the_code(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    repo, _, _ = _held(tmp_path, template, "pin-r", accept=False)
    # Then the change stayed reverted, the reverted tree was evaluated, and iteration 2 fixed calc.py
    store = SqliteStore(repo / ".loopwright" / "loopwright.db")
    state = store.get_state("pin-r")
    assert (state.outcome, state.iteration, state.pinned_hold) == (LoopOutcome.CONDITIONS_MET, 2, None)
    (rejected,) = store.list_events("pin-r", types=[EV.PINNED_CHANGE_REJECTED])
    assert "not accepted" in rejected.message
    evaluated = store.list_events("pin-r", types=[EV.EXIT_CONDITIONS_EVALUATED])
    assert [e.iteration for e in evaluated] == [0, 1, 2]
    assert "assert add(2, 3) == 5" in git(repo, "show", "loopwright/pin-r:test_calc.py")
    assert "a + b" in git(repo, "show", "loopwright/pin-r:calc.py")
