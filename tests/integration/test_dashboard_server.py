"""The local dashboard over real HTTP (urllib): the page and the API, its guards, real loops
controlled from it (approve, raise a limit, resume, stop, pause on close) and the CLI command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from loopwright.cli.dashboard import dashboard
from loopwright.cli.dashboard_local import LocalDashboard, local_dashboard
from loopwright.dashboard.api import build_app
from loopwright.dashboard.server import DashboardServer
from tests.integration.dashboard_helpers import loop_state
from tests.integration.helpers import cli, make_repo

CHECK = "import pathlib,sys; sys.exit(0 if pathlib.Path('done.txt').exists() else 1)"
# Asks a question in iteration 1; writes done.txt once the prompt carries the answer "ship it".
ASKING_AGENT = textwrap.dedent(
    """
    import json, os, pathlib
    it = int(os.environ["LOOPWRIGHT_ITERATION"])
    report = pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"])
    if it == 1:
        report.write_text(json.dumps({"needs_human": "may I ship?"}))
    elif "ship it" in pathlib.Path(os.environ["LOOPWRIGHT_PROMPT_FILE"]).read_text():
        pathlib.Path("done.txt").write_text("shipped")
    """
)
# Never done; each iteration takes 0.3 s.
SLOW_AGENT = "import time; time.sleep(0.3)\n"


def loop_config(tmp_path: Path, agent_source: str, max_iterations: int) -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(agent_source)
    path = tmp_path / "loop.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "ship"
            project = "demo"
            max_iterations = {max_iterations}
            git_isolation = false
            [[exit_conditions]]
            type = "CUSTOM"
            name = "done"
            command = ["python", "-c", {json.dumps(CHECK)}]
            [agent]
            kind = "command"
            command = {json.dumps([sys.executable, str(agent)])}
            """
        )
    )
    return path


def request(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, Message]:
    """(status, JSON body or text, headers: case-insensitive) of one HTTP request; HTTP errors
    are returned too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, raw, out = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, out = exc.code, exc.read(), exc.headers
    text = raw.decode()
    return status, json.loads(text) if "json" in (out.get("Content-Type") or "") else text, out


def wait_for(check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


class Served:
    def __init__(self, local: LocalDashboard, server: DashboardServer, log: list[str]) -> None:
        self.local = local
        self.server = server
        self.log = log  # the resumer's lines: why a loop run from the dashboard ended
        self.url = f"http://127.0.0.1:{server.server_address[1]}/"

    def wait_for(self, check: Callable[[], bool], loop_id: str, seconds: float = 60.0) -> None:
        """``wait_for``, and on a timeout the resumer's lines and the loop's events in the error."""
        try:
            wait_for(check, seconds)
        except AssertionError:
            events = self.get(f"/api/loops/{loop_id}/events?limit=50")[1]
            lines = [f"{e['event_type']}: {e.get('message')}" for e in events.get("items", [])]
            raise AssertionError(
                f"timed out; resumer: {self.log}; state: {self.get(f'/api/loops/{loop_id}')[1]}; "
                f"events: {lines}; running: {self.local.resumer.running()}"
            ) from None

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any, Message]:
        return request(self.url + path.lstrip("/"), **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, Message]:
        return request(self.url + path.lstrip("/"), "POST", body if body is not None else {}, **kwargs)


@contextmanager
def serve(
    state_dir: Path, user: str = "alice", *, host: str = "127.0.0.1", token: str | None = None
) -> Iterator[Served]:
    """``loopwright dashboard``'s app (the plan routes too) on a free port of ``host``."""
    log: list[str] = []
    local = local_dashboard(state_dir, user=user, allow_impersonation=host == "127.0.0.1", log=log.append)
    server = DashboardServer(build_app(local.deps, routers=local.routers), host, 0, token=token)
    try:
        with server.running():
            yield Served(local, server, log)
    finally:
        local.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws", {"README.md": "x\n"})


@pytest.fixture
def served(workspace: Path) -> Iterator[Served]:
    with serve(workspace / ".loopwright") as running:
        yield running


def test_page_api_and_guards_over_http(served: Served) -> None:
    served.local.store.create_loop(loop_state("l1"))
    status, html, headers = served.get("/")
    assert status == 200 and 'data-testid="loops-table"' in html
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert served.get("/static/app.js")[0] == 200
    status, body, _ = served.get("/api/loops?limit=1")
    assert status == 200 and [item["loop_id"] for item in body["items"]] == ["l1"]
    assert body["items"][0]["running"] is False  # no process holds its lock
    assert served.get("/api/loops/l1")[1]["shown_phase"] == "INTERRUPTED"
    assert served.get("/api/loops/nope")[0] == 404
    assert served.get("/api/identity")[1]["principal"] == 'User::"alice"'

    evil_host = served.get("/api/loops", headers={"Host": "evil.example:80"})
    assert evil_host[0] == 403 and "localhost" in evil_host[1]["error"]["message"]
    cross_site = served.post("/api/loops/l1/stop", headers={"Origin": "http://evil.example"})
    assert cross_site[0] == 403 and "cross-site" in cross_site[1]["error"]["message"]
    assert served.local.store.pending_controls("l1") == []
    huge = request(served.url + "api/loops/l1/stop", "POST", {"reason": "x" * (1024 * 1024 + 10)})
    assert huge[0] == 413


@pytest.mark.slow
def test_approve_from_the_page_runs_the_loop_in_the_dashboard(workspace: Path, tmp_path: Path) -> None:
    config = loop_config(tmp_path, ASKING_AGENT, max_iterations=5)
    first = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "ask", "--json")
    assert first.returncode == 5, first.stderr  # AWAITING_RESPONSE
    with serve(workspace / ".loopwright") as served:
        progress = served.get("/api/loops/ask")[1]
        assert (
            "may I ship?" in progress["awaiting_response"] and progress["shown_phase"] == "AWAITING_RESPONSE"
        )
        version = served.local.store.get_state("ask").version
        refused = served.post(
            "/api/loops/ask/approve", {"response": "ship it"}, headers={"X-Loopwright-User": "mallory"}
        )
        assert refused[0] == 403 and served.local.store.get_state("ask").version == version

        status, body, _ = served.post("/api/loops/ask/approve", {"response": "ship it"})
        assert status == 200 and body["status"] == "applied", body
        wait_for(lambda: served.get("/api/loops/ask")[1]["finished"])
        done = served.get("/api/loops/ask")[1]
        assert done["outcome"] == "CONDITIONS_MET" and done["iteration"] == 2
        history = served.get("/api/loops/ask/conditions")[1]
        # newest first: iteration 2 met it; iteration 1 and the baseline (iteration 0) did not
        assert [e["statuses"]["done"] for e in history["evaluations"]] == ["MET", "NOT_MET", "NOT_MET"]


@pytest.mark.slow
def test_raise_resume_stop_and_pause_on_close(workspace: Path, tmp_path: Path) -> None:
    config = loop_config(tmp_path, SLOW_AGENT, max_iterations=1)
    first = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "slow", "--json")
    assert first.returncode == 3, first.stderr  # ITERATION_LIMIT
    with serve(workspace / ".loopwright") as served:
        assert served.post("/api/loops/slow/resume")[0] == 200  # Cedar denies iteration 2 again
        wait_for(lambda: served.local.resumer.running() == [])
        assert served.get("/api/loops/slow")[1]["outcome"] == "ITERATION_LIMIT"

        raised = served.post("/api/loops/slow/limits", {"max_iterations": 50})
        assert raised[0] == 200 and raised[1]["status"] == "applied"
        assert served.post("/api/loops/slow/resume")[0] == 200
        served.wait_for(
            lambda: served.get("/api/loops/slow")[1]["iteration"] >= 3, "slow"
        )  # the raised limit holds
        twice = served.post("/api/loops/slow/resume")
        assert twice[0] == 409 and "running" in twice[1]["error"]["message"]
        stopped = served.post("/api/loops/slow/stop", {"reason": "enough"})
        assert stopped[0] == 202 and stopped[1]["status"] == "queued"
        wait_for(lambda: served.get("/api/loops/slow")[1]["finished"])
        assert served.get("/api/loops/slow")[1]["outcome"] == "STOPPED"

        assert served.post("/api/loops/slow/resume")[0] == 200
        wait_for(lambda: served.get("/api/loops/slow")[1]["running"] is True)
        # the fixture's close pauses the loop this dashboard runs
    state = cli("status", "slow", "-w", str(workspace), "--json")
    assert json.loads(state.stdout)["phase"] == "PAUSED", state.stdout


@pytest.mark.slow
def test_the_cli_command_serves_and_stops_on_sigterm(workspace: Path) -> None:
    program = (
        "import typer, sys; from loopwright.cli.dashboard import dashboard; "
        "app = typer.Typer(); app.command()(dashboard); app()"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", program, "-w", str(workspace), "--port", "0", "--user", "alice"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        banner = ""
        while "http://" not in banner:
            line = process.stderr.readline()
            assert line, f"the dashboard exited: {banner}"
            banner += line
        url = re.search(r"http://[0-9.]+:\d+/", banner)
        assert url is not None
        assert 'User::"alice"' in process.stderr.readline() + process.stderr.readline()
        assert request(url[0])[0] == 200
        assert request(url[0] + "api/loops")[1] == {"items": [], "next_cursor": None}
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_the_cli_refuses_a_port_in_use(workspace: Path) -> None:
    with serve(workspace / ".loopwright") as served:
        port = served.server.server_address[1]
        app = typer.Typer()
        app.command()(dashboard)
        result = CliRunner().invoke(app, ["-w", str(workspace), "--port", str(port)])
        assert result.exit_code == 2 and "--host/--port: cannot listen" in result.output


PROOF_PLAN: dict[str, Any] = {
    "goal": "prove who may run commands",
    "defaults": {
        "max_iterations": 1,
        "git_isolation": False,
        # Not met until the agent ran (a condition met at the baseline would need no agent).
        "exit_conditions": [
            {
                "type": "CUSTOM",
                "name": "ok",
                "command": ["python", "-c", "import os, sys; sys.exit(not os.path.exists('PROOF'))"],
            }
        ],
        "agent": {"kind": "command", "command": ["touch", "PROOF"]},
    },
    "tasks": [{"task_id": "t1", "description": "touch PROOF"}],
}


@pytest.mark.slow
def test_a_non_operator_can_neither_plan_nor_dispatch_commands(workspace: Path) -> None:
    # Issue 11: as mallory (not an operator), a plan whose agent runs `touch PROOF` was stored
    # (201) and dispatched (202), running the command.
    mallory = {"X-Loopwright-User": "mallory"}
    with serve(workspace / ".loopwright") as served:  # alice operates every project (no file)
        status, body, _ = served.post("/api/projects/default/plan", {"plan": PROOF_PLAN}, headers=mallory)
        assert (status, body["error"]["code"], body["error"]["policy_ids"]) == (403, "forbidden", [])
        assert 'Group::"default-operators"' in body["error"]["message"]
        assert served.local.plans.store.list_plans("default") == []

        status, plan, _ = served.post("/api/projects/default/plan", {"plan": PROOF_PLAN})
        assert status == 201, plan
        target = f"/api/plans/{plan['plan_id']}/dispatch?project=default"
        status, body, _ = served.post(target, {}, headers=mallory)
        assert (status, body["error"]["code"]) == (403, "forbidden")
        verify = f"/api/plans/{plan['plan_id']}/verify?project=default"
        assert served.post(verify, {}, headers=mallory)[0] == 403
        time.sleep(0.5)  # a dispatch would have started the task's loop by now
        assert served.local.store.list_loops() == []
        assert not list(workspace.rglob("PROOF"))
        assert served.get(f"/api/plans/{plan['plan_id']}?project=default")[1]["status"] == "DRAFT"

        # And the operator may: the same request runs the command (the test can fail)
        status, body, _ = served.post(target, {})
        assert status == 202, body
        wait_for(lambda: bool(list(workspace.rglob("PROOF"))))
        served.local.plans.join(timeout=30)


@pytest.mark.slow
def test_verify_answers_202_and_the_plan_ends_verified_in_the_background(workspace: Path) -> None:
    # Issue 12 point 9: verify no longer runs gate:all inside the request; a non-operator's
    # verify is 403 and starts nothing
    mallory = {"X-Loopwright-User": "mallory"}
    with serve(workspace / ".loopwright") as served:
        status, plan, _ = served.post("/api/projects/default/plan", {"plan": PROOF_PLAN})
        assert status == 201, plan
        target = f"/api/plans/{plan['plan_id']}"
        assert served.post(f"{target}/dispatch?project=default", {})[0] == 202
        served.local.plans.join(timeout=60)
        assert served.get(f"{target}?project=default")[1]["status"] == "RUNNING"

        status, body, _ = served.post(f"{target}/verify?project=default", {}, headers=mallory)
        assert (status, body["error"]["code"]) == (403, "forbidden")
        time.sleep(0.2)
        assert served.get(f"{target}?project=default")[1]["status"] == "RUNNING"  # nothing started

        status, body, _ = served.post(f"{target}/verify?project=default", {})
        assert status == 202, body
        assert body["verify_run_id"] == f"verify_{plan['plan_id']}"
        assert body["status"] in ("VERIFYING", "VERIFIED")  # the gates run after the answer
        assert served.post(f"{target}/verify?project=default", {})[0] == 409  # verified once
        served.local.plans.join(timeout=60)
        got = served.get(f"{target}?project=default")[1]
        assert got["status"] == "VERIFIED", got["gate_result"]
        assert got["gate_result"]["checks"][0]["name"] == "gate:tasks"
        events = served.get(f"{target}/events?project=default")[1]["events"]
        assert [e["type"] for e in events][-1] == "plan_verified"


@pytest.mark.slow
def test_the_cli_on_a_non_loopback_address_prints_a_token_url_once(workspace: Path) -> None:
    # Issue 11: `--host 0.0.0.0` was accepted with no authentication and no warning
    program = (
        "import typer, sys; from loopwright.cli.dashboard import dashboard; "
        "app = typer.Typer(); app.command()(dashboard); app()"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOOPWRIGHT_DASHBOARD_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-c", program, "-w", str(workspace), "--host", "0.0.0.0", "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        banner = ""
        while "loops resumed" not in banner:
            line = process.stderr.readline()
            assert line, f"the dashboard exited: {banner}"
            banner += line
        found = re.search(r"http://\S+:(\d+)/\?token=([A-Za-z0-9_-]{43})", banner)
        assert found is not None, banner
        port, token = found[1], found[2]
        assert "every request needs the token" in banner and "X-Loopwright-User is refused" in banner
        base = f"http://127.0.0.1:{port}/"
        assert request(base + "api/loops")[0] == 401
        assert request(base + "api/loops", headers={"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert banner.count(token) == 1 and token not in err  # printed once


def test_the_cli_refuses_a_bad_token_file(workspace: Path, tmp_path: Path) -> None:
    short = tmp_path / "token"
    short.write_text("abc\n")
    app = typer.Typer()
    app.command()(dashboard)
    result = CliRunner().invoke(app, ["-w", str(workspace), "--host", "0.0.0.0", "--token-file", str(short)])
    assert result.exit_code == 2 and "at least 16" in result.output
    short.write_text("a-long-enough-token;but-with-a-semicolon\n")
    result = CliRunner().invoke(app, ["-w", str(workspace), "--host", "0.0.0.0", "--token-file", str(short)])
    assert result.exit_code == 2 and "letters, digits" in result.output
    missing = CliRunner().invoke(app, ["-w", str(workspace), "--token-file", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "cannot read" in missing.output
