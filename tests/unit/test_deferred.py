"""Commands run in the background and polled by a replayed step (loopwright.deferred, issue 12.5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from loopwright.deferred import (
    CommandPending,
    DeferringSandbox,
    deferral_key,
    next_wait,
    replayed_seconds,
    replaying,
)
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import CommandResult, DeferredCommand, utcnow
from loopwright.ports import BackgroundSandbox


class Tasks(BackgroundSandbox):
    """Background tasks whose end the test decides (``finish``)."""

    def __init__(self) -> None:
        self.started: list[list[str]] = []
        self.results: dict[str, CommandResult] = {}
        self.cancelled: list[str] = []
        self.polled: list[str] = []

    def start(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> str:
        self.started.append(list(command))
        return f"t{len(self.started)}"

    def poll(self, task_id: str, *, max_output_bytes: int = 256 * 1024) -> CommandResult | None:
        self.polled.append(task_id)
        return self.results.get(task_id)

    def cancel(self, task_id: str) -> None:
        self.cancelled.append(task_id)

    def finish(self, task_id: str, exit_code: int = 0, stdout: str = "") -> None:
        self.results[task_id] = CommandResult(command=[], exit_code=exit_code, stdout=stdout)


def run(sandbox: DeferringSandbox, *command: str, timeout: float = 60.0) -> CommandResult:
    return sandbox.run(list(command), cwd=Path("."), timeout_seconds=timeout)


# ----------------------------------------------------------------------------- next_wait
@pytest.mark.parametrize(
    ("elapsed", "expected", "wait"),
    [
        (2, 300, 299),  # the last run took 300 s: one poll just after that
        (290, 300, 11),
        (310, 300, 78),  # late: a quarter of the time it has run
        (0, None, 10),  # nothing to expect: as long as it has run, at least the minimum
        (40, None, 40),
        (5000, None, 300),  # at most the maximum
        (299.9, 300, 10),  # at least the minimum
    ],
)
def test_the_wait_follows_the_expected_duration_then_backs_off(
    elapsed: float, expected: float | None, wait: int
) -> None:
    assert next_wait(elapsed, expected) == wait


def test_the_wait_bounds_are_the_callers() -> None:
    assert next_wait(0, None, minimum=1, maximum=5) == 1
    assert next_wait(100, None, minimum=1, maximum=5) == 5


# ----------------------------------------------------------------------------- DeferringSandbox
def test_a_command_that_ends_in_time_is_returned_without_pending() -> None:
    class Quick(Tasks):
        def poll(self, task_id: str, *, max_output_bytes: int = 256 * 1024) -> CommandResult | None:
            return CommandResult(command=[], exit_code=0, stdout="hi")

    quick = Quick()
    sandbox = DeferringSandbox(quick, inline_seconds=1.0)
    seen: list[tuple[str, str]] = []
    result = sandbox.run(
        ["echo", "hi"], cwd=Path("."), timeout_seconds=5, on_output=lambda *a: seen.append(a)
    )
    assert (result.exit_code, result.stdout, result.command) == (0, "hi", ["echo", "hi"])
    assert result.started_at is not None and seen == [("stdout", "hi")]
    assert list(sandbox.running()) == ["command#0"] and quick.started == [["echo", "hi"]]


def test_a_running_command_is_pending_and_a_replay_polls_it_instead_of_starting_it_again() -> None:
    tasks = Tasks()
    first = DeferringSandbox(tasks, inline_seconds=0)
    with deferral_key("condition:tests"), pytest.raises(CommandPending) as pending:
        run(first, "pytest")
    assert pending.value.key == "condition:tests#0"
    journal = first.running()
    assert journal["condition:tests#0"].task_id == "t1" and journal["condition:tests#0"].command == ["pytest"]

    # the next invocation: still running -> pending again, never started twice
    again = DeferringSandbox(tasks, journal, token=first.token, inline_seconds=0)
    with deferral_key("condition:tests"), pytest.raises(CommandPending):
        run(again, "pytest")
    tasks.finish("t1", exit_code=1, stdout="1 failed")
    done = DeferringSandbox(tasks, journal, token=first.token, inline_seconds=0)
    with deferral_key("condition:tests"):
        result = run(done, "pytest")
    assert (result.exit_code, result.stdout, result.command) == (1, "1 failed", ["pytest"])
    assert result.duration_seconds >= 0 and result.started_at == journal["condition:tests#0"].started_at
    assert tasks.started == [["pytest"]]


def test_commands_under_one_key_are_told_apart_by_their_order() -> None:
    tasks = Tasks()
    sandbox = DeferringSandbox(tasks, inline_seconds=0)
    tasks.results["t1"] = CommandResult(command=[], exit_code=0, stdout="agent")
    tasks.results["t2"] = CommandResult(command=[], exit_code=0, stdout="report")

    with deferral_key("agent"):
        assert run(sandbox, "agent").stdout == "agent"
        assert run(sandbox, "cat", "report.json").stdout == "report"
    assert sorted(sandbox.running()) == ["agent#0", "agent#1"]
    replay = DeferringSandbox(tasks, sandbox.running(), inline_seconds=0)
    with deferral_key("agent"):
        assert run(replay, "agent").stdout == "agent"
        assert run(replay, "cat", "report.json").stdout == "report"
    assert len(tasks.started) == 2  # the replay started nothing


def test_a_command_past_its_time_limit_is_cancelled_and_timed_out() -> None:
    tasks = Tasks()
    old = DeferredCommand(
        task_id="t9", command=["sleep"], started_at=utcnow() - timedelta(seconds=120), timeout_seconds=60
    )
    sandbox = DeferringSandbox(tasks, {"command#0": old}, inline_seconds=0)
    result = run(sandbox, "sleep", "999", timeout=60)
    assert result.timed_out and result.exit_code is None and result.duration_seconds >= 120
    assert tasks.cancelled == ["t9"]


def test_a_stop_now_seen_at_a_replay_cancels_the_running_command() -> None:
    # Given an agent running in the background, pending at the first look (no stop asked yet)
    tasks = Tasks()
    asked: list[bool] = []

    def stop_now() -> bool:
        asked.append(True)
        return len(asked) > 1

    first = DeferringSandbox(tasks, inline_seconds=0)
    with deferral_key("agent"), pytest.raises(CommandPending):
        first.run(["claude"], cwd=Path("."), timeout_seconds=600, should_stop=stop_now)
    # When the replay after the Wait finds the stop queued
    replay = DeferringSandbox(tasks, first.running(), inline_seconds=0)
    with deferral_key("agent"):
        result = replay.run(["claude"], cwd=Path("."), timeout_seconds=600, should_stop=stop_now)
    # Then the task is cancelled and reported stopped (not timed out, no exit code)
    assert (result.stopped, result.timed_out, result.exit_code) == (True, False, None)
    assert tasks.cancelled == ["t1"] and result.command == ["claude"]


def test_a_finished_command_is_returned_even_when_a_stop_is_queued() -> None:
    tasks = Tasks()
    tasks.finish("t1", exit_code=0, stdout="done")
    sandbox = DeferringSandbox(tasks, inline_seconds=0)
    with deferral_key("agent"):
        result = sandbox.run(["agent"], cwd=Path("."), timeout_seconds=60, should_stop=lambda: True)
    assert (result.stopped, result.stdout) == (False, "done") and tasks.cancelled == []


def test_watch_stop_applies_to_commands_without_their_own_check() -> None:
    tasks = Tasks()
    sandbox = DeferringSandbox(tasks, inline_seconds=0)
    sandbox.watch_stop(lambda: True)
    with deferral_key("condition:tests"):
        assert run(sandbox, "pytest").stopped
    sandbox.watch_stop(None)
    with deferral_key("condition:lint"), pytest.raises(CommandPending):
        run(sandbox, "ruff")
    assert tasks.cancelled == ["t1"]


def test_a_completed_step_cancels_the_tasks_it_never_reached_and_forgets_the_rest() -> None:
    tasks = Tasks()
    started = utcnow()
    journal = {
        "condition:a#0": DeferredCommand(task_id="ta", started_at=started, timeout_seconds=60),
        "condition:b#0": DeferredCommand(task_id="tb", started_at=started, timeout_seconds=60),
    }
    tasks.finish("ta")
    sandbox = DeferringSandbox(tasks, journal, inline_seconds=0)
    with deferral_key("condition:a"):
        run(sandbox, "a")  # a human stopped the loop before condition b was reached again
    assert sandbox.step_done() == ["condition:b#0"]
    assert tasks.cancelled == ["tb"] and sandbox.running() == {}
    with deferral_key("condition:a"), pytest.raises(CommandPending) as pending:
        run(sandbox, "a")  # the next step of the same invocation counts from #0 again
    assert pending.value.key == "condition:a#0"


def test_a_service_error_when_starting_is_raised_not_pending() -> None:
    class Broken(Tasks):
        def start(self, command: Sequence[str], **kwargs: object) -> str:  # type: ignore[override]
            raise LoopFrameworkError("throttled")

    with pytest.raises(LoopFrameworkError, match="throttled"):
        run(DeferringSandbox(Broken(), inline_seconds=0), "pytest")


def test_pending_is_not_a_framework_error() -> None:
    # code that turns LoopFrameworkError into a failed agent run must let it through
    assert not issubclass(CommandPending, LoopFrameworkError)


def test_a_replayed_step_counts_its_time_from_the_first_start() -> None:
    assert replayed_seconds() == 0.0
    with replaying(utcnow() - timedelta(seconds=90)):
        assert 89 < replayed_seconds() < 120
    assert replayed_seconds() == 0.0
