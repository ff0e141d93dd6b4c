"""Continuation modes (issue 12.8) in the SYNTHESIZED state machine, executed locally by moto
with the local adapters: a loop started with ``schedule = "rate(1 hour)"`` gets its recurring
schedule (target start_loop); the schedule's input continues it once a human raised its limit; a
``loopwright.continue`` event continues it while PAUSED; a git push continues it instead of a
409; a push for a loop that met its conditions says it is final and deletes its recurring
schedule only. Every continuation is a RESUME Cedar allowed (policies/continuation.cedar)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud.continuation import (
    CONTINUE_EVENT_DETAIL_TYPE,
    CONTINUE_EVENT_SOURCE,
    loop_schedule_name,
)
from loopwright.controls import ControlService
from loopwright.engine.stepfunctions import SCHEDULE_GROUP, LambdaContext, LocalStepFunctions, load_handler
from loopwright.engine.stepfunctions_template import REGION, STACK_NAME, synthesize_template
from loopwright.models import ControlRequest, IterationEventType, LoopOutcome, LoopPhase
from loopwright.models.controls import LimitChange
from loopwright.models.enums import ControlAction
from tests.integration.helpers import make_repo

#: When the agent's model provider lifts its usage limit (reported in iteration 2): far ahead, so
#: only the continue event resumes the loop.
RESETS = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
LOOP = "cont"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synthesize_template()


def _agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A python agent writing ``<iteration>.txt`` that hits its usage limit in iteration 2."""
    (tmp_path / "continued_agent.py").write_text(
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


def _config() -> dict[str, Any]:
    check = "import pathlib,sys; sys.exit(0 if pathlib.Path('4.txt').exists() else 1)"
    return {
        "goal": "write four files",
        "max_iterations": 1,
        "git_isolation": False,
        "schedule": "rate(1 hour)",
        "exit_conditions": [{"type": "CUSTOM", "name": "four", "command": ["python", "-c", check]}],
        "agent": {"kind": "python", "function": "continued_agent:work"},
    }


def _bridge(source: str, detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "1",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-12-07T00:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


def _settle(local: LocalStepFunctions) -> list[str]:
    """Wait for every execution of the state machine to end; their names, oldest first."""
    listed = local.client.list_executions(stateMachineArn=local.state_machine_arn)["executions"]
    names = sorted((e["name"] for e in listed), key=lambda n: int(n.rsplit("-g", 1)[1]))
    for name in names:
        assert local.wait(name, 120).status == "SUCCEEDED", name
    again = local.client.list_executions(stateMachineArn=local.state_machine_arn)["executions"]
    return names if len(again) == len(names) else _settle(local)


def _raise_limit(store: SqliteStore, max_iterations: int) -> None:
    ControlService(store, CedarPolicyEngine()).submit(
        ControlRequest(
            loop_id=LOOP,
            action=ControlAction.RAISE_LIMIT,
            principal='User::"alice"',
            groups=['Group::"default-operators"'],
            limits=LimitChange(max_iterations=max_iterations),
        )
    )


@pytest.mark.slow
def test_a_scheduled_loop_is_continued_by_its_schedule_an_event_and_a_push(
    tmp_path: Path, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _agent(tmp_path, monkeypatch)
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    # A loop started by start_loop with the local adapters has no worktree of its own (AWS clones
    # the repository in its session): with git_isolation off, the steps work in the current folder.
    monkeypatch.chdir(workspace)
    with LocalStepFunctions(template, workspace / ".loopwright") as local:
        store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
        start_loop = load_handler("start_loop")
        context = LambdaContext("start_loop", f"arn:aws:lambda:{REGION}:123456789012:function:x", "r")
        push = _bridge(
            "loopwright.git", "push", {"loop_id": LOOP, "config": _config(), "repository": str(workspace)}
        )

        # Given a loop started by a push, with schedule = "rate(1 hour)" and max_iterations 1
        started = start_loop(push, context)
        assert started["statusCode"] == 202, started
        # Then its recurring schedule exists, in the stack's group, targeting start_loop
        scheduler = boto3.client("scheduler", region_name=REGION)
        schedule = scheduler.get_schedule(GroupName=SCHEDULE_GROUP, Name=loop_schedule_name(LOOP))
        assert (schedule["ScheduleExpression"], schedule["ScheduleExpressionTimezone"]) == (
            "rate(1 hour)",
            "UTC",
        )
        function = boto3.client("lambda", region_name=REGION).get_function(
            FunctionName=f"{STACK_NAME}-start_loop"
        )
        assert schedule["Target"]["Arn"] == function["Configuration"]["FunctionArn"]
        firing = json.loads(schedule["Target"]["Input"])
        assert firing["continue_loop"]["source"] == "schedule"
        # And the loop ends at its iteration limit
        assert _settle(local) == [f"{LOOP}-g0"]
        state = store.get_state(LOOP)
        assert (state.outcome, state.iteration) == (LoopOutcome.ITERATION_LIMIT, 1)

        # When an operator raises its limit and the schedule fires (Scheduler delivers its input)
        _raise_limit(store, 3)
        fired = start_loop(firing, context)
        assert fired["statusCode"] == 202, fired
        # Then the loop continues, and pauses in iteration 2 on its agent's usage limit
        assert _settle(local) == [f"{LOOP}-g0", f"{LOOP}-g1"]
        state = store.get_state(LOOP)
        assert (state.phase, state.outcome, state.iteration) == (LoopPhase.PAUSED, None, 2)

        # When a loopwright.continue event names the PAUSED loop
        event = _bridge(
            CONTINUE_EVENT_SOURCE, CONTINUE_EVENT_DETAIL_TYPE, {"loop_id": LOOP, "reason": "go on"}
        )
        continued = start_loop(event, context)
        assert continued["statusCode"] == 202, continued
        # Then it goes on to its (raised) limit in iteration 3
        assert _settle(local)[-1] == f"{LOOP}-g2"
        state = store.get_state(LOOP)
        assert (state.outcome, state.iteration) == (LoopOutcome.ITERATION_LIMIT, 3)

        # When its limit is raised again and a push names it: continued, not 409
        _raise_limit(store, 4)
        pushed = start_loop(push, context)
        assert pushed["statusCode"] == 202, pushed
        assert json.loads(pushed["body"])["source"] == "git-push"
        # Then it meets its condition in iteration 4
        assert _settle(local)[-1] == f"{LOOP}-g3"
        state = store.get_state(LOOP)
        assert (state.outcome, state.iteration) == (LoopOutcome.CONDITIONS_MET, 4)
        resumed = [e for e in store.list_events(LOOP) if e.type is IterationEventType.CONTROL_APPLIED]
        principals = [e.message for e in resumed if "resumed" in e.message]
        assert any('Service::"scheduler"' in m for m in principals), principals
        assert any('Service::"events"' in m for m in principals), principals

        # When a push names the loop that met its conditions
        one_time = [s["Name"] for s in scheduler.list_schedules(GroupName=SCHEDULE_GROUP)["Schedules"]]
        final = start_loop(push, context)
        # Then it says the loop is final, starts nothing, and deletes its recurring schedule only
        assert final["statusCode"] == 200, final
        body = json.loads(final["body"])
        assert body["continued"] is False and "CONDITIONS_MET" in body["reason"] and body["schedule_deleted"]
        left = [s["Name"] for s in scheduler.list_schedules(GroupName=SCHEDULE_GROUP)["Schedules"]]
        assert left == [n for n in one_time if n != loop_schedule_name(LOOP)]
        assert len(left) == 1  # the one-time resume of the usage-limit pause stays (it will find nothing)
        assert _settle(local)[-1] == f"{LOOP}-g3"
        # And the schedule, should it fire once more, is a no-op
        late = start_loop(firing, context)
        assert late["statusCode"] == 200 and json.loads(late["body"])["schedule_deleted"] is False
