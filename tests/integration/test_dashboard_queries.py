"""One LoopQueries behaviour suite run against SqliteQueries and DynamoDbQueries (moto): loops by
project and status, newest first, in pages; events newest first, by type, in pages; cursors.
DynamoDbQueries is also checked to read with Query and BatchGetItem only (never Scan)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from loopwright.adapters.aws.dynamodb_queries import DynamoDbQueries
from loopwright.adapters.local.sqlite_queries import SqliteQueries
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.dashboard.ports import InvalidCursorError, LoopQueries, LoopStatus
from loopwright.models import IterationEventType, LoopOutcome, LoopPhase
from loopwright.ports import LoopStore
from tests.integration.aws_moto import EVENTS_TABLE, LOOPS_TABLE, fake_credentials, moto_dynamodb_store
from tests.integration.dashboard_helpers import iteration_events, loop_state

EV = IterationEventType
LOOPS = [  # oldest first: (loop id, project, phase, outcome)
    ("a1", "alpha", LoopPhase.COMPLETED, LoopOutcome.STOPPED),
    ("b1", "beta", LoopPhase.AWAITING_RESPONSE, None),
    ("a2", "alpha", LoopPhase.ITERATING, None),
    ("b2", "beta", LoopPhase.COMPLETED, LoopOutcome.CONDITIONS_MET),
    ("a3", "alpha", LoopPhase.AWAITING_RESPONSE, None),
]


@dataclass
class Adapter:
    store: LoopStore
    queries: LoopQueries
    calls: list[str]


@contextmanager
def dynamodb_adapter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Adapter]:
    """Seeded moto tables; ``calls`` records the DynamoDB operations the queries make."""
    fake_credentials(monkeypatch)
    with moto_dynamodb_store() as store:
        seed(store)
        client = store._client
        calls: list[str] = []
        client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
        yield Adapter(store, DynamoDbQueries(LOOPS_TABLE, EVENTS_TABLE, client=client), calls)


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.slow)])
def adapter(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Adapter]:
    if request.param == "sqlite":
        with SqliteStore(tmp_path / "loopwright.db") as store:
            seed(store)
            with SqliteQueries(tmp_path / "loopwright.db") as queries:
                yield Adapter(store, queries, [])
    else:
        with dynamodb_adapter(monkeypatch) as dynamodb:
            yield dynamodb


def seed(store: LoopStore) -> None:
    for loop_id, project, phase, outcome in LOOPS:
        state = store.create_loop(loop_state(loop_id, project=project, phase=phase, outcome=outcome))
        store.save_state(state, iteration_events(loop_id, 3))
        time.sleep(0.002)  # distinct creation times (the DynamoDB index sorts by created_at)


def all_pages(queries: LoopQueries, limit: int, **filters: object) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = queries.list_loops(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        pages.append([s.loop_id for s in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages


def test_loops_newest_first_in_pages(adapter: Adapter) -> None:
    assert all_pages(adapter.queries, 50) == [["a3", "b2", "a2", "b1", "a1"]]
    assert all_pages(adapter.queries, 2) == [["a3", "b2"], ["a2", "b1"], ["a1"]]
    assert all_pages(adapter.queries, 5) == [["a3", "b2", "a2", "b1", "a1"]]
    assert all_pages(adapter.queries, 2, project="alpha") == [["a3", "a2"], ["a1"]]
    summary = adapter.queries.list_loops(limit=1).items[0]
    assert (summary.project, summary.iteration, summary.max_iterations) == ("alpha", 0, 10)
    assert [c.name for c in summary.conditions] == ["all_tests_pass", "linting_clean"]


@pytest.mark.parametrize(
    ("status", "project", "expected"),
    [
        (LoopPhase.AWAITING_RESPONSE, None, ["a3", "b1"]),
        (LoopPhase.COMPLETED, None, ["b2", "a1"]),
        (LoopOutcome.STOPPED, None, ["a1"]),
        (LoopPhase.AWAITING_RESPONSE, "beta", ["b1"]),
        (LoopOutcome.FAILED, None, []),
    ],
)
def test_loops_by_status(
    adapter: Adapter, status: LoopStatus, project: str | None, expected: list[str]
) -> None:
    pages = all_pages(adapter.queries, 1, status=status, project=project)
    assert [loop_id for page in pages for loop_id in page] == expected


def test_events_newest_first_by_type_in_pages(adapter: Adapter) -> None:
    page = adapter.queries.list_events("a2", limit=5)
    assert [(e.iteration, e.type) for e in page.items[:2]] == [
        (3, EV.ITERATION_COMPLETED),
        (3, EV.EXIT_CONDITIONS_EVALUATED),
    ]
    seen = list(page.items)
    while page.next_cursor:
        page = adapter.queries.list_events("a2", limit=5, cursor=page.next_cursor)
        seen += page.items
    assert len(seen) == 12 and seen == sorted(seen, key=lambda e: e.timestamp, reverse=True)

    types = [EV.ITERATION_STARTED, EV.ITERATION_COMPLETED]
    first = adapter.queries.list_events("a2", types=types, limit=4)
    assert [(e.iteration, e.type) for e in first.items] == [
        (3, EV.ITERATION_COMPLETED),
        (3, EV.ITERATION_STARTED),
        (2, EV.ITERATION_COMPLETED),
        (2, EV.ITERATION_STARTED),
    ]
    rest = adapter.queries.list_events("a2", types=types, limit=4, cursor=first.next_cursor)
    assert [(e.iteration, e.type) for e in rest.items] == [
        (1, EV.ITERATION_COMPLETED),
        (1, EV.ITERATION_STARTED),
    ]
    assert rest.next_cursor is None
    assert adapter.queries.list_events("a2", types=[]).items == []
    assert adapter.queries.list_events("ghost").items == []


def test_foreign_cursors_are_refused(adapter: Adapter) -> None:
    with pytest.raises(InvalidCursorError, match="cursor"):
        adapter.queries.list_loops(cursor="nope")
    with pytest.raises(InvalidCursorError, match="cursor"):
        adapter.queries.list_events("a2", cursor="e30")


@pytest.mark.slow
def test_dynamodb_reads_without_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    with dynamodb_adapter(monkeypatch) as adapter:
        adapter.calls.clear()
        all_pages(adapter.queries, 2, status=LoopPhase.AWAITING_RESPONSE)
        adapter.queries.list_events("a2", types=[EV.ITERATION_STARTED], limit=2)
        assert set(adapter.calls) == {"Query", "BatchGetItem"}
        alpha = adapter.queries.list_loops(project="alpha", limit=1).next_cursor
        assert alpha is not None
        with pytest.raises(InvalidCursorError, match="another project"):
            adapter.queries.list_loops(project="beta", cursor=alpha)
