"""The agent's record over the real SQLite store, the CLI (``run``, ``logs``, ``show``) and the
dashboard API: a command agent's lines are in its record and in ``logs``; ``--quiet`` hides them."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import SCHEMA_VERSION, SqliteStore
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import ExitConditionStatus, ExitConditionStatusValue, ExitConditionType
from loopwright.models.records import AgentOutput, IterationRecord
from tests.integration.dashboard_helpers import loop_state, open_dashboard
from tests.integration.helpers import cli, cli_popen, make_repo

AGENT = textwrap.dedent(
    """
    import os, pathlib, sys, time
    n = os.environ["LOOPWRIGHT_ITERATION"]
    print(f"agent line one of iteration {n}", flush=True)
    print(f"agent complains on stderr {n}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("AGENT_SLEEP", "0")))
    with open("notes.txt", "a") as f:
        f.write(f"iteration {n}\\n")
    print(f"agent done {n}", flush=True)
    """
)


def _record(iteration: int, text: str = "out\n") -> IterationRecord:
    return IterationRecord(
        loop_id="rec-1",
        iteration=iteration,
        prompt="do it",
        output=AgentOutput(head=text, total_chars=len(text)),
    )


# --------------------------------------------------------------------------------- the store
def test_sqlite_store_keeps_replaces_and_lists_records(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite") as store:
        assert store.get_iteration_record("rec-1", 1) is None and store.list_iteration_records("rec-1") == []
        store.save_iteration_record(_record(2))
        store.save_iteration_record(_record(1, "first\n"))
        store.save_iteration_record(_record(1, "first, rewritten\n"))  # the engine rewrites it

        assert [s.iteration for s in store.list_iteration_records("rec-1")] == [1, 2]
        again = store.get_iteration_record("rec-1", 1)
        assert again is not None and again.output.text() == "first, rewritten\n" and again.prompt == "do it"


def test_a_version_2_store_gains_the_records_table(tmp_path: Path) -> None:
    # Given a store file of schema version 2 (before records)
    path = tmp_path / "old.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE iteration_records")
        conn.execute("PRAGMA user_version=2")
    # When the current store opens it, Then records can be kept
    with SqliteStore(path) as store:
        store.save_iteration_record(_record(1))
        assert store.get_iteration_record("rec-1", 1) is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_an_unreadable_record_is_a_clear_error(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite") as store:
        store.save_iteration_record(_record(1))
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            conn.execute("UPDATE iteration_records SET record = x'00'")
        with pytest.raises(LoopFrameworkError, match=r"iteration 1 of loop 'rec-1'.*cannot be read"):
            store.get_iteration_record("rec-1", 1)


# --------------------------------------------------------------------------------- the CLI
def _workspace(tmp_path: Path, sleep: float = 0.0) -> tuple[Path, Path]:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT.replace('"0"', json.dumps(str(sleep))))
    config = tmp_path / "loop.toml"
    config.write_text(
        "\n".join(
            [
                'goal = "write two notes"',
                "max_iterations = 4",
                "[[exit_conditions]]",
                'type = "CUSTOM"',
                'name = "two_notes"',
                f'command = [{json.dumps(sys.executable)}, "-c", '
                "\"import sys; n = open('notes.txt').read().count('iteration'); "
                "print(f'{n} notes'); sys.exit(0 if n >= 2 else 1)\"]",
                "[agent]",
                'kind = "command"',
                f"command = [{json.dumps(sys.executable)}, {json.dumps(str(agent))}]",
            ]
        )
        + "\n"
    )
    return workspace, config


def test_a_command_agents_lines_are_recorded_and_printed_by_logs_and_show(tmp_path: Path) -> None:
    # Given a loop whose agent prints on stdout and stderr, run with piped output
    workspace, config = _workspace(tmp_path)
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "notes")
    assert done.returncode == 0, done.stdout + done.stderr

    # Then the run showed the agent's lines, prefixed, as they came
    assert "agent| agent line one of iteration 1" in done.stdout
    assert "agent| agent complains on stderr 2" in done.stdout

    # And logs prints the newest iteration's output, or the one asked for
    latest = cli("logs", "notes", "-w", str(workspace))
    assert latest.returncode == 0, latest.stderr
    assert "agent line one of iteration 2" in latest.stdout and "agent done 2" in latest.stdout
    assert "iteration 1" not in latest.stdout
    first = cli("logs", "notes", "-w", str(workspace), "--iteration", "1")
    assert "agent complains on stderr 1" in first.stdout

    # And show prints the whole record: prompt, commit and diff stat, the condition's output
    shown = cli("show", "notes", "-w", str(workspace), "--iteration", "2")
    assert shown.returncode == 0, shown.stderr
    for expected in (
        "# loopwright: iteration 2 of 4",
        "1 file(s) changed, +1 -0",
        "two_notes MET",
        "2 notes",
    ):
        assert expected in shown.stdout, shown.stdout
    record = json.loads(cli("show", "notes", "-w", str(workspace), "-i", "1", "--json").stdout)
    assert record["conditions"][0]["status"] == "NOT_MET" and record["diff_stat"]["insertions"] == 1
    assert record["exit_code"] == 0 and record["agent_running"] is False


def test_quiet_hides_the_agents_lines_but_they_are_still_recorded(tmp_path: Path) -> None:
    workspace, config = _workspace(tmp_path)
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "quiet", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "agent line" not in done.stdout and "agent|" not in done.stdout
    assert "agent line one of iteration 1" in cli("logs", "quiet", "-w", str(workspace), "-i", "1").stdout


def test_logs_and_show_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    workspace, config = _workspace(tmp_path)
    assert cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "errs", "-q").returncode == 0
    cases = [
        (("logs", "nope"), "no loop 'nope'"),
        (("show", "errs", "--iteration", "9"), "no record of iteration 9 (records: 1, 2)"),
        (("logs", "errs", "--iteration", "0"), "--iteration"),
        (("logs", "bad..id"), "not a loop id"),
    ]
    for args, message in cases:
        done = cli(*args, "-w", str(workspace))
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_logs_follow_prints_a_running_loops_output_and_ends_when_the_loop_ends(tmp_path: Path) -> None:
    # Given a loop whose agent works about 3 seconds per iteration
    workspace, config = _workspace(tmp_path, sleep=3.0)
    run = cli_popen("run", "-w", str(workspace), "-c", str(config), "--loop-id", "live", "-q")
    deadline = time.monotonic() + 30
    while not (workspace / ".loopwright" / "loopwright.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the loop has started its first iteration

    # When logs --follow runs alongside it
    follow = cli("logs", "live", "-w", str(workspace), "--follow", timeout=60)

    # Then it printed both iterations' output and ended once the loop did
    assert run.wait(timeout=30) == 0
    assert follow.returncode == 0, follow.stderr
    assert "agent done 1" in follow.stdout and "agent done 2" in follow.stdout
    assert "--- iteration 2 ---" in follow.stdout


# --------------------------------------------------------------------------------- the dashboard API
def test_dashboard_serves_the_iterations_and_one_record(tmp_path: Path) -> None:
    dash = open_dashboard(tmp_path)
    try:
        dash.store.create_loop(loop_state("rec-1", iteration=2))
        record = _record(1, "hello\n").with_conditions(
            [
                ExitConditionStatus(
                    name="t", type=ExitConditionType.CUSTOM, status=ExitConditionStatusValue.MET, stdout="ok"
                )
            ]
        )
        dash.store.save_iteration_record(record)

        status, body, _ = dash.call("GET", "/api/loops/rec-1/iterations")
        assert status == 200 and [i["iteration"] for i in body["items"]] == [1]
        assert body["items"][0]["conditions"] == {"t": "MET"} and body["items"][0]["output_chars"] == 6

        status, body, headers = dash.call("GET", "/api/loops/rec-1/iterations/1")
        assert status == 200 and body["output"]["head"] == "hello\n" and body["prompt"] == "do it"
        assert headers["Cache-Control"] == "no-store"

        for path, field in (
            ("/api/loops/rec-1/iterations/5", "iteration"),
            ("/api/loops/nope/iterations", None),
            ("/api/loops/nope/iterations/1", None),
            ("/api/loops/rec-1/iterations/0", "iteration"),
        ):
            status, body, _ = dash.call("GET", path)
            assert status == 404, (path, body)
            assert body["error"]["code"] == "not_found"
            if field:
                assert body["error"]["field"] == field
        status, body, _ = dash.call("GET", "/api/loops/rec-1/iterations/abc")
        assert status == 400 and body["error"]["field"] == "iteration"
    finally:
        dash.queries.close()
        dash.store.close()
