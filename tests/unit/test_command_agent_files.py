"""The command agent's files are written and read without following what the agent planted
(issue 11, finding 3), and its timeout and idle summaries say what really happened to its
processes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from loopwright.adapters.local.agents.claude_code import ClaudeCodeAgent
from loopwright.adapters.local.command_agent import CommandAgent, read_report, write_agent_files
from loopwright.models import (
    AgentFailureCause,
    AgentRequest,
    ClaudeCodeAgentConfig,
    CommandAgentConfig,
    CommandResult,
)
from loopwright.ports import OutputCallback, Sandbox


def request(state_dir: Path, worktree: Path) -> AgentRequest:
    return AgentRequest(
        loop_id="loop-a",
        iteration=2,
        goal="make it pass",
        worktree=str(worktree),
        state_dir=str(state_dir),
        max_iterations=5,
        tokens_used=0,
        failures=["tests: test_x failed"],
        failing_conditions=["tests"],
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(state_dir, the loop's files folder, a file of the user's outside both)."""
    state_dir = tmp_path / ".loopwright"
    loop_dir = state_dir / "loops" / "loop-a"
    loop_dir.mkdir(parents=True)
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's data\n")
    return state_dir, loop_dir, precious


@pytest.mark.parametrize("name", ["prompt.md", "failures.json"])
def test_a_planted_symlink_is_replaced_not_written_through(
    folders: tuple[Path, Path, Path], tmp_path: Path, name: str
) -> None:
    # Given the agent replaced one of its files by a link to a file of the user's
    state_dir, loop_dir, precious = folders
    (loop_dir / name).symlink_to(precious)

    # When loopwright writes the next iteration's files
    paths = write_agent_files(request(state_dir, tmp_path))

    # Then the user's file is untouched and the agent's file is a regular file again
    assert precious.read_text() == "the user's data\n"
    assert not (loop_dir / name).is_symlink()
    assert (loop_dir / name).is_file()
    assert "make it pass" in paths["prompt_file"].read_text()
    assert json.loads(paths["failures_file"].read_text())["failing_conditions"] == ["tests"]


def test_a_planted_folder_link_is_replaced_and_a_folder_of_that_name_removed(
    folders: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    # Given the agent replaced its whole files folder by a link to another folder of the user's,
    state_dir, loop_dir, _ = folders
    outside = tmp_path / "outside"
    outside.mkdir()
    loop_dir.rmdir()
    loop_dir.symlink_to(outside, target_is_directory=True)

    # When loopwright writes the files
    write_agent_files(request(state_dir, tmp_path))

    # Then nothing is written there: the link became a real folder holding the files
    assert list(outside.iterdir()) == []
    assert not loop_dir.is_symlink()
    assert sorted(p.name for p in loop_dir.iterdir()) == ["failures.json", "progress.md", "prompt.md"]

    # And a folder planted under a file's name is replaced by the file
    (loop_dir / "prompt.md").unlink()
    (loop_dir / "prompt.md").mkdir()
    (loop_dir / "prompt.md" / "x").write_text("x")
    write_agent_files(request(state_dir, tmp_path))
    assert (loop_dir / "prompt.md").is_file()


def test_a_planted_report_link_is_removed_not_followed(
    folders: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    state_dir, loop_dir, precious = folders
    (loop_dir / "report.json").symlink_to(precious)
    write_agent_files(request(state_dir, tmp_path))
    assert not (loop_dir / "report.json").exists()
    assert precious.read_text() == "the user's data\n"


def test_a_report_that_is_a_link_fifo_or_huge_is_refused_unread(folders: tuple[Path, Path, Path]) -> None:
    _, loop_dir, precious = folders
    report = loop_dir / "report.json"
    precious.write_text(json.dumps({"tokens_used": 5, "summary": "the user's file"}))

    report.symlink_to(precious)  # a link to a valid report elsewhere
    parsed, error = read_report(report)
    assert parsed is None
    assert error == "invalid agent report report.json: it is a symbolic link, not a regular file"

    report.unlink()
    os.mkfifo(report)  # opening a FIFO for reading would block loopwright forever
    parsed, error = read_report(report)
    assert parsed is None
    assert error == "invalid agent report report.json: it is not a regular file"

    report.unlink()
    report.write_bytes(b" " * (1024 * 1024 + 1))
    parsed, error = read_report(report)
    assert parsed is None
    assert error is not None and "more than 1048576 bytes" in error

    report.write_text(json.dumps({"tokens_used": 7}))
    parsed, error = read_report(report)
    assert error is None and parsed is not None and parsed.tokens_used == 7
    assert read_report(loop_dir / "absent.json") == (None, None)


class _TimingOut(Sandbox):
    """A sandbox whose command always times out, leaving ``left`` running."""

    def __init__(self, left: list[str]) -> None:
        self.left = left

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
        return CommandResult(command=list(command), exit_code=None, timed_out=True, left_running=self.left)


@pytest.mark.parametrize(
    ("left", "summary"),
    [
        ([], "agent timed out after 5 s; its process tree was killed"),
        (
            ["pid 42: sudo sleep 100"],
            "agent timed out after 5 s; 1 of its processes could not be ended: pid 42: sudo sleep 100",
        ),
    ],
    ids=["all-ended", "one-left"],
)
def test_the_timeout_summary_says_what_could_not_be_ended(
    tmp_path: Path, left: list[str], summary: str
) -> None:
    agent = CommandAgent(CommandAgentConfig(command=["agent"], timeout_seconds=5), _TimingOut(left))
    result = agent.run(request(tmp_path / ".loopwright", tmp_path))
    assert result.failed
    assert result.summary == summary


class _Idle(Sandbox):
    """A sandbox that ends every command as idle, keeping the idle timeout it was given."""

    def __init__(self) -> None:
        self.given: list[float | None] = []

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
        self.given.append(idle_timeout_seconds)
        return CommandResult(command=list(command), exit_code=None, idle=True, stdout="thinking...\n")


def test_an_idle_command_agent_fails_with_the_idle_cause(tmp_path: Path) -> None:
    sandbox = _Idle()
    config = CommandAgentConfig(command=["agent"], timeout_seconds=60, idle_timeout_seconds=7)
    result = CommandAgent(config, sandbox).run(request(tmp_path / ".loopwright", tmp_path))

    assert sandbox.given == [7]
    assert result.failed and result.failure_cause is AgentFailureCause.IDLE and result.exit_code is None
    assert result.summary == (
        "agent idle for 7 s (no output, no file change in the worktree); its process tree was ended"
    )


def test_idle_timeouts_reach_the_sandbox_default_900_s_and_0_is_none(tmp_path: Path) -> None:
    sandbox = _Idle()
    CommandAgent(CommandAgentConfig(command=["agent"]), sandbox).run(request(tmp_path / "a", tmp_path))
    off = CommandAgentConfig(command=["agent"], idle_timeout_seconds=0)
    CommandAgent(off, sandbox).run(request(tmp_path / "b", tmp_path))
    assert sandbox.given == [900, None]


def test_an_idle_cli_agent_fails_with_the_idle_cause(tmp_path: Path) -> None:
    sandbox = _Idle()
    agent = ClaudeCodeAgent(ClaudeCodeAgentConfig(idle_timeout_seconds=120), sandbox)
    result = agent.run(request(tmp_path / ".loopwright", tmp_path))

    assert sandbox.given == [120]
    assert result.failed and result.failure_cause is AgentFailureCause.IDLE
    assert result.summary.startswith("claude-code: agent idle for 120 s (no output, no file change")
