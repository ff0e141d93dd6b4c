"""The dashboard page in headless Chromium (issue 4 "Done when", issue 5's plans view).

A real ``loopwright dashboard`` process serves a temporary git repository; real ``loopwright run``
processes run loops in it; Playwright (sync API) drives Debian's chromium through its executable
path (``playwright install`` is never needed). Asserted as a user sees it: a running loop appears
in the list, its iteration advances without a reload, a raised limit is shown and the loop runs
past the old one, a control by a user who is not an operator is refused with a visible 403 naming
the operators group while the loop keeps running, Stop ends it (STOPPED shown, refreshing stops);
an AWAITING_RESPONSE loop has a pulsing badge and Approve continues it; a plan created through
the API appears with its tasks, and Dispatch and Verify from the page run and verify it.

Without ``/usr/bin/chromium`` the tests are skipped, or fail when ``LOOPWRIGHT_REQUIRE_BROWSER=1``
(CI sets it: ``.ci/run`` installs chromium first).
"""

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.helpers import GIT_ENV, make_repo

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request

pytestmark = pytest.mark.slow

#: Debian's chromium (package ``chromium``).
CHROMIUM = Path("/usr/bin/chromium")
#: Set to 1 (CI) to make a missing browser a failure instead of a skip.
REQUIRE_ENV = "LOOPWRIGHT_REQUIRE_BROWSER"
#: The network is closed: without the background-networking flags Chromium floods refused
#: connections; no sandbox in containers.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Seconds to wait for something the page shows after a loop step (loops run at ~0.5 s/iteration).
WAIT_MS = 20_000
#: The running loop's max_iterations before the page raises it to 400.
OLD_LIMIT = 20
OPERATORS = '[projects.demo]\noperators = ["alice"]\n'
# Never done; each iteration takes 0.3 s.
SLOW_AGENT = "import time; time.sleep(0.3)\n"
# Asks a question in iteration 1; writes shipped.txt once the prompt carries the answer "ship it".
ASKING_AGENT = textwrap.dedent(
    """
    import json, os, pathlib
    it = int(os.environ["LOOPWRIGHT_ITERATION"])
    report = pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"])
    if it == 1:
        report.write_text(json.dumps({"needs_human": "may I ship?"}))
    elif "ship it" in pathlib.Path(os.environ["LOOPWRIGHT_PROMPT_FILE"]).read_text():
        pathlib.Path("shipped.txt").write_text("shipped")
    """
)
WRITE = "import pathlib,sys,time; time.sleep(0.3); pathlib.Path(sys.argv[1]).write_text('done')"


def exists(*names: str) -> list[str]:
    """A command that succeeds once every file in ``names`` exists."""
    check = f"import os,sys; sys.exit(0 if all(os.path.exists(n) for n in {list(names)!r}) else 1)"
    return ["python", "-c", check]


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the python package playwright is not installed (pip install -e '.[dev]')"
    return None


def loop_config(folder: Path, name: str, agent_source: str, *, max_iterations: int, done_file: str) -> Path:
    """A loop config of project ``demo`` whose CUSTOM condition holds once ``done_file`` exists."""
    agent = folder / f"{name}_agent.py"
    agent.write_text(agent_source)
    path = folder / f"{name}.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "{name}"
            project = "demo"
            max_iterations = {max_iterations}
            git_isolation = false
            [[exit_conditions]]
            type = "CUSTOM"
            name = "done"
            command = {json.dumps(exists(done_file))}
            [agent]
            kind = "command"
            command = {json.dumps([sys.executable, str(agent)])}
            """
        )
    )
    return path


def http(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON) of one request to the dashboard; HTTP errors are returned too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def poll(check: Callable[[], bool], what: str, seconds: float = WAIT_MS / 1000) -> None:
    """Wait until ``check()`` holds; fails naming ``what``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.1)


def iteration_of(page: Page) -> tuple[int, int]:
    """(iteration, max_iterations) as the loop page shows them ("3 / 8")."""
    text = page.get_by_test_id("iteration").text_content() or ""
    match = re.fullmatch(r"\s*(\d+) / (\d+)\s*", text)
    return (int(match[1]), int(match[2])) if match else (-1, -1)


@dataclass
class Dashboard:
    """A ``loopwright dashboard`` process over ``workspace``; ``log`` collects its stderr."""

    workspace: Path
    configs: Path
    process: subprocess.Popen[str]
    url: str
    log: list[str] = field(default_factory=list)

    def api(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        return http(self.url + path.lstrip("/"), method, body)

    def run_loop(self, loop_id: str, config: Path, output: Path) -> subprocess.Popen[str]:
        """``loopwright run`` in the workspace (stdout: its JSON result in ``output``)."""
        with output.open("w") as out:
            return subprocess.Popen(
                [
                    *(sys.executable, "-m", "loopwright", "run", "-w", str(self.workspace)),
                    *("-c", str(config), "--loop-id", loop_id, "--json"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, **GIT_ENV},
            )


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    reason = browser_missing_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1: the browser tests are required)")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("browser")
    workspace = make_repo(root / "ws", {"README.md": "demo\n", "pincheck.py": "import sys\nsys.exit(1)\n"})
    (workspace / ".loopwright").mkdir()
    (workspace / ".loopwright" / "operators.toml").write_text(OPERATORS)
    configs = root / "configs"
    configs.mkdir()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "loopwright", "dashboard", "-w", str(workspace)),
            *("--port", "0", "--user", "alice"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **GIT_ENV, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    log: list[str] = []
    while not any("http://" in line for line in log):
        line = process.stderr.readline()
        assert line, f"the dashboard exited: {''.join(log)}"
        log.append(line)
    url = re.search(r"http://127\.0\.0\.1:\d+/", "".join(log))
    assert url is not None, log
    stderr = process.stderr
    drain = threading.Thread(target=lambda: log.extend(iter(stderr.readline, "")), daemon=True)
    drain.start()  # the dashboard logs the loops it runs; a full pipe would block it
    running = Dashboard(workspace=workspace, configs=configs, process=process, url=url[0], log=log)
    try:
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        drain.join(timeout=5)
    assert "Traceback" not in "".join(log), "".join(log)


@pytest.fixture(scope="module")
def browser(dashboard: Dashboard) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield opened
    context.close()
    # No script error and no CSP violation (both are console errors); a refused control's HTTP
    # status is logged by Chromium as "Failed to load resource", which is expected here.
    assert [e for e in errors if "Failed to load resource" not in e] == []


def test_a_running_loop_live_progress_raised_limit_refusal_and_stop(dashboard: Dashboard, page: Page) -> None:
    from playwright.sync_api import expect

    # ~0.45 s per iteration: the old limit leaves ~9 s to see progress and raise it.
    config = loop_config(
        dashboard.configs, "live", SLOW_AGENT, max_iterations=OLD_LIMIT, done_file="never.txt"
    )
    runner = dashboard.run_loop("live", config, dashboard.configs / "live.out")
    try:
        poll(lambda: dashboard.api("/api/loops/live")[0] == 200, "the loop to be created")
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        page.goto(dashboard.url)

        # The running loop appears in the list, with a live (not INTERRUPTED) badge.
        row = page.locator('[data-testid="loop-row"][data-loop-id="live"]')
        expect(row).to_be_visible(timeout=WAIT_MS)
        expect(row.get_by_test_id("status-badge")).to_have_class(re.compile(r"\bbadge-running\b"))
        expect(row.get_by_test_id("loop-iteration")).to_have_text(re.compile(rf"^\d+ / {OLD_LIMIT}$"))

        # Its progress advances on the loop page without a reload.
        row.get_by_test_id("loop-link").click()
        expect(page).to_have_url(re.compile(r"#/loops/live$"))
        expect(page.get_by_test_id("iteration")).to_have_text(
            re.compile(rf"^\d+ / {OLD_LIMIT}$"), timeout=WAIT_MS
        )
        first = iteration_of(page)[0]
        poll(lambda: iteration_of(page)[0] > first, f"the iteration to advance past {first}")
        expect(page.get_by_test_id("refresh-status")).to_contain_text("live")

        # A raised limit takes effect: the page shows it and the loop runs past the old limit.
        page.get_by_test_id("limit-max-iterations").fill("400")
        page.get_by_test_id("control-limits").click()
        result = page.get_by_test_id("control-result")
        expect(result).to_be_visible()
        expect(result).to_contain_text("limits")
        expect(page.get_by_test_id("iteration")).to_have_text(re.compile(r"^\d+ / 400$"), timeout=WAIT_MS)
        poll(lambda: iteration_of(page)[0] > OLD_LIMIT, f"the loop to run past its old limit ({OLD_LIMIT})")

        # A user who is not an operator is refused with a visible message; the loop keeps running.
        act_as = page.get_by_test_id("act-as")
        act_as.fill("mallory")
        act_as.dispatch_event("change")
        expect(page.get_by_test_id("identity")).to_contain_text('User::"mallory"')
        page.get_by_test_id("control-stop").click()
        error = page.get_by_test_id("control-error")
        expect(error).to_be_visible()
        expect(error).to_have_attribute("data-status", "403")
        expect(error).to_have_attribute("data-code", "forbidden")
        expect(error).to_contain_text("403")
        expect(error).to_contain_text('User::"mallory" may not STOP')
        expect(error).to_contain_text('Group::"demo-operators"')
        refused_at = iteration_of(page)[0]
        poll(lambda: iteration_of(page)[0] > refused_at, "the loop to keep running after the refusal")
        expect(page.get_by_test_id("loop-phase")).not_to_have_attribute("data-phase", "COMPLETED")

        # Stop (as alice again) ends it: STOPPED is shown and the page stops refreshing.
        act_as.fill("")
        act_as.dispatch_event("change")
        expect(page.get_by_test_id("identity")).to_contain_text('User::"alice"')
        page.get_by_test_id("control-reason").fill("enough")
        page.get_by_test_id("control-stop").click()
        expect(result).to_be_visible()
        expect(result).to_contain_text("stop: queued")
        expect(page.get_by_test_id("outcome")).to_contain_text("STOPPED", timeout=WAIT_MS)
        expect(page.get_by_test_id("loop-phase")).to_have_attribute("data-outcome", "STOPPED")
        expect(page.locator("body")).to_have_attribute("data-loop-finished", "true")
        expect(page.get_by_test_id("refresh-status")).to_contain_text("finished")
        assert runner.wait(timeout=30) == 4, (
            dashboard.configs / "live.out"
        ).read_text()  # a human stopped it

        progress_requests: list[str] = []

        def on_request(request: Request) -> None:
            if request.url.endswith("/api/loops/live"):
                progress_requests.append(request.url)

        page.on("request", on_request)
        page.wait_for_timeout(2_600)  # longer than the page's refresh period (2 s)
        assert progress_requests == [], "a finished loop is still refreshed"
        assert len(loads) == 1, f"the page was reloaded: {loads}"
        status, progress = dashboard.api("/api/loops/live")
        assert status == 200 and progress["outcome"] == "STOPPED" and progress["max_iterations"] == 400
        assert progress["iteration"] > OLD_LIMIT
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


# Says it started, then sleeps far longer than the test waits.
SLEEPING_AGENT = "import pathlib,time\npathlib.Path('sleeping.txt').write_text('1')\ntime.sleep(120)\n"


def test_stop_now_ends_a_sleeping_agent_from_the_page(dashboard: Dashboard, page: Page) -> None:
    from playwright.sync_api import expect

    config = loop_config(dashboard.configs, "sleepy", SLEEPING_AGENT, max_iterations=5, done_file="never.txt")
    runner = dashboard.run_loop("sleepy", config, dashboard.configs / "sleepy.out")
    try:
        poll(lambda: (dashboard.workspace / "sleeping.txt").exists(), "the agent to start")
        page.goto(dashboard.url)
        row = page.locator('[data-testid="loop-row"][data-loop-id="sleepy"]')
        expect(row).to_be_visible(timeout=WAIT_MS)
        row.get_by_test_id("loop-link").click()
        expect(page.get_by_test_id("loop-phase")).to_have_attribute(
            "data-phase", "ITERATING", timeout=WAIT_MS
        )
        page.get_by_test_id("control-stop-now").click()
        result = page.get_by_test_id("control-result")
        expect(result).to_contain_text("stop-now: queued")
        expect(result).to_contain_text("ended now")
        # Far sooner than the agent's 120 s: the page shows STOPPED and the run exits 4.
        expect(page.get_by_test_id("outcome")).to_contain_text("STOPPED", timeout=WAIT_MS)
        assert runner.wait(timeout=10) == 4, (dashboard.configs / "sleepy.out").read_text()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    events = dashboard.api("/api/loops/sleepy/events?type=AGENT_ENDED_AT_LIMIT")[1]
    assert [e["data"]["limit"] for e in events["items"]] == ["STOP_NOW"], events


def test_an_awaiting_loop_pulses_and_approve_continues_it(dashboard: Dashboard, page: Page) -> None:
    from playwright.sync_api import expect

    config = loop_config(dashboard.configs, "ask", ASKING_AGENT, max_iterations=5, done_file="shipped.txt")
    runner = dashboard.run_loop("ask", config, dashboard.configs / "ask.out")
    assert runner.wait(timeout=60) == 5, (dashboard.configs / "ask.out").read_text()  # AWAITING_RESPONSE

    page.goto(dashboard.url)
    row = page.locator('[data-testid="loop-row"][data-loop-id="ask"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    badge = row.get_by_test_id("status-badge")
    expect(badge).to_have_attribute("data-phase", "AWAITING_RESPONSE")
    expect(badge).to_have_text("NEEDS RESPONSE")
    expect(badge).to_have_css("animation-name", "pulse")
    expect(badge).to_have_css("animation-iteration-count", "infinite")

    row.get_by_test_id("loop-link").click()
    expect(page.get_by_test_id("awaiting-question")).to_contain_text("may I ship?", timeout=WAIT_MS)
    expect(page.get_by_test_id("loop-phase")).to_have_text("NEEDS RESPONSE")
    page.get_by_test_id("approve-response").fill("ship it")
    page.get_by_test_id("control-approve").click()
    result = page.get_by_test_id("control-result")
    expect(result).to_be_visible()
    expect(result).to_have_attribute("data-status", "applied")
    # The dashboard runs the loop on; the answer reaches the agent, which finishes the work.
    expect(page.get_by_test_id("outcome")).to_contain_text("CONDITIONS_MET", timeout=WAIT_MS)
    expect(page.get_by_test_id("iteration")).to_have_text("2 / 5")
    # no feature list; a command agent has no sessions: one agent session per iteration
    expect(page.get_by_test_id("features")).to_have_text("—")
    expect(page.get_by_test_id("sessions")).to_have_text("2")
    # the failing trend of its iterations: the done-file condition fails until iteration 2
    expect(page.get_by_test_id("progress-summary")).to_contain_text("failing 1 -> 1 -> 0")
    expect(page.get_by_test_id("awaiting")).to_be_hidden()
    expect(page.locator('[data-testid="event"][data-type="CONTROL_APPLIED"]').first).to_be_attached()
    assert (dashboard.workspace / "shipped.txt").read_text() == "shipped"


# Makes the pinned check pass by rewriting it: the iteration is reverted and waits for a human.
CHEATING_AGENT = "import pathlib\npathlib.Path('pincheck.py').write_text('import sys\\nsys.exit(0)\\n')\n"


def test_a_reverted_change_to_a_pinned_check_is_accepted_from_the_page_and_its_evidence_offered(
    dashboard: Dashboard, page: Page
) -> None:
    from playwright.sync_api import expect

    agent = dashboard.configs / "cheat_agent.py"
    agent.write_text(CHEATING_AGENT)
    config = dashboard.configs / "cheat.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            goal = "make pincheck pass"
            project = "demo"
            max_iterations = 3
            [[exit_conditions]]
            type = "CUSTOM"
            name = "pincheck"
            command = ["python", "pincheck.py"]
            [agent]
            kind = "command"
            command = {json.dumps([sys.executable, str(agent)])}
            """
        )
    )
    runner = dashboard.run_loop("cheat", config, dashboard.configs / "cheat.out")
    assert runner.wait(timeout=60) == 5, (dashboard.configs / "cheat.out").read_text()  # held for a human

    page.goto(dashboard.url + "#/loops/cheat")
    expect(page.get_by_test_id("pinned-change")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("pinned-change-paths")).to_have_text("pincheck.py")
    expect(page.get_by_test_id("evidence-download")).to_be_hidden()
    page.get_by_test_id("approve-accept-pinned").check()
    page.get_by_test_id("control-approve").click()
    expect(page.get_by_test_id("control-result")).to_have_attribute("data-status", "applied")
    # The accepted change is evaluated: the loop completes, and its signed evidence is linked
    expect(page.get_by_test_id("outcome")).to_contain_text("CONDITIONS_MET", timeout=WAIT_MS)
    expect(page.get_by_test_id("pinned-change")).to_be_hidden()
    expect(page.get_by_test_id("evidence-download")).to_be_visible(timeout=WAIT_MS)
    status, signed = dashboard.api("api/loops/cheat/evidence")
    assert status == 200, signed
    assert signed["bundle"]["loop_id"] == "cheat" and signed["bundle"]["outcome"] == "CONDITIONS_MET"
    assert "pincheck.py" in signed["bundle"]["pinned_files_end"]
    events = [e["type"] for e in dashboard.api("api/loops/cheat/events?limit=200")[1]["items"]]
    assert "PINNED_CHANGE_REVERTED" in events and "PINNED_CHANGE_ACCEPTED" in events


# Writes work/<loop id>-<iteration>.txt: a loop needing 3 files and allowed 2 iterations ends at its limit.
FILE_AGENT = (
    "import os, pathlib\n"
    "work = pathlib.Path('work'); work.mkdir(exist_ok=True)\n"
    "name = os.environ['LOOPWRIGHT_LOOP_ID'] + '-' + os.environ['LOOPWRIGHT_ITERATION']\n"
    "(work / (name + '.txt')).write_text('x')\n"
)
THREE_FILES = "import pathlib,sys; sys.exit(0 if len(list(pathlib.Path('work').glob('*.txt'))) >= 3 else 1)"


def test_rollback_and_fork_from_the_page(dashboard: Dashboard, page: Page) -> None:
    from playwright.sync_api import expect

    agent = dashboard.configs / "files_agent.py"
    agent.write_text(FILE_AGENT)
    config = dashboard.configs / "files.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            goal = "three files"
            project = "demo"
            max_iterations = 2
            [[exit_conditions]]
            type = "CUSTOM"
            name = "files"
            command = {json.dumps(["python", "-c", THREE_FILES])}
            [agent]
            kind = "command"
            command = {json.dumps([sys.executable, str(agent)])}
            """
        )
    )
    runner = dashboard.run_loop("files", config, dashboard.configs / "files.out")
    assert runner.wait(timeout=60) == 3, (dashboard.configs / "files.out").read_text()  # ITERATION_LIMIT

    page.goto(dashboard.url + "#/loops/files")
    expect(page.get_by_test_id("iteration")).to_have_text("2 / 2", timeout=WAIT_MS)
    page.get_by_test_id("travel-iteration").fill("1")
    page.get_by_test_id("control-rollback").click()
    result = page.get_by_test_id("control-result")
    expect(result).to_have_attribute("data-status", "applied")
    expect(result).to_contain_text("rolled back to iteration 1")
    expect(page.get_by_test_id("iteration")).to_have_text("1 / 2", timeout=WAIT_MS)
    expect(page.locator('[data-testid="event"][data-type="LOOP_ROLLED_BACK"]').first).to_be_attached()

    page.get_by_test_id("fork-goal").fill("three files, forked")
    page.get_by_test_id("fork-loop-id").fill("files-fork")
    page.get_by_test_id("control-fork").click()
    expect(result).to_contain_text("loop files-fork forked from iteration 1 of files", timeout=WAIT_MS)
    # The dashboard runs the fork: the parent's file of iteration 1 and two of its own make three
    poll(
        lambda: dashboard.api("api/loops/files-fork")[1].get("outcome") == "CONDITIONS_MET",
        "the fork to finish",
    )
    page.get_by_test_id("travel-iteration").fill("7")
    page.get_by_test_id("control-rollback").click()
    error = page.get_by_test_id("control-error")
    expect(error).to_have_attribute("data-status", "409")
    expect(error).to_contain_text("has no valid checkpoint of iteration 7")


def test_a_plan_created_through_the_api_appears_with_its_tasks(dashboard: Dashboard, page: Page) -> None:
    from playwright.sync_api import expect

    def task(task_id: str, deps: list[str]) -> dict[str, Any]:
        name = f"{task_id}.plan.txt"
        return {
            "task_id": task_id,
            "description": f"write {name}",
            "depends_on": deps,
            "loop": {
                "agent": {"kind": "command", "command": ["python", "-c", WRITE, name]},
                "exit_conditions": [{"type": "CUSTOM", "name": "file", "command": exists(name)}],
            },
        }

    draft = {
        "goal": "write three files",
        "defaults": {"max_iterations": 2, "git_isolation": False, "checkpoint_retention": 1},
        "tasks": [task("a", []), task("b", ["a"]), task("c", ["a"])],
        "gates": [{"name": "gate:files", "command": exists("a.plan.txt", "b.plan.txt", "c.plan.txt")}],
    }
    status, plan = dashboard.api("/api/projects/demo/plan", "POST", {"plan": draft})
    assert status == 201, plan
    plan_id = plan["plan_id"]

    page.goto(dashboard.url + "#/plans?project=demo")
    row = page.locator(f'[data-testid="plan-row"][data-plan-id="{plan_id}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(row.get_by_test_id("plan-badge")).to_have_text("DRAFT")
    expect(row.get_by_test_id("plan-task-count")).to_have_text("0 / 3 completed")
    expect(page.get_by_test_id("plans-project")).to_have_value("demo")

    row.get_by_test_id("plan-link").click()
    expect(page).to_have_url(re.compile(rf"#/plans/{plan_id}\?project=demo$"))
    expect(page.get_by_test_id("plan-status")).to_have_attribute("data-status", "DRAFT")
    expect(page.get_by_test_id("plan-goal")).to_contain_text("write three files")
    tasks = page.get_by_test_id("plan-task")
    expect(tasks).to_have_count(3)
    for task_id, wave, deps in (("a", "1", "—"), ("b", "2", "a"), ("c", "2", "a")):
        one = page.locator(f'[data-testid="plan-task"][data-task-id="{task_id}"]')
        expect(one.get_by_test_id("task-status")).to_have_text("CREATED")
        expect(one.get_by_test_id("task-wave")).to_have_text(wave)
        expect(one.get_by_test_id("task-deps")).to_have_text(deps)
        expect(one.get_by_test_id("task-loop-link")).to_have_count(0)
    expect(page.locator('[data-testid="plan-event"][data-type="plan_created"]')).to_have_count(1)
    expect(page.get_by_test_id("plan-verify")).to_be_disabled()

    # Dispatch from the page: the tasks run as loops in the dashboard, each linked to its loop page.
    page.get_by_test_id("plan-dispatch").click()
    expect(page.get_by_test_id("plan-control-result")).to_contain_text("3 task loop(s) started")
    for task_id in ("a", "b", "c"):
        one = page.locator(f'[data-testid="plan-task"][data-task-id="{task_id}"]')
        expect(one.get_by_test_id("task-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
        expect(one.get_by_test_id("task-loop-link")).to_have_text(f"{plan_id}.{task_id}")
    expect(page.get_by_test_id("plan-dispatch")).to_be_disabled()
    expect(page.get_by_test_id("plan-verify")).to_be_enabled(timeout=WAIT_MS)

    # Verify (gate:all) from the page: the checks and the evidence trail are shown.
    page.get_by_test_id("plan-verify").click()
    expect(page.get_by_test_id("plan-status")).to_have_attribute("data-status", "VERIFIED", timeout=WAIT_MS)
    check = page.locator('[data-testid="gate-check"][data-name="gate:files"]')
    expect(check).to_have_attribute("data-status", "PASSED")
    expect(page.get_by_test_id("plan-gate-summary")).to_contain_text("gate:all passed")
    for kind in ("plan_dispatched", "task_started", "task_completed", "plan_completed", "plan_verified"):
        expect(page.locator(f'[data-testid="plan-event"][data-type="{kind}"]').first).to_be_attached()

    page.locator('[data-testid="plan-task"][data-task-id="b"]').get_by_test_id("task-loop-link").click()
    expect(page).to_have_url(re.compile(rf"#/loops/{plan_id}\.b$"))
    expect(page.get_by_test_id("outcome")).to_contain_text("CONDITIONS_MET", timeout=WAIT_MS)


def test_swagger_ui_renders_under_its_content_security_policy(dashboard: Dashboard, page: Page) -> None:
    # Issue 11: /swagger had no policy. Its inline script and style are now allowed by hash only;
    # the page fixture fails on any console error, which is how Chromium reports a violation.
    from playwright.sync_api import expect

    response = page.goto(dashboard.url + "swagger")
    assert response is not None and "'unsafe-inline'" not in response.headers["content-security-policy"]
    paths = page.locator(".opblock-summary-path")
    expect(paths.first).to_be_visible(timeout=WAIT_MS)
    for path in ("/api/projects/{project_id}/plan", "/api/loops/{loop_id}/limits"):
        expect(page.locator(f'.opblock-summary-path[data-path="{path}"]')).to_have_count(1)


# Writes the first of its two feature files that is missing: one feature per iteration.
FEATURE_AGENT = textwrap.dedent(
    """
    import pathlib
    for name in ("feat_alpha.txt", "feat_beta.txt"):
        if not pathlib.Path(name).exists():
            pathlib.Path(name).write_text("done")
            break
    """
)


def test_the_page_shows_a_loops_features_and_agent_sessions(dashboard: Dashboard, page: Page) -> None:
    from playwright.sync_api import expect

    config = loop_config(
        dashboard.configs, "feat", FEATURE_AGENT, max_iterations=4, done_file="feat_alpha.txt"
    )
    features = "".join(
        f'[[features]]\nname = "{name}"\ndescription = "write feat_{name}.txt"\n'
        f'[[features.acceptance_conditions]]\ntype = "CUSTOM"\nname = "file"\n'
        f"command = {json.dumps(exists(f'feat_{name}.txt'))}\n"
        for name in ("alpha", "beta")
    )
    config.write_text(config.read_text().replace("[agent]", features + "[agent]"))
    runner = dashboard.run_loop("feat", config, dashboard.configs / "feat.out")
    assert runner.wait(timeout=60) == 0, (dashboard.configs / "feat.out").read_text()

    page.goto(f"{dashboard.url}#/loops/feat")
    expect(page.get_by_test_id("outcome")).to_contain_text("CONDITIONS_MET", timeout=WAIT_MS)
    expect(page.get_by_test_id("features")).to_have_text("2 / 2")
    expect(page.get_by_test_id("features")).to_have_attribute(
        "title", "✓ alpha: write feat_alpha.txt\n✓ beta: write feat_beta.txt"
    )
    expect(page.get_by_test_id("sessions")).to_have_text("2")
    expect(page.locator('[data-testid="event"][data-type="FEATURE_COMPLETED"]')).to_have_count(2)
