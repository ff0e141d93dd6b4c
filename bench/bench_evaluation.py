"""Evaluation overhead: what loopwright adds to running a pytest condition (issue 9, "Done when").

The figure is ``loopwright / by hand``: the wall time of
:func:`loopwright.conditions.evaluate_condition` on the default ALL_TESTS_PASS condition (the real
:class:`~loopwright.adapters.local.sandbox.SubprocessSandbox` with its supervisor, in the
project's environment, and the pytest parser) divided by the wall time of ``subprocess.run`` of
the same argv, in the same folder with the same environment (what a user typing the command
would wait for). Median of ``--runs`` interleaved runs of each, after ``--warmup`` runs of each.
Target: <= 1.2x.

The suite: a generated project of 20 passing tests (4 files of 5) in a temporary folder, with
its own venv holding only pytest (made with ``python -m venv --without-pip`` and this
interpreter's pip, ``pip --python``, which uses pip's cache), so neither loopwright's pytest
plugins nor its packages are loaded. ``--python PATH`` uses an interpreter that has pytest
instead.

Then the evaluation cache (issue 10): the same condition evaluated by
:func:`loopwright.steps.evaluation_cache.evaluate_cached` in a loop's git worktree, once for real
(the tree is new) and then ``--runs`` times on the unchanged tree (the results reused: what it
costs is ``git status`` and ``git rev-parse HEAD^{tree}``). Target: < 5 ms (median).

Usage::

    .venv/bin/python bench/bench_evaluation.py [--runs 21] [--warmup 3] [--python PATH]

Exit code 0 (also when the target is missed), 1 when the condition does not hold.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from loopwright.adapters.local.environment import build_environment, user_environment
from loopwright.adapters.local.git_workspace import GitWorktreeWorkspace
from loopwright.adapters.local.project_env import ProjectEnvironment, detect_project_environment
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.conditions import evaluate_condition
from loopwright.conditions.defaults import default_command
from loopwright.models import (
    AgentKind,
    CommandAgentConfig,
    ExitConditionConfig,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
    LoopState,
)
from loopwright.steps.evaluation_cache import evaluate_cached

#: Target of the ratio (issue 9).
TARGET_RATIO = 1.2
#: Target of an unchanged tree's evaluation, seconds (issue 10).
TARGET_CACHED_SECONDS = 0.005
FILES, TESTS_PER_FILE = 4, 5


def make_project(root: Path) -> None:
    """A flat project of FILES x TESTS_PER_FILE passing tests under ``root``."""
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "benchsuite"\nversion = "0"\n')
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    for index in range(FILES):
        tests = "\n\n".join(
            f"def test_add_{index}_{n}():\n    assert add({n}, {index}) == {n + index}"
            for n in range(TESTS_PER_FILE)
        )
        (root / "tests" / f"test_calc_{index}.py").write_text(f"from calc import add\n\n\n{tests}\n")


def make_venv(root: Path) -> None:
    """``root/.venv`` with pytest, installed by this interpreter's pip (from its cache if there)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(root / ".venv" / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--disable-pip-version-check", "pytest"], check=True)


def measure(project: Path, environment: ProjectEnvironment, runs: int, warmup: int) -> dict[str, float]:
    """Median seconds of loopwright's evaluation and of the same command by hand, and their ratio."""
    cfg = ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS, timeout_seconds=300)
    sandbox = SubprocessSandbox(environment=environment)
    command = default_command(ExitConditionType.ALL_TESTS_PASS)
    assert environment.python is not None
    by_hand_argv = [environment.python, *command[1:]]
    env = build_environment(None, environment)
    ours: list[float] = []
    theirs: list[float] = []
    for attempt in range(warmup + runs):
        start = time.perf_counter()
        status = evaluate_condition(cfg, sandbox, project, iteration=1)
        middle = time.perf_counter()
        done = subprocess.run(by_hand_argv, cwd=project, env=env, capture_output=True, check=False)  # nosec B603
        end = time.perf_counter()
        if status.status is not ExitConditionStatusValue.MET or done.returncode != 0:
            raise RuntimeError(f"the suite does not pass: {status.summary}; by hand: exit {done.returncode}")
        if attempt >= warmup:
            ours.append(middle - start)
            theirs.append(end - middle)
    loopwright, by_hand = statistics.median(ours), statistics.median(theirs)
    return {"loopwright": loopwright, "by_hand": by_hand, "ratio": loopwright / by_hand}


def measure_cache(project: Path, environment: ProjectEnvironment, runs: int) -> dict[str, float]:
    """Seconds of a real evaluation of the condition in a loop's worktree of ``project`` (made a
    repository) and the median of ``runs`` evaluations of the unchanged tree (cached)."""
    cfg = ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS, timeout_seconds=300)
    workspace = GitWorktreeWorkspace(project, start_from="head")
    worktree, _, _ = workspace.prepare("bench-cache")
    config = LoopConfig(
        goal="bench",
        exit_conditions=[cfg],
        agent=CommandAgentConfig(kind=AgentKind.COMMAND, command=["true"]),
    )
    state = LoopState(loop_id="bench-cache", config=config, worktree=str(worktree))
    sandbox = SubprocessSandbox(environment=environment)
    start = time.perf_counter()
    real = evaluate_cached(state, sandbox, workspace)
    real_seconds = time.perf_counter() - start
    if real.cached or real.statuses[0].status is not ExitConditionStatusValue.MET:
        raise RuntimeError(f"the first evaluation in the worktree did not run the suite: {real.statuses}")
    cached: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        again = evaluate_cached(state, sandbox, workspace)
        cached.append(time.perf_counter() - start)
        if again.cached != [cfg.key]:
            raise RuntimeError("an unchanged tree was evaluated again: the cache was not used")
    return {"real": real_seconds, "cached": statistics.median(cached)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="measured runs of each (default 21)")
    parser.add_argument("--warmup", type=int, default=3, help="runs of each not counted (default 3)")
    parser.add_argument("--python", help="an interpreter with pytest (default: a fresh venv)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-eval-") as folder:
        project = Path(folder) / "suite"
        make_project(project)
        if args.python is None:
            make_venv(project)
        environment = detect_project_environment(project, project, user_environment(), python=args.python)
        try:
            figures = measure(project, environment, args.runs, args.warmup)
            cache = measure_cache(project, environment, args.runs)
        except RuntimeError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
    verdict = "meets" if figures["ratio"] <= TARGET_RATIO else "misses"
    print(
        f"evaluation overhead: {figures['ratio']:.2f}x ({verdict} the target <= {TARGET_RATIO}x): a pytest "
        f"condition of {FILES * TESTS_PER_FILE} tests takes {figures['loopwright'] * 1000:.0f} ms through "
        f"loopwright, {figures['by_hand'] * 1000:.0f} ms by hand (median of {args.runs}; "
        f"{environment.describe()})"
    )
    verdict = "meets" if cache["cached"] < TARGET_CACHED_SECONDS else "misses"
    print(
        f"evaluation of an unchanged tree: {cache['cached'] * 1000:.1f} ms, cached ({verdict} the "
        f"target < {TARGET_CACHED_SECONDS * 1000:g} ms; median of {args.runs}), next to "
        f"{cache['real'] * 1000:.0f} ms for the real evaluation of the same tree"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
