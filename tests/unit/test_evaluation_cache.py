"""The evaluation cache (issue 10.7): results reused by (condition definition, clean tree hash),
never for a dirty worktree, an ERROR or a TIMEOUT, or with ``evaluation_cache = false``; bounded
to MAX_CACHED_TREES trees with trimmed output; what the event and its message say."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from loopwright import workflow
from loopwright.config_loader import load_config
from loopwright.exceptions import ConfigError, WorkspaceError
from loopwright.models import (
    CommandResult,
    ExitConditionStatusValue,
    IterationEventType,
    LoopConfig,
    LoopState,
)
from loopwright.steps.evaluation_cache import (
    CACHED_OUTPUT_CHARS,
    MAX_CACHED_ENTRIES,
    MAX_CACHED_TREES,
    Evaluation,
    cache_key,
    evaluate_cached,
    workspace_tree,
)
from tests.fakes import FakeWorkspace, ScriptedSandbox

_S = ExitConditionStatusValue


class TreeWorkspace(FakeWorkspace):
    """A workspace whose clean tree is ``tree`` (None: dirty); ``error`` makes git fail."""

    def __init__(self, root: Path, tree: str | None = "t1", error: Exception | None = None) -> None:
        super().__init__(root)
        self.tree = tree
        self.error = error
        self.asked = 0

    def clean_tree(self, loop_id: str) -> str | None:
        self.asked += 1
        if self.error is not None:
            raise self.error
        return self.tree


def _config(**changes: Any) -> LoopConfig:
    data: dict[str, Any] = {
        "goal": "g",
        "exit_conditions": [
            {"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"},
            {"type": "CUSTOM", "name": "b", "command": "check-b", "parser": "exit_code"},
        ],
        "parallel_conditions": False,
        "git_isolation": False,
    }
    data.update(changes)
    return LoopConfig.model_validate(data)


def _state(tmp_path: Path, **changes: Any) -> LoopState:
    return LoopState(loop_id="cache", config=_config(**changes), worktree=str(tmp_path), iteration=1)


def _sandbox(codes: dict[str, int | None], out: str = "") -> ScriptedSandbox:
    def respond(command: Sequence[str], _: int) -> tuple[int, str]:
        code = codes[command[0].removeprefix("check-")]
        return (code if code is not None else 127), out

    return ScriptedSandbox(respond)


def test_an_unchanged_tree_reuses_every_result_without_running_the_commands(tmp_path: Path) -> None:
    state, workspace = _state(tmp_path), TreeWorkspace(tmp_path)
    sandbox = _sandbox({"a": 0, "b": 1})
    first = evaluate_cached(state, sandbox, workspace)
    assert len(sandbox.calls) == 2 and first.cached == [] and first.tree == "t1"
    state.iteration = 4

    again = evaluate_cached(state, sandbox, workspace)

    assert len(sandbox.calls) == 2  # nothing ran
    assert again.cached == ["a", "b"] and again.from_iterations == [1, 1]
    assert [s.status for s in again.statuses] == [_S.MET, _S.NOT_MET]
    assert all(s.iteration == 4 and s.duration_seconds == 0.0 for s in again.statuses)
    assert all(s.details["cached_from_iteration"] == 1 for s in again.statuses)
    assert again.event_data() == {"cached": True, "cached_conditions": None, "tree": "t1"}
    assert again.note() == " (cached: a, b from iteration 1, tree t1)"
    assert first.event_data() == {"cached": None, "cached_conditions": None, "tree": "t1"}
    assert first.note() == ""


def test_another_tree_is_evaluated_and_both_are_kept(tmp_path: Path) -> None:
    state, workspace = _state(tmp_path), TreeWorkspace(tmp_path)
    sandbox = _sandbox({"a": 0, "b": 1})
    evaluate_cached(state, sandbox, workspace)
    workspace.tree = "t2"
    evaluate_cached(state, sandbox, workspace)
    assert len(sandbox.calls) == 4
    workspace.tree = "t1"  # back to the first tree (an oscillation)

    back = evaluate_cached(state, sandbox, workspace)

    assert len(sandbox.calls) == 4 and back.cached == ["a", "b"]
    assert {e.tree for e in state.evaluation_cache} == {"t1", "t2"}


@pytest.mark.parametrize(
    ("tree", "error", "cache"),
    [(None, None, True), ("t1", None, False), ("t1", WorkspaceError("git failed"), True)],
    ids=["dirty-worktree", "cache-off", "git-fails"],
)
def test_no_lookup_and_nothing_kept(
    tmp_path: Path, tree: str | None, error: Exception | None, cache: bool
) -> None:
    state, workspace = _state(tmp_path, evaluation_cache=cache), TreeWorkspace(tmp_path, tree, error)
    sandbox = _sandbox({"a": 0, "b": 0})

    for _ in range(2):
        result = evaluate_cached(state, sandbox, workspace)
        assert result.cached == [] and result.tree is None

    assert len(sandbox.calls) == 4 and state.evaluation_cache == []
    assert workspace.asked == (0 if not cache else 2)


def test_without_a_workspace_nothing_is_looked_up(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert workspace_tree(state, None) is None
    assert evaluate_cached(state, _sandbox({"a": 0, "b": 0}), None).tree is None


def test_a_workspace_without_history_is_never_cached(tmp_path: Path) -> None:
    assert workspace_tree(_state(tmp_path), FakeWorkspace(tmp_path)) is None  # the port's default


class MissingB(ScriptedSandbox):
    """check-a exits 0; check-b cannot start (its tool is missing): ERROR."""

    def __init__(self) -> None:
        super().__init__(lambda command, _: (0, ""))

    def run(self, command: Sequence[str], **kwargs: Any) -> CommandResult:  # type: ignore[override]
        if command[0] == "check-b":
            self.calls.append(list(command))
            return CommandResult(command=list(command), exit_code=None, error="command not found: check-b")
        return super().run(command, **kwargs)


def test_errors_are_evaluated_again_and_only_they(tmp_path: Path) -> None:
    state, workspace, sandbox = _state(tmp_path), TreeWorkspace(tmp_path), MissingB()
    first = evaluate_cached(state, sandbox, workspace)
    assert [s.status for s in first.statuses] == [_S.MET, _S.ERROR]

    again = evaluate_cached(state, sandbox, workspace)

    assert sandbox.calls == [["check-a"], ["check-b"], ["check-b"]]
    assert again.cached == ["a"] and [s.status for s in again.statuses] == [_S.MET, _S.ERROR]
    assert again.event_data() == {"cached": None, "cached_conditions": ["a"], "tree": "t1"}
    assert [e.status.name for e in state.evaluation_cache] == ["a"]


def test_a_changed_condition_definition_is_not_reused(tmp_path: Path) -> None:
    state, workspace = _state(tmp_path), TreeWorkspace(tmp_path)
    sandbox = _sandbox({"a": 0, "b": 0, "a2": 1})
    evaluate_cached(state, sandbox, workspace)
    conditions = [
        {"type": "CUSTOM", "name": "a", "command": "check-a2", "parser": "exit_code"},
        {"type": "CUSTOM", "name": "b", "command": "check-b", "parser": "exit_code"},
    ]
    state.config = _config(exit_conditions=conditions)

    again = evaluate_cached(state, sandbox, workspace)

    assert again.cached == ["b"] and again.statuses[0].status is _S.NOT_MET
    assert sandbox.calls[-1] == ["check-a2"]
    assert cache_key(state.config.exit_conditions[0], "t1") != cache_key(_config().exit_conditions[0], "t1")
    assert cache_key(state.config.exit_conditions[1], "t1") != cache_key(
        state.config.exit_conditions[1], "t2"
    )


def test_the_cache_keeps_the_newest_trees_and_trims_output(tmp_path: Path) -> None:
    state, workspace = _state(tmp_path), TreeWorkspace(tmp_path)
    sandbox = _sandbox({"a": 0, "b": 1}, out="x" * (CACHED_OUTPUT_CHARS + 10) + "END")
    for number in range(MAX_CACHED_TREES + 2):
        workspace.tree = f"t{number}"
        evaluate_cached(state, sandbox, workspace)

    trees = [e.tree for e in state.evaluation_cache]
    assert sorted(set(trees)) == sorted(f"t{n}" for n in range(2, MAX_CACHED_TREES + 2))
    assert len(trees) == 2 * MAX_CACHED_TREES
    kept = state.evaluation_cache[-1].status
    assert len(kept.stdout) == CACHED_OUTPUT_CHARS and kept.stdout.endswith("END") and kept.output_truncated


def test_the_event_says_cached_and_names_the_tree(tmp_path: Path) -> None:
    state, workspace = _state(tmp_path), TreeWorkspace(tmp_path)
    sandbox = _sandbox({"a": 0, "b": 1})
    events: list[tuple[IterationEventType, str, dict[str, Any]]] = []

    def record(event_type: IterationEventType, message: str = "", **data: Any) -> None:
        events.append((event_type, message, data))

    workflow.evaluate_conditions(state, sandbox, record, workspace=workspace)
    state.iteration = 2
    statuses = workflow.evaluate_conditions(state, sandbox, record, workspace=workspace)

    assert [e[2]["cached"] for e in events] == [None, True]
    assert events[1][2]["tree"] == "t1"
    assert events[1][1].endswith("(cached: a, b from iteration 1, tree t1)")
    assert state.exit_conditions == statuses and state.evaluated_iteration == 2


def test_partial_reuse_is_named(tmp_path: Path) -> None:
    evaluation = Evaluation(statuses=[], tree="abcdef0123456789", cached=["a"], from_iterations=[3])
    evaluation.statuses = [None, None]  # type: ignore[list-item]
    assert evaluation.event_data() == {"cached": None, "cached_conditions": ["a"], "tree": "abcdef0123456789"}
    assert evaluation.note() == " (cached: a from iteration 3, tree abcdef012345)"


@pytest.mark.parametrize(("text", "expected"), [("", True), ("evaluation_cache = false\n", False)])
def test_the_config_switch_defaults_to_on(tmp_path: Path, text: str, expected: bool) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(text + 'goal = "g"\n[[exit_conditions]]\ntype = "ALL_TESTS_PASS"\n')
    assert load_config(tmp_path, path)[0].evaluation_cache is expected


@pytest.mark.parametrize("value", ['"yes"', "1"])
def test_a_bad_config_switch_is_refused_naming_it(tmp_path: Path, value: str) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(f'goal = "g"\nevaluation_cache = {value}\n[[exit_conditions]]\ntype = "ALL_TESTS_PASS"\n')
    with pytest.raises(ConfigError, match="evaluation_cache"):
        load_config(tmp_path, path)


def test_many_conditions_keep_at_most_max_cached_entries_results(tmp_path: Path) -> None:
    conditions = [
        {"type": "CUSTOM", "name": f"c{n}", "command": "check-a", "parser": "exit_code"} for n in range(20)
    ]
    state, workspace = _state(tmp_path, exit_conditions=conditions), TreeWorkspace(tmp_path)
    sandbox = _sandbox({"a": 0})
    for tree in ("t1", "t2"):
        workspace.tree = tree
        evaluate_cached(state, sandbox, workspace)

    assert len(state.evaluation_cache) == MAX_CACHED_ENTRIES
    assert [e.tree for e in state.evaluation_cache].count("t2") == 20  # the newest tree whole
    workspace.tree = "t2"
    again = evaluate_cached(state, sandbox, workspace)
    assert len(again.cached) == 20 and len(sandbox.calls) == 40
