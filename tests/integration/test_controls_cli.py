"""Human controls through the CLI on real loops: approve an agent's question, raise a limit and
resume, pause; bad input and controls that do not apply exit 2 without writing anything."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.models import IterationEventType
from tests.integration.helpers import cli, make_repo

# Asks a question in iteration 1; in iteration 2 writes done.txt only if the prompt carries the
# human's answer "ship it".
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
CHECK = "import pathlib,sys; sys.exit(0 if pathlib.Path('done.txt').exists() else 1)"


def _config(tmp_path: Path, agent_source: str, max_iterations: int) -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(agent_source)
    path = tmp_path / "loop.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "ship"
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


@pytest.mark.slow
def test_approve_hands_the_answer_to_the_agent_and_the_loop_finishes(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    config = _config(tmp_path, ASKING_AGENT, max_iterations=5)
    first = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "ask", "--json")
    assert first.returncode == 5, first.stderr  # AWAITING_RESPONSE
    early = cli("limits", "ask", "-w", str(workspace), "--max-iterations", "6")  # fine while it waits
    assert early.returncode == 0, early.stderr
    done = cli("approve", "ask", "-w", str(workspace), "--response", "ship it", "--json", "-q")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "CONDITIONS_MET"
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    state = store.get_state("ask")
    assert state.outcome is not None and state.outcome.value == "CONDITIONS_MET"
    applied = store.list_events("ask", types=[IterationEventType.CONTROL_APPLIED])
    assert [e.message.split(" by ")[0] for e in applied] == ["limits changed", "approved"]
    assert all(e.data["principal"].startswith('User::"') for e in applied)
    assert "ship it" in applied[1].message and state.config.max_iterations == 6


@pytest.mark.slow
def test_a_raised_limit_lets_a_finished_loop_go_on(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    counting = (
        "import os, pathlib\n"
        "if int(os.environ['LOOPWRIGHT_ITERATION']) >= 3:\n"
        "    pathlib.Path('done.txt').write_text('x')\n"
    )
    config = _config(tmp_path, counting, max_iterations=2)
    first = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "lim", "--json")
    assert first.returncode == 3 and json.loads(first.stdout)["outcome"] == "ITERATION_LIMIT"

    bad = cli("limits", "lim", "-w", str(workspace))
    assert bad.returncode == 2 and "give at least one of max_iterations" in bad.stderr
    zero = cli("limits", "lim", "-w", str(workspace), "--max-iterations", "0")
    assert zero.returncode == 2 and "--max-iterations" in zero.stderr
    lower = cli("limits", "lim", "-w", str(workspace), "--max-iterations", "1")
    assert lower.returncode == 2 and "below the 2 iterations already run" in lower.stderr
    paused = cli("pause", "lim", "-w", str(workspace))
    assert paused.returncode == 2 and "not running" in paused.stderr
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    version = store.get_state("lim").version

    raised = cli("limits", "lim", "-w", str(workspace), "--max-iterations", "4")
    assert raised.returncode == 0 and "raise_limit applied" in raised.stdout, raised.stderr
    assert store.get_state("lim").version == version + 1  # only the accepted control wrote
    done = cli("resume", "lim", "-w", str(workspace), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "CONDITIONS_MET" and result["iterations"] == 3


# Reports 40 cents and its model in every iteration; never meets the condition.
SPENDING_AGENT = textwrap.dedent(
    """
    import json, os, pathlib
    pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"]).write_text(
        json.dumps({"tokens_used": 1000, "cost_usd": 0.4, "model": "claude-sonnet-4-5"}))
    """
)


@pytest.mark.slow
def test_a_cost_budget_stops_the_loop_status_shows_the_cost_and_a_human_raises_it(tmp_path: Path) -> None:
    # Given an agent that reports $0.40 per iteration and a budget of $1 given on the command line
    workspace = make_repo(tmp_path / "ws", {"README.md": "x\n"})
    config = _config(tmp_path, SPENDING_AGENT, max_iterations=10)

    # When the loop runs
    first = cli(
        "run", "-w", str(workspace), "-c", str(config), "--loop-id", "spend", "--cost-budget-usd", "1"
    )

    # Then Cedar denies iteration 4 ($1.20 spent) and the result says what was spent
    assert first.returncode == 3, first.stderr
    assert "COST_BUDGET_EXHAUSTED" in first.stdout and "$1.20" in first.stdout
    status = cli("status", "spend", "-w", str(workspace), "--json")
    data = json.loads(status.stdout)
    assert data["cost_usd"] == pytest.approx(1.2) and data["cost_budget_usd"] == 1.0
    assert data["outcome"] == "COST_BUDGET_EXHAUSTED" and data["iteration"] == 3
    text = cli("status", "spend", "-w", str(workspace)).stdout
    assert "cost $1.20/$1.00" in text
    listing = cli("status", "-w", str(workspace)).stdout
    assert "$1.20" in listing

    # A budget below the spend is refused; a higher one lets the loop go on
    lower = cli("limits", "spend", "-w", str(workspace), "--cost-budget-usd", "0.5")
    assert lower.returncode == 2 and "below the $1.2000 already spent" in lower.stderr
    raised = cli("limits", "spend", "-w", str(workspace), "--cost-budget-usd", "2")
    assert raised.returncode == 0, raised.stderr
    again = cli("resume", "spend", "-w", str(workspace), "--json")
    result = json.loads(again.stdout)
    assert result["outcome"] == "COST_BUDGET_EXHAUSTED" and result["iterations"] == 5
    assert result["total_cost_usd"] == pytest.approx(2.0)
