"""The SYNTHESIZED state machine executed by moto's ASL interpreter, with the real handlers and
the local adapters (loopwright.engine.stepfunctions): Retry, Catch and continue-as-new included.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine import LoopFramework
from loopwright.engine.stepfunctions import Handler, load_handler
from loopwright.engine.stepfunctions_loops import execute_loop
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import IterationEventType, LoopConfig, LoopOutcome, LoopPhase
from loopwright.steps.checkpoint import recover
from tests.integration.helpers import cli, make_repo


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """One synth per module (about 8 s; cached under build/ across sessions)."""
    return synthesize_template()


def _workspace(root: Path) -> Path:
    return make_repo(root, {"README.md": "x\n"})


def _config(tmp_path: Path, *, max_iterations: int = 5, done_after: int | None = 2) -> LoopConfig:
    """A command agent writing ``<iteration>.txt``; the CUSTOM condition holds once
    ``<done_after>.txt`` exists (never when ``done_after`` is None)."""
    agent = tmp_path / "agent.py"
    agent.write_text(
        textwrap.dedent(
            """
            import os, pathlib
            n = int(os.environ["LOOPWRIGHT_ITERATION"])
            pathlib.Path(f"{n}.txt").write_text("done")
            """
        )
    )
    check = (
        f"import pathlib,sys; sys.exit(0 if pathlib.Path('{done_after}.txt').exists() else 1)"
        if done_after is not None
        else "import sys; sys.exit(1)"
    )
    return LoopConfig.model_validate(
        {
            "goal": "write files",
            "max_iterations": max_iterations,
            "exit_conditions": [{"type": "CUSTOM", "name": "done", "command": [sys.executable, "-c", check]}],
            "agent": {"kind": "command", "command": [sys.executable, str(agent)]},
        }
    )


def _event_types(workspace: Path, loop_id: str) -> list[IterationEventType]:
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    return [e.type for e in store.list_events(loop_id)]


@pytest.mark.slow
def test_the_state_machine_meets_the_condition_with_the_engines_events(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    # Given the same scripted loop for the state machine and for the in-process engine
    config = _config(tmp_path)
    sfn_ws, engine_ws = _workspace(tmp_path / "sfn"), _workspace(tmp_path / "engine")
    # When the synthesized state machine runs it
    run = execute_loop(config, sfn_ws, "sfn-loop", template=template, timeout_seconds=60)
    # Then the loop met its condition in 2 iterations, in one execution that succeeded
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.CONDITIONS_MET, 2)
    assert [(e.name, e.status) for e in run.executions] == [("sfn-loop-g0", "SUCCEEDED")]
    # And recorded the same event types as the in-process engine, the baseline (iteration 0)
    # included
    engine = LoopFramework(config, workspace=engine_ws, loop_id="engine-loop")
    assert engine.run().outcome is LoopOutcome.CONDITIONS_MET
    assert _event_types(sfn_ws, "sfn-loop") == _event_types(engine_ws, "engine-loop")
    store = SqliteStore(sfn_ws / ".loopwright" / "loopwright.db")
    evaluated = store.list_events("sfn-loop", types=[IterationEventType.EXIT_CONDITIONS_EVALUATED])
    assert [(e.iteration, e.data.get("baseline")) for e in evaluated] == [(0, True), (1, None), (2, None)]


@pytest.mark.slow
def test_the_state_machine_records_each_iteration_for_show(tmp_path: Path, template: dict[str, Any]) -> None:
    # Given a loop whose command agent prints on stdout and stderr
    agent = tmp_path / "talking_agent.py"
    agent.write_text(
        textwrap.dedent(
            """
            import os, pathlib, sys
            n = int(os.environ["LOOPWRIGHT_ITERATION"])
            print(f"agent line of iteration {n}", flush=True)
            print(f"agent warning {n}", file=sys.stderr, flush=True)
            pathlib.Path(f"{n}.txt").write_text("done\\n")
            """
        )
    )
    config = LoopConfig.model_validate(
        {
            **_config(tmp_path).model_dump(mode="json"),
            "agent": {"kind": "command", "command": [sys.executable, str(agent)]},
        }
    )
    workspace = _workspace(tmp_path / "ws")
    # When the synthesized state machine runs it (the Iterate and Evaluate Lambdas write records)
    run = execute_loop(config, workspace, "talks", template=template, timeout_seconds=60)
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.CONDITIONS_MET, 2)
    # Then show prints iteration 1's record: prompt, the agent's output, diff stat, the condition
    shown = cli("show", "talks", "-w", str(workspace), "--iteration", "1")
    assert shown.returncode == 0, shown.stderr
    for expected in (
        "# loopwright: iteration 1 of 5",
        "agent line of iteration 1",
        "agent warning 1",
        "1 file(s) changed, +1 -0",
        "done NOT_MET",
    ):
        assert expected in shown.stdout, shown.stdout
    # And the store holds both iterations' records, each with its evaluation
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    records = [store.get_iteration_record("talks", n) for n in (1, 2)]
    assert [[(c.name, c.status.value) for c in r.conditions] for r in records if r] == [
        [("done", "NOT_MET")],
        [("done", "MET")],
    ]
    assert all(r is not None and r.exit_code == 0 and not r.agent_running for r in records)


def _with_check(config: LoopConfig, command: list[str]) -> LoopConfig:
    """``config`` whose one exit condition runs ``command`` (exit code 0: met)."""
    condition = {"type": "CUSTOM", "name": "done", "command": command}
    return LoopConfig.model_validate({**config.model_dump(mode="json"), "exit_conditions": [condition]})


#: A condition already met, and one whose tool is not installed (ERROR: missing module).
GREEN = [sys.executable, "-c", "import sys; sys.exit(0)"]
MISSING_TOOL = [sys.executable, "-m", "loopwright_no_such_tool"]


@pytest.mark.slow
def test_a_green_repository_completes_at_the_baseline_with_no_iteration(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    # Given a repository that already meets its condition
    config = _with_check(_config(tmp_path), GREEN)
    sfn_ws, engine_ws = _workspace(tmp_path / "sfn"), _workspace(tmp_path / "engine")
    # When the state machine runs the loop
    run = execute_loop(config, sfn_ws, "green", template=template, timeout_seconds=60)
    # Then it completes at the baseline: 0 iterations, no agent call, one execution
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.CONDITIONS_MET, 0)
    assert [(e.name, e.status) for e in run.executions] == [("green-g0", "SUCCEEDED")]
    assert _event_types(sfn_ws, "green") == [
        IterationEventType.LOOP_STARTED,
        IterationEventType.CHECKS_PINNED,
        IterationEventType.EXIT_CONDITIONS_EVALUATED,
        IterationEventType.VERIFICATION_PASSED,
        IterationEventType.LOOP_COMPLETED,
        IterationEventType.EVIDENCE_RECORDED,  # signed, kept in the state folder as the engine does
    ]
    # And the in-process engine records the same events
    assert LoopFramework(config, workspace=engine_ws, loop_id="green").run().iterations == 0
    assert _event_types(engine_ws, "green") == _event_types(sfn_ws, "green")


@pytest.mark.slow
def test_a_condition_error_at_the_baseline_pauses_the_loop_for_a_human(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    # Given a condition whose tool is not installed in the project's environment
    config = _with_check(_config(tmp_path), MISSING_TOOL)
    workspace = _workspace(tmp_path / "ws")
    # When the state machine runs the loop
    run = execute_loop(config, workspace, "broken", template=template, timeout_seconds=60)
    # Then it pauses before the agent runs (ResumeAt? -> Paused), naming the condition
    assert (run.result.outcome, run.result.phase, run.result.iterations) == (None, LoopPhase.PAUSED, 0)
    assert [(e.name, e.status) for e in run.executions] == [("broken-g0", "SUCCEEDED")]
    state = SqliteStore(workspace / ".loopwright" / "loopwright.db").get_state("broken")
    assert "exit condition 'done' is ERROR" in (state.outcome_reason or "")
    assert _event_types(workspace, "broken")[-3:] == [
        IterationEventType.EXIT_CONDITIONS_EVALUATED,
        IterationEventType.VERIFICATION_FAILED,
        IterationEventType.LOOP_PAUSED,
    ]


@pytest.mark.slow
def test_cedar_stops_the_loop_at_its_iteration_limit(tmp_path: Path, template: dict[str, Any]) -> None:
    config = _config(tmp_path, max_iterations=2, done_after=None)
    run = execute_loop(config, _workspace(tmp_path / "ws"), "limited", template=template, timeout_seconds=60)
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.ITERATION_LIMIT, 2)
    assert run.executions[-1].status == "SUCCEEDED"


def _failing(name: str, times: int | None) -> tuple[Handler, list[int]]:
    """The real ``name`` handler, raising on its first ``times`` calls (every call when None)."""
    real = load_handler(name)
    calls: list[int] = []

    def handler(event: Any, context: Any) -> Any:
        calls.append(1)
        if times is None or len(calls) <= times:
            raise RuntimeError(f"{name} failed (call {len(calls)})")
        return real(event, context)

    return handler, calls


@pytest.mark.slow
def test_a_step_failing_twice_is_retried_and_applied_once(tmp_path: Path, template: dict[str, Any]) -> None:
    # Given a checkpoint handler that fails twice, then works (Retry: 2 s, backoff 2, full jitter)
    handler, calls = _failing("checkpoint", 2)
    workspace = _workspace(tmp_path / "ws")
    # When the loop runs
    started = time.monotonic()
    run = execute_loop(
        _config(tmp_path), workspace, "retried", template=template, handlers={"checkpoint": handler}
    )
    # Then the ASL retried it (two failed calls, one per iteration after them) and the loop met
    # its condition with every step applied once
    assert run.result.outcome is LoopOutcome.CONDITIONS_MET and run.result.iterations == 2
    assert len(calls) == 2 + 2
    types = _event_types(workspace, "retried")
    assert types.count(IterationEventType.CHECKPOINT_SAVED) == 2
    assert types.count(IterationEventType.ITERATION_COMPLETED) == 2
    assert types.count(IterationEventType.ITERATION_STARTED) == 2
    assert time.monotonic() - started < 20


@pytest.mark.slow
def test_a_step_that_always_fails_is_recorded_and_the_checkpoint_survives(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    # Given an iterate handler that works once, then always fails (not retried on a task failure)
    real = load_handler("iterate")
    calls: list[int] = []

    def iterate(event: Any, context: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the agent host is gone")
        return real(event, context)

    workspace = _workspace(tmp_path / "ws")
    # When the loop runs
    run = execute_loop(
        _config(tmp_path, done_after=None),
        workspace,
        "broken",
        template=template,
        handlers={"iterate": iterate},
    )
    # Then Catch -> RecordFailure -> Failed: the loop is FAILED, the execution failed
    assert run.result.outcome is LoopOutcome.FAILED
    assert [e.status for e in run.executions] == ["FAILED"]
    assert len(calls) == 2
    # And the checkpoint of the first iteration can still be recovered
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    assert recover("broken", store).checkpoint.iteration == 1


@pytest.mark.slow
def test_a_long_loop_continues_as_new_executions(tmp_path: Path, template: dict[str, Any]) -> None:
    # Given a loop of 12 iterations and 5 iterations per execution
    config = _config(tmp_path, max_iterations=12, done_after=None)
    started = time.monotonic()
    run = execute_loop(
        config,
        _workspace(tmp_path / "ws"),
        "long",
        iterations_per_execution=5,
        template=template,
        timeout_seconds=60,
    )
    seconds = time.monotonic() - started
    # Then it ran all 12 iterations across generations g0, g1, g2, each handing over to the next
    assert (run.result.outcome, run.result.iterations) == (LoopOutcome.ITERATION_LIMIT, 12)
    assert [e.name for e in run.executions] == ["long-g0", "long-g1", "long-g2"]
    assert all(e.status == "SUCCEEDED" for e in run.executions)
    print(
        f"12 iterations in {seconds:.2f} s ({seconds / 12:.3f} s an iteration); history events per "
        f"execution {[e.events for e in run.executions]}, largest {run.largest_execution_events}"
    )
