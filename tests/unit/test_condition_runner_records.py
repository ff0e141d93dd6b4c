"""One exit condition run through the sandbox, recorded field by field: the folder it runs in
(a ``cwd`` that is not a folder, or leads outside the worktree, gives ERROR without running),
what the sandbox is given (env, timeout, output bound, deferral key), BUILD_SUCCEEDS's private
scratch folder, and every field of the :class:`ExitConditionStatus`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopwright import deferred
from loopwright.conditions.runner import condition_folder, evaluate_condition
from loopwright.models import (
    CommandResult,
    ExitConditionConfig,
    ExitConditionStatusValue,
    ExitConditionType,
)
from loopwright.ports import OutputCallback, Sandbox


class RecordingSandbox(Sandbox):
    """Returns ``result`` (with the command run) and keeps what each run was given."""

    def __init__(self, result: CommandResult | None = None) -> None:
        self.result = result or CommandResult(command=[], exit_code=0)
        self.runs: list[dict[str, Any]] = []

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
        scratch = [a.partition("=")[2] for a in command if a.startswith("pycache_prefix=")]
        self.runs.append(
            {
                "command": list(command),
                "cwd": cwd,
                "timeout_seconds": timeout_seconds,
                "env": env,
                "max_output_bytes": max_output_bytes,
                "key": deferred._KEY.get(),
                "scratch_exists": [Path(s).is_dir() for s in scratch],
            }
        )
        return self.result.model_copy(update={"command": list(command)})


def _cfg(**kwargs: object) -> ExitConditionConfig:
    base: dict[str, object] = {"type": "CUSTOM", "name": "check", "command": "make check"}
    base.update(kwargs)
    return ExitConditionConfig.model_validate(base)


# --- condition_folder ---------------------------------------------------------------------


def test_condition_folder_is_the_worktree_without_cwd(tmp_path: Path) -> None:
    assert condition_folder(_cfg(), tmp_path) == tmp_path


def test_condition_folder_is_the_cwd_inside_the_worktree(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    assert condition_folder(_cfg(cwd="pkg/sub"), tmp_path) == tmp_path / "pkg" / "sub"


def test_condition_folder_may_be_the_worktree_itself_and_a_link_within_it(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert condition_folder(_cfg(cwd="."), tmp_path) == tmp_path / "."
    # the folder as named (not resolved): the command sees the path it was configured with
    assert condition_folder(_cfg(cwd="link"), tmp_path) == tmp_path / "link"


def test_condition_folder_through_a_link_outside_the_worktree_is_refused(tmp_path: Path) -> None:
    worktree, outside = tmp_path / "wt", tmp_path / "outside"
    worktree.mkdir()
    outside.mkdir()
    (worktree / "out").symlink_to(outside)
    assert condition_folder(_cfg(cwd="out"), worktree) == (
        "cwd 'out' leads outside the worktree (a symbolic link?)"
    )


def test_condition_folder_next_to_the_worktree_with_the_same_prefix_is_outside(tmp_path: Path) -> None:
    worktree, sibling = tmp_path / "wt", tmp_path / "wt2"
    worktree.mkdir()
    sibling.mkdir()
    (worktree / "s").symlink_to(sibling)
    assert isinstance(condition_folder(_cfg(cwd="s"), worktree), str)


@pytest.mark.parametrize("make_file", [False, True])
def test_condition_folder_that_is_not_a_folder_is_refused(tmp_path: Path, make_file: bool) -> None:
    if make_file:
        (tmp_path / "docs").write_text("x")
    assert condition_folder(_cfg(cwd="docs"), tmp_path) == "cwd 'docs' is not a folder in the worktree"


# --- evaluate_condition -------------------------------------------------------------------


def test_every_field_of_the_status_comes_from_the_config_the_run_and_the_parser(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    sandbox = RecordingSandbox(
        CommandResult(
            command=[],
            exit_code=2,
            stdout="line one\nline two\n",
            stderr="warn",
            duration_seconds=1.5,
            truncated=True,
        )
    )
    cfg = _cfg(
        required=False,
        cwd="sub",
        env={"A": "1"},
        timeout_seconds=42,
        max_output_bytes=4096,
    )
    before = datetime.now(UTC)
    status = evaluate_condition(cfg, sandbox, tmp_path, 7)
    after = datetime.now(UTC)
    assert sandbox.runs == [
        {
            "command": ["make", "check"],
            "cwd": tmp_path / "sub",
            "timeout_seconds": 42,
            "env": {"A": "1"},
            "max_output_bytes": 4096,
            "key": "condition:check",
            "scratch_exists": [],
        }
    ]
    assert status.name == "check"
    assert status.type is ExitConditionType.CUSTOM
    assert status.status is ExitConditionStatusValue.NOT_MET
    assert status.required is False
    assert status.iteration == 7
    assert status.command == ["make", "check"]
    assert status.exit_code == 2
    assert status.duration_seconds == 1.5
    assert status.summary == "failed: exit code 2"
    assert status.details == {"parser": "exit_code", "exit_code": 2}
    assert status.failures == ["warn", "line one", "line two"]
    assert (status.stdout, status.stderr, status.output_truncated) == ("line one\nline two\n", "warn", True)
    assert status.evaluated_at is not None and before <= status.evaluated_at <= after


def test_defaults_reach_the_sandbox_and_an_empty_env_is_none(tmp_path: Path) -> None:
    sandbox = RecordingSandbox()
    status = evaluate_condition(_cfg(), sandbox, tmp_path, 1)
    run = sandbox.runs[0]
    assert (run["cwd"], run["timeout_seconds"], run["env"], run["max_output_bytes"]) == (
        tmp_path,
        600,
        None,
        256 * 1024,
    )
    assert status.status is ExitConditionStatusValue.MET
    assert status.required is True
    assert status.output_truncated is False
    assert status.details["parser"] == "exit_code"


def test_the_details_name_the_parser_chosen_for_the_type(tmp_path: Path) -> None:
    sandbox = RecordingSandbox(CommandResult(command=[], exit_code=0, stdout="[]"))
    status = evaluate_condition(_cfg(type="LINTING_CLEAN", name=None, command=None), sandbox, tmp_path, 1)
    assert status.name == "linting_clean"
    assert status.details["parser"] == "ruff"
    assert sandbox.runs[0]["key"] == "condition:linting_clean"


def test_a_negative_duration_is_recorded_as_zero(tmp_path: Path) -> None:
    sandbox = RecordingSandbox(CommandResult(command=[], exit_code=0, duration_seconds=-0.5))
    assert evaluate_condition(_cfg(), sandbox, tmp_path, 1).duration_seconds == 0.0


def test_a_cwd_outside_the_worktree_is_an_error_without_running(tmp_path: Path) -> None:
    sandbox = RecordingSandbox()
    status = evaluate_condition(_cfg(cwd="missing"), sandbox, tmp_path, 3)
    assert sandbox.runs == []
    assert status.status is ExitConditionStatusValue.ERROR
    assert status.exit_code is None
    assert status.command == ["make", "check"]
    assert "cwd 'missing' is not a folder in the worktree" in status.summary
    assert status.iteration == 3


def test_build_succeeds_gets_a_private_scratch_folder_deleted_afterwards(tmp_path: Path) -> None:
    sandbox = RecordingSandbox()
    status = evaluate_condition(_cfg(type="BUILD_SUCCEEDS", name=None, command=None), sandbox, tmp_path, 1)
    (run,) = sandbox.runs
    assert run["scratch_exists"] == [True]
    prefix = next(a for a in run["command"] if a.startswith("pycache_prefix="))
    scratch = Path(prefix.partition("=")[2])
    assert scratch.name.startswith("loopwright-")
    assert not scratch.exists()
    assert status.details["parser"] == "compileall"


def test_build_succeeds_with_its_own_command_gets_no_scratch_folder(tmp_path: Path) -> None:
    sandbox = RecordingSandbox()
    evaluate_condition(_cfg(type="BUILD_SUCCEEDS", command="make build"), sandbox, tmp_path, 1)
    assert sandbox.runs[0]["command"] == ["make", "build"]


def test_paths_in_failures_are_shown_relative_to_the_worktree_even_from_a_cwd(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    finding = {
        "code": "F401",
        "message": "unused import",
        "filename": str(tmp_path / "sub" / "a.py"),
        "location": {"row": 3, "column": 1},
    }
    sandbox = RecordingSandbox(CommandResult(command=[], exit_code=1, stdout=json.dumps([finding])))
    status = evaluate_condition(
        _cfg(type="LINTING_CLEAN", name=None, command=None, cwd="sub"), sandbox, tmp_path, 1
    )
    assert sandbox.runs[0]["cwd"] == tmp_path / "sub"
    assert status.failures == ["sub/a.py:3:1 F401 unused import"]
