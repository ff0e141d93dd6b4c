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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body or text, headers) of one HTTP request; HTTP errors are returned too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, raw, out = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, out = exc.code, exc.read(), dict(exc.headers)
    text = raw.decode()
    return status, json.loads(text) if "json" in out.get("Content-Type", "") else text, out


def wait_for(check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


class Served:
    def __init__(self, local: LocalDashboard, server: DashboardServer) -> None:
        self.local = local
        self.server = server
        self.url = server.url

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        return request(self.url + path.lstrip("/"), **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        return request(self.url + path.lstrip("/"), "POST", body if body is not None else {}, **kwargs)


@contextmanager
def serve(state_dir: Path, user: str = "alice") -> Iterator[Served]:
    local = local_dashboard(state_dir, user=user)
    server = DashboardServer(build_app(local.deps), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(local, server)
    finally:
        server.shutdown()
        server.server_close()
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
        assert [e["statuses"]["done"] for e in history["evaluations"]] == ["MET", "NOT_MET"]


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
        wait_for(lambda: served.get("/api/loops/slow")[1]["iteration"] >= 3)  # the raised limit holds
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
