"""SqliteStore: loops, events, stop requests and checkpoints in one SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import (
    WAL_AUTOCHECKPOINT_PAGES,
    WAL_SIZE_LIMIT_BYTES,
    SqliteStore,
)
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import (
    Checkpoint,
    ExitConditionConfig,
    ExitConditionType,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)

EV = IterationEventType


def make_state(loop_id: str = "loop_a", project: str = "default") -> LoopState:
    config = LoopConfig(
        goal="make the tests pass",
        project=project,
        exit_conditions=[ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS)],
    )
    return LoopState(loop_id=loop_id, project=project, config=config)


def event(loop_id: str, iteration: int, event_type: IterationEventType) -> IterationEvent:
    return IterationEvent(loop_id=loop_id, iteration=iteration, type=event_type, phase=LoopPhase.ITERATING)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "loopwright.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db_path) as opened:
        yield opened


def test_creates_parent_folders_and_uses_wal(db_path: Path, store: SqliteStore) -> None:
    assert db_path.is_file()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_get_and_duplicate(store: SqliteStore) -> None:
    created = store.create_loop(make_state())
    assert created.version == 1
    got = store.get_state("loop_a")
    assert got == created
    with pytest.raises(LoopFrameworkError, match="already exists") as info:
        store.create_loop(make_state())
    assert not isinstance(info.value, LoopNotFoundError)
    assert store.get_state("loop_a").version == 1


def test_unknown_loop_is_not_found(store: SqliteStore) -> None:
    with pytest.raises(LoopNotFoundError, match=r"loop_x.*loopwright status"):
        store.get_state("loop_x")
    with pytest.raises(LoopNotFoundError):
        store.save_state(make_state("loop_x"))


def test_save_state_is_a_conditional_write(store: SqliteStore) -> None:
    first = store.create_loop(make_state())
    first.iteration = 3
    first.phase = LoopPhase.COMPLETED
    first.outcome = LoopOutcome.CONDITIONS_MET
    second = store.save_state(first)
    assert second.version == 2
    assert first.version == 1  # the argument is not mutated
    stored = store.get_state("loop_a")
    assert (stored.version, stored.iteration, stored.outcome) == (2, 3, LoopOutcome.CONDITIONS_MET)

    with pytest.raises(LoopFrameworkError, match=r"another writer.*expected.*1.*found 2"):
        store.save_state(first)  # stale: version 1 was already replaced
    assert store.get_state("loop_a").version == 2
    assert store.save_state(second).version == 3


def test_list_loops_newest_first_by_project_and_limit(store: SqliteStore) -> None:
    for loop_id, project in [("l1", "p"), ("l2", "q"), ("l3", "p"), ("l4", "p")]:
        store.create_loop(make_state(loop_id, project))
    store.save_state(store.get_state("l1"))  # an update does not change the order
    assert [s.loop_id for s in store.list_loops()] == ["l4", "l3", "l2", "l1"]
    assert [s.loop_id for s in store.list_loops(project="p")] == ["l4", "l3", "l1"]
    assert [s.loop_id for s in store.list_loops(project="p", limit=2)] == ["l4", "l3"]
    assert store.list_loops(project="none") == []


def test_events_order_filter_limit_and_newest_first(store: SqliteStore) -> None:
    types = [EV.LOOP_STARTED, EV.ITERATION_STARTED, EV.AGENT_COMPLETED, EV.ITERATION_COMPLETED]
    store.append_events([event("loop_a", 1, t) for t in types])
    store.append_events([event("loop_b", 1, EV.LOOP_STARTED)])
    store.append_events([event("loop_a", 2, EV.ITERATION_STARTED)])
    store.append_events([])

    all_a = store.list_events("loop_a")
    assert [e.type for e in all_a] == [*types, EV.ITERATION_STARTED]
    assert all(e.loop_id == "loop_a" for e in all_a)
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
    assert store.list_events("nope") == []


def test_stop_requests(store: SqliteStore) -> None:
    assert store.stop_requested("loop_a") is None
    store.request_stop("loop_a", "first")
    store.request_stop("loop_a", "changed my mind")
    assert store.stop_requested("loop_a") == "changed my mind"
    assert store.stop_requested("loop_b") is None
    store.clear_stop("loop_a")
    store.clear_stop("loop_a")
    assert store.stop_requested("loop_a") is None


def test_checkpoint_retention_keeps_newest_n_per_loop(store: SqliteStore) -> None:
    state = make_state()
    saved = []
    for iteration in range(1, 8):
        state.iteration = iteration
        ckpt = Checkpoint.from_loop_state(state, commit=f"c{iteration}")
        store.save(ckpt, retention=3)
        saved.append(ckpt)
    other = Checkpoint.from_loop_state(make_state("loop_b"))
    store.save(other, retention=1)

    kept = store.list_checkpoints("loop_a")
    assert [c.iteration for c in kept if isinstance(c, Checkpoint)] == [7, 6, 5]
    assert kept == list(reversed(saved[-3:]))
    assert all(isinstance(c, Checkpoint) and c.is_valid() for c in kept)
    assert store.list_checkpoints("loop_b") == [other]
    assert store.list_checkpoints("nope") == []

    with pytest.raises(LoopFrameworkError, match="already stored"):
        store.save(saved[-1], retention=3)
    with pytest.raises(LoopFrameworkError, match="retention"):
        store.save(Checkpoint.from_loop_state(state), retention=0)
    assert len(store.list_checkpoints("loop_a")) == 3


def test_corrupt_checkpoints_are_returned_not_verified(db_path: Path, store: SqliteStore) -> None:
    state = make_state()
    ids = []
    for iteration in (1, 2, 3):
        state.iteration = iteration
        ckpt = Checkpoint.from_loop_state(state)
        store.save(ckpt, retention=5)
        ids.append(ckpt.checkpoint_id)
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE checkpoints SET payload='{not json' WHERE checkpoint_id=?", (ids[2],))
        payload = raw.execute("SELECT payload FROM checkpoints WHERE checkpoint_id=?", (ids[1],)).fetchone()[
            0
        ]
        tampered = payload.replace('"iteration":2', '"iteration":42', 1)
        assert tampered != payload
        raw.execute("UPDATE checkpoints SET payload=? WHERE checkpoint_id=?", (tampered, ids[1]))
        checksums = [r[0] for r in raw.execute("SELECT checksum FROM checkpoints ORDER BY seq")]
    assert all(len(c) == 64 for c in checksums)

    entries = store.list_checkpoints("loop_a")
    assert entries[0] == ids[2]  # unparsable: its id
    assert isinstance(entries[1], Checkpoint) and not entries[1].is_valid()  # checksum mismatch
    assert isinstance(entries[2], Checkpoint) and entries[2].is_valid()


def test_a_second_store_on_the_same_file_sees_writes(db_path: Path, store: SqliteStore) -> None:
    with SqliteStore(db_path) as cli:
        engine_state = store.create_loop(make_state())
        assert cli.get_state("loop_a").version == 1
        cli.request_stop("loop_a", "from the CLI")
        assert store.stop_requested("loop_a") == "from the CLI"
        store.append_events([event("loop_a", 1, EV.STOP_REQUESTED)])
        assert [e.type for e in cli.list_events("loop_a")] == [EV.STOP_REQUESTED]
        cli_state = cli.get_state("loop_a")
        cli.save_state(cli_state)  # another writer wins the race
        with pytest.raises(LoopFrameworkError, match="another writer"):
            store.save_state(engine_state)
        store.save(Checkpoint.from_loop_state(engine_state), retention=2)
        assert len(cli.list_checkpoints("loop_a")) == 1


def test_another_process_can_write_while_the_store_is_open(db_path: Path, store: SqliteStore) -> None:
    store.create_loop(make_state())
    script = (
        "import sys\n"
        "from loopwright.adapters.local.sqlite_store import SqliteStore\n"
        "s = SqliteStore(sys.argv[1])\n"
        "print(s.get_state('loop_a').version)\n"
        "s.request_stop('loop_a', 'other process')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "1"
    assert store.stop_requested("loop_a") == "other process"


def test_threads_share_one_store(store: SqliteStore) -> None:
    def worker(n: int) -> None:
        for i in range(20):
            store.append_events([event("loop_a", n * 100 + i, EV.ITERATION_STARTED)])
            store.stop_requested("loop_a")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.list_events("loop_a")) == 160


def test_use_after_close_is_a_domain_error(db_path: Path) -> None:
    store = SqliteStore(db_path)
    store.close()
    with pytest.raises(LoopFrameworkError, match="local store"):
        store.get_state("loop_a")


def test_wal_is_bounded_by_the_configured_limits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    with store._guard() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_AUTOCHECKPOINT_PAGES
        assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT_BYTES
