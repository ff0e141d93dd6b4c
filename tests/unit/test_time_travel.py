"""Time travel (issue 10.6) in the core: ControlRequest's fields per action, TimeTravel's rollback
and fork over a memory store and a scripted workspace (refs kept, state and checkpoint, events),
the ControlService's checks before any write, and children_of."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.controls import ControlService
from loopwright.exceptions import ControlConflictError, ControlDeniedError, LoopNotFoundError, WorkspaceError
from loopwright.models import (
    Checkpoint,
    ControlAction,
    ControlRequest,
    ExitConditionStatus,
    ExitConditionType,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)
from loopwright.models.state import CachedEvaluation
from loopwright.models.workspace import SavedWork
from loopwright.ports import Workspace
from loopwright.travel import TimeTravel, children_of, find_checkpoint
from tests.fakes import FakeWorkspace, MemoryStore

ALICE = 'User::"alice"'
OPERATORS = 'Group::"default-operators"'
EV = IterationEventType


class GitLike(FakeWorkspace):
    """Records what time travel asks of git: salvage, set_aside, reset, branch_from."""

    def __init__(self, root: Path, *, dirty: bool = False, forkable: bool = True) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, ...]] = []
        self.dirty = dirty
        self.forkable = forkable
        self.branches: dict[str, str] = {}

    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        self.calls.append(("prepare", loop_id))
        return self.root / loop_id, f"loopwright/{loop_id}", "c0"

    def salvage(self, loop_id: str, label: str) -> SavedWork | None:
        self.calls.append(("salvage", loop_id, label))
        ref = f"refs/loopwright/{loop_id}/salvage/{label}"
        return SavedWork(ref=ref, commit="s1", files=["x.py"]) if self.dirty else None

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        self.calls.append(("set_aside", loop_id, commit, label))
        ref = f"refs/loopwright/{loop_id}/set-aside/{label}"
        return SavedWork(ref=ref, commit="c3", commits=["c3 iteration 3", "c2 iteration 2"])

    def reset(self, loop_id: str, commit: str) -> None:
        self.calls.append(("reset", loop_id, commit))

    def branch_from(self, loop_id: str, commit: str) -> None:
        if not self.forkable:
            raise NotImplementedError
        if loop_id in self.branches:
            raise WorkspaceError(f"branch 'loopwright/{loop_id}' exists already")
        self.calls.append(("branch_from", loop_id, commit))
        self.branches[loop_id] = commit


def _config() -> LoopConfig:
    return LoopConfig.model_validate(
        {
            "goal": "make the checks pass",
            "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
            "max_iterations": 3,
        }
    )


def _loop(store: MemoryStore, iterations: int = 3) -> LoopState:
    """A loop that ran ``iterations`` iterations, a checkpoint each (commit c<N>), then hit its limit."""
    state = store.create_loop(LoopState(loop_id="parent", config=_config(), workspace="/ws"))
    for number in range(1, iterations + 1):
        state.iteration, state.head_commit, state.phase = number, f"c{number}", LoopPhase.CHECKPOINTING
        store.save(Checkpoint.from_loop_state(state, f"c{number}"), retention=10)
        state = store.save_state(state)
    state.phase, state.outcome, state.outcome_reason = (
        LoopPhase.COMPLETED,
        LoopOutcome.ITERATION_LIMIT,
        "limit",
    )
    state.is_active = False
    return store.save_state(state)


def _request(
    action: ControlAction, principal: str = ALICE, groups: tuple[str, ...] = (OPERATORS,), **kw: object
) -> ControlRequest:
    return ControlRequest(loop_id="parent", action=action, principal=principal, groups=list(groups), **kw)  # type: ignore[arg-type]


def _written(store: MemoryStore) -> tuple[int, int, int]:
    parent = store.get_state("parent")
    return parent.version, len(store.list_events("parent")), len(store.list_checkpoints("parent"))


@pytest.fixture(scope="module")
def policy() -> CedarPolicyEngine:
    return CedarPolicyEngine()


def _service(
    store: MemoryStore, policy: CedarPolicyEngine, workspace: Workspace, *, running: bool = False
) -> tuple[ControlService, list[tuple[str, ControlRequest]]]:
    started: list[tuple[str, ControlRequest]] = []
    service = ControlService(
        store,
        policy,
        lambda state, request: started.append((state.loop_id, request)),
        is_running=lambda state: running,
        travel=TimeTravel(store, store, lambda state: workspace),
    )
    return service, started


# ------------------------------------------------------------------------------ the request
@pytest.mark.parametrize(
    ("action", "fields", "words"),
    [
        (ControlAction.ROLLBACK, {}, "iteration: required for ROLLBACK"),
        (ControlAction.FORK, {}, "iteration: required for FORK"),
        (ControlAction.STOP, {"iteration": 1}, "only ROLLBACK and FORK take an iteration"),
        (ControlAction.ROLLBACK, {"iteration": 1, "goal": "x"}, "only FORK takes them"),
        (ControlAction.RESUME, {"new_loop_id": "x"}, "only FORK takes them"),
        (ControlAction.ROLLBACK, {"iteration": -1}, "greater than or equal to 0"),
        (ControlAction.FORK, {"iteration": 1, "new_loop_id": "bad id"}, "should match pattern"),
        (ControlAction.FORK, {"iteration": 1, "goal": ""}, "at least 1 character"),
        (ControlAction.FORK, {"iteration": "1"}, "valid integer"),
    ],
)
def test_bad_time_travel_requests_are_refused(
    action: ControlAction, fields: dict[str, object], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        _request(action, **fields)


# ------------------------------------------------------------------------------ rollback
def test_rollback_resets_branch_and_state_and_keeps_what_it_discards(
    tmp_path: Path, policy: CedarPolicyEngine
) -> None:
    store, workspace = MemoryStore(), GitLike(tmp_path, dirty=True)
    _loop(store)
    store.get_state("parent")
    service, started = _service(store, policy, workspace)

    result = service.submit(_request(ControlAction.ROLLBACK, iteration=1, reason="wrong turn"))

    assert (result.status, result.phase, result.policy_ids) == (
        "applied",
        LoopPhase.PAUSED,
        ["operators-control-loop"],
    )
    assert "rolled back to iteration 1" in result.message and "loopwright resume parent" in result.message
    assert workspace.calls == [
        ("prepare", "parent"),
        ("salvage", "parent", "rollback-1"),
        ("set_aside", "parent", "c1", "rollback-1"),
        ("reset", "parent", "c1"),
    ]
    state = store.get_state("parent")
    assert (state.iteration, state.phase, state.outcome, state.head_commit) == (
        1,
        LoopPhase.PAUSED,
        None,
        "c1",
    )
    assert state.outcome_reason == f"rolled back to iteration 1 by {ALICE}: wrong turn"
    assert state.config.max_iterations == 3 and not state.is_active and state.ended_at is None
    # the newest checkpoint is the rolled-back state: a resume from "latest" starts there
    newest = store.list_checkpoints("parent")[0]
    assert isinstance(newest, Checkpoint) and newest.is_valid()
    assert (newest.iteration, newest.commit, newest.checkpoint_id) == (1, "c1", state.last_checkpoint_id)
    [event] = [e for e in store.list_events("parent") if e.type is EV.LOOP_ROLLED_BACK]
    assert event.iteration == 1 and event.phase is LoopPhase.PAUSED
    assert event.data == {
        "control": "ROLLBACK",
        "principal": ALICE,
        "to_iteration": 1,
        "from_iteration": 3,
        "checkpoint_id": event.data["checkpoint_id"],
        "new_checkpoint_id": newest.checkpoint_id,
        "commit": "c1",
        "set_aside_ref": "refs/loopwright/parent/set-aside/rollback-1",
        "set_aside_commits": ["c3 iteration 3", "c2 iteration 2"],
        "salvage_ref": "refs/loopwright/parent/salvage/rollback-1",
    }
    assert "later commits kept on refs/loopwright/parent/set-aside/rollback-1" in event.message
    assert started == []  # a rollback does not start the loop


def test_rollback_keeps_the_evaluation_cache(tmp_path: Path, policy: CedarPolicyEngine) -> None:
    store = MemoryStore()
    state = _loop(store)

    entry = CachedEvaluation(
        key="k", tree="t", iteration=3, status=ExitConditionStatus(name="a", type=ExitConditionType.CUSTOM)
    )
    state.evaluation_cache = [entry]
    store.save_state(state)
    service, _ = _service(store, policy, GitLike(tmp_path))

    service.submit(_request(ControlAction.ROLLBACK, iteration=2))

    assert store.get_state("parent").evaluation_cache == [entry]


@pytest.mark.parametrize(
    ("iteration", "running", "words"),
    [
        (7, False, "has no valid checkpoint of iteration 7 (checkpoints of iterations: 1, 2, 3)"),
        (1, True, "is running; pause or stop it before rolling it back"),
    ],
)
def test_a_rollback_that_does_not_apply_writes_nothing(
    tmp_path: Path, policy: CedarPolicyEngine, iteration: int, running: bool, words: str
) -> None:
    store, workspace = MemoryStore(), GitLike(tmp_path)
    _loop(store)
    before = (
        store.get_state("parent").version,
        len(store.list_events("parent")),
        len(store.list_checkpoints("parent")),
    )
    service, _ = _service(store, policy, workspace, running=running)

    with pytest.raises(ControlConflictError, match=words.replace("(", r"\(").replace(")", r"\)")):
        service.submit(_request(ControlAction.ROLLBACK, iteration=iteration))

    after = (
        store.get_state("parent").version,
        len(store.list_events("parent")),
        len(store.list_checkpoints("parent")),
    )
    assert after == before and workspace.calls == []


def test_corrupt_and_commitless_checkpoints_are_not_gone_back_to(tmp_path: Path) -> None:
    store = MemoryStore()
    state = _loop(store, iterations=2)
    corrupt = Checkpoint.from_loop_state(state, "c9")
    corrupt.checksum = "0" * 64
    store.save(corrupt, retention=10)
    without = state.model_copy(update={"iteration": 4})
    store.save(Checkpoint.from_loop_state(without, None), retention=10)

    with pytest.raises(ControlConflictError, match="checkpoints of iterations: 1, 2, 4"):
        find_checkpoint(state, store, 3)
    with pytest.raises(ControlConflictError, match="has no git commit"):
        find_checkpoint(state, store, 4)
    assert find_checkpoint(state, store, 2).commit == "c2"
    with pytest.raises(ControlConflictError, match="checkpoints of iterations: none"):
        find_checkpoint(state.model_copy(update={"loop_id": "other"}), store, 1)


# ------------------------------------------------------------------------------ fork
def test_fork_creates_the_child_from_the_checkpoint_and_starts_it(
    tmp_path: Path, policy: CedarPolicyEngine
) -> None:
    store, workspace = MemoryStore(), GitLike(tmp_path)
    parent = _loop(store)
    service, started = _service(store, policy, workspace)

    result = service.submit(
        _request(ControlAction.FORK, iteration=2, new_loop_id="child", goal="try another way")
    )

    assert result.status == "applied" and result.new_loop_id == "child"
    assert "loop child forked from iteration 2 of parent on branch loopwright/child" in result.message
    assert workspace.calls == [("branch_from", "child", "c2"), ("prepare", "child")]
    child = store.get_state("child")
    assert (child.parent_loop_id, child.forked_from_iteration, child.iteration) == ("parent", 2, 0)
    assert (child.base_commit, child.head_commit, child.branch) == ("c2", "c2", "loopwright/child")
    assert (child.project, child.workspace, child.worktree) == (
        parent.project,
        "/ws",
        str(tmp_path / "child"),
    )
    assert child.config.goal == "try another way" and child.config.max_iterations == 3
    assert child.phase is LoopPhase.INITIALIZING and [c.name for c in child.exit_conditions] == ["a"]
    assert [(loop_id, r.action) for loop_id, r in started] == [("child", ControlAction.FORK)]
    [on_child] = store.list_events("child")
    [on_parent] = [e for e in store.list_events("parent") if e.type is EV.LOOP_FORKED]
    assert on_child.type is EV.LOOP_FORKED and on_child.iteration == 0
    assert on_child.data["parent_loop_id"] == "parent" and on_child.data["from_iteration"] == 2
    assert on_parent.data["child_loop_id"] == "child" and on_parent.iteration == 3
    assert on_parent.data["commit"] == on_child.data["commit"] == "c2"
    assert store.get_state("parent").version == parent.version  # the parent's state is untouched
    assert [s.loop_id for s in children_of(store, parent)] == ["child"]
    assert children_of(store, child) == []


def test_fork_without_a_goal_or_id_keeps_the_parents_goal_and_makes_an_id(
    tmp_path: Path, policy: CedarPolicyEngine
) -> None:
    store = MemoryStore()
    _loop(store)
    service, _ = _service(store, policy, GitLike(tmp_path))

    result = service.submit(_request(ControlAction.FORK, iteration=1))

    assert result.new_loop_id is not None and result.new_loop_id.startswith("loop_")
    assert store.get_state(result.new_loop_id).config.goal == "make the checks pass"


@pytest.mark.parametrize(
    ("fields", "workspace_kw", "words"),
    [
        ({"iteration": 9}, {}, "has no valid checkpoint of iteration 9"),
        ({"iteration": 1, "new_loop_id": "parent"}, {}, "loop 'parent' exists already"),
        ({"iteration": 1, "new_loop_id": "a..b"}, {}, "new loop id: "),
        ({"iteration": 1, "new_loop_id": "kid"}, {"forkable": False}, "cannot fork loops"),
    ],
)
def test_a_fork_that_does_not_apply_writes_nothing(
    tmp_path: Path,
    policy: CedarPolicyEngine,
    fields: dict[str, object],
    workspace_kw: dict[str, bool],
    words: str,
) -> None:
    store, workspace = MemoryStore(), GitLike(tmp_path, **workspace_kw)
    _loop(store)
    loops, events = len(store.list_loops()), len(store.list_events("parent"))
    service, started = _service(store, policy, workspace)

    with pytest.raises(ControlConflictError, match=words):
        service.submit(_request(ControlAction.FORK, **fields))

    assert len(store.list_loops()) == loops and len(store.list_events("parent")) == events
    assert started == [] and [c for c in workspace.calls if c[0] != "prepare"] == []


def test_a_branch_git_refuses_is_a_conflict(tmp_path: Path, policy: CedarPolicyEngine) -> None:
    store, workspace = MemoryStore(), GitLike(tmp_path)
    workspace.branches["kid"] = "c0"  # a branch left by an earlier loop of that name
    _loop(store)
    service, started = _service(store, policy, workspace)

    with pytest.raises(
        ControlConflictError, match="cannot fork loop 'parent': branch 'loopwright/kid' exists"
    ):
        service.submit(_request(ControlAction.FORK, iteration=1, new_loop_id="kid"))
    assert started == [] and len(store.list_loops()) == 1


def test_fork_of_an_unknown_loop_is_not_found(tmp_path: Path, policy: CedarPolicyEngine) -> None:
    service, _ = _service(MemoryStore(), policy, GitLike(tmp_path))
    with pytest.raises(LoopNotFoundError):
        service.submit(_request(ControlAction.FORK, iteration=1))


# ------------------------------------------------------------------------------ Cedar and wiring
@pytest.mark.parametrize("action", [ControlAction.ROLLBACK, ControlAction.FORK])
@pytest.mark.parametrize(
    ("principal", "groups", "words"),
    [
        ('User::"mallory"', (), "no policy permits it"),
        (
            'Agent::"parent"',
            (),
            "an agent may not roll back or fork a loop (policy agent-cannot-time-travel)",
        ),
    ],
)
def test_cedar_decides_who_may_time_travel(
    tmp_path: Path,
    policy: CedarPolicyEngine,
    action: ControlAction,
    principal: str,
    groups: tuple[str, ...],
    words: str,
) -> None:
    store, workspace = MemoryStore(), GitLike(tmp_path)
    _loop(store)
    service, started = _service(store, policy, workspace)

    with pytest.raises(ControlDeniedError, match=words.replace("(", r"\(").replace(")", r"\)")):
        service.submit(_request(action, principal=principal, groups=groups, iteration=1))
    assert workspace.calls == [] and started == [] and len(store.list_loops()) == 1


@pytest.mark.parametrize("action", [ControlAction.ROLLBACK, ControlAction.FORK])
def test_without_travel_or_resumer_time_travel_is_a_conflict(
    policy: CedarPolicyEngine, action: ControlAction
) -> None:
    store = MemoryStore()
    _loop(store)
    with pytest.raises(ControlConflictError, match="no git workspace"):
        ControlService(store, policy, lambda s, r: None).submit(_request(action, iteration=1))
    travel = TimeTravel(store, store, lambda state: GitLike(Path("/nowhere")))
    if action is ControlAction.FORK:
        with pytest.raises(ControlConflictError, match="no engine to continue them with"):
            ControlService(store, policy, None, travel=travel).submit(_request(action, iteration=1))
    assert len(store.list_loops()) == 1
