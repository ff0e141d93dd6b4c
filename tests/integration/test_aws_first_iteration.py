"""The first iteration of a loop running on AWS, ended or held: the synthesized state machine on
moto with every AWS adapter and background commands (tests/integration/aws_loops.py; the Code
Interpreter's startCommandExecution/getTask/stopTask played by tests/unit/aws_session_fake.py).

- ``stop --now`` (issue 10, point 8): a STOP with ``now`` queued while the agent works is seen at
  the next poll of the Iterate step: the agent's task is stopped (its process ends), its partial
  work is set aside, and the loop ends STOPPED without waiting for the agent.
- A pinned file changed by the FIRST iteration (issue 15.1) is reverted and held for a human:
  the loop's head before that iteration is the branch's start (it was None on AWS, which let the
  first iteration's changes through unguarded).

Slow (a synth when the sources changed, then moto's Wait states)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loopwright.cloud import runtime
from loopwright.controls import ControlService
from loopwright.engine.stepfunctions import load_handler
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import (
    ControlAction,
    ControlRequest,
    HardLimit,
    IterationEventType,
    LoopOutcome,
    LoopPhase,
)
from tests.integration.aws_loops import QUICK_POLLS, aws_loops
from tests.integration.test_aws_adapters_loop import loop_config
from tests.unit.aws_session_fake import git

pytestmark = pytest.mark.slow
EV = IterationEventType
#: The agent writes a file, then works for 120 s (it would, without the stop).
SLOW_AGENT = "import pathlib, time; pathlib.Path('partial.txt').write_text('half'); time.sleep(120)"
#: The agent's first iteration rewrites the protected README.
PINNED_AGENT = "import pathlib; pathlib.Path('README.md').write_text('rewritten')"


@pytest.mark.parametrize("variant", ["steps", "compact"])
def test_stop_now_ends_the_running_agent_at_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    # Given an Iterate step after whose first pending answer an operator asks `stop --now`
    step = "iterate" if variant == "steps" else "run_iteration"
    real = load_handler(step)
    asked: list[float] = []

    def iterate(event: Any, context: Any) -> Any:
        result = real(event, context)
        if result.get("pending") and not asked:
            ports = runtime.ports(runtime.RuntimeSettings.from_environ())
            assert ports.policy is not None
            answer = ControlService(ports.store, ports.policy).submit(
                ControlRequest(
                    loop_id="slow",
                    action=ControlAction.STOP,
                    now=True,
                    principal='User::"alice"',
                    groups=['Group::"default-operators"'],
                )
            )
            assert answer.status == "queued"
            asked.append(time.monotonic())
        return result

    template = synthesize_template(state_machine=variant)
    with aws_loops(tmp_path, monkeypatch, template, environment=QUICK_POLLS, handlers={step: iterate}) as aws:
        config = loop_config(aws.remote)
        config["agent"]["command"] = [sys.executable, "-c", SLOW_AGENT]
        config["agent"]["timeout_seconds"] = 600
        # When the loop starts and its agent is stopped mid-run
        aws.start("slow", config)
        done = aws.wait("slow", timeout_seconds=90)
        ended = time.monotonic()

        # Then the execution ended long before the agent's 120 s, the loop STOPPED by the operator
        assert done.status == "SUCCEEDED", done.output
        assert asked and ended - asked[0] < 60
        state = aws.ports.store.get_state("slow")
        assert state.outcome is LoopOutcome.STOPPED, state.outcome_reason
        (limit,) = aws.ports.store.list_events("slow", types=[EV.AGENT_ENDED_AT_LIMIT])
        assert limit.data["limit"] == HardLimit.STOP_NOW.value
        # and the agent's partial work was set aside on a pushed ref, the branch left where it was
        assert git("show", f"{limit.data['ref']}:partial.txt", cwd=aws.remote).strip() == "half"
        assert state.head_commit == git("rev-parse", "loopwright/slow", cwd=aws.remote).strip()
        assert "partial.txt" not in git("ls-tree", "--name-only", "loopwright/slow", cwd=aws.remote)
        # and the agent's task was stopped in the session (stopTask), not left to run
        stops = [c for c in aws.sessions.calls() if c["name"] == "stopTask"]
        assert stops, [c["name"] for c in aws.sessions.calls()]


def test_a_pinned_file_changed_by_the_first_iteration_is_reverted_and_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with aws_loops(tmp_path, monkeypatch, synthesize_template(state_machine="steps")) as aws:
        config = loop_config(aws.remote)
        config["agent"]["command"] = [sys.executable, "-c", PINNED_AGENT]
        config["protected_paths"] = ["README.md"]
        aws.start("pins", config)
        deadline = time.monotonic() + 90
        while aws.ports.store.get_state("pins").phase is not LoopPhase.AWAITING_RESPONSE:
            assert time.monotonic() < deadline, aws.ports.store.get_state("pins").phase
            time.sleep(0.5)
        state = aws.ports.store.get_state("pins")
        assert state.pinned_hold is not None and state.pinned_hold.iteration == 1
        (reverted,) = aws.ports.store.list_events("pins", types=[EV.PINNED_CHANGE_REVERTED])
        assert reverted.data["paths"] == ["README.md"]
        # the pushed branch is back at its start; the change is kept on the pushed ref
        assert git("show", "loopwright/pins:README.md", cwd=aws.remote) == "hi\n"
        assert git("show", f"{reverted.data['ref']}:README.md", cwd=aws.remote) == "rewritten"
        assert state.head_commit == reverted.data["reverted_to"] == state.base_commit
