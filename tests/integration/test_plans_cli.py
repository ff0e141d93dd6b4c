"""``loopwright plan`` driven as a user drives it: a real workspace, real git, real loops."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from loopwright.cli.app import app
from tests.integration.helpers import cli, make_repo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plans" / "diamond.toml"
# Until the lead registers the group (`app.add_typer(plan_app, name="plan")`), run it directly.
_REGISTERED = any(group.name == "plan" for group in app.registered_groups)
_DIRECT = "import sys; from loopwright.cli.plan import plan_app; plan_app(prog_name='loopwright plan')"


def plan_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``loopwright plan ARGS`` in a subprocess."""
    if _REGISTERED:
        return cli("plan", *args)
    return subprocess.run([sys.executable, "-c", _DIRECT, *args], capture_output=True, text=True, timeout=120)


def plan_json(*args: str) -> Any:
    done = plan_cli(*args, "--json")
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws", {"README.md": "shop\n"})


@pytest.mark.slow
def test_the_example_plan_is_created_dispatched_verified_and_shown(workspace: Path) -> None:
    ws = str(workspace)
    created = plan_json("create", "-w", ws, "--file", str(EXAMPLE))
    plan_id = created["plan_id"]
    assert (created["status"], created["project"], len(created["tasks"])) == ("DRAFT", "default", 4)

    done = plan_cli("dispatch", plan_id, "-w", ws, "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "task_started    pricing" in done.stdout and "plan_completed" in done.stdout

    done = plan_cli("verify", plan_id, "-w", ws)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout and "gate:files" in done.stdout

    shown = plan_json("show", plan_id, "-w", ws, "--events")
    assert shown["status"] == "VERIFIED"
    assert [e["type"] for e in shown["events"]][-2:] == ["gate_checked", "plan_verified"]
    assert [p["plan_id"] for p in plan_json("list", "-w", ws)] == [plan_id]
    assert plan_json("list", "-w", ws, "--project", "other") == []
    # another project cannot see it
    done = plan_cli("show", plan_id, "-w", ws, "--project", "other")
    assert done.returncode == 2
    assert f"no plan '{plan_id}' in project 'other'" in done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[tasks]]\ndescription = "x"\ndepends_on = ["ghost"]\n', "tasks.0.depends_on: task "),
        ("", "tasks: the plan has no tasks"),
        ('[[tasks]]\ndescription = "x"\nhelp = 1\n', "tasks.0.help: unknown field"),
        ("tasks = [", "invalid TOML"),
    ],
)
def test_a_bad_plan_file_is_one_line_exit_2_and_nothing_written(
    workspace: Path, text: str, message: str
) -> None:
    plan_file = workspace.parent / "plan.toml"
    plan_file.write_text(text)
    done = plan_cli("create", "-w", str(workspace), "--file", str(plan_file))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert done.stderr.startswith("loopwright: error: plan file ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert not (workspace / ".loopwright").exists()


@pytest.mark.slow
def test_bad_arguments_are_exit_2(workspace: Path) -> None:
    ws = str(workspace)
    assert plan_cli("create", "-w", ws).returncode == 2  # neither --file nor --from-loop
    done = plan_cli("dispatch", "plan_x", "-w", ws)
    assert done.returncode == 2 and "no loopwright state" in done.stderr
    done = plan_cli("create", "-w", ws, "--file", str(EXAMPLE), "--project", "no way")
    assert done.returncode == 2 and "--project" in done.stderr


AGENT = textwrap.dedent(
    """
    import os, pathlib, re
    # Works only on a plan's task: its goal names the one condition to fix.
    match = re.search(r"make the exit condition '(\\w+)'", os.environ["LOOPWRIGHT_GOAL"])
    if match:
        pathlib.Path(match.group(1) + ".txt").write_text("done\\n")
    """
)


@pytest.mark.slow
def test_a_failed_loop_is_inspected_planned_dispatched_and_verified(workspace: Path, tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    check = "import pathlib,sys; sys.exit(0 if pathlib.Path('{0}.txt').exists() else 1)"
    config = tmp_path / "loop.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            goal = "write alpha and beta"
            project = "shop"
            max_iterations = 1
            [[exit_conditions]]
            type = "CUSTOM"
            name = "alpha"
            command = ["python", "-c", {json.dumps(check.format("alpha"))}]
            [[exit_conditions]]
            type = "CUSTOM"
            name = "beta"
            command = ["python", "-c", {json.dumps(check.format("beta"))}]
            [agent]
            kind = "command"
            command = [{json.dumps(sys.executable)}, {json.dumps(str(agent))}]
            """
        )
    )
    ws = str(workspace)
    done = cli("run", "-w", ws, "-c", str(config), "--loop-id", "first", "--quiet")
    assert done.returncode == 3, done.stdout + done.stderr  # the iteration limit stopped it

    plan = plan_json("create", "-w", ws, "--from-loop", "first")
    assert (plan["status"], plan["project"], plan["source_loop_id"]) == ("DRAFT", "shop", "first")
    assert [(t["task_id"], t["depends_on"]) for t in plan["tasks"]] == [("alpha", []), ("beta", [])]
    assert [g["name"] for g in plan["gates"]] == ["gate:alpha", "gate:beta"]

    done = plan_cli("dispatch", plan["plan_id"], "-w", ws)  # the workspace's project: 'default'
    assert done.returncode == 2 and "in project 'default'" in done.stderr
    done = plan_cli("dispatch", plan["plan_id"], "-w", ws, "--project", "shop")
    assert done.returncode == 0, done.stdout + done.stderr
    verified = plan_json("verify", plan["plan_id"], "-w", ws, "--project", "shop")
    assert verified["status"] == "VERIFIED"
    assert [c["name"] for c in verified["gate_result"]["checks"]] == ["gate:tasks", "gate:alpha", "gate:beta"]


FORBID_PLANS = """
@id("no-plans-on-fridays")
@message("nobody changes plans today")
forbid (
  principal,
  action in [Action::"CreatePlan", Action::"DispatchPlan", Action::"VerifyPlan"],
  resource
);
"""


@pytest.mark.slow
def test_plan_changes_are_authorized_by_cedar_as_the_local_user(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a plan created under the shipped policies (the local user operates its project)
    ws = str(workspace)
    plan_id = plan_json("create", "-w", ws, "--file", str(EXAMPLE))["plan_id"]
    # And a policy folder that forbids plan changes
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[2] / "policies", policies)
    (policies / "friday.cedar").write_text(FORBID_PLANS)
    monkeypatch.setenv("LOOPWRIGHT_POLICY_DIR", str(policies))
    # When the local user creates, dispatches or verifies, Then Cedar refuses (exit 3) naming the
    # policy, and nothing is written
    for args in (
        ("create", "-w", ws, "--file", str(EXAMPLE)),
        ("dispatch", plan_id, "-w", ws),
        ("verify", plan_id, "-w", ws),
    ):
        done = plan_cli(*args)
        assert done.returncode == 3, done.stdout + done.stderr
        assert "may not" in done.stderr and "no-plans-on-fridays" in done.stderr, done.stderr
    monkeypatch.delenv("LOOPWRIGHT_POLICY_DIR")
    shown = plan_json("show", plan_id, "-w", ws, "--events")
    assert shown["status"] == "DRAFT" and [e["type"] for e in shown["events"]] == ["plan_created"]
    assert [p["plan_id"] for p in plan_json("list", "-w", ws)] == [plan_id]
