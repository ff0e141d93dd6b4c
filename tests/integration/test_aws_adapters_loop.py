"""Loops through the synthesized state machine on moto with EVERY AWS adapter (issue 12, point 11):
the loop store in moto's DynamoDB, checkpoints in moto's AgentCore Memory, the loop's clone and
its agent and checks in a Code Interpreter session played by a folder, Cedar decided by a fake
Verified Permissions policy store holding the template's policies (tests/aws_fakes.py). The
repository is a local bare git repository cloned through a ``file://`` URL.

Slow (a synth when the sources changed, then a few seconds of moto and Retry waits)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.aws.dynamodb_store import DynamoDbStore
from loopwright.adapters.aws.memory_checkpoints import MemoryCheckpointStore
from loopwright.cloud import runtime
from loopwright.cloud.resume import StepFunctionsResumer
from loopwright.cloud.start import execution_name, start_loop
from loopwright.controls import ControlService
from loopwright.engine.stepfunctions import LocalStepFunctions, load_handler
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import (
    ControlAction,
    ControlRequest,
    IterationEventType,
    LoopOutcome,
    StartLoopRequest,
)
from tests.aws_fakes import PolicyStoreFake, SessionService, play_code_interpreter, play_verified_permissions
from tests.integration.aws_moto import fake_credentials
from tests.unit.aws_session_fake import git, make_remote

EV = IterationEventType
#: The agent counts its iterations in n.txt; the check passes once it reads 3.
COUNT = (
    "import pathlib; p = pathlib.Path('n.txt'); "
    "p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))"
)
CHECK = (
    "import pathlib, sys; p = pathlib.Path('n.txt'); "
    "sys.exit(0 if p.exists() and int(p.read_text()) >= 3 else 1)"
)


def loop_config(remote: Path) -> dict[str, Any]:
    return {
        "goal": "count to 3",
        "agent": {"kind": "command", "command": [sys.executable, "-c", COUNT], "timeout_seconds": 60},
        "exit_conditions": [
            {
                "type": "CUSTOM",
                "name": "three",
                "command": [sys.executable, "-c", CHECK],
                "parser": "exit_code",
            }
        ],
        "repository": {"url": f"file://{remote}", "push": True},
        "max_iterations": 10,
    }


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synthesize_template(state_machine="steps")


def test_loops_run_and_resume_from_a_memory_checkpoint_with_every_aws_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: dict[str, Any]
) -> None:
    # Given the deployed services played locally: Code Interpreter sessions as folders, the policy
    # store as the template's policies and schema under cedarpy
    fake_credentials(monkeypatch)
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    sessions = SessionService(tmp_path / "sessions")
    play_code_interpreter(monkeypatch, sessions)
    policy_store = PolicyStoreFake.from_template(template)
    play_verified_permissions(monkeypatch, policy_store)
    # and an iterate Lambda after which loop-a's session times out once (its files gone), and
    # which, for loop-b, dies after iteration 2 saved its state and commit (before its
    # checkpoint), on every attempt
    expiring, dying = {"loop-a"}, {"loop-b"}
    real_iterate = load_handler("iterate")

    def iterate(event: Any, context: Any) -> Any:
        result = real_iterate(event, context)
        loop_id = event.get("loop_id")
        state = runtime.ports(runtime.RuntimeSettings.from_environ()).store.get_state(loop_id)
        if loop_id in expiring and state.sandbox_session_id is not None:
            expiring.discard(loop_id)
            sessions.expire(state.sandbox_session_id)
        if loop_id in dying and state.iteration >= 2:
            raise RuntimeError("the Lambda died after its state write")
        return result

    environment = {"CODE_INTERPRETER_ID": "Loopwright_conditions-fake", **policy_store.environment()}
    with LocalStepFunctions(
        template, tmp_path / "state", handlers={"iterate": iterate}, adapters="aws", environment=environment
    ) as local:
        ports = runtime.ports(runtime.RuntimeSettings.from_environ())
        assert isinstance(ports.store, DynamoDbStore) and isinstance(ports.checkpoints, MemoryCheckpointStore)

        def start_execution(name: str, payload: str) -> str:
            arn: str = local.client.start_execution(
                stateMachineArn=local.state_machine_arn, name=name, input=payload
            )["executionArn"]
            return arn

        # When loop-a is started as POST /loops does and its execution runs (one loop at a time: the
        # handlers of concurrent executions would share this process, which a Lambda never does)
        start_loop(StartLoopRequest(loop_id="loop-a", config=loop_config(remote)), ports, start_execution)
        first = local.wait(execution_name("loop-a", 0), timeout_seconds=120)
        # Then it meets its condition in 3 iterations, its work pushed from the session's clone
        assert first.status == "SUCCEEDED", first.output
        state_a = ports.store.get_state("loop-a")
        assert (state_a.outcome, state_a.iteration) == (LoopOutcome.CONDITIONS_MET, 3)
        assert git("show", "loopwright/loop-a:n.txt", cwd=remote).strip() == "3"
        assert ports.checkpoints.list_checkpoints("loop-a")[0].iteration == 3
        # after its first session ended and a new one got the clone back from the pushed branch
        (replaced,) = ports.store.list_events("loop-a", types=[EV.SESSION_REPLACED])
        ended, started = replaced.data["ended_session"], replaced.data["session"]
        assert sessions.status[ended] == "TERMINATED" and started != ended
        # and every AWS adapter took part: Verified Permissions decided, sessions ran commands
        assert any(
            call.get("action", {}).get("actionId") == "ContinueIteration" for call in policy_store.calls
        )
        assert sessions.commands()

        # When loop-b's iteration 2 dies after its state write, on every attempt
        start_loop(StartLoopRequest(loop_id="loop-b", config=loop_config(remote)), ports, start_execution)
        interrupted = local.wait(execution_name("loop-b", 0), timeout_seconds=120)
        state_b = ports.store.get_state("loop-b")
        assert state_b.outcome is LoopOutcome.FAILED, (interrupted.status, state_b.outcome_reason)
        assert state_b.iteration == 2
        assert ports.checkpoints.list_checkpoints("loop-b")[0].iteration == 1
        ahead = state_b.head_commit
        dying.clear()
        # and an operator resumes it through the cloud resume (Cedar by the policy store)
        resumer = StepFunctionsResumer(
            ports.store, local.client, local.state_machine_arn, checkpoints=ports.checkpoints
        )
        ControlService(ports.store, ports.policy, resumer).submit(
            ControlRequest(
                loop_id="loop-b",
                action=ControlAction.RESUME,
                principal='User::"alice"',
                groups=['Group::"default-operators"'],
            )
        )
        resumed = local.wait(execution_name("loop-b", 1), timeout_seconds=120)
        # Then it continued from the Memory checkpoint of iteration 1 and met its condition
        assert resumed.status == "SUCCEEDED", resumed.output
        state_b = ports.store.get_state("loop-b")
        assert (state_b.outcome, state_b.iteration) == (LoopOutcome.CONDITIONS_MET, 3)
        assert git("show", "loopwright/loop-b:n.txt", cwd=remote).strip() == "3"
        events = [e.type for e in ports.store.list_events("loop-b")]
        assert {EV.LOOP_RESUMED, EV.CHECKPOINT_RECOVERED, EV.COMMITS_SET_ASIDE} <= set(events)
        # and iteration 2's first commit, ahead of its checkpoint, was set aside on the ref the event
        # names, pushed (the redone iteration 2 may be the same commit when it ran in the same second)
        (aside,) = ports.store.list_events("loop-b", types=[EV.COMMITS_SET_ASIDE])
        assert aside.data["commit"] == ahead
        assert git("rev-parse", str(aside.data["ref"]), cwd=remote).strip() == ahead


#: The agent counts as above, but takes 1 s; the check takes 0.6 s: both outlast the step's inline
#: wait (0.1 s here), so Iterate and Evaluate return pending and the state machine polls them.
SLOW_COUNT = "import time; time.sleep(1.0); " + COUNT
SLOW_CHECK = "import time; time.sleep(0.6); " + CHECK


@pytest.mark.parametrize("variant", ["steps", "compact"])
def test_no_lambda_waits_for_the_agent_or_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    # Given the services played locally, and steps that wait 0.1 s for a command, then 1 s between polls
    fake_credentials(monkeypatch)
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    sessions = SessionService(tmp_path / "sessions")
    play_code_interpreter(monkeypatch, sessions)
    template = synthesize_template(state_machine=variant)
    policy_store = PolicyStoreFake.from_template(template)
    play_verified_permissions(monkeypatch, policy_store)
    environment = {
        "CODE_INTERPRETER_ID": "Loopwright_conditions-fake",
        "LOOPWRIGHT_INLINE_SECONDS": "0.1",
        "LOOPWRIGHT_POLL_MIN_SECONDS": "1",
        "LOOPWRIGHT_POLL_MAX_SECONDS": "1",
        **policy_store.environment(),
    }
    config = loop_config(remote)
    config["agent"]["command"] = [sys.executable, "-c", SLOW_COUNT]
    config["exit_conditions"][0]["command"] = [sys.executable, "-c", SLOW_CHECK]
    with LocalStepFunctions(template, tmp_path / "state", adapters="aws", environment=environment) as local:
        ports = runtime.ports(runtime.RuntimeSettings.from_environ())

        def start_execution(name: str, payload: str) -> str:
            arn: str = local.client.start_execution(
                stateMachineArn=local.state_machine_arn, name=name, input=payload
            )["executionArn"]
            return arn

        # When a loop whose agent and check are slower than that runs to its end
        start_loop(StartLoopRequest(loop_id="slow", config=config), ports, start_execution)
        done = local.wait(execution_name("slow", 0), timeout_seconds=180)
        assert done.status == "SUCCEEDED", done.output
        state = ports.store.get_state("slow")
        # Then it met its condition as a blocking loop would, its work pushed
        assert (state.outcome, state.iteration) == (LoopOutcome.CONDITIONS_MET, 3)
        assert git("show", "loopwright/slow:n.txt", cwd=remote).strip() == "3"
        assert state.agent_seconds is not None and state.agent_seconds >= 1.0  # counted from the start
        # and the state machine waited between polls instead of a Lambda waiting
        arn = local.client.describe_execution(
            executionArn=f"{local.state_machine_arn.replace(':stateMachine:', ':execution:')}:slow-g0"
        )["executionArn"]
        entered = [
            e["stateEnteredEventDetails"]["name"]
            for e in local.history(arn)
            if "stateEnteredEventDetails" in e
        ]
        waits = {"steps": ("IterateWait", "EvaluateWait", "BaselineWait"), "compact": ("RunIterationWait",)}
        for wait in waits[variant]:
            assert wait in entered, (wait, sorted(set(entered)))
        # and every agent run and check was started once: the polls never started them again
        started = [line for line in sessions.commands() if "time.sleep(1.0)" in line]
        assert len(started) == 3
        checks = [line for line in sessions.commands() if "time.sleep(0.6)" in line]
        assert len(checks) == 4  # the baseline, then after each of the 3 iterations
        events = [e.type for e in ports.store.list_events("slow")]
        assert events.count(EV.ITERATION_STARTED) == 3 and events.count(EV.AGENT_COMPLETED) == 3
