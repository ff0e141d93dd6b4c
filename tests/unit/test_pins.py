"""Pinned checks (issue 15.1): what is pinned, which changes count, what Cedar decides, and the
loop transitions that revert, accept or reject a change (loopwright.steps.pins, loopwright.pinning)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.controls import ControlService
from loopwright.exceptions import ControlConflictError
from loopwright.models import (
    AgentResult,
    ControlAction,
    ControlRequest,
    ControlResult,
    ExitConditionConfig,
    ExitConditionType,
    IterationResult,
    LoopConfig,
    LoopPhase,
    LoopState,
    NextAction,
)
from loopwright.models.pins import PinnedChange, PinnedChangeHold
from loopwright.models.workspace import SavedWork
from loopwright.pinning import guard_pins, record_pins, settle_hold
from loopwright.steps.pins import authorize_pinned_changes, find_pinned_changes, matches, pin_rules
from tests.fakes import FakeWorkspace, MemoryStore

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
T = ExitConditionType

PYPROJECT = '[project]\nname = "calc"\nversion = "1"\n\n[tool.pytest.ini_options]\naddopts = "-q"\n'


def config(*types: ExitConditionType, **extra: Any) -> LoopConfig:
    conditions = [ExitConditionConfig(type=t) for t in types] or [ExitConditionConfig(type=T.ALL_TESTS_PASS)]
    return LoopConfig(goal="g", exit_conditions=conditions, **extra)


def reader(files: dict[str, str]) -> Any:
    return lambda path: files.get(path)


def changes(cfg: LoopConfig, changed: list[str], before: dict[str, str], after: dict[str, str]) -> list[Any]:
    return [
        (c.path, c.kind, c.change, c.allowed_by_config)
        for c in find_pinned_changes(cfg, changed, reader(before), reader(after))
    ]


# ----------------------------------------------------------------------------- what is pinned
@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("tests/", "tests/test_a.py", True),
        ("tests/", "pkg/tests/unit/x.py", True),
        ("tests/", "contests/x.py", False),
        ("test_*.py", "src/test_calc.py", True),
        ("test_*.py", "src/calc_test_x.py", False),
        ("*_test.py", "calc_test.py", True),
        ("conftest.py", "a/b/conftest.py", True),
        ("golden/*", "golden/a/b.txt", True),
        ("golden/*", "src/golden/a.txt", False),
        ("data/", "data/x", True),
        ("scripts/check.sh", "scripts/check.sh", True),
        ("scripts/check.sh", "scripts/check.py", False),
    ],
)
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_tests_pins_only_with_a_test_condition() -> None:
    lint_only = pin_rules(config(T.LINTING_CLEAN)).describe()
    assert "tests: conftest.py" not in lint_only
    assert "lint-config: ruff.toml" in lint_only
    assert "lint-config: pyproject.toml [tool.ruff]" in lint_only
    assert "loop-config: loopwright.toml" in lint_only
    tests = pin_rules(config(T.ALL_TESTS_PASS)).describe()
    assert {"tests: tests/", "tests: conftest.py", "tests: pyproject.toml [tool.pytest]"} <= set(tests)
    assert "lint-config: ruff.toml" not in tests
    scan = pin_rules(config(T.SECURITY_SCAN_CLEAN)).describe()
    assert "scan-config: .bandit" in scan and "scan-config: pyproject.toml [tool.bandit]" in scan


def test_condition_command_files_and_protected_paths_are_pinned() -> None:
    cfg = LoopConfig(
        goal="g",
        exit_conditions=[
            ExitConditionConfig(type=T.CUSTOM, name="check", command="bash ./scripts/check.sh --fast"),
            ExitConditionConfig(
                type=T.CUSTOM, name="py", command=["python", "-c", "import sys; sys.exit(0)"]
            ),
            ExitConditionConfig(type=T.CUSTOM, name="sub", command="python verify.py", cwd="backend"),
        ],
        protected_paths=["golden/*", "Makefile"],
    )
    pins = pin_rules(cfg).describe()
    assert "condition-command: scripts/check.sh" in pins
    assert "condition-command: backend/verify.py" in pins
    assert not any("--fast" in p or "import sys" in p or p.endswith(": python") for p in pins)
    assert {"protected: golden/*", "protected: Makefile"} <= set(pins)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside", "a/../../b"])
def test_protected_paths_must_stay_in_the_repository(bad: str) -> None:
    with pytest.raises(ValidationError, match=r"protected_paths\.0") as info:
        config(protected_paths=[bad])
    assert "relative to the repository without '..'" in str(info.value)


def test_allow_test_changes_takes_a_bool_or_paths_only() -> None:
    with pytest.raises(ValidationError, match=r"allow_test_changes\.bool"):
        config(allow_test_changes="yes please")
    assert config(allow_test_changes=["tests/golden/*"]).allow_test_changes == ["tests/golden/*"]
    with pytest.raises(ValidationError, match=r"allow_test_changes\.paths\.0") as info:
        config(allow_test_changes=["/abs"])
    assert "without '..'" in str(info.value) and "valid boolean" not in str(info.value)


# ----------------------------------------------------------------------------- which changes count
def test_a_test_file_edit_is_pinned_and_code_is_not() -> None:
    found = changes(
        config(),
        ["calc.py", "tests/test_calc.py", "conftest.py"],
        {"tests/test_calc.py": "a"},
        {"conftest.py": "x"},
    )
    assert found == [
        ("tests/test_calc.py", "tests", "deleted", False),
        ("conftest.py", "tests", "added", False),
    ]


def test_pyproject_counts_only_when_its_pytest_section_changes() -> None:
    cfg = config()
    bumped = PYPROJECT.replace('version = "1"', 'version = "2"')
    assert changes(cfg, ["pyproject.toml"], {"pyproject.toml": PYPROJECT}, {"pyproject.toml": bumped}) == []
    skipping = PYPROJECT.replace('"-q"', '"-q -k nothing"')
    assert changes(cfg, ["pyproject.toml"], {"pyproject.toml": PYPROJECT}, {"pyproject.toml": skipping}) == [
        ("pyproject.toml", "tests", "modified", False)
    ]
    added = '[project]\nname = "calc"\n'
    assert changes(cfg, ["pyproject.toml"], {"pyproject.toml": added}, {"pyproject.toml": PYPROJECT}) == [
        ("pyproject.toml", "tests", "added", False)
    ]
    # A lint-only loop does not pin the pytest section.
    assert (
        changes(
            config(T.LINTING_CLEAN),
            ["pyproject.toml"],
            {"pyproject.toml": PYPROJECT},
            {"pyproject.toml": skipping},
        )
        == []
    )


def test_ini_sections_and_unreadable_files() -> None:
    cfg = config()
    before = "[metadata]\nname = calc\n\n[tool:pytest]\naddopts = -q\n"
    assert (
        changes(cfg, ["setup.cfg"], {"setup.cfg": before}, {"setup.cfg": before.replace("calc", "c2")}) == []
    )
    assert changes(cfg, ["setup.cfg"], {"setup.cfg": before}, {"setup.cfg": before.replace("-q", "-x")}) == [
        ("setup.cfg", "tests", "modified", False)
    ]
    tox = "[tox]\nenvlist = py311\n"
    assert changes(cfg, ["tox.ini"], {"tox.ini": tox}, {"tox.ini": tox + "[pytest]\naddopts = -k no\n"}) == [
        ("tox.ini", "tests", "added", False)
    ]
    # Not TOML any more: counts as a change to the pinned section (fail closed).
    assert changes(cfg, ["pyproject.toml"], {"pyproject.toml": PYPROJECT}, {"pyproject.toml": "[[["}) == [
        ("pyproject.toml", "tests", "modified", False)
    ]


def test_history_that_cannot_be_read_counts_the_whole_file() -> None:
    def unreadable(path: str) -> str | None:
        raise NotImplementedError

    found = find_pinned_changes(config(), ["pyproject.toml", "tests/t.py"], unreadable, unreadable)
    assert [(c.path, c.change) for c in found] == [("pyproject.toml", "modified"), ("tests/t.py", "modified")]


def test_allow_test_changes_covers_tests_only_or_the_listed_paths() -> None:
    changed = ["tests/test_a.py", "loopwright.toml", "tests/golden/out.txt"]
    after = dict.fromkeys(changed, "x")
    allowed = changes(config(allow_test_changes=True), changed, after, after)
    assert [(p, a) for p, _, _, a in allowed] == [
        ("tests/test_a.py", True),
        ("loopwright.toml", False),
        ("tests/golden/out.txt", True),
    ]
    listed = changes(config(allow_test_changes=["tests/golden/*"]), changed, after, after)
    assert [(p, a) for p, _, _, a in listed] == [
        ("tests/test_a.py", False),
        ("loopwright.toml", False),
        ("tests/golden/out.txt", True),
    ]


# ----------------------------------------------------------------------------- Cedar
def state(**extra: Any) -> LoopState:
    return LoopState(loop_id="loop-pin", config=config(**extra), iteration=3, head_commit="c1")


def test_cedar_denies_by_pinned_checks_unless_config_allows() -> None:
    engine = CedarPolicyEngine(POLICY_DIR)
    denied = PinnedChange(path="tests/t.py", kind="tests", change="modified")
    allowed = denied.model_copy(update={"allowed_by_config": True})
    verdict = authorize_pinned_changes(state(), [denied, allowed], engine)
    assert verdict.denied == [denied]
    assert verdict.policy_ids == ["pinned-checks"]
    verdict = authorize_pinned_changes(state(), [allowed], engine)
    assert verdict.denied == []
    assert verdict.policy_ids == ["pinned-change-allowed-by-config"]
    assert authorize_pinned_changes(state(), [], engine) == ([], [])


# ----------------------------------------------------------------------------- loop transitions
class PinWorkspace(FakeWorkspace):
    """A fake workspace whose files at each commit are given, and which records set-asides."""

    def __init__(self, root: Path, files: dict[str, dict[str, str]]) -> None:
        super().__init__(root)
        self.files = files
        self.set_asides: list[tuple[str, str]] = []

    def file_text(self, loop_id: str, commit: str, path: str) -> str | None:
        return self.files.get(commit, {}).get(path)

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        self.set_asides.append((commit, label))
        return SavedWork(ref=f"refs/loopwright/{loop_id}/set-aside/{label}", commit="c2")


class Events(list[tuple[str, str, dict[str, Any]]]):
    def __call__(
        self, event_type: Any, message: str = "", *, iteration: int | None = None, **data: Any
    ) -> None:
        self.append((str(event_type), message, data))


def iteration(changed: list[str]) -> IterationResult:
    return IterationResult(iteration=3, agent=AgentResult(), commit="c2", changed_files=changed)


def test_a_denied_change_is_reverted_kept_and_waits_for_a_human(tmp_path: Path) -> None:
    workspace = PinWorkspace(tmp_path, {"c1": {"tests/t.py": "a"}, "c2": {"tests/t.py": "b"}})
    loop, events = state(), Events()
    decision = guard_pins(
        loop, iteration(["calc.py", "tests/t.py"]), "c1", workspace, CedarPolicyEngine(POLICY_DIR), events
    )
    assert decision is not None and decision.action is NextAction.AWAIT_HUMAN
    assert "--accept-pinned-change" in decision.reason and "tests/t.py" in decision.reason
    assert workspace.set_asides == [("c1", "pinned-iteration-3")]
    assert workspace.resets == ["c1"]
    assert loop.head_commit == "c1"
    hold = loop.pinned_hold
    assert hold is not None
    assert (hold.commit, hold.reverted_to, hold.denied_by) == ("c2", "c1", ["pinned-checks"])
    assert hold.ref == "refs/loopwright/loop-pin/set-aside/pinned-iteration-3"
    assert [c.path for c in hold.changes] == ["tests/t.py"]
    ((kind, message, data),) = events
    assert kind == "PINNED_CHANGE_REVERTED" and "'pinned-checks'" in message
    assert data["paths"] == ["tests/t.py"] and data["reverted_to"] == "c1"


def test_an_allowed_change_goes_on_and_is_recorded(tmp_path: Path) -> None:
    workspace = PinWorkspace(tmp_path, {"c2": {"tests/t.py": "b"}})
    loop, events = state(allow_test_changes=True), Events()
    engine = CedarPolicyEngine(POLICY_DIR)
    assert guard_pins(loop, iteration(["tests/t.py"]), "c1", workspace, engine, events) is None
    assert loop.pinned_hold is None and workspace.resets == [] and loop.head_commit == "c1"
    assert [e[0] for e in events] == ["PINNED_CHANGE_ALLOWED"]
    assert events[0][2]["policy_ids"] == ["pinned-change-allowed-by-config"]


def test_unpinned_or_empty_iterations_ask_nothing(tmp_path: Path) -> None:
    workspace, events = PinWorkspace(tmp_path, {}), Events()
    engine = CedarPolicyEngine(POLICY_DIR)
    assert guard_pins(state(), iteration(["calc.py"]), "c1", workspace, engine, events) is None
    assert guard_pins(state(), iteration([]), "c1", workspace, engine, events) is None
    nothing = IterationResult(iteration=3, agent=AgentResult(), commit=None, changed_files=["tests/t.py"])
    assert guard_pins(state(), nothing, "c1", workspace, engine, events) is None
    assert events == [] and workspace.resets == []


def hold(**extra: Any) -> PinnedChangeHold:
    change = PinnedChange(path="tests/t.py", kind="tests", change="modified")
    return PinnedChangeHold(iteration=3, commit="c2", reverted_to="c1", changes=[change], **extra)


def test_an_accepted_change_moves_the_branch_and_the_pin(tmp_path: Path) -> None:
    workspace, events = PinWorkspace(tmp_path, {}), Events()
    loop = state()
    loop.pinned_hold = hold(answered=True, accepted_by='User::"alice"')
    settle_hold(loop, workspace, events)
    assert workspace.resets == ["c2"] and loop.head_commit == "c2" and loop.pinned_hold is None
    assert events[0][0] == "PINNED_CHANGE_ACCEPTED" and 'User::"alice"' in events[0][1]
    assert loop.human_response is None


@pytest.mark.parametrize(("answered", "said"), [(True, "not accepted"), (False, "no answer")])
def test_a_change_not_accepted_stays_reverted_and_the_agent_is_told(
    tmp_path: Path, answered: bool, said: str
) -> None:
    workspace, events = PinWorkspace(tmp_path, {}), Events()
    loop = state()
    loop.human_response = "fix calc instead"
    loop.pinned_hold = hold(answered=answered)
    settle_hold(loop, workspace, events)
    assert workspace.resets == [] and loop.head_commit == "c1" and loop.pinned_hold is None
    assert events[0][0] == "PINNED_CHANGE_REJECTED" and said in events[0][1]
    assert loop.human_response is not None
    assert loop.human_response.startswith("fix calc instead\n\n")
    assert "(tests/t.py) was reverted" in loop.human_response


def test_settle_without_a_hold_does_nothing(tmp_path: Path) -> None:
    workspace, events, loop = PinWorkspace(tmp_path, {}), Events(), state()
    settle_hold(loop, workspace, events)
    assert events == [] and workspace.resets == []


def test_record_pins_lists_them_and_says_when_they_are_not_enforced() -> None:
    events = Events()
    record_pins(state(), events)
    record_pins(LoopState(loop_id="l", config=config(git_isolation=False)), events)
    (kind, message, data), (_, unenforced, _) = events
    assert kind == "CHECKS_PINNED" and "tests: conftest.py" in data["pins"]
    assert "not enforced" not in message and "not enforced: git_isolation is off" in unenforced


def test_only_approve_accepts_a_pinned_change() -> None:
    with pytest.raises(ValidationError, match="accept_pinned_change: only APPROVE"):
        ControlRequest(
            loop_id="l", action=ControlAction.STOP, principal='User::"a"', accept_pinned_change=True
        )


# ----------------------------------------------------------------------------- the approve control
ALICE = 'User::"alice"'


def _approve_on(store: MemoryStore, accept: bool, **response: Any) -> tuple[ControlResult, list[LoopState]]:
    resumed: list[LoopState] = []
    result = ControlService(
        store, CedarPolicyEngine(POLICY_DIR), resumer=lambda s, r: resumed.append(s)
    ).submit(
        ControlRequest(
            loop_id="loop-pin",
            action=ControlAction.APPROVE,
            principal=ALICE,
            groups=['Group::"default-operators"'],
            accept_pinned_change=accept,
            **response,
        )
    )
    return result, resumed


@pytest.mark.parametrize("accept", [True, False])
def test_approve_answers_the_hold(accept: bool) -> None:
    store = MemoryStore()
    store.create_loop(
        state().model_copy(update={"phase": LoopPhase.AWAITING_RESPONSE, "pinned_hold": hold()})
    )
    result, [resumed] = _approve_on(store, accept)
    assert result.status == "applied"
    assert resumed.pinned_hold is not None and resumed.pinned_hold.answered
    assert resumed.pinned_hold.accepted_by == (ALICE if accept else None)
    (event,) = store.events
    assert ("(change to pinned files accepted)" if accept else "left reverted") in event.message
    assert event.data.get("accept_pinned_change") == (True if accept else None)


def test_accepting_without_a_hold_is_a_conflict_and_writes_nothing() -> None:
    store = MemoryStore()
    store.create_loop(state().model_copy(update={"phase": LoopPhase.AWAITING_RESPONSE}))
    with pytest.raises(ControlConflictError, match="no reverted change to pinned files to accept"):
        _approve_on(store, True)
    assert store.events == [] and store.get_state("loop-pin").version == 1


def test_every_pin_of_the_built_in_checks() -> None:
    every = config(T.ALL_TESTS_PASS, T.LINTING_CLEAN, T.SECURITY_SCAN_CLEAN, T.BUILD_SUCCEEDS)
    assert pin_rules(every).describe() == [
        "tests: tests/",
        "tests: test/",
        "tests: test_*.py",
        "tests: *_test.py",
        "tests: conftest.py",
        "tests: pytest.ini",
        "lint-config: ruff.toml",
        "lint-config: .ruff.toml",
        "lint-config: .flake8",
        "scan-config: .bandit",
        "scan-config: bandit.yaml",
        "scan-config: bandit.yml",
        "loop-config: loopwright.toml",
        "loop-config: loopwright.yaml",
        "loop-config: loopwright.yml",
        "loop-config: *.cedar",
        "loop-config: *.cedarschema",
        "tests: pyproject.toml [tool.pytest]",
        "tests: tox.ini [pytest]",
        "tests: setup.cfg [tool:pytest]",
        "lint-config: pyproject.toml [tool.ruff]",
        "lint-config: setup.cfg [flake8]",
        "lint-config: tox.ini [flake8]",
        "scan-config: pyproject.toml [tool.bandit]",
    ]
    # A custom condition parsed as pytest pins the tests too; BUILD_SUCCEEDS alone pins only the loop's files.
    custom = LoopConfig(
        goal="g", exit_conditions=[ExitConditionConfig(type=T.CUSTOM, command="make test", parser="pytest")]
    )
    assert "tests: conftest.py" in pin_rules(custom).describe()
    assert [
        p for p in pin_rules(config(T.BUILD_SUCCEEDS)).describe() if not p.startswith("loop-config")
    ] == []


@pytest.mark.parametrize(
    ("argument", "pinned"),
    [
        ("check.py", True),
        ("run.sh", True),
        ("run.bash", True),
        ("rules.toml", True),
        ("rules.ini", True),
        ("rules.cfg", True),
        ("rules.yaml", True),
        ("rules.yml", True),
        ("expected.json", True),
        ("rules.mk", True),
        ("tools/check", True),
        ("./tools/check", True),
        ("make", False),
        ("--config=x.toml", False),
        ("-c", False),
        ("/usr/bin/check.py", False),
        ("../check.py", False),
        ("a;b.py", False),
        ("print('x.py')", False),
        ('"x.py"', False),
        ("check.txt", False),
        ("", False),
    ],
)
def test_which_command_arguments_are_files(argument: str, pinned: bool) -> None:
    cfg = LoopConfig(
        goal="g",
        exit_conditions=[ExitConditionConfig(type=T.CUSTOM, command=["tool", argument or "-"])],
    )
    pins = [p for p in pin_rules(cfg).describe() if p.startswith("condition-command")]
    assert bool(pins) is (pinned and bool(argument))
    if pinned and argument:
        assert pins == [f"condition-command: {argument.removeprefix('./')}"]


def test_lint_and_scan_sections() -> None:
    lint, scan = config(T.LINTING_CLEAN), config(T.SECURITY_SCAN_CLEAN)
    cfg = "[metadata]\nname = calc\n"
    assert changes(
        lint, ["setup.cfg"], {"setup.cfg": cfg}, {"setup.cfg": cfg + "[flake8]\nignore = E\n"}
    ) == [("setup.cfg", "lint-config", "added", False)]
    tox = "[flake8]\nignore = E\n"
    assert changes(lint, ["tox.ini"], {"tox.ini": tox}, {"tox.ini": "[tox]\n"}) == [
        ("tox.ini", "lint-config", "deleted", False)
    ]
    ruff = PYPROJECT + "\n[tool.ruff]\nline-length = 100\n"
    assert changes(
        lint, ["pyproject.toml"], {"pyproject.toml": ruff}, {"pyproject.toml": ruff.replace("100", "999")}
    ) == [("pyproject.toml", "lint-config", "modified", False)]
    bandit = PYPROJECT + '\n[tool.bandit]\nskips = ["B101"]\n'
    assert changes(scan, ["pyproject.toml"], {"pyproject.toml": PYPROJECT}, {"pyproject.toml": bandit}) == [
        ("pyproject.toml", "scan-config", "added", False)
    ]
    # Not INI any more: counts (fail closed).
    assert changes(lint, ["setup.cfg"], {"setup.cfg": cfg}, {"setup.cfg": "no section header"}) == [
        ("setup.cfg", "lint-config", "modified", False)
    ]
    # A dotted key whose parent is not a table is simply absent.
    odd = {"pyproject.toml": 'tool = "pytest 1"\n'}
    assert changes(config(), ["pyproject.toml"], odd, {"pyproject.toml": 'tool = "pytest 2"\n'}) == []
