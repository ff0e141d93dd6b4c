"""The dashboard API's time-travel routes (issue 10.6): POST /api/loops/{loop_id}/rollback and
/fork over a real git repository, a real SQLite store and the Cedar policies; 403 for a
non-operator, 404 for an unknown loop, 409 for a running loop or an unknown checkpoint, 400 for a
bad body, and nothing written on any refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine.local import build_workspace
from loopwright.models import IterationEventType, LoopState
from loopwright.ports import Workspace
from loopwright.travel import TimeTravel
from tests.integration.dashboard_helpers import Dashboard, open_dashboard
from tests.integration.helpers import cli, git, make_repo
from tests.integration.test_time_travel import FILE_AGENT, _config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose loop 'parent' wrote 2 of its 3 files and hit its iteration limit."""
    root = tmp_path_factory.mktemp("travel")
    workspace = make_repo(root / "ws", {"README.md": "files\n"})
    config = _config(root, FILE_AGENT, files=3, max_iterations=2)
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "parent", "-q")
    assert done.returncode == 3, done.stdout + done.stderr
    return workspace


@pytest.fixture
def dash(template: Path, tmp_path: Path) -> Iterator[Dashboard]:
    workspace = tmp_path / "ws"
    # a fresh copy of the template for each test (git clone keeps the loop's branch and refs)
    git(tmp_path, "clone", "-q", "--mirror", str(template), str(tmp_path / "bare"))
    git(tmp_path, "clone", "-q", str(tmp_path / "bare"), str(workspace))
    for ref in git(workspace, "for-each-ref", "--format=%(refname)", "refs/remotes/origin/").splitlines():
        name = ref.removeprefix("refs/remotes/origin/")
        if name != "HEAD" and name != "main":
            git(workspace, "branch", "-q", name, ref)
    state_dir = workspace / ".loopwright"
    state_dir.mkdir()
    (state_dir / "loopwright.db").write_bytes((template / ".loopwright" / "loopwright.db").read_bytes())

    with SqliteStore(state_dir / "loopwright.db") as copy:
        for loop in copy.list_loops():  # the copy's worktrees live in the copy
            loop.workspace, loop.worktree = str(workspace), str(state_dir / "worktrees" / loop.loop_id)
            copy.save_state(loop)

    def workspace_for(state: LoopState) -> Workspace:
        return build_workspace(state.config, Path(state.workspace), state_dir)

    store = SqliteStore(state_dir / "loopwright.db")
    dashboard = open_dashboard(state_dir, travel=TimeTravel(store, store, workspace_for))
    yield dashboard
    store.close()
    dashboard.queries.close()
    dashboard.store.close()


def _commits(dash: Dashboard) -> list[str]:
    workspace = Path(dash.store.get_state("parent").workspace)
    return git(workspace, "rev-list", "--max-count=2", "loopwright/parent").splitlines()[::-1]


def test_rollback_resets_state_and_branch(dash: Dashboard) -> None:
    first, second = _commits(dash)
    workspace = Path(dash.store.get_state("parent").workspace)

    status, body, _ = dash.call("POST", "/api/loops/parent/rollback", {"to_iteration": 1, "reason": "redo"})

    assert status == 200 and body["status"] == "applied", body
    assert body["policy_ids"] == ["operators-control-loop"]
    assert body["phase"] == "PAUSED"
    state = dash.store.get_state("parent")
    assert (state.iteration, state.phase.value, state.outcome) == (1, "PAUSED", None)
    assert git(workspace, "rev-parse", "loopwright/parent") == first
    assert git(workspace, "rev-parse", "refs/loopwright/parent/set-aside/rollback-1") == second
    [event] = dash.store.list_events("parent", types=[IterationEventType.LOOP_ROLLED_BACK])
    assert event.data["principal"] == 'User::"alice"' and "redo" in (state.outcome_reason or "")


def test_fork_creates_the_child_and_hands_it_to_the_resumer(dash: Dashboard) -> None:
    first, _ = _commits(dash)
    workspace = Path(dash.store.get_state("parent").workspace)

    status, body, _ = dash.call(
        "POST", "/api/loops/parent/fork", {"from_iteration": 1, "loop_id": "child", "goal": "other"}
    )

    assert status == 200, body
    assert body["new_loop_id"] == "child"
    assert [(loop_id, request.action.value) for loop_id, request in dash.resumed] == [("child", "FORK")]
    child = dash.store.get_state("child")
    assert (child.parent_loop_id, child.forked_from_iteration, child.config.goal) == ("parent", 1, "other")
    assert git(workspace, "rev-parse", "loopwright/child") == first
    assert dash.call("GET", "/api/loops/child")[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "who"),
    [
        ("/api/loops/parent/rollback", {"to_iteration": 1}, "mallory"),
        ("/api/loops/parent/fork", {"from_iteration": 1}, "mallory"),
    ],
)
def test_a_non_operator_is_403_and_nothing_is_written(
    dash: Dashboard, path: str, body: dict[str, object], who: str
) -> None:
    before, loops = dash.snapshot("parent"), len(dash.store.list_loops())

    status, answer, _ = dash.call("POST", path, body, headers={"X-Loopwright-User": who})

    assert status == 403 and answer["error"]["code"] == "forbidden", answer
    assert f'User::"{who}" may not' in answer["error"]["message"]
    assert dash.snapshot("parent") == before and len(dash.store.list_loops()) == loops
    assert dash.resumed == []


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [
        ("/api/loops/parent/rollback", {"to_iteration": 5}, 409, "has no valid checkpoint of iteration 5"),
        ("/api/loops/parent/fork", {"from_iteration": 5}, 409, "has no valid checkpoint of iteration 5"),
        ("/api/loops/parent/fork", {"from_iteration": 1, "loop_id": "parent"}, 409, "exists already"),
        ("/api/loops/nope/fork", {"from_iteration": 1}, 404, "nope"),
        ("/api/loops/nope/rollback", {"to_iteration": 1}, 404, "nope"),
        ("/api/loops/parent/rollback", {}, 400, "to_iteration"),
        ("/api/loops/parent/rollback", {"to_iteration": -1}, 400, "to_iteration"),
        ("/api/loops/parent/fork", {"from_iteration": 1, "loop_id": "bad id"}, 400, "loop_id"),
    ],
)
def test_refused_time_travel_writes_nothing(
    dash: Dashboard, path: str, body: dict[str, object], code: int, words: str
) -> None:
    before, loops = dash.snapshot("parent"), len(dash.store.list_loops())
    refs = git(Path(dash.store.get_state("parent").workspace), "for-each-ref")

    status, answer, _ = dash.call("POST", path, body)

    assert status == code, answer
    assert words in answer["error"]["message"] or words == answer["error"].get("field"), answer
    assert dash.snapshot("parent") == before and len(dash.store.list_loops()) == loops
    assert git(Path(dash.store.get_state("parent").workspace), "for-each-ref") == refs


def test_a_running_loop_is_not_rolled_back_409(dash: Dashboard) -> None:
    dash.running.add("parent")
    before = dash.snapshot("parent")

    status, answer, _ = dash.call("POST", "/api/loops/parent/rollback", {"to_iteration": 1})

    assert status == 409 and answer["error"]["code"] == "conflict", answer
    assert "is running" in answer["error"]["message"]
    assert dash.snapshot("parent") == before


def test_without_a_git_workspace_time_travel_is_409(tmp_path: Path, template: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "loopwright.db").write_bytes((template / ".loopwright" / "loopwright.db").read_bytes())
    dashboard = open_dashboard(state_dir)  # a service built without TimeTravel
    try:
        status, answer, _ = dashboard.call("POST", "/api/loops/parent/rollback", {"to_iteration": 1})
        assert status == 409 and "no git workspace" in answer["error"]["message"]
    finally:
        dashboard.queries.close()
        dashboard.store.close()


def test_openapi_lists_the_time_travel_routes(dash: Dashboard) -> None:
    paths = dash.call("GET", "/api/openapi.json")[1]["paths"]
    for path in ("/api/loops/{loop_id}/rollback", "/api/loops/{loop_id}/fork"):
        assert set(paths[path]["post"]["responses"]) >= {"200", "400", "403", "404", "409"}
