"""The evaluate step's records: the statuses in the config's order whether the conditions ran
one after the other or concurrently (at most MAX_PARALLEL_CONDITIONS at once), the failure lines
shared fairly at exact limits, slow conditions rounded past the threshold, and when an
evaluation pauses the loop (a required ERROR; a required TIMEOUT only at the baseline)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from loopwright.models import (
    CommandResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
)
from loopwright.ports import OutputCallback, Sandbox
from loopwright.steps.evaluate import (
    MAX_PARALLEL_CONDITIONS,
    SLOW_CONDITION_SECONDS,
    evaluate,
    evaluation_problem,
    failures_for_agent,
    slow_conditions,
)

S = ExitConditionStatusValue


class ThreadSandbox(Sandbox):
    """Exit code 0 (1 for the command ``bad``); keeps each run's thread name and folder and the
    most runs seen at the same time. Each run waits (at most 2 s) until ``gate`` runs are under
    way, then sleeps the seconds its last argument gives, so the finishing order is known."""

    def __init__(self, gate: int = 1) -> None:
        self.gate = gate
        self.changed = threading.Condition()
        self.running = 0
        self.most = 0
        self.threads: list[tuple[str, str]] = []
        self.folders: set[Path] = set()

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        return name

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> CommandResult:
        with self.changed:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.append((command[0], threading.current_thread().name))
            self.folders.add(cwd)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.running >= self.gate, timeout=2)
        time.sleep(float(command[-1]))
        with self.changed:
            self.running -= 1
        return CommandResult(command=list(command), exit_code=0 if command[0] != "bad" else 1)


def _config(delays: Sequence[float], *, parallel: bool) -> LoopConfig:
    return LoopConfig.model_validate(
        {
            "goal": "g",
            "parallel_conditions": parallel,
            "exit_conditions": [
                {"type": "CUSTOM", "name": f"c{i}", "command": ["bad" if i == 0 else f"c{i}", str(d)]}
                for i, d in enumerate(delays)
            ],
        }
    )


def test_sequential_conditions_run_one_after_the_other_in_this_thread(tmp_path: Path) -> None:
    sandbox = ThreadSandbox()
    statuses = evaluate(_config([0.02, 0.0, 0.01], parallel=False), sandbox, tmp_path, 4)
    assert [s.name for s in statuses] == ["c0", "c1", "c2"]
    assert [s.status for s in statuses] == [S.NOT_MET, S.MET, S.MET]
    assert {s.iteration for s in statuses} == {4}
    assert sandbox.most == 1
    me = threading.current_thread().name
    assert sandbox.threads == [("bad", me), ("c1", me), ("c2", me)]
    assert sandbox.folders == {tmp_path}


def test_a_single_condition_runs_in_this_thread_even_when_parallel(tmp_path: Path) -> None:
    sandbox = ThreadSandbox()
    statuses = evaluate(_config([0.0], parallel=True), sandbox, tmp_path, 1)
    assert [s.name for s in statuses] == ["c0"]
    assert sandbox.threads == [("bad", threading.current_thread().name)]


def test_parallel_conditions_run_together_and_are_listed_in_the_configs_order(tmp_path: Path) -> None:
    sandbox = ThreadSandbox(gate=3)
    # the first finishes last
    statuses = evaluate(_config([0.3, 0.1, 0.2], parallel=True), sandbox, tmp_path, 2)
    assert [s.name for s in statuses] == ["c0", "c1", "c2"]
    assert [s.status for s in statuses] == [S.NOT_MET, S.MET, S.MET]
    assert sandbox.most == 3
    assert all(name.startswith("loopwright-eval") for _, name in sandbox.threads)
    assert sandbox.folders == {tmp_path}


def test_at_most_max_parallel_conditions_run_at_once(tmp_path: Path) -> None:
    assert MAX_PARALLEL_CONDITIONS == 8
    sandbox = ThreadSandbox(gate=8)
    statuses = evaluate(_config([0.2] * 10, parallel=True), sandbox, tmp_path, 1)
    assert len(statuses) == 10
    assert sandbox.most == 8


# --- failures_for_agent -------------------------------------------------------------------


def _status(
    name: str,
    value: ExitConditionStatusValue,
    failures: Sequence[str] = (),
    summary: str = "",
    *,
    required: bool = True,
    duration: float = 0.0,
    kind: ExitConditionType = ExitConditionType.CUSTOM,
) -> ExitConditionStatus:
    return ExitConditionStatus(
        name=name,
        type=kind,
        status=value,
        failures=list(failures),
        summary=summary,
        required=required,
        duration_seconds=duration,
    )


STATUSES = [
    _status("tests", S.NOT_MET, ["t1", "t2", "t3"], kind=ExitConditionType.ALL_TESTS_PASS),
    _status("ok", S.MET, ["never shown"]),
    _status("lint", S.NOT_MET, ["l1"], kind=ExitConditionType.LINTING_CLEAN),
    _status("build", S.TIMEOUT, summary="timed out after 600 s", kind=ExitConditionType.BUILD_SUCCEEDS),
    _status("scan", S.ERROR),
]
T = "ALL_TESTS_PASS (tests): "
L = "LINTING_CLEAN (lint): l1"
B = "BUILD_SUCCEEDS (build): TIMEOUT: timed out after 600 s"
E = "CUSTOM (scan): ERROR: no details"


@pytest.mark.parametrize(
    ("limit", "lines"),
    [
        (-1, []),
        (0, []),
        (1, [T + "t1"]),
        (2, [T + "t1", L]),
        (4, [T + "t1", L, B, E]),
        (5, [T + "t1", T + "t2", L, B, E]),
        (6, [T + "t1", T + "t2", T + "t3", L, B, E]),
        (7, [T + "t1", T + "t2", T + "t3", L, B, E]),
        (100, [T + "t1", T + "t2", T + "t3", L, B, E]),
    ],
)
def test_failure_lines_are_shared_fairly_and_grouped_by_condition(limit: int, lines: list[str]) -> None:
    assert failures_for_agent(STATUSES, limit) == lines


def test_no_failure_lines_when_every_condition_is_met() -> None:
    assert failures_for_agent([_status("ok", S.MET)], 5) == []


# --- slow_conditions ----------------------------------------------------------------------


def test_slow_conditions_are_those_over_the_threshold_rounded_to_a_tenth() -> None:
    assert SLOW_CONDITION_SECONDS == 30.0
    statuses = [
        _status("at", S.MET, duration=30.0),
        _status("over", S.MET, duration=30.04),
        _status("slow", S.TIMEOUT, duration=61.26),
        _status("fast", S.NOT_MET, duration=2.0),
    ]
    assert slow_conditions(statuses) == {"over": 30.0, "slow": 61.3}


# --- evaluation_problem -------------------------------------------------------------------

FIX = (
    " (not a failure the agent can fix: fix the tool, its command or its timeout_seconds, "
    "then resume the loop)"
)


@pytest.mark.parametrize("baseline", [False, True])
def test_a_required_error_pauses_the_loop_naming_the_condition(baseline: bool) -> None:
    statuses = [_status("tests", S.NOT_MET), _status("lint", S.ERROR, summary="could not run: ruff")]
    assert evaluation_problem(statuses, baseline=baseline) == (
        "exit condition 'lint' is ERROR: could not run: ruff" + FIX
    )


def test_a_timeout_pauses_the_loop_only_at_the_baseline() -> None:
    statuses = [_status("tests", S.TIMEOUT, summary="timed out")]
    assert evaluation_problem(statuses, baseline=False) is None
    assert evaluation_problem(statuses, baseline=True) == "exit condition 'tests' is TIMEOUT: timed out" + FIX


@pytest.mark.parametrize("value", [S.ERROR, S.TIMEOUT])
def test_optional_conditions_never_pause_the_loop(value: ExitConditionStatusValue) -> None:
    assert evaluation_problem([_status("docs", value, required=False)], baseline=True) is None


@pytest.mark.parametrize("value", [S.MET, S.NOT_MET, S.PENDING])
def test_other_statuses_never_pause_the_loop(value: ExitConditionStatusValue) -> None:
    assert evaluation_problem([_status("tests", value)], baseline=True) is None


def test_every_problem_is_named_its_summary_bounded_or_no_details() -> None:
    statuses = [
        _status("a", S.ERROR, summary="x" * 301),
        _status("b", S.ERROR),
        _status("c", S.TIMEOUT, summary="slow"),
    ]
    assert evaluation_problem(statuses, baseline=True) == (
        f"exit condition 'a' is ERROR: {'x' * 300}; exit condition 'b' is ERROR: no details; "
        "exit condition 'c' is TIMEOUT: slow" + FIX
    )
