"""One LoopStore behaviour suite run against SqliteStore and DynamoDbStore (moto), so both
adapters provably behave alike. Differences by design are in each adapter's own tests:
DynamoDbStore needs an existing loop for events and stop requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import ControlAction, ControlRequest, LimitChange, LoopOutcome, LoopPhase
from loopwright.ports import LoopStore
from tests.integration.aws_moto import fake_credentials, moto_dynamodb_store
from tests.integration.test_sqlite_store import EV, event, make_state


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LoopStore]:
    if request.param == "sqlite":
        with SqliteStore(tmp_path / "loopwright.db") as sqlite:
            yield sqlite
    else:
        fake_credentials(monkeypatch)
        with moto_dynamodb_store() as dynamodb:
            yield dynamodb


def test_create_get_and_duplicate(store: LoopStore) -> None:
    created = store.create_loop(make_state())
    assert created.version == 1
    assert store.get_state("loop_a") == created
    with pytest.raises(LoopFrameworkError, match="already exists") as info:
        store.create_loop(make_state())
    assert not isinstance(info.value, LoopNotFoundError)
    assert store.get_state("loop_a").version == 1


def test_unknown_loop_is_not_found(store: LoopStore) -> None:
    with pytest.raises(LoopNotFoundError, match=r"loop_x.*loopwright status"):
        store.get_state("loop_x")
    with pytest.raises(LoopNotFoundError):
        store.save_state(make_state("loop_x"))
    assert store.list_events("loop_x") == []
    assert store.stop_requested("loop_x") is None


def test_save_state_is_a_conditional_write(store: LoopStore) -> None:
    first = store.create_loop(make_state())
    first.iteration = 3
    first.phase = LoopPhase.COMPLETED
    first.outcome = LoopOutcome.CONDITIONS_MET
    second = store.save_state(first, [event("loop_a", 3, EV.LOOP_COMPLETED)])
    assert (second.version, first.version) == (2, 1)
    stored = store.get_state("loop_a")
    assert (stored.version, stored.iteration, stored.outcome) == (2, 3, LoopOutcome.CONDITIONS_MET)
    with pytest.raises(LoopFrameworkError, match=r"another writer.*expected.*1.*found 2"):
        store.save_state(first)
    with pytest.raises(LoopFrameworkError, match="another writer"):
        store.save_state(first, [event("loop_a", 3, EV.ERROR)])
    assert [e.type for e in store.list_events("loop_a")] == [EV.LOOP_COMPLETED]
    second.outcome = None
    third = store.save_state(second)
    assert third.version == 3 and store.get_state("loop_a").outcome is None


def test_list_loops_newest_first_by_project_and_limit(store: LoopStore) -> None:
    for loop_id, project in [("l1", "p"), ("l2", "q"), ("l3", "p"), ("l4", "p")]:
        store.create_loop(make_state(loop_id, project))
    store.save_state(store.get_state("l1"))  # an update does not change the order
    assert [s.loop_id for s in store.list_loops()] == ["l4", "l3", "l2", "l1"]
    assert [s.loop_id for s in store.list_loops(project="p")] == ["l4", "l3", "l1"]
    assert [s.loop_id for s in store.list_loops(project="p", limit=2)] == ["l4", "l3"]
    assert store.list_loops(project="none") == []
    assert store.list_loops()[-1].version == 2


def test_events_order_filter_limit_and_newest_first(store: LoopStore) -> None:
    store.create_loop(make_state("loop_a"))
    store.create_loop(make_state("loop_b"))
    types = [EV.LOOP_STARTED, EV.ITERATION_STARTED, EV.AGENT_COMPLETED, EV.ITERATION_COMPLETED]
    store.append_events([event("loop_a", 1, t) for t in types])
    store.append_events([event("loop_b", 1, EV.LOOP_STARTED)])
    store.append_events([event("loop_a", 2, EV.ITERATION_STARTED)])
    store.append_events([])

    all_a = store.list_events("loop_a")
    assert [e.type for e in all_a] == [*types, EV.ITERATION_STARTED]
    assert store.list_events("loop_a", newest_first=True) == list(reversed(all_a))
    started = store.list_events("loop_a", types=[EV.ITERATION_STARTED, EV.LOOP_STARTED])
    assert [(e.type, e.iteration) for e in started] == [
        (EV.LOOP_STARTED, 1),
        (EV.ITERATION_STARTED, 1),
        (EV.ITERATION_STARTED, 2),
    ]
    newest = store.list_events("loop_a", types=[EV.ITERATION_STARTED], limit=1, newest_first=True)
    assert [e.iteration for e in newest] == [2]
    assert store.list_events("loop_a", limit=2) == all_a[:2]
    assert store.list_events("loop_a", types=[]) == []


def test_stop_requests(store: LoopStore) -> None:
    store.create_loop(make_state())
    assert store.stop_requested("loop_a") is None
    store.request_stop("loop_a", "first")
    store.request_stop("loop_a", "changed my mind")
    assert store.stop_requested("loop_a") == "first"  # the first stop stands
    store.clear_stop("loop_a")
    store.clear_stop("loop_a")
    assert store.stop_requested("loop_a") is None


def test_controls_are_queued_in_order_and_cleared_by_id(store: LoopStore) -> None:
    state = store.create_loop(make_state())
    assert store.pending_controls("loop_a") == []
    limit = ControlRequest(
        loop_id="loop_a",
        action=ControlAction.RAISE_LIMIT,
        principal='User::"alice"',
        groups=['Group::"default-operators"'],
        limits=LimitChange(max_iterations=40),
    )
    pause = ControlRequest(
        loop_id="loop_a", action=ControlAction.PAUSE, principal='User::"bob"', reason="lunch"
    )
    store.add_control(limit)
    store.add_control(pause)
    store.add_control(limit)  # the same control again replaces it
    store.save_state(state, [event("loop_a", 1, EV.LOOP_STARTED)])  # a state save keeps them
    assert store.pending_controls("loop_a") == [limit, pause]
    assert store.get_state("loop_a").version == 2
    store.clear_controls("loop_a", [limit.control_id, "ctl_unknown"])
    assert store.pending_controls("loop_a") == [pause]
    store.clear_stop("loop_a")  # STOP and PAUSE controls
    assert store.pending_controls("loop_a") == []
    with pytest.raises(LoopNotFoundError):
        store.add_control(pause.model_copy(update={"loop_id": "loop_x"}))
