"""Containment end to end through the CLI: a bubblewrap loop, a missing bwrap, and a resume that
ends what a killed run left alive (issue 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loopwright.adapters.local.processes import MARKER_ENV, ProcessLedger
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.models import IterationEventType
from tests.integration.helpers import cli, git, make_repo
from tests.integration.test_bubblewrap import bwrap  # noqa: F401  (the fixture: skip or fail without bwrap)
from tests.integration.test_sandbox import wait_gone

# Writes done.txt holding whether it can see loopwright's database.
SEES_DB = (
    "import os, pathlib; pathlib.Path('done.txt').write_text(str(os.path.exists('../../loopwright.db')))"
)


def config(path: Path, *, isolation: str, done_file: str = "done.txt", max_iterations: int = 3) -> Path:
    check = f"import pathlib,sys; sys.exit(0 if pathlib.Path({done_file!r}).exists() else 1)"
    network = "isolation_network = false" if isolation == "bubblewrap" else ""
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "write done.txt"
            max_iterations = {max_iterations}
            isolation = "{isolation}"
            {network}
            [[exit_conditions]]
            type = "CUSTOM"
            name = "done"
            command = ["python", "-c", {json.dumps(check)}]
            [agent]
            kind = "command"
            command = ["python", "-c", {json.dumps(SEES_DB)}]
            """
        )
    )
    return path


@pytest.mark.usefixtures("bwrap")
def test_a_bubblewrap_loop_converges_without_seeing_the_store(tmp_path: Path) -> None:
    ws = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    cfg = config(tmp_path / "l.toml", isolation="bubblewrap")
    done = cli("run", "-w", str(ws), "-c", str(cfg), "--loop-id", "box", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "CONDITIONS_MET"
    assert git(ws, "show", "loopwright/box:done.txt") == "False"


def test_a_missing_bwrap_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    ws = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    cfg = config(tmp_path / "l.toml", isolation="bubblewrap")
    done = subprocess.run(
        [sys.executable, "-m", "loopwright", "run", "-w", str(ws), "-c", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": "/nonexistent"},
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "apt-get install bubblewrap" in done.stderr
    assert not (ws / ".loopwright").exists()


def test_resume_ends_what_a_previous_run_left(tmp_path: Path) -> None:
    ws = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    cfg = config(tmp_path / "l.toml", isolation="none", done_file="never.txt", max_iterations=1)
    assert cli("run", "-w", str(ws), "-c", str(cfg), "--loop-id", "lo", "--json").returncode == 3
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, MARKER_ENV: ProcessLedger(ws / ".loopwright", "lo").marker("x")},
        start_new_session=True,
    )
    try:
        assert cli("limits", "lo", "-w", str(ws), "--max-iterations", "2").returncode == 0
        resumed = cli("resume", "lo", "-w", str(ws), "--json")
        assert wait_gone(orphan.pid), resumed.stderr
        ended = SqliteStore(ws / ".loopwright" / "loopwright.db").list_events(
            "lo", types=[IterationEventType.PROCESSES_ENDED]
        )
        assert len(ended) == 1 and ended[0].data["pids"] == [orphan.pid]
    finally:
        orphan.kill()
        orphan.wait()
