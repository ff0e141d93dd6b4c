"""A usage limit pauses the loop in the SYNTHESIZED state machine (executed locally by moto): the
execution ends in Paused with a one-time schedule at the reset, and the schedule's input, given to
start_loop, resumes the loop to its outcome in a new execution."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine.stepfunctions import (
    IDEMPOTENCY_TABLE,
    SCHEDULE_GROUP,
    LambdaContext,
    LocalStepFunctions,
    load_handler,
)
from loopwright.engine.stepfunctions_loops import create_loop
from loopwright.engine.stepfunctions_template import REGION, STACK_NAME, synthesize_template
from loopwright.models import IterationEventType, LoopConfig, LoopOutcome, LoopPhase, StepInput
from tests.integration.helpers import make_repo

#: When the agent's model provider lifts its usage limit (the agent reports it in iteration 2).
RESETS = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """One synth per module (cached under build/ across sessions)."""
    return synthesize_template()


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoopConfig:
    """A python agent writing ``<iteration>.txt`` that hits its usage limit in iteration 2; the
    condition holds once ``3.txt`` exists."""
    (tmp_path / "limited_agent.py").write_text(
        textwrap.dedent(
            f"""
            import pathlib
            from datetime import datetime

            def work(request):
                pathlib.Path(request.worktree, f"{{request.iteration}}.txt").write_text("done")
                limit = datetime.fromisoformat("{RESETS.isoformat()}") if request.iteration == 2 else None
                return {{"tokens_used": 10, "usage_limit_resets_at": limit}}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    check = "import pathlib,sys; sys.exit(0 if pathlib.Path('3.txt').exists() else 1)"
    return LoopConfig.model_validate(
        {
            "goal": "write three files",
            "max_iterations": 5,
            "exit_conditions": [{"type": "CUSTOM", "name": "three", "command": ["python", "-c", check]}],
            "agent": {"kind": "python", "function": "limited_agent:work"},
        }
    )


def _states_entered(local: LocalStepFunctions, name: str) -> list[str]:
    history = local.history(local.execution_arn(name))
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


@pytest.mark.slow
def test_a_usage_limit_pauses_the_loop_until_its_schedule_resumes_it(
    tmp_path: Path, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, monkeypatch)
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    with LocalStepFunctions(template, workspace / ".loopwright") as local:
        store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
        loop = create_loop(config, workspace, "limited")
        # When the loop runs and its agent reports a usage limit in iteration 2
        local.start("limited-g0", StepInput(loop_id=loop))
        paused = local.wait("limited-g0", 60)
        # Then the execution ends in Paused, after scheduling the resume
        assert paused.status == "SUCCEEDED"
        entered = _states_entered(local, "limited-g0")
        assert entered[-5:] == ["Decide", "Action?", "ResumeAt?", "ScheduleResume", "Paused"]
        # And the loop is PAUSED until the reset, with no outcome
        state = store.get_state(loop)
        assert (state.phase, state.resume_at, state.outcome, state.iteration) == (
            LoopPhase.PAUSED, RESETS, None, 2,
        )  # fmt: skip
        # And a one-time schedule at the reset targets start_loop with the resume payload
        scheduler = boto3.client("scheduler", region_name=REGION)
        (listed,) = scheduler.list_schedules(GroupName=SCHEDULE_GROUP)["Schedules"]
        schedule = scheduler.get_schedule(GroupName=SCHEDULE_GROUP, Name=listed["Name"])
        assert schedule["ScheduleExpression"] == "at(2031-01-02T03:04:05)"
        assert schedule["ScheduleExpressionTimezone"] == "UTC"
        assert schedule["ActionAfterCompletion"] == "DELETE"
        start_loop_fn = boto3.client("lambda", region_name=REGION).get_function(
            FunctionName=f"{STACK_NAME}-start_loop"
        )
        assert schedule["Target"]["Arn"] == start_loop_fn["Configuration"]["FunctionArn"]
        payload = json.loads(schedule["Target"]["Input"])
        assert payload["scheduled_resume"]["generation"] == 1

        # When the schedule fires: Scheduler invokes start_loop with its input
        start_loop = load_handler("start_loop")
        context = LambdaContext("start_loop", schedule["Target"]["Arn"], "resume-1")
        response = start_loop(payload, context)
        assert response["statusCode"] == 202, response
        resumed = local.wait("limited-g1", 60)
        # Then the loop continues in a new execution and meets its condition in iteration 3
        assert resumed.status == "SUCCEEDED"
        state = store.get_state(loop)
        assert (state.outcome, state.iteration, state.sessions_used) == (LoopOutcome.CONDITIONS_MET, 3, 2)
        types = [e.type for e in store.list_events(loop)]
        paused_at = types.index(IterationEventType.LOOP_PAUSED)
        assert types[paused_at + 1] is IterationEventType.LOOP_RESUMED
        assert types.count(IterationEventType.ITERATION_COMPLETED) == 3
        # And every step of both executions ran under Powertools Idempotency (one record each)
        records = boto3.client("dynamodb", region_name=REGION).scan(TableName=IDEMPOTENCY_TABLE)["Items"]
        steps = {item["id"]["S"].split("#")[0] for item in records}
        names = ("authorize", "iterate", "checkpoint", "evaluate", "verify", "decide", "schedule_resume")
        assert steps == {f"loopwright.{name}" for name in names}
        assert all(item["status"]["S"] == "COMPLETED" for item in records)
        # And a second delivery of the schedule does nothing
        again = start_loop(payload, context)
        assert again["statusCode"] == 200 and json.loads(again["body"])["resumed"] is False
