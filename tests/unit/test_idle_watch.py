"""The idle watch of the local sandbox: output and file changes are activity, scans are cheap."""

from __future__ import annotations

import os
import time
from pathlib import Path

from loopwright.adapters.local.idle import (
    MIN_SCAN_INTERVAL_SECONDS,
    SCAN_INTERVAL_SECONDS,
    IdleWatch,
    latest,
    newest_change,
)


def _touch(path: Path, seconds: float) -> None:
    """Give ``path`` (made if missing) the modification time ``seconds`` since the epoch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, ns=(int(seconds * 1e9), int(seconds * 1e9)))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_newest_change_sees_nested_files_and_skips_vcs_and_dependencies(tmp_path: Path) -> None:
    _touch(tmp_path / "src" / "a.py", 1)
    before = newest_change(tmp_path)
    time.sleep(0.02)  # past the file system's clock tick
    (tmp_path / "src" / "a.py").write_text("changed")
    assert newest_change(tmp_path) > before

    for skipped in (".git/index", "node_modules/pkg/index.js", ".venv/lib/x.py"):
        (tmp_path / skipped).parent.mkdir(parents=True, exist_ok=True)
    settled = newest_change(tmp_path)
    for skipped in (".git/index", "node_modules/pkg/index.js", ".venv/lib/x.py"):
        (tmp_path / skipped).write_text("inside a skipped folder")
    time.sleep(0.02)
    assert newest_change(tmp_path) == settled


def test_newest_change_never_raises_and_follows_no_link(tmp_path: Path) -> None:
    assert newest_change(tmp_path / "missing") == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(outside, target_is_directory=True)
    settled = newest_change(tree)
    time.sleep(0.02)
    (outside / "new.txt").write_text("not under the tree")
    assert newest_change(tree) == settled


def test_newest_change_stops_after_max_entries(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    bounded, full = newest_change(tmp_path, max_entries=0), newest_change(tmp_path)
    time.sleep(0.02)
    (tmp_path / "a" / "b" / "new.txt").write_text("deep")
    assert newest_change(tmp_path, max_entries=0) == bounded  # the root's own times only
    assert newest_change(tmp_path) > full


def test_the_watch_counts_output_and_file_changes_as_activity(tmp_path: Path) -> None:
    clock = Clock()
    output: list[float | None] = [None]
    watch = IdleWatch(tmp_path, 10, lambda: output[0], clock=clock)
    assert watch.interval == 1.0

    clock.now += 9
    assert not watch.idle()
    output[0] = clock.now  # the command printed something
    clock.now += 9.9
    assert not watch.idle()
    time.sleep(0.02)  # past the file system's clock tick
    (tmp_path / "edit.txt").write_text("work")  # then changed a file, silently
    clock.now += 0.2  # 10.1 s after its output: idle, unless the scan sees the change
    assert not watch.idle()
    assert watch.last_activity() == clock.now
    clock.now += 10.5
    assert watch.idle()


def test_the_idle_time_counts_from_the_commands_start(tmp_path: Path) -> None:
    clock = Clock()
    watch = IdleWatch(tmp_path, 10, lambda: None, clock=clock)
    clock.now += 4  # a slow start (supervisor, bubblewrap, interpreter)
    watch.started()
    clock.now += 9
    assert not watch.idle()
    clock.now += 1.5
    assert watch.idle()


def test_the_watch_waits_at_most_a_scan_interval_and_never_spins(tmp_path: Path) -> None:
    clock = Clock()
    watch = IdleWatch(tmp_path, 2, lambda: None, clock=clock)
    assert watch.interval == 0.2
    assert watch.wait_seconds() == 0.2
    clock.now += 1.9
    assert abs(watch.wait_seconds() - 0.1) < 1e-9
    clock.now += 5
    assert watch.wait_seconds() == MIN_SCAN_INTERVAL_SECONDS
    assert IdleWatch(tmp_path, 3600, lambda: None, clock=clock).interval == SCAN_INTERVAL_SECONDS
    assert IdleWatch(tmp_path, 0.01, lambda: None, clock=clock).interval == MIN_SCAN_INTERVAL_SECONDS


def test_latest_ignores_streams_without_output() -> None:
    assert latest([None, None]) is None
    assert latest([None, 3.0, 2.0]) == 3.0
