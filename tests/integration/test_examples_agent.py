"""The example agent ``examples/agents/ruff_fixer.py``, run as loopwright runs a command agent.

Each test writes a small project and a failures file shaped like the engine's (see
``loopwright.adapters.local.command_agent``), runs the fixer in the project with the
``LOOPWRIGHT_*`` variables set, and checks what ruff still finds afterwards and the report.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXER = REPO / "examples" / "agents" / "ruff_fixer.py"
RUFF = Path(sys.executable).parent / "ruff"

# UP009, UP025, UP032 (3 of family UP) and SIM300 (1 of family SIM); all have automatic fixes.
MOD = """\
# -*- coding: utf-8 -*-
def greet(name):
    if "admin" == name:
        return u"hi boss"
    return "hello {}".format(name)
"""
# E741 three times (no automatic fix) and UP025 once.
AMBIGUOUS = 'l = 1\nI = 2\nO = 3\nx = u"a"\n'
LINT_COMMAND = [
    "ruff",
    "check",
    "--no-cache",
    "--isolated",
    "--output-format",
    "json",
    "--select",
    "UP,SIM,E7",
    "pkg",
]


def _load_fixer() -> ModuleType:
    name = "examples_agents_ruff_fixer"  # examples/ is no package; load the script by path
    spec = importlib.util.spec_from_file_location(name, FIXER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fixer = _load_fixer()


def findings(project: Path, *paths: str, select: str = "UP,SIM,E7") -> Counter[str]:
    """What ruff finds in ``project`` (rule code -> count)."""
    argv = [str(RUFF), "check", "--no-cache", "--isolated", "--output-format", "json"]
    done = subprocess.run(
        [*argv, "--select", select, *(paths or ("pkg",))],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    return Counter(f["code"] for f in json.loads(done.stdout))


def lint_condition(by_rule: dict[str, int], command: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": "linting_clean",
        "type": "LINTING_CLEAN",
        "status": "NOT_MET",
        "summary": f"{sum(by_rule.values())} lint findings",
        "details": {"findings": sum(by_rule.values()), "by_rule": by_rule},
        "failures": [],
        "command": command or LINT_COMMAND,
        "exit_code": 1,
    }


def run_fixer(
    project: Path, failures: dict[str, Any], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run the fixer in ``project`` as the command agent would; (process, report)."""
    state = project.parent / "state"
    state.mkdir(exist_ok=True)
    failures_file, report_file = state / "failures.json", state / "report.json"
    failures_file.write_text(json.dumps(failures), encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "LOOPWRIGHT_ITERATION": "2",
        "LOOPWRIGHT_FAILURES_FILE": str(failures_file),
        "LOOPWRIGHT_REPORT_FILE": str(report_file),
        "LOOPWRIGHT_WORKSPACE": str(project),
    }
    done = subprocess.run(
        [sys.executable, str(FIXER), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.exists() else {}
    return done, report


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text(MOD, encoding="utf-8")
    return root


def test_fixes_only_the_family_with_most_findings(project: Path) -> None:
    by_rule = {"SIM300": 1, "UP009": 1, "UP025": 1, "UP032": 1}
    assert findings(project) == Counter(by_rule)
    failures = {
        "failing_conditions": ["linting_clean"],
        "failures": [],
        "conditions": [lint_condition(by_rule)],
    }

    done, report = run_fixer(project, failures)

    assert done.returncode == 0, done.stderr
    assert findings(project) == Counter({"SIM300": 1})
    assert report["tokens_used"] == 300
    assert "fixed 3 finding(s) of family UP" in report["summary"]
    assert report["needs_human"] is None


@pytest.mark.parametrize(
    "failures",
    [
        {"failing_conditions": [], "failures": [], "conditions": []},
        {
            "failing_conditions": ["linting_clean"],
            "failures": [],
            "conditions": [
                {
                    "name": "linting_clean",
                    "type": "LINTING_CLEAN",
                    "status": "PENDING",
                    "command": [],
                }
            ],
        },
    ],
    ids=["empty", "pending"],
)
def test_before_the_first_evaluation_it_runs_ruff_with_its_arguments(
    project: Path, failures: dict[str, Any]
) -> None:
    done, report = run_fixer(project, failures, "--isolated", "--select", "UP,SIM", "pkg")

    assert done.returncode == 0, done.stderr
    assert findings(project) == Counter({"SIM300": 1})
    assert "own ruff run" in done.stdout
    assert report["tokens_used"] == 300


def test_the_scope_comes_from_the_lint_condition(project: Path) -> None:
    (project / "other").mkdir()
    (project / "other" / "mod.py").write_text(MOD, encoding="utf-8")
    failures = {
        "failing_conditions": ["linting_clean"],
        "failures": [],
        "conditions": [lint_condition({"UP009": 1, "UP025": 1, "UP032": 1, "SIM300": 1})],
    }

    done, _ = run_fixer(project, failures, ".")  # its own arguments would cover other/ too

    assert done.returncode == 0, done.stderr
    assert (project / "other" / "mod.py").read_text(encoding="utf-8") == MOD
    assert findings(project) == Counter({"SIM300": 1})


def test_a_family_without_automatic_fix_is_skipped_for_the_next(project: Path) -> None:
    (project / "pkg" / "mod.py").write_text(AMBIGUOUS, encoding="utf-8")
    failures = {
        "failing_conditions": ["linting_clean"],
        "failures": [],
        "conditions": [lint_condition({"E741": 3, "UP025": 1})],
    }

    done, report = run_fixer(project, failures)

    assert done.returncode == 0, done.stderr
    assert findings(project) == Counter({"E741": 3})
    assert report["tokens_used"] == 100
    assert "family UP" in report["summary"]
    assert "E (3 finding(s) of E741) has no automatic fix" in report["summary"]


def test_failing_tests_are_reported_not_touched(project: Path) -> None:
    failures = {
        "failing_conditions": ["all_tests_pass"],
        "failures": ["FAILED test_mod.py::test_greet - assert 'hi' == 'hello'"],
        "conditions": [
            {
                "name": "all_tests_pass",
                "type": "ALL_TESTS_PASS",
                "status": "NOT_MET",
                "summary": "1 failed, 3 passed",
                "command": ["python", "-m", "pytest"],
            }
        ],
    }

    done, report = run_fixer(project, failures)

    assert done.returncode == 0, done.stderr
    assert (project / "pkg" / "mod.py").read_text(encoding="utf-8") == MOD
    assert report["tokens_used"] == 0
    assert report["summary"].startswith("nothing to fix: lint is clean")
    assert "all_tests_pass (1 failed, 3 passed)" in report["summary"]


def test_a_ruff_error_fails_the_agent(project: Path) -> None:
    failures: dict[str, Any] = {"failing_conditions": [], "failures": [], "conditions": []}

    done, report = run_fixer(project, failures, "--target-version", "nope", "pkg")

    assert done.returncode == 1
    assert report["tokens_used"] == 0
    assert report["summary"].startswith("could not run ruff: ruff exited 2")
    assert (project / "pkg" / "mod.py").read_text(encoding="utf-8") == MOD


def test_families_most_findings_first_ties_alphabetical() -> None:
    by_rule = {"UP025": 2, "SIM300": 2, "E401": 1, "I001": 1, "syntax-error": 5, "UP032": 1}

    assert fixer.families(by_rule) == [
        ("UP", 3, ["UP025", "UP032"]),
        ("SIM", 2, ["SIM300"]),
        ("E", 1, ["E401"]),
        ("I", 1, ["I001"]),
    ]
    assert fixer.families({"SIM300": 2, "B006": 2})[0][0] == "B"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (LINT_COMMAND, ["--isolated", "--select", "UP,SIM,E7", "pkg"]),
        (
            ["python", "-m", "ruff", "check", "--output-format=json", "--fix", "--select=F", "."],
            ["--select=F", "."],
        ),
        (
            ["/opt/bin/ruff", "check", "--config", "ruff.toml", "src"],
            ["--config", "ruff.toml", "src"],
        ),
        (["python", "-m", "pytest", "-q"], []),
    ],
)
def test_arguments_are_taken_from_the_condition_command(command: list[str], expected: list[str]) -> None:
    assert fixer.args_of_command(command) == expected


def test_fixing_replaces_the_rule_selection() -> None:
    assert fixer.without_selection(["--isolated", "--select", "F", "--extend-select=I", "src"]) == [
        "--isolated",
        "src",
    ]
