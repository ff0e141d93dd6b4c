"""Rollback then resume, and fork, of a loop run on AWS (issue 10, point 6): the synthesized state
machine on moto with every AWS adapter (DynamoDB, AgentCore Memory checkpoints, the loop's clone
in a Code Interpreter session played by a folder, Verified Permissions played by cedarpy over the
template's policies), and the control service the dashboard's control Lambda builds
(loopwright.cloud.time_travel). The repository is a local bare git repository (``file://``) the
loops push to, so the branch heads asserted are the remote's.

Slow (a synth when the sources changed, then three executions with moto's Retry waits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopwright.cloud.resume import AwsControls, StepFunctionsResumer
from loopwright.cloud.time_travel import session_time_travel
from loopwright.controls import ControlService
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import (
    Checkpoint,
    ControlAction,
    ControlRequest,
    IterationEventType,
    LoopOutcome,
    LoopPhase,
)
from tests.integration.aws_loops import aws_loops
from tests.integration.test_aws_adapters_loop import loop_config
from tests.unit.aws_session_fake import git

pytestmark = pytest.mark.slow
EV = IterationEventType
OPERATOR = {"principal": 'User::"alice"', "groups": ['Group::"default-operators"']}


def _commit_of(checkpoints: Any, loop_id: str, iteration: int) -> str:
    """The commit of the newest checkpoint of ``iteration`` (the store lists newest first)."""
    found = [c for c in checkpoints.list_checkpoints(loop_id) if isinstance(c, Checkpoint)]
    ckpt = next(c for c in found if c.iteration == iteration)
    assert ckpt.commit is not None
    return ckpt.commit


def test_rollback_then_resume_and_fork_move_the_pushed_branches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a loop that counted to 3 on AWS, pushing a commit per iteration, checkpointed in Memory
    with aws_loops(tmp_path, monkeypatch, synthesize_template(state_machine="steps")) as aws:
        ports, local, remote = aws.ports, aws.local, aws.remote
        assert ports.policy is not None and ports.checkpoints is not None
        aws.start("loop-a", loop_config(remote))
        assert aws.wait("loop-a").status == "SUCCEEDED"
        first_head = git("rev-parse", "loopwright/loop-a", cwd=remote).strip()
        one = _commit_of(ports.checkpoints, "loop-a", 1)
        # and the control service of the dashboard's control Lambda (Cedar by the policy store)
        resumer = StepFunctionsResumer(
            ports.store, local.client, local.state_machine_arn, checkpoints=ports.checkpoints
        )
        travel = session_time_travel(ports.store, ports.checkpoints)
        controls = AwsControls(ControlService(ports.store, ports.policy, resumer, travel=travel), resumer)

        # When an operator rolls it back to iteration 1
        rolled = controls.submit(
            ControlRequest(loop_id="loop-a", action=ControlAction.ROLLBACK, iteration=1, **OPERATOR)
        )
        # Then the loop is paused at that checkpoint, and the pushed branch is not moved yet
        assert (rolled.status, rolled.phase) == ("applied", LoopPhase.PAUSED)
        state = ports.store.get_state("loop-a")
        assert (state.iteration, state.head_commit, state.outcome) == (1, one, None)
        assert git("rev-parse", "loopwright/loop-a", cwd=remote).strip() == first_head

        # When it is resumed
        controls.submit(ControlRequest(loop_id="loop-a", action=ControlAction.RESUME, **OPERATOR))
        resumed = aws.wait("loop-a", generation=1)
        # Then its run moved the branch back to iteration 1's commit, kept the later commits on a
        # pushed set-aside ref, and counted from 1 to 3 again
        assert resumed.status == "SUCCEEDED", resumed.output
        state = ports.store.get_state("loop-a")
        assert (state.outcome, state.iteration) == (LoopOutcome.CONDITIONS_MET, 3)
        (aside,) = ports.store.list_events("loop-a", types=[EV.COMMITS_SET_ASIDE])
        assert aside.data["commit"] == first_head
        assert git("rev-parse", str(aside.data["ref"]), cwd=remote).strip() == first_head
        new_head = git("rev-parse", "loopwright/loop-a", cwd=remote).strip()
        assert new_head == state.head_commit
        assert git("rev-list", "--count", f"{one}..{new_head}", cwd=remote).strip() == "2"
        assert git("show", "loopwright/loop-a:n.txt", cwd=remote).strip() == "3"
        types = [e.type for e in ports.store.list_events("loop-a")]
        assert types.index(EV.LOOP_ROLLED_BACK) < types.index(EV.COMMITS_SET_ASIDE)

        # When an operator forks it from iteration 2 (the newest checkpoint of it: the rerun's)
        two_again = _commit_of(ports.checkpoints, "loop-a", 2)
        forked = controls.submit(
            ControlRequest(
                loop_id="loop-a", action=ControlAction.FORK, iteration=2, new_loop_id="loop-f", **OPERATOR
            )
        )
        assert (forked.status, forked.new_loop_id) == ("applied", "loop-f")
        child_run = aws.wait("loop-f")
        # Then the child started on its own branch at that commit, and needed one iteration
        assert child_run.status == "SUCCEEDED", child_run.output
        child = ports.store.get_state("loop-f")
        assert (child.outcome, child.iteration, child.parent_loop_id) == (
            LoopOutcome.CONDITIONS_MET,
            1,
            "loop-a",
        )
        child_head = git("rev-parse", "loopwright/loop-f", cwd=remote).strip()
        assert git("rev-parse", f"{child_head}^", cwd=remote).strip() == two_again
        assert git("show", "loopwright/loop-f:n.txt", cwd=remote).strip() == "3"
        assert [e.type for e in ports.store.list_events("loop-f")][:2] == [EV.LOOP_FORKED, EV.LOOP_STARTED]
        # and the parent's branch did not move
        assert git("rev-parse", "loopwright/loop-a", cwd=remote).strip() == new_head
