"""Stuck detection and regression handling through the SYNTHESIZED state machine (both variants),
executed by moto with the real handlers and the local adapters (loopwright.engine.stepfunctions),
as the in-process engine does them (tests/integration/test_loop_intelligence.py): an agent that
changes nothing is paused by ``stuck-no-progress``; under ``on_regression = "revert"`` an
iteration that breaks a passing condition is reverted to the best commit (kept on a ref), and the
history and progress notes reach the next prompt."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud.start import execution_name
from loopwright.engine.stepfunctions import LocalStepFunctions
from loopwright.engine.stepfunctions_loops import create_loop
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import IterationEventType, LoopConfig, LoopOutcome, LoopPhase, StepInput
from tests.integration.helpers import git, make_repo

EV = IterationEventType

#: argv[2] "idle" changes nothing; "regress" creates broken.txt, then done.txt. Each run keeps its
#: prompt (prompt-<n>.md next to the counter) and appends to its progress notes.
AGENT = textwrap.dedent(
    """
    import os, pathlib, shutil, sys
    count = pathlib.Path(sys.argv[1])
    n = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(n))
    shutil.copy(os.environ["LOOPWRIGHT_PROMPT_FILE"], count.parent / f"prompt-{n}.md")
    with pathlib.Path(os.environ["LOOPWRIGHT_NOTES_FILE"]).open("a") as notes:
        notes.write(f"run {n}\\n")
    if sys.argv[2] == "regress":
        pathlib.Path("broken.txt" if n == 1 else "done.txt").write_text("x\\n")
    """
)


@pytest.fixture(scope="module", params=["steps", "compact"])
def template(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One synth per variant (cached under build/ across sessions)."""
    synthesized: dict[str, Any] = synthesize_template(state_machine=request.param)
    return synthesized


def _run(tmp_path: Path, template: dict[str, Any], loop_id: str, mode: str, **extra: object) -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    config = LoopConfig.model_validate(
        {
            "goal": "create done.txt",
            "max_iterations": 8,
            "exit_conditions": [
                {
                    "type": "CUSTOM",
                    "name": "done",
                    "command": ["test", "-f", "done.txt"],
                    "parser": "exit_code",
                },
                {
                    "type": "CUSTOM",
                    "name": "not-broken",
                    "command": ["sh", "-c", "! test -f broken.txt"],
                    "parser": "exit_code",
                },
            ],
            "agent": {
                "kind": "command",
                "command": [sys.executable, str(agent), str(tmp_path / "count"), mode],
            },
            **extra,
        }
    )
    repo = make_repo(tmp_path / "ws", {"README.md": "demo\n"})
    state_dir = repo / ".loopwright"
    with LocalStepFunctions(template, state_dir) as local:
        create_loop(config, repo, loop_id)
        name = execution_name(loop_id, 0)
        local.start(name, StepInput(loop_id=loop_id, baseline=True))
        summary = local.wait(name, 120)
        assert summary.status == "SUCCEEDED", summary.output
    return repo


@pytest.mark.slow
def test_an_idle_agent_is_paused_by_stuck_no_progress(tmp_path: Path, template: dict[str, Any]) -> None:
    repo = _run(tmp_path, template, "sf-stuck", "idle", max_stuck_iterations=2)
    store = SqliteStore(repo / ".loopwright" / "loopwright.db")
    state = store.get_state("sf-stuck")
    assert (state.phase, state.outcome, state.iteration) == (LoopPhase.PAUSED, None, 2)
    (denied,) = store.list_events("sf-stuck", types=[EV.POLICY_DENIED])
    assert denied.data["policy_ids"] == "stuck-no-progress"
    assert state.progress.stuck_reason and "stuck-no-progress" in state.progress.stuck_reason
    second = (tmp_path / "prompt-2.md").read_text()
    assert "- iteration 1: " in second and "no file change" in second
    assert "run 1" in second  # the notes, kept in the state between the Lambdas


@pytest.mark.slow
def test_a_regressing_iteration_is_reverted(tmp_path: Path, template: dict[str, Any]) -> None:
    repo = _run(tmp_path, template, "sf-reg", "regress", on_regression="revert")
    store = SqliteStore(repo / ".loopwright" / "loopwright.db")
    state = store.get_state("sf-reg")
    assert (state.outcome, state.iteration) == (LoopOutcome.CONDITIONS_MET, 2)
    (reverted,) = store.list_events("sf-reg", types=[EV.ITERATION_REVERTED])
    assert reverted.data["broke"] == ["not-broken"]
    assert reverted.data["ref"] == "refs/loopwright/sf-reg/set-aside/regression-iteration-1"
    assert git(repo, "rev-parse", reverted.data["ref"]).strip() == reverted.data["commit"]
    files = git(repo, "ls-tree", "-r", "--name-only", "loopwright/sf-reg").split()
    assert "done.txt" in files and "broken.txt" not in files
    assert "It broke: not-broken" in (tmp_path / "prompt-2.md").read_text()
