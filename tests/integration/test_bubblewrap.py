"""``isolation = "bubblewrap"``: a loop's commands under Debian's bwrap (issue 11).

Real bwrap, a real git worktree and the real sandbox. One probe command tries everything an
agent should and should not be able to do and prints what happened, so the whole matrix costs a
single sandboxed run. Without a working ``bwrap`` the tests are skipped, or fail when
``LOOPWRIGHT_REQUIRE_BWRAP=1`` (CI sets it: ``.ci/run`` installs bubblewrap first).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local.evidence_key import KEY_FILE_NAME, LocalEd25519Signer, user_state_dir
from loopwright.adapters.local.git_workspace import GitWorktreeWorkspace
from loopwright.adapters.local.isolation import BubblewrapIsolation, check_bubblewrap
from loopwright.adapters.local.processes import ProcessLedger
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.conditions import evaluate_condition
from loopwright.exceptions import ConfigError
from loopwright.models import ExitConditionConfig, ExitConditionStatusValue, ExitConditionType
from tests.environments import loopwright_venv
from tests.integration.helpers import make_repo
from tests.integration.test_sandbox import wait_gone

#: Set to 1 (CI) to make a missing or broken bwrap a failure instead of a skip.
REQUIRE_ENV = "LOOPWRIGHT_REQUIRE_BWRAP"
LOOP_ID = "boxed"

# Tries each action and prints {action: "ok" | "<error>"} as JSON (argv: paths to try).
PROBE = textwrap.dedent(
    """
    import json, os, pathlib, socket, sys
    paths = json.loads(sys.argv[1])
    seen = {}
    def attempt(name, action):
        try:
            result = action()
            seen[name] = "ok" if result is None else result
        except OSError as exc:
            seen[name] = type(exc).__name__
    def write(path):
        return lambda: pathlib.Path(path).write_text("agent was here") and None
    attempt("write_worktree", write(os.path.join(paths["worktree"], "work.txt")))
    attempt("write_report", write(paths["report"]))
    attempt("write_checkout", write(os.path.join(paths["workspace"], "README.md")))
    attempt("write_git_config", write(os.path.join(paths["workspace"], ".git", "config")))
    attempt("write_git_hook", write(os.path.join(paths["workspace"], ".git", "hooks", "pre-commit")))
    attempt("see_store", lambda: str(os.path.exists(paths["db"])))
    attempt("write_store", write(paths["db"]))
    attempt("write_policy", write(os.path.join(paths["policies"], "iteration_limit.cedar")))
    attempt("write_home", write(os.path.join(os.environ["HOME"], "planted")))
    attempt("read_home", lambda: str(os.path.exists(os.path.join(os.environ["HOME"], "secret"))))
    attempt("write_ledger", write(os.path.join(paths["ledger"], "forged.json")))
    attempt("write_tmp", write("/tmp/scratch"))
    attempt("see_host_tmp", lambda: str(os.path.exists(paths["host_tmp"])))
    attempt("see_evidence_key", lambda: str(os.path.exists(paths["key"])))
    attempt("interfaces", lambda: ",".join(name for _, name in socket.if_nameindex()))
    print(json.dumps(seen))
    """
)


@pytest.fixture(scope="module")
def bwrap() -> str:
    try:
        return check_bubblewrap(network=False)
    except ConfigError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1: the bubblewrap tests are required)")
        pytest.skip(f"bubblewrap is not usable here: {exc}")


class Loop:
    """A repository with a loop's worktree, store and files, and a bwrap'd sandbox for it."""

    def __init__(self, root: Path, bwrap: str, *, network: bool) -> None:
        self.workspace = make_repo(root / "ws", {"README.md": "the user's checkout\n"})
        self.state_dir = self.workspace / ".loopwright"
        self.worktree, _, _ = GitWorktreeWorkspace(self.workspace, self.state_dir).prepare(LOOP_ID)
        self.db = self.state_dir / "loopwright.db"
        SqliteStore(self.db)
        self.policies = self.worktree / "policies"  # a policy folder inside a writable folder
        self.policies.mkdir()
        (self.policies / "iteration_limit.cedar").write_text("// the rules\n")
        self.home = root / "home"
        self.home.mkdir()
        (self.home / "secret").write_text("token")
        self.outside = root / "outside.txt"  # a file of the host's /tmp, outside the repository
        self.outside.write_text("host")
        self.ledger = ProcessLedger(self.state_dir, LOOP_ID)
        self.isolation = BubblewrapIsolation(
            workspace=self.workspace,
            state_dir=self.state_dir,
            loop_id=LOOP_ID,
            worktree=self.worktree,
            network=network,
            policy_dir=self.policies,
            bwrap=bwrap,
        )
        self.sandbox = SubprocessSandbox(kill_grace_seconds=0.3)
        self.sandbox.attach(self.ledger, isolation=self.isolation, environment=loopwright_venv())

    def probe(self) -> dict[str, str]:
        paths = {
            "worktree": str(self.worktree),
            "report": str(self.ledger.loop_dir / "report.json"),
            "workspace": str(self.workspace),
            "db": str(self.db),
            "policies": str(self.policies),
            "ledger": str(self.ledger.folder),
            "host_tmp": str(self.outside),
            "key": str(user_state_dir() / KEY_FILE_NAME),
        }
        result = self.sandbox.run(
            ["python", "-c", PROBE, json.dumps(paths)],
            cwd=self.worktree,
            timeout_seconds=60,
            env={"HOME": str(self.home)},
        )
        assert result.exit_code == 0, result.stderr or result.error
        seen: dict[str, str] = json.loads(result.stdout)
        return seen


@pytest.fixture()
def key_outside_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The user's evidence key in a folder outside /tmp and outside the sandbox's HOME (where only
    its own mount hides it); removed afterwards."""
    folder = Path.home() / ".cache" / f"loopwright-bwrap-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(folder))
    LocalEd25519Signer.load_or_create()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_the_agent_writes_only_its_worktree_and_files(
    tmp_path: Path, bwrap: str, key_outside_tmp: Path
) -> None:
    # Given a loop isolated with bubblewrap, without network, and the user's evidence key
    loop = Loop(tmp_path, bwrap, network=False)
    assert (key_outside_tmp / KEY_FILE_NAME).is_file()

    # When its command tries everything
    seen = loop.probe()

    # Then it wrote its worktree and its report ...
    assert seen["write_worktree"] == "ok"
    assert (loop.worktree / "work.txt").read_text() == "agent was here"
    assert seen["write_report"] == "ok"
    assert (loop.ledger.loop_dir / "report.json").read_text() == "agent was here"
    # ... and nothing of the user's or of loopwright's
    assert seen["write_checkout"] == "OSError"  # EROFS
    assert (loop.workspace / "README.md").read_text() == "the user's checkout\n"
    assert seen["write_git_config"] == "OSError"
    assert seen["write_git_hook"] == "OSError"
    assert not (loop.workspace / ".git" / "hooks" / "pre-commit").exists()
    assert seen["see_store"] == "False"  # the state folder is hidden
    assert seen["write_store"] == "OSError"  # and read-only
    assert loop.db.read_bytes().startswith(b"SQLite format 3")
    assert seen["write_policy"] == "OSError"
    assert (loop.policies / "iteration_limit.cedar").read_text() == "// the rules\n"
    assert seen["write_ledger"] == "OSError"
    assert list(loop.ledger.folder.glob("forged*")) == []
    # HOME and /tmp are private: writable, empty, and gone afterwards
    assert seen["read_home"] == "False"
    assert seen["write_home"] == "ok"
    assert not (loop.home / "planted").exists()
    assert seen["write_tmp"] == "ok"
    assert seen["see_host_tmp"] == "False"
    assert seen["see_evidence_key"] == "False"  # it cannot sign evidence as the user
    assert not Path("/tmp/scratch").exists() or Path("/tmp/scratch").read_text() != "agent was here"
    # And the network is off: a loopback interface only
    assert seen["interfaces"] == "lo"


@pytest.mark.slow
def test_the_network_stays_on_unless_switched_off(tmp_path: Path, bwrap: str) -> None:
    loop = Loop(tmp_path, bwrap, network=True)
    result = loop.sandbox.run(
        ["python", "-c", "import socket; print(len(socket.if_nameindex()))"],
        cwd=loop.worktree,
        timeout_seconds=30,
    )
    host = len(__import__("socket").if_nameindex())
    assert result.stdout.strip() == str(host)


# Starts a grandchild in its own session that writes a heartbeat into the worktree (found later by
# its command line: bwrap's PID namespace hides its host pid from the agent), then sleeps.
ESCAPING_AGENT = textwrap.dedent(
    """
    import subprocess, sys, time
    beat = (
        "import pathlib, time\\nwhile True:\\n"
        "    pathlib.Path('heartbeat').write_text(str(time.time_ns())); time.sleep(0.05)"
    )
    subprocess.Popen([sys.executable, "-c", beat, "heartbeat-of-boxed-agent"], start_new_session=True)
    print("started", flush=True)
    time.sleep(float(sys.argv[1]))
    """
)


def heartbeat_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"heartbeat-of-boxed-agent" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize(("sleep", "timeout"), [(0.2, 30), (60, 1.5)], ids=["exits", "times-out"])
def test_a_boxed_agents_children_die_with_it(
    tmp_path: Path, bwrap: str, sleep: float, timeout: float
) -> None:
    loop = Loop(tmp_path, bwrap, network=True)
    (loop.worktree / "agent.py").write_text(ESCAPING_AGENT)
    result = loop.sandbox.run(["python", "agent.py", str(sleep)], cwd=loop.worktree, timeout_seconds=timeout)
    assert "started" in result.stdout
    assert result.timed_out is (sleep > timeout)
    assert result.left_running == []
    assert all(wait_gone(pid, seconds=2) for pid in heartbeat_pids())
    beat = loop.worktree / "heartbeat"
    last = beat.read_text()
    time.sleep(0.2)
    assert beat.read_text() == last


@pytest.mark.slow
def test_exit_conditions_run_boxed_with_loopwrights_tools(tmp_path: Path, bwrap: str) -> None:
    # Given a worktree with a passing test, evaluated by the default pytest condition under bwrap
    # with the real HOME (where loopwright's interpreter may live: it is made visible again)
    loop = Loop(tmp_path, bwrap, network=False)
    (loop.worktree / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    cfg = ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS, timeout_seconds=60)
    status = evaluate_condition(cfg, loop.sandbox, loop.worktree, iteration=1)
    assert status.status is ExitConditionStatusValue.MET, status.stdout + status.stderr
    assert status.details["passed"] == 1
    # And byte code goes nowhere near the worktree: a default BUILD_SUCCEEDS works too
    build = evaluate_condition(
        ExitConditionConfig(type=ExitConditionType.BUILD_SUCCEEDS), loop.sandbox, loop.worktree, iteration=1
    )
    assert build.status is ExitConditionStatusValue.MET, build.stdout + build.stderr
    assert not list(loop.worktree.rglob("*.pyc"))


# Writes the file argv[1] (nothing for "nothing") every 0.25 s for 3 s, silent after its start.
BOXED_WORKER = textwrap.dedent(
    """
    import pathlib, sys, time
    print("started", flush=True)
    for step in range(12):
        time.sleep(0.25)
        if sys.argv[1] != "nothing":
            pathlib.Path(sys.argv[1]).write_text(str(step))
    print("done", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("activity", "idle"), [("nothing", True), ("work.txt", False)])
def test_a_boxed_agent_is_ended_when_idle_and_its_file_changes_count(
    tmp_path: Path, bwrap: str, activity: str, idle: bool
) -> None:
    # The worktree is bound into the sandbox: the host sees the boxed agent's file changes
    loop = Loop(tmp_path, bwrap, network=True)
    result = loop.sandbox.run(
        ["python", "-c", BOXED_WORKER, activity],
        cwd=loop.worktree,
        timeout_seconds=30,
        idle_timeout_seconds=1.5,
    )
    assert "started" in result.stdout
    assert result.idle is idle and result.timed_out is False
    assert result.exit_code == (None if idle else 0)
    assert result.left_running == []
