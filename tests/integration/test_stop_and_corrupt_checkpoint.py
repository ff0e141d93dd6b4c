"""`loopwright stop` from another process, and resume past a corrupt checkpoint in the real store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.models import IterationEventType
from tests.integration.helpers import cli, cli_json, cli_popen, files_loop_config, make_repo

# Each iteration writes work/<n>.txt; it takes 0.3 s so a stop lands mid-loop.
AGENT = textwrap.dedent(
    """
    import os, pathlib, time
    n = int(os.environ["LOOPWRIGHT_ITERATION"])
    pathlib.Path("work").mkdir(exist_ok=True)
    pathlib.Path(f"work/{n}.txt").write_text("done")
    time.sleep(0.3)
    """
)


def _config(tmp_path: Path, files: int) -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    return files_loop_config(
        tmp_path / "loop.toml", files=files, agent_argv=[sys.executable, str(agent)], max_iterations=50
    )


@pytest.mark.slow
def test_stop_from_another_process_ends_the_loop_after_its_step_and_resume_finishes(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    config = _config(tmp_path, files=10)  # room for the CLI's start-up (~0.7 s) between checks
    run = cli_popen(
        "run",
        "-w",
        str(workspace),
        "-c",
        str(config),
        "--loop-id",
        "stop-test",
        "--json",
        stdout=subprocess.PIPE,
    )
    store_path = workspace / ".loopwright" / "loopwright.db"
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and run.poll() is None, "loop never reached iteration 2"
        if store_path.exists():
            status = cli_json("status", "stop-test", "-w", str(workspace))
            if status.get("iteration", 0) >= 2:
                break
        time.sleep(0.1)

    stopped = cli("stop", "stop-test", "-w", str(workspace), "--reason", "operator on call")
    assert stopped.returncode == 0 and "stop queued" in stopped.stdout
    assert f"process {run.pid} runs it" in stopped.stdout
    out, _ = run.communicate(timeout=60)
    result = json.loads(out)
    assert run.returncode == 4
    assert result["outcome"] == "STOPPED" and "operator on call" in result["stop_reason"]
    assert result["iterations"] < 10

    done = cli("resume", "stop-test", "-w", str(workspace), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "CONDITIONS_MET"
    store = SqliteStore(store_path)
    started = [
        e.iteration for e in store.list_events("stop-test", types=[IterationEventType.ITERATION_STARTED])
    ]
    assert started == sorted(set(started)) == list(range(1, 11))


@pytest.mark.slow
def test_resume_skips_a_corrupt_checkpoint_with_a_clear_message(tmp_path: Path) -> None:
    # Given a loop stopped by its iteration limit after 3 iterations (3 checkpoints stored)
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    config = _config(tmp_path, files=5)
    first = cli(
        "run",
        "-w",
        str(workspace),
        "-c",
        str(config),
        "--loop-id",
        "ckpt-test",
        "--json",
        "--max-iterations",
        "3",
    )
    assert first.returncode == 3, first.stderr
    # ... whose loop is reopened as if it had been killed, and whose newest checkpoint is corrupted
    db = workspace / ".loopwright" / "loopwright.db"
    with sqlite3.connect(db) as conn:
        newest = conn.execute(
            "SELECT checkpoint_id, payload FROM checkpoints WHERE loop_id = ? ORDER BY rowid DESC LIMIT 1",
            ("ckpt-test",),
        ).fetchone()
        conn.execute(
            "UPDATE checkpoints SET payload = ? WHERE checkpoint_id = ?",
            (newest[1].replace('"tokens_used":0', '"tokens_used":999', 1), newest[0]),
        )
        row = conn.execute("SELECT state FROM loops WHERE loop_id = ?", ("ckpt-test",)).fetchone()
        state = json.loads(row[0])
        state.update(outcome=None, phase="ITERATING", ended_at=None)
        state["config"]["max_iterations"] = 10
        conn.execute(
            "UPDATE loops SET state = ?, phase = 'ITERATING', outcome = NULL WHERE loop_id = ?",
            (json.dumps(state), "ckpt-test"),
        )

    # When it is resumed
    done = cli("resume", "ckpt-test", "-w", str(workspace))

    # Then the corrupt checkpoint is named, the previous one is used, and the loop completes
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"checkpoint {newest[0]} is corrupt (checksum mismatch)" in done.stdout
    events = SqliteStore(db).list_events("ckpt-test", types=[IterationEventType.CHECKPOINT_RECOVERED])
    assert events[-1].data["skipped_corrupt"] == 1
    assert "of iteration 2" in events[-1].message
