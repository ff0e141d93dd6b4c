"""SessionPlanWorkspace and PlanDispatch's Verify step, with real git run through the Code
Interpreter sandbox's quoted shell line (tests/unit/aws_session_fake.py plays the session)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from loopwright.adapters.aws.session_plan_workspace import SessionPlanWorkspace, plan_repository
from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.cloud.plan_steps import GateFactory, PlanStepPorts
from loopwright.cloud.plan_verify_steps import VerifyInput, verify
from loopwright.exceptions import ConfigError
from loopwright.models import LoopOutcome, LoopPhase, LoopResult, RepositoryConfig
from loopwright.models.plans import ActivityEventType, Plan, PlanStatus
from loopwright.plans import transitions
from loopwright.plans.errors import MergeConflictError
from loopwright.plans.service import create_plan, start_verify
from loopwright.plans.validation import parse_draft
from tests.unit.aws_session_fake import LocalSession, git, local_sandbox, make_remote


def _branch(remote: Path, tmp: Path, name: str, files: dict[str, str]) -> str:
    """Push branch ``name`` holding ``files`` on top of main; its head commit."""
    work = tmp / f"work-{name.replace('/', '_')}"
    git("clone", "-q", str(remote), str(work), cwd=tmp)
    git("checkout", "-q", "-b", name, cwd=work)
    for path, text in files.items():
        (work / path).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", name, cwd=work)
    git("push", "-q", "origin", name, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {"README.md": "shop\n", "shared.txt": "one\n"})


def _workspace(
    tmp_path: Path, remote: Path, *, push: bool = True
) -> tuple[SessionPlanWorkspace, LocalSession]:
    sandbox, session = local_sandbox(tmp_path / "session")
    repository = RepositoryConfig(url=f"file://{remote}", push=push)
    return SessionPlanWorkspace(
        sandbox, repository, root=PurePosixPath(tmp_path / "session" / "plans")
    ), session


def test_prepare_task_pushes_the_merge_of_the_dependencies_once(tmp_path: Path, remote: Path) -> None:
    a = _branch(remote, tmp_path, "loopwright/p.a", {"a.txt": "a\n"})
    b = _branch(remote, tmp_path, "loopwright/p.b", {"b.txt": "b\n"})
    ws, session = _workspace(tmp_path, remote)
    assert ws.prepare_task("p.d", [a, b]) == {}
    pushed = git("rev-parse", "refs/heads/loopwright/p.d", cwd=remote).strip()
    assert set(git("ls-tree", "--name-only", pushed, cwd=remote).split()) >= {"a.txt", "b.txt", "README.md"}
    assert git("merge-base", "--is-ancestor", a, pushed, cwd=remote) == ""  # both are ancestors
    git("merge-base", "--is-ancestor", b, pushed, cwd=remote)
    # a retried StartTask keeps the pushed branch (and its loop's work) as it is
    clones = sum(" clone " in line for line in session.commands())
    assert ws.prepare_task("p.d", [a, b]) == {}
    assert sum(" clone " in line for line in session.commands()) == clones
    assert git("rev-parse", "refs/heads/loopwright/p.d", cwd=remote).strip() == pushed


def test_prepare_task_needs_push(tmp_path: Path, remote: Path) -> None:
    ws, _ = _workspace(tmp_path, remote, push=False)
    with pytest.raises(ConfigError, match=r"repository\.push"):
        ws.prepare_task("p.d", ["0" * 40])
    assert ws.prepare_task("p.a", []) == {}  # no dependency: the loop starts from the ref itself


def test_integrate_merges_in_the_session_and_names_conflicts(tmp_path: Path, remote: Path) -> None:
    a = _branch(remote, tmp_path, "loopwright/p.a", {"a.txt": "a\n", "shared.txt": "from a\n"})
    b = _branch(remote, tmp_path, "loopwright/p.b", {"b.txt": "b\n"})
    c = _branch(remote, tmp_path, "loopwright/p.c", {"shared.txt": "from c\n"})
    ws, _ = _workspace(tmp_path, remote)
    folder = ws.integrate("verify_p", [a, b])
    assert (folder / "a.txt").is_file() and (folder / "b.txt").is_file()
    assert (
        git("rev-parse", "refs/heads/loopwright/verify_p", cwd=remote).strip()
        == git("rev-parse", "HEAD", cwd=folder).strip()
    )
    with pytest.raises(MergeConflictError) as caught:
        ws.integrate("verify_q", [a, c])
    assert caught.value.paths == ["shared.txt"]


def _completed_plan(store: SqlitePlanStore, remote: Path, heads: dict[str, str], gate: list[str]) -> Plan:
    draft = {
        "defaults": {
            "exit_conditions": [{"type": "CUSTOM", "command": "true"}],
            "repository": {"url": f"file://{remote}", "push": True},
        },
        "tasks": [{"task_id": t, "description": t} for t in heads],
        "gates": [{"name": "gate:files", "command": gate}],
    }
    plan = create_plan(store, "shop", parse_draft(draft))
    change = transitions.begin_dispatch(plan)
    plan = store.save_plan("shop", change.plan, change.events)
    plan = store.save_plan("shop", transitions.mark_running(plan).plan)
    for task_id, head in heads.items():
        plan = store.save_plan("shop", *transitions.start_task(plan, task_id))
        result = LoopResult(
            loop_id=f"{plan.plan_id}.{task_id}", success=True, outcome=LoopOutcome.CONDITIONS_MET,
            phase=LoopPhase.COMPLETED, iterations=1, features_completed=1, features_total=1,
            sessions_used=1, total_tokens=0, errors_recovered=0, duration_seconds=0.1, head_commit=head,
        )  # fmt: skip
        plan = store.save_plan("shop", *transitions.finish_task(plan, task_id, result=result))
    return plan


def _ports(store: SqlitePlanStore, gates: GateFactory | None) -> PlanStepPorts:
    def unused(*_: object) -> Any:
        raise AssertionError("the Verify step starts no loop")

    return PlanStepPorts(
        plans=store, loops=unused, start_execution=unused, branches=unused, check_loop=unused, gates=gates
    )  # type: ignore[arg-type]  # the loops port is never used by Verify


def test_the_verify_step_runs_gate_all_in_the_session_on_the_merged_branches(
    tmp_path: Path, remote: Path
) -> None:
    a = _branch(remote, tmp_path, "loopwright/p.a", {"a.txt": "a\n"})
    b = _branch(remote, tmp_path, "loopwright/p.b", {"b.txt": "b\n"})
    ws, session = _workspace(tmp_path, remote)
    check = [
        "python3",
        "-c",
        "import os,sys; sys.exit(0 if os.path.exists('a.txt') and os.path.exists('b.txt') else 1)",
    ]
    with SqlitePlanStore(tmp_path / "plans.db") as store:
        plan = _completed_plan(store, remote, {"a": a, "b": b}, check)
        start_verify(store, "shop", plan.plan_id)  # what the API's executor did before its 202
        ports = _ports(store, lambda _plan, _repo: nullcontext((ws.sandbox, ws)))
        out = verify(VerifyInput(project="shop", plan_id=plan.plan_id), ports)
        assert (out.status, out.passed) == (PlanStatus.VERIFIED, True)
        verified = store.get_plan("shop", plan.plan_id)
        assert verified.gate_result is not None
        assert [c.name for c in verified.gate_result.checks] == ["gate:tasks", "gate:files"]
        assert any("python3 -c" in line for line in session.commands())  # the gate ran in the session
        assert store.list_events("shop", plan.plan_id)[-1].type is ActivityEventType.PLAN_VERIFIED
        # a retry of the step (Step Functions) changes nothing
        again = verify(VerifyInput(project="shop", plan_id=plan.plan_id), ports)
        assert again.status is PlanStatus.VERIFIED
        assert store.get_plan("shop", plan.plan_id).version == verified.version


def test_the_verify_step_without_a_gate_environment_changes_nothing(tmp_path: Path, remote: Path) -> None:
    with SqlitePlanStore(tmp_path / "plans.db") as store:
        plan = _completed_plan(store, remote, {"a": "0" * 40}, ["true"])
        verifying = start_verify(store, "shop", plan.plan_id)
        with pytest.raises(ConfigError, match="CODE_INTERPRETER_ID"):
            verify(VerifyInput(project="shop", plan_id=plan.plan_id), _ports(store, None))
        assert store.get_plan("shop", plan.plan_id).version == verifying.version  # RecordFailure's job


def test_plan_repository_comes_from_the_defaults_or_the_dispatch(tmp_path: Path, remote: Path) -> None:
    with SqlitePlanStore(tmp_path / "plans.db") as store:
        plan = _completed_plan(store, remote, {"a": "0" * 40}, ["true"])
    assert plan_repository(plan).url == f"file://{remote}"
    bare = plan.model_copy(update={"defaults": {}})
    assert plan_repository(bare, "https://example.com/r.git").push
    with pytest.raises(ConfigError, match=r"defaults\.repository"):
        plan_repository(bare)
