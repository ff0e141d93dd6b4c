"""SqliteStore's own behaviour: the file, WAL, processes, threads and checkpoints.

The LoopStore behaviours it shares with DynamoDbStore are in test_aws_adapters_contract.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_file import WAL_AUTOCHECKPOINT_PAGES, WAL_SIZE_LIMIT_BYTES
from loopwright.adapters.local.sqlite_store import SCHEMA_VERSION, SqliteStore
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import (
    Checkpoint,
    ExitConditionConfig,
    ExitConditionType,
    IterationEvent,
    IterationEventType,
    LoopConfig,
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


V1_SCHEMA = """
CREATE TABLE loops (loop_id TEXT PRIMARY KEY, project TEXT NOT NULL, phase TEXT NOT NULL, outcome TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX loops_by_project ON loops (project);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, loop_id TEXT NOT NULL, iteration INTEGER NOT NULL,
    type TEXT NOT NULL, timestamp TEXT NOT NULL, event TEXT NOT NULL);
CREATE INDEX events_by_loop ON events (loop_id, seq);
CREATE INDEX events_by_loop_type ON events (loop_id, type);
CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY AUTOINCREMENT, loop_id TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL UNIQUE, iteration INTEGER NOT NULL, created_at TEXT NOT NULL,
    checksum TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX checkpoints_by_loop ON checkpoints (loop_id, seq);
CREATE TABLE controls (seq INTEGER PRIMARY KEY, control_id TEXT NOT NULL UNIQUE, loop_id TEXT NOT NULL,
    payload TEXT NOT NULL);
CREATE INDEX controls_by_loop ON controls (loop_id, seq);
PRAGMA user_version=1;
"""


def test_a_version_1_store_is_migrated_and_keeps_its_checkpoints_in_order(tmp_path: Path) -> None:
    # Given a store written by the previous schema, with three checkpoints of one loop
    path = tmp_path / "old.db"
    state = make_state()
    old = [Checkpoint.from_loop_state(state.model_copy(update={"iteration": n}), f"c{n}") for n in (1, 2, 3)]
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute(
            "INSERT INTO loops VALUES (?, 'default', 'COMPLETED', NULL, 't', 't', 1, ?)",
            (state.loop_id, state.model_dump_json()),
        )
        for ckpt in old:
            conn.execute(
                "INSERT INTO checkpoints (loop_id, checkpoint_id, iteration, created_at, checksum, payload)"
                " VALUES (?, ?, ?, 't', ?, ?)",
                (ckpt.loop_id, ckpt.checkpoint_id, ckpt.iteration, ckpt.checksum, ckpt.model_dump_json()),
            )

    # When the current store opens it and saves two more with a retention of 3
    store = SqliteStore(path)
    newer = [Checkpoint.from_loop_state(state.model_copy(update={"iteration": n}), f"c{n}") for n in (4, 5)]
    for ckpt in newer:
        store.save(ckpt, retention=3)

    # Then the newest three are kept, newest first, and the obsolete index is gone
    assert [c.iteration for c in store.list_checkpoints(state.loop_id) if isinstance(c, Checkpoint)] == [
        5,
        4,
        3,
    ]
    with sqlite3.connect(path) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "events_by_loop_type" not in indexes and "checkpoints_by_loop_ordinal" in indexes
    with pytest.raises(LoopFrameworkError, match="already stored"):
        store.save(newer[-1], retention=3)


def test_checkpoints_are_a_ring_overwritten_in_place_and_a_lower_retention_prunes(store: SqliteStore) -> None:
    state = make_state()
    store.create_loop(state)
    for n in range(1, 8):
        store.save(Checkpoint.from_loop_state(state.model_copy(update={"iteration": n}), None), retention=4)
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT COUNT(*), MAX(seq) FROM checkpoints").fetchone()
    assert rows == (4, 4)  # four rows ever written: each newer checkpoint took the oldest one's row
    store.save(Checkpoint.from_loop_state(state.model_copy(update={"iteration": 8}), None), retention=2)
    assert [c.iteration for c in store.list_checkpoints("loop_a") if isinstance(c, Checkpoint)] == [8, 7]
