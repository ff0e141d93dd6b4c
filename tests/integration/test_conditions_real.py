"""Every exit-condition type against a real git repository, failing then passing."""

from __future__ import annotations

import subprocess
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from loopwright.models import (
    ExitConditionConfig,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
)
from loopwright.steps.evaluate import evaluate, failures_for_agent
from tests.environments import tools_sandbox

S = ExitConditionStatusValue
T = ExitConditionType

GIT_IDENTITY = ["-c", "user.name=Loopwright Test", "-c", "user.email=test@loopwright.invalid"]

BROKEN = {
    "pyproject.toml": """
        [tool.ruff.lint]
        select = ["E", "F"]

        [tool.pytest.ini_options]
        testpaths = ["tests"]
    """,
    "calc/__init__.py": """
        import os


        def add(a, b):
            return a - b
    """,
    "calc/tools.py": """
        import subprocess


        def run(cmd):
            return subprocess.run(cmd, shell=True, check=False)


        def parse(text):
            return eval(text)
    """,
    "calc/legacy.py": """
        def oops(:
            pass
    """,
    "tests/test_calc.py": """
        from calc import add


        def test_add():
            assert add(2, 3) == 5


        def test_zero():
            assert add(0, 0) == 0
    """,
}

FIXED = {
    "calc/__init__.py": """
        def add(a, b):
            return a + b
    """,
    "calc/tools.py": """
        import ast
        import subprocess


        def run(cmd):
            return subprocess.run(cmd.split(), check=False)


        def parse(text):
            return ast.literal_eval(text)
    """,
    "calc/legacy.py": """
        def oops():
            pass
    """,
}

CUSTOM_CHECK = "python -c \"import calc, sys; sys.exit(0 if calc.add(1, 1) == 2 else 'add(1, 1) is wrong')\""


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *GIT_IDENTITY, *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root, BROKEN)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "broken")
    return root


def all_conditions(parallel: bool = True) -> LoopConfig:
    return LoopConfig(
        goal="make every check pass",
        parallel_conditions=parallel,
        exit_conditions=[
            ExitConditionConfig(type=T.ALL_TESTS_PASS),
            ExitConditionConfig(type=T.LINTING_CLEAN, name="lint"),
            ExitConditionConfig(type=T.BUILD_SUCCEEDS),
            ExitConditionConfig(type=T.SECURITY_SCAN_CLEAN, name="security"),
            ExitConditionConfig(type=T.CUSTOM, name="adds", command=CUSTOM_CHECK),
        ],
    )


def by_name(statuses: list[ExitConditionStatus]) -> dict[str, ExitConditionStatus]:
    return {s.name: s for s in statuses}


def git_status(repo: Path) -> str:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True
    )
    return out.stdout


@pytest.mark.slow
def test_every_condition_type_fails_then_passes(repo: Path) -> None:
    sandbox = tools_sandbox()
    config = all_conditions()

    first = evaluate(config, sandbox, repo, iteration=1)
    assert [s.name for s in first] == [
        "all_tests_pass",
        "lint",
        "build_succeeds",
        "security",
        "adds",
    ]
    results = by_name(first)
    assert all(s.status is S.NOT_MET for s in first), {s.name: (s.status, s.summary) for s in first}
    assert all(s.iteration == 1 and s.evaluated_at is not None for s in first)

    tests = results["all_tests_pass"]
    assert (tests.details["failed"], tests.details["passed"]) == (1, 1)
    assert tests.failures == ["FAILED tests/test_calc.py::test_add - assert -1 == 5"]
    assert tests.command[:3] == ["python", "-m", "pytest"]
    assert tests.details["parser"] == "pytest"

    lint = results["lint"]
    assert lint.details["by_rule"]["F401"] == 1
    assert "calc/__init__.py:1:8 F401 `os` imported but unused" in lint.failures
    assert isinstance(lint.details["fixable"], int)  # ruff offers no fix in __init__.py

    build = results["build_succeeds"]
    assert build.details["errors"] == 1
    assert build.failures == ["calc/legacy.py:1 SyntaxError: invalid syntax"]

    security = results["security"]
    assert security.details["by_test"] == {"B307": 1, "B602": 1}
    assert security.details["by_severity"] == {"HIGH": 1, "MEDIUM": 1}
    assert security.details["scan_errors"] == 1  # calc/legacy.py cannot be parsed
    assert any(f.startswith("calc/tools.py:5 B602 [HIGH/") for f in security.failures)

    custom = results["adds"]
    assert custom.exit_code == 1
    assert "add(1, 1) is wrong" in custom.failures

    lines = failures_for_agent(first, 6)
    assert len(lines) == 6
    assert {line.split(" (")[0] for line in lines} == {t.value for t in T}

    write(repo, FIXED)
    git(repo, "commit", "-q", "-am", "fixed")
    second = by_name(evaluate(config, sandbox, repo, iteration=2))
    assert all(s.status is S.MET for s in second.values()), {
        n: (s.status, s.summary, s.failures) for n, s in second.items()
    }
    assert (
        second["all_tests_pass"].details["failed"],
        second["all_tests_pass"].details["passed"],
    ) == (0, 2)
    assert second["lint"].details["findings"] == 0
    assert second["build_succeeds"].details["errors"] == 0
    assert second["security"].details["issues"] == 0
    assert failures_for_agent(list(second.values()), 10) == []
    # The checks left the worktree as committed (no caches, no byte code).
    assert git_status(repo) == ""


def test_parallel_results_keep_config_order_with_timeout_and_error(tmp_path: Path) -> None:
    slow_first = 'python -c "import time; time.sleep(0.4)"'
    config = LoopConfig(
        goal="order",
        parallel_conditions=True,
        exit_conditions=[
            ExitConditionConfig(type=T.CUSTOM, name="slow", command=slow_first),
            ExitConditionConfig(type=T.CUSTOM, name="hangs", command="sleep 30", timeout_seconds=0.5),
            ExitConditionConfig(type=T.LINTING_CLEAN, name="nolinter", command="no-such-linter-xyz ."),
            ExitConditionConfig(type=T.CUSTOM, name="fast", command="true"),
        ],
    )
    statuses = evaluate(config, tools_sandbox(), tmp_path, iteration=3)
    assert [s.name for s in statuses] == ["slow", "hangs", "nolinter", "fast"]
    assert [s.status for s in statuses] == [S.MET, S.TIMEOUT, S.ERROR, S.MET]
    assert "command not found: no-such-linter-xyz" in statuses[2].summary
    # concurrently: the slow and the hanging checks ran at the same time (their intervals overlap)
    slow, hangs = statuses[0], statuses[1]
    assert slow.evaluated_at is not None and hangs.evaluated_at is not None
    slow_start = slow.evaluated_at - timedelta(seconds=slow.duration_seconds)
    hangs_start = hangs.evaluated_at - timedelta(seconds=hangs.duration_seconds)
    assert slow_start < hangs.evaluated_at and hangs_start < slow.evaluated_at
    sequential = evaluate(
        config.model_copy(update={"parallel_conditions": False}), tools_sandbox(), tmp_path, 3
    )
    assert [s.status for s in sequential] == [S.MET, S.TIMEOUT, S.ERROR, S.MET]
