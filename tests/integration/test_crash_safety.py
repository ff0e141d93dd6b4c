"""Issue 11, crash safety: nothing lost, nothing run twice, nothing written outside the loop.

Each test is one finding of the issue, driven as a user or an unlucky crash would: the CLI in a
subprocess or the library over the real SQLite store and a real git repository.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loopwright.adapters.local import sqlite_store
from loopwright.adapters.local.cedar_policy import default_policy_dir
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine import LoopFramework
from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import (
    AgentRequest,
    AgentResult,
    ControlAction,
    ControlRequest,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
)
from tests.integration.helpers import cli, cli_json, cli_popen, files_loop_config, git, make_repo

EV = IterationEventType


def _files_config(files: int, max_iterations: int = 10, **extra: object) -> LoopConfig:
    check = f"import pathlib,sys; sys.exit(0 if pathlib.Path('work/{files}.txt').exists() else 1)"
    return LoopConfig.model_validate(
        {
            "goal": f"write {files} files",
            "max_iterations": max_iterations,
            "exit_conditions": [{"type": "CUSTOM", "name": "files", "command": ["python", "-c", check]}],
            **extra,
        }
    )


def _write_file(request: AgentRequest) -> AgentResult:
    work = Path(request.worktree) / "work"
    work.mkdir(exist_ok=True)
    (work / f"{request.iteration}.txt").write_text(f"iteration {request.iteration}\n")
    return AgentResult(summary=f"wrote {request.iteration}")


@pytest.fixture
def policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped policies that loopwright (and its subprocesses) use for the test."""
    folder = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), folder)
    monkeypatch.setenv("LOOPWRIGHT_POLICY_DIR", str(folder))
    return folder


def _store(workspace: Path) -> SqliteStore:
    return SqliteStore(workspace / ".loopwright" / "loopwright.db")


# ------------------------------------------------------------------------------- loop ids
def test_a_loop_id_naming_a_path_is_refused_before_any_file_is_opened(tmp_path: Path) -> None:
    # Given a repository with a lock file two folders above .loopwright/locks/
    workspace = make_repo(tmp_path / "ws", {"poetry.lock": "keep me\n"})

    # When a loop id that is a relative path is given to run, status and stop
    done = cli(
        "run",
        "-w",
        str(workspace),
        "--loop-id",
        "../../poetry",
        "--goal",
        "g",
        "--condition",
        "CUSTOM=true",
        "--agent-command",
        "true",
    )
    status = cli("status", "../../poetry", "-w", str(workspace))

    # Then each is one line naming the option, exit 2, and nothing was created or truncated
    assert done.returncode == 2, done.stderr
    assert "--loop-id" in done.stderr and "is not a loop id" in done.stderr
    assert "Traceback" not in done.stderr + status.stderr
    assert status.returncode == 2 and "is not a loop id" in status.stderr
    assert (workspace / "poetry.lock").read_text() == "keep me\n"
    assert not (workspace / ".loopwright").exists()
    assert git(workspace, "branch", "--format=%(refname:short)") == "main"


@pytest.mark.parametrize("loop_id", ["../x", "a/b", "..", "x.lock", "a..b", "-x", ""])
def test_the_library_refuses_a_loop_id_that_is_not_one(tmp_path: Path, loop_id: str) -> None:
    with pytest.raises(ConfigError, match="is not a loop id"):
        LoopFramework(_files_config(1), workspace=tmp_path, loop_id=loop_id)
    assert not (tmp_path / ".loopwright").exists()


def test_run_with_the_id_of_an_existing_loop_is_refused_with_a_pointer_to_resume(tmp_path: Path) -> None:
    # Given a loop that ended at its iteration limit
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    first = cli(
        "run",
        "-w",
        str(workspace),
        "--loop-id",
        "mine",
        "--goal",
        "g",
        "--condition",
        "CUSTOM=false",
        "--agent-command",
        "true",
        "--max-iterations",
        "1",
        "--quiet",
    )
    assert first.returncode == 3, first.stderr

    # When run is asked for the same id with another config
    again = cli(
        "run",
        "-w",
        str(workspace),
        "--loop-id",
        "mine",
        "--goal",
        "other goal",
        "--condition",
        "CUSTOM=true",
        "--agent-command",
        "true",
        "--quiet",
    )

    # Then it is refused, the old loop is untouched, and the message says how to continue it
    assert again.returncode == 2
    assert "already exists" in again.stderr and "loopwright resume mine" in again.stderr
    state = _store(workspace).get_state("mine")
    assert (state.config.goal, state.outcome, state.sessions_used) == ("g", LoopOutcome.ITERATION_LIMIT, 1)


@pytest.mark.slow
def test_first_runs_at_once_in_a_plain_folder_make_one_snapshot(tmp_path: Path) -> None:
    # Given a folder that is not a git repository
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "app.py").write_text("X = 1\n")

    # When six loops are started in it at the same moment
    runs = [
        cli_popen(
            "run",
            "-w",
            str(folder),
            "--loop-id",
            f"first-{n}",
            "--goal",
            "g",
            "--condition",
            "CUSTOM=true",
            "--agent-command",
            "true",
            "--quiet",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(6)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]

    # Then every loop completes, and the folder got exactly one snapshot commit
    assert [run.returncode for run in runs] == [0] * 6, [err for _, err in outputs]
    subjects = git(folder, "log", "--format=%s", "HEAD").splitlines()
    assert subjects == ["loopwright: initial snapshot"]
    branches = git(folder, "branch", "--format=%(refname:short)").splitlines()
    assert sorted(b for b in branches if b.startswith("loopwright/")) == [
        f"loopwright/first-{n}" for n in range(6)
    ]


# ------------------------------------------------------------------------------- git containment
AGENT_DELETING_DOT_GIT = textwrap.dedent(
    """
    import os, pathlib
    n = int(os.environ["LOOPWRIGHT_ITERATION"])
    pathlib.Path("work").mkdir(exist_ok=True)
    pathlib.Path(f"work/{n}.txt").write_text(f"iteration {n}\\n")
    if n == 2 and pathlib.Path(".git").exists():
        pathlib.Path(".git").unlink()
    """
)


def test_an_agent_deleting_its_worktree_git_file_pauses_the_loop_and_never_commits_in_the_users_checkout(
    tmp_path: Path,
) -> None:
    # Given a user's repository with an uncommitted README edit and an untracked note
    workspace = make_repo(tmp_path / "ws", {"README.md": "original\n"})
    (workspace / "README.md").write_text("my uncommitted edit\n")
    (workspace / "notes.txt").write_text("my untracked notes\n")
    user_head = git(workspace, "rev-parse", "HEAD")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT_DELETING_DOT_GIT)
    config = files_loop_config(
        tmp_path / "loop.toml", files=3, agent_argv=[sys.executable, str(agent)], max_iterations=6
    )

    # When the agent deletes the worktree's .git file in iteration 2
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "dotgit", "--json")

    # Then the loop pauses (exit 6) saying why, and the user's checkout is exactly as it was
    assert done.returncode == 6, done.stderr
    result = json.loads(done.stdout)
    assert result["phase"] == "PAUSED" and ".git" in result["stop_reason"]
    assert git(workspace, "rev-parse", "HEAD") == user_head
    assert git(workspace, "log", "--format=%s", "main").splitlines() == ["initial"]
    assert (workspace / "README.md").read_text() == "my uncommitted edit\n"
    status = git(workspace, "status", "--porcelain")
    assert "M README.md" in status and "?? notes.txt" in status  # still uncommitted
    assert (
        git(workspace, "log", "--format=%s", "loopwright/dotgit").splitlines()[0] == "loopwright: iteration 1"
    )

    # And resume restores the worktree's .git file and the loop completes on its own branch
    resumed = cli("resume", "dotgit", "-w", str(workspace), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outcome"] == "CONDITIONS_MET"
    tree = git(workspace, "ls-tree", "-r", "--name-only", "loopwright/dotgit").splitlines()
    assert {"work/1.txt", "work/3.txt"} <= set(tree)
    # iteration 2's uncommitted work was kept on a salvage ref before the worktree was reset
    salvaged = _store(workspace).list_events("dotgit", types=[EV.WORK_SALVAGED])
    assert len(salvaged) == 1
    assert git(workspace, "show", f"{salvaged[0].data['ref']}:work/2.txt") == "iteration 2"
    assert git(workspace, "rev-parse", "HEAD") == user_head
    assert (workspace / "README.md").read_text() == "my uncommitted edit\n"


def test_an_agent_switching_branches_pauses_the_loop_without_committing(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})

    def switch(request: AgentRequest) -> AgentResult:
        _write_file(request)
        if request.iteration == 1:
            git(Path(request.worktree), "checkout", "-q", "-b", "elsewhere")
        return AgentResult(summary="switched")

    loop = LoopFramework(_files_config(2), workspace=workspace, loop_id="switch")
    result = loop.run(work_function=switch)

    assert result.phase is LoopPhase.PAUSED and result.outcome is None
    assert "refs/heads/elsewhere" in (result.stop_reason or "")
    assert git(workspace, "rev-parse", "loopwright/switch") == git(workspace, "rev-parse", "main")
    assert git(workspace, "log", "--format=%s", "elsewhere").splitlines() == ["initial"]
    errors = _store(workspace).list_events("switch", types=[EV.ERROR])
    assert errors and "changed branches" in errors[0].message

    # Resuming puts HEAD back on the loop's branch and keeps the worktree's files
    resumed = LoopFramework.open("switch", workspace=workspace).run(work_function=_write_file)
    assert resumed.outcome is LoopOutcome.CONDITIONS_MET
    assert "work/1.txt" in git(workspace, "ls-tree", "-r", "--name-only", "loopwright/switch")


def test_a_nul_byte_in_the_agents_summary_does_not_wedge_the_loop(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})

    def nul(request: AgentRequest) -> AgentResult:
        _write_file(request)
        return AgentResult(summary="fixed\x00it\x1b[31m", tokens_used=1)

    result = LoopFramework(_files_config(2), workspace=workspace, loop_id="nul").run(work_function=nul)

    assert result.outcome is LoopOutcome.CONDITIONS_MET
    message = git(workspace, "log", "-1", "--format=%B", "loopwright/nul")
    assert message.startswith("loopwright: iteration 2") and "fixedit[31m" in message


# ------------------------------------------------------------------------------- atomic steps
def test_a_crash_while_the_iteration_is_written_never_leaves_a_checkpoint_without_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store whose process "dies" while writing iteration 2's AGENT_COMPLETED event
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    real_insert = sqlite_store._insert_events

    def dying_insert(conn: sqlite3.Connection, events: object) -> None:
        batch = list(events)  # type: ignore[call-overload]
        if any(e.type is EV.AGENT_COMPLETED and e.iteration == 2 for e in batch):
            raise KeyboardInterrupt  # the process is killed inside the transaction
        real_insert(conn, batch)

    monkeypatch.setattr(sqlite_store, "_insert_events", dying_insert)
    loop = LoopFramework(_files_config(5), workspace=workspace, loop_id="atomic")
    with pytest.raises(KeyboardInterrupt):
        loop.run(work_function=_write_file)
    monkeypatch.setattr(sqlite_store, "_insert_events", real_insert)

    # Then every stored checkpoint has its iteration's agent event, and resume redoes iteration 2
    store = _store(workspace)
    checkpointed = {c.iteration for c in store.list_checkpoints("atomic") if not isinstance(c, str)}
    agent_events = {e.iteration for e in store.list_events("atomic", types=[EV.AGENT_COMPLETED])}
    assert checkpointed == {1} and agent_events == {1}
    result = LoopFramework.open("atomic", workspace=workspace).run(work_function=_write_file)
    assert (result.outcome, result.iterations) == (LoopOutcome.CONDITIONS_MET, 5)
    completed = [e.iteration for e in store.list_events("atomic", types=[EV.AGENT_COMPLETED])]
    assert completed == [1, 2, 3, 4, 5]


def test_the_sqlite_store_writes_state_events_and_checkpoint_together_or_not_at_all(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    LoopFramework(_files_config(1), workspace=workspace, loop_id="tx").run(work_function=_write_file)
    store = _store(workspace)
    state = store.get_state("tx")
    before = store.list_checkpoints("tx")
    from loopwright.models import Checkpoint, IterationEvent

    stale = state.model_copy(update={"version": state.version - 1})  # another writer won
    event = IterationEvent(loop_id="tx", iteration=1, type=EV.ERROR, phase=state.phase, message="x")
    with pytest.raises(LoopFrameworkError, match="changed by another writer"):
        store.save_state_with_checkpoint(stale, [event], Checkpoint.from_loop_state(stale, None), 5)

    assert len(store.list_checkpoints("tx")) == len(before)
    assert not store.list_events("tx", types=[EV.ERROR])


# ------------------------------------------------------------------------------- garbled rows
def test_garbled_event_and_control_rows_are_quarantined_with_a_warning(tmp_path: Path) -> None:
    # Given a loop that ended at its limit, with one garbled event row and one garbled control row
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    LoopFramework(_files_config(9, max_iterations=2), workspace=workspace, loop_id="garbled").run(
        work_function=_write_file
    )
    store = _store(workspace)
    store.add_control(
        ControlRequest(loop_id="garbled", action=ControlAction.PAUSE, principal='User::"u"', reason="x")
    )
    with sqlite3.connect(workspace / ".loopwright" / "loopwright.db") as conn:
        conn.execute("UPDATE events SET event='{\"half\": ' WHERE seq=(SELECT MIN(seq) FROM events)")
        conn.execute("UPDATE controls SET payload='not json'")
    store.close()

    # When the events are listed and the loop is resumed
    events = cli("events", "garbled", "-w", str(workspace))
    raised = cli("limits", "garbled", "-w", str(workspace), "--max-iterations", "3")
    resumed = LoopFramework.open("garbled", workspace=workspace).run(work_function=_write_file)

    # Then both work, say what was set aside, and the rows are kept in the quarantine table
    assert events.returncode == 0, events.stderr
    assert "moved to the quarantine table" in events.stderr and "Traceback" not in events.stderr
    assert raised.returncode == 0, raised.stderr
    assert (resumed.outcome, resumed.iterations) == (LoopOutcome.ITERATION_LIMIT, 3)
    sources = sorted(row["source"] for row in SqliteStore(store.path).quarantined("garbled"))
    assert sources == ["controls", "events"]


# ------------------------------------------------------------------------------- partial work
def test_an_interrupted_iteration_keeps_its_partial_work_on_a_salvage_ref(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})

    def interrupted(request: AgentRequest) -> AgentResult:
        _write_file(request)
        if request.iteration == 2:
            (Path(request.worktree) / "half-done.py").write_text("def f():\n    pass\n")
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM through the CLI, while the agent works
        return AgentResult(summary="ok")

    with pytest.raises(KeyboardInterrupt):
        LoopFramework(_files_config(3), workspace=workspace, loop_id="salv").run(work_function=interrupted)

    ref = "refs/loopwright/salv/salvage/2"
    assert set(git(workspace, "ls-tree", "-r", "--name-only", ref).splitlines()) >= {
        "half-done.py",
        "work/2.txt",
    }
    salvaged = _store(workspace).list_events("salv", types=[EV.WORK_SALVAGED])
    assert len(salvaged) == 1 and salvaged[0].data["ref"] == ref and salvaged[0].iteration == 2

    # Resume resets the worktree to iteration 1's checkpoint; the salvage ref survives it
    result = LoopFramework.open("salv", workspace=workspace).run(work_function=_write_file)
    assert result.outcome is LoopOutcome.CONDITIONS_MET
    assert "half-done.py" not in git(workspace, "ls-tree", "-r", "--name-only", "loopwright/salv")
    assert git(workspace, "rev-parse", "--verify", ref)
    assert len(_store(workspace).list_events("salv", types=[EV.WORK_SALVAGED])) == 1  # not twice


def test_resume_reports_and_keeps_the_commits_it_moves_past(tmp_path: Path) -> None:
    # Given a loop of 3 iterations whose newest two checkpoints were lost (a garbled WAL, say)
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    LoopFramework(_files_config(9, max_iterations=3), workspace=workspace, loop_id="lost").run(
        work_function=_write_file
    )
    head = git(workspace, "rev-parse", "loopwright/lost")
    with sqlite3.connect(workspace / ".loopwright" / "loopwright.db") as conn:
        conn.execute("DELETE FROM checkpoints WHERE loop_id='lost' AND iteration > 1")
    assert cli("limits", "lost", "-w", str(workspace), "--max-iterations", "4").returncode == 0

    # When it is resumed from the checkpoint of iteration 1
    resumed = LoopFramework.open("lost", workspace=workspace).run(work_function=_write_file)

    # Then the two commits after it are reported and stay reachable on a ref
    assert (resumed.outcome, resumed.iterations) == (LoopOutcome.ITERATION_LIMIT, 4)
    aside = _store(workspace).list_events("lost", types=[EV.COMMITS_SET_ASIDE])
    assert len(aside) == 1 and aside[0].data["commit"] == head
    assert [c.split(" ", 1)[1] for c in aside[0].data["commits"]] == [
        "loopwright: iteration 3",
        "loopwright: iteration 2",
    ]
    assert git(workspace, "rev-parse", aside[0].data["ref"]) == head


@pytest.mark.slow
def test_sigterm_ends_the_agent_records_the_loop_interrupted_and_salvages_its_work(tmp_path: Path) -> None:
    # Given a loop whose agent writes a file, then works for a long time in iteration 1
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent, marker = tmp_path / "agent.py", tmp_path / "agent.pid"
    agent.write_text(
        textwrap.dedent(
            f"""
            import os, pathlib, time
            pathlib.Path("partial.txt").write_text("half\\n")
            pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))
            time.sleep(120)
            """
        )
    )
    config = files_loop_config(
        tmp_path / "loop.toml", files=1, agent_argv=[sys.executable, str(agent)], max_iterations=3
    )
    run = cli_popen(
        "run",
        "-w",
        str(workspace),
        "-c",
        str(config),
        "--loop-id",
        "term",
        "--quiet",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and run.poll() is None, "the agent never started"
        time.sleep(0.05)
    agent_pid = int(marker.read_text())

    # When loopwright gets SIGTERM
    os.kill(run.pid, signal.SIGTERM)
    _, err = run.communicate(timeout=30)

    # Then it exits 130 saying how to resume, the agent is gone, and its work is on a salvage ref
    assert run.returncode == 130, err
    assert "loopwright resume term" in err
    with pytest.raises(ProcessLookupError):
        os.kill(agent_pid, 0)
    status = cli_json("status", "term", "-w", str(workspace))
    assert status["phase"] == "INTERRUPTED"
    assert git(workspace, "show", "refs/loopwright/term/salvage/1:partial.txt") == "half"


# ------------------------------------------------------------------------------- the rules hold
AGENT_RAISING_ITS_LIMIT = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys
    loop, workspace, log = os.environ["LOOPWRIGHT_LOOP_ID"], sys.argv[1], pathlib.Path(sys.argv[2])
    done = subprocess.run(
        [sys.executable, "-m", "loopwright", "limits", loop, "-w", workspace,
         "--max-iterations", "6", "--token-budget", "1000000"],
        capture_output=True, text=True,
    )
    with log.open("a") as f:
        f.write(f"{done.returncode} {done.stderr.strip()}\\n")
    """
)


def test_an_agent_cannot_raise_its_own_limits_through_the_cli(tmp_path: Path) -> None:
    # Given a loop limited to 2 iterations whose agent tries to raise the limit to 6 each time
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent, log = tmp_path / "agent.py", tmp_path / "agent.log"
    agent.write_text(AGENT_RAISING_ITS_LIMIT)
    config = files_loop_config(
        tmp_path / "loop.toml",
        files=99,
        agent_argv=[sys.executable, str(agent), str(workspace), str(log)],
        max_iterations=2,
    )

    # When the loop runs
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "greedy", "--json")

    # Then Cedar refused each attempt as the agent's (exit 3, the forbid policy named), and the
    # loop stopped at the limit its human set
    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout)["iterations"] == 2
    attempts = log.read_text().splitlines()
    assert len(attempts) == 2
    assert all(a.startswith("3 ") and "agent-cannot-raise-limit" in a for a in attempts), attempts
    assert 'Agent::"greedy"' in attempts[0]
    state = _store(workspace).get_state("greedy")
    assert (state.config.max_iterations, state.config.token_budget) == (2, None)
    assert not _store(workspace).list_events("greedy", types=[EV.CONTROL_APPLIED])


def test_a_resume_under_changed_policies_needs_an_operator_to_accept_them(
    tmp_path: Path, policies: Path
) -> None:
    # Given a loop that ended at its iteration limit under a copy of the shipped policies
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    config = files_loop_config(tmp_path / "loop.toml", files=99, agent_argv=["true"], max_iterations=2)
    assert (
        cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "rules", "--quiet").returncode == 3
    )
    recorded = _store(workspace).get_state("rules").policy_files
    assert recorded is not None and "iteration_limit.cedar" in recorded

    # When the iteration limit policy is relaxed on disk (as an agent running as the user could)
    limit = policies / "iteration_limit.cedar"
    relaxed = "context.iteration > resource.max_iterations + 1"  # one more iteration than the human set
    limit.write_text(limit.read_text().replace("context.iteration > resource.max_iterations", relaxed))
    refused = cli("resume", "rules", "-w", str(workspace))
    accepted = cli("resume", "rules", "-w", str(workspace), "--accept-policy-change", "--quiet")

    # Then a plain resume is refused naming the file and the way to accept it, and nothing ran
    assert refused.returncode == 3, refused.stderr
    assert "iteration_limit.cedar" in refused.stderr and "--accept-policy-change" in refused.stderr
    # And an operator's acceptance is recorded with who accepted what, and the new rules apply
    assert accepted.returncode == 3, accepted.stderr
    assert _store(workspace).get_state("rules").iteration == 3
    changes = _store(workspace).list_events("rules", types=[EV.POLICY_SET_CHANGED])
    assert len(changes) == 1 and changes[0].data["changed"] == ["iteration_limit.cedar"]
    assert changes[0].data["principal"].startswith('User::"')
    assert _store(workspace).get_state("rules").policy_files != recorded


AGENT_POSTING_TO_THE_DASHBOARD = textwrap.dedent(
    """
    import json, os, pathlib, sys, urllib.error, urllib.request
    url, log = sys.argv[1], pathlib.Path(sys.argv[2])
    loop = os.environ["LOOPWRIGHT_LOOP_ID"]
    body = json.dumps({"max_iterations": 6}).encode()
    request = urllib.request.Request(
        f"{url}api/loops/{loop}/limits", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Loopwright-User": "alice"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    with log.open("a") as f:
        f.write(json.dumps({"status": status, "body": json.loads(text)}) + "\\n")
    """
)


def test_an_agent_cannot_raise_its_limits_through_the_local_dashboard(tmp_path: Path) -> None:
    # Given a local dashboard whose user operates every project, and a loop of 2 iterations whose
    # agent asks that dashboard (as its user, even naming her) to raise the limit to 6
    from tests.integration.test_dashboard_server import serve

    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent, log = tmp_path / "agent.py", tmp_path / "agent.log"
    agent.write_text(AGENT_POSTING_TO_THE_DASHBOARD)
    with serve(workspace / ".loopwright", user="alice") as served:
        config = files_loop_config(
            tmp_path / "loop.toml",
            files=99,
            agent_argv=[sys.executable, str(agent), served.url, str(log)],
            max_iterations=2,
        )

        # When the loop runs
        done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "caller", "--json")

        # Then the dashboard took each request for the loop's agent, Cedar refused it, and the
        # human's limit held; a request of the human herself is still hers
        assert done.returncode == 3, done.stderr
        answers = [json.loads(line) for line in log.read_text().splitlines()]
        assert [a["status"] for a in answers] == [403, 403], answers
        assert all("agent-cannot-raise-limit" in a["body"]["error"]["policy_ids"] for a in answers)
        assert _store(workspace).get_state("caller").config.max_iterations == 2
        status, body, _ = served.post("/api/loops/caller/limits", {"max_iterations": 3})
        assert status == 200, body


AGENT_REWRITING_THE_CONTROLS = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys
    policies, workspace, log = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    controls = policies / "controls.cedar"
    text = controls.read_text()
    if "agents-may-do-anything" not in text:
        text = text.replace("forbid (", "permit (")  # every forbid becomes a permit
        text += '@id("agents-may-do-anything")\\npermit (principal is Agent, action, resource);\\n'
        controls.write_text(text)
    done = subprocess.run(  # with the rewritten policies named (its own environment has none)
        [sys.executable, "-m", "loopwright", "limits", os.environ["LOOPWRIGHT_LOOP_ID"], "-w", workspace,
         "--max-iterations", "9"],
        capture_output=True, text=True, env={**os.environ, "LOOPWRIGHT_POLICY_DIR": str(policies)},
    )
    with log.open("a") as f:
        f.write(f"{done.returncode} {done.stderr.strip()}\\n")
    """
)


def test_policies_an_agent_rewrites_decide_nothing_for_its_loop(tmp_path: Path, policies: Path) -> None:
    # Given a loop of 2 iterations under a copy of the policies, whose agent rewrites
    # controls.cedar to let agents do anything, then raises its own limit
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    agent, log = tmp_path / "agent.py", tmp_path / "agent.log"
    agent.write_text(AGENT_REWRITING_THE_CONTROLS)
    config = files_loop_config(
        tmp_path / "loop.toml",
        files=99,
        agent_argv=[sys.executable, str(agent), str(policies), str(workspace), str(log)],
        max_iterations=2,
    )

    # When the loop runs
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "rewriter", "--json")

    # Then the rewritten policies decided nothing: the limit held, and each attempt was refused
    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout)["iterations"] == 2
    attempts = log.read_text().splitlines()
    assert attempts and all(a.startswith("3 ") and "policies changed" in a for a in attempts), attempts
    assert _store(workspace).get_state("rewriter").config.max_iterations == 2

    # And the agent cannot accept the change for itself, while the human still can
    as_agent = subprocess.run(
        [
            sys.executable,
            "-m",
            "loopwright",
            "resume",
            "rewriter",
            "-w",
            str(workspace),
            "--accept-policy-change",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "LOOPWRIGHT_LOOP_ID": "rewriter"},
    )
    assert as_agent.returncode == 3 and "only a human operator" in as_agent.stderr
    assert not _store(workspace).list_events("rewriter", types=[EV.POLICY_SET_CHANGED])


def test_work_an_attempt_salvaged_before_dying_is_recorded_once_by_the_next_resume(tmp_path: Path) -> None:
    # Given a loop stopped at its limit after iteration 1, with uncommitted work in its worktree
    # that a killed resume already put on a salvage ref without recording it
    from loopwright.adapters.local.git_workspace import GitWorktreeWorkspace

    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    LoopFramework(_files_config(9, max_iterations=1), workspace=workspace, loop_id="twice").run(
        work_function=_write_file
    )
    worktree = Path(_store(workspace).get_state("twice").worktree)
    (worktree / "partial.txt").write_text("half\n")
    earlier = GitWorktreeWorkspace(workspace).salvage("twice", "2")
    assert earlier is not None and not earlier.earlier
    assert cli("limits", "twice", "-w", str(workspace), "--max-iterations", "2").returncode == 0

    # When the loop is resumed (twice)
    LoopFramework.open("twice", workspace=workspace).run(work_function=_write_file)

    # Then the kept work is recorded once, naming the ref the dead attempt made
    salvaged = _store(workspace).list_events("twice", types=[EV.WORK_SALVAGED])
    assert [e.data["ref"] for e in salvaged] == [earlier.ref]
    assert git(workspace, "show", f"{earlier.ref}:partial.txt") == "half"
