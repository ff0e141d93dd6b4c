"""Pinned checks (issue 15.1): which files a loop's exit conditions depend on, which of them an
iteration changed, and whether Cedar lets the change through.

The usual way an agent fakes a pass is to edit the tests or the check. When a loop starts, the
files its exit conditions depend on are pinned (:func:`pin_rules`):

* ALL_TESTS_PASS (and any condition parsed as pytest): ``tests/`` and ``test/`` folders,
  ``test_*.py``, ``*_test.py``, ``conftest.py``, ``pytest.ini``, and the pytest sections of
  ``pyproject.toml`` (``[tool.pytest...]``), ``tox.ini`` (``[pytest]``) and ``setup.cfg``
  (``[tool:pytest]``): kind ``tests``;
* LINTING_CLEAN: ``ruff.toml``, ``.ruff.toml``, ``.flake8``, ``[tool.ruff]``, ``[flake8]``:
  kind ``lint-config``;
* SECURITY_SCAN_CLEAN: ``.bandit``, ``bandit.yaml``/``.yml``, ``[tool.bandit]``: kind
  ``scan-config``;
* every file a condition's command names (``scripts/check.sh``, ``check.py``): kind
  ``condition-command``;
* ``loopwright.toml``/``.yaml``/``.yml``, Cedar policies and schemas: kind ``loop-config``;
* ``LoopConfig.protected_paths``: kind ``protected``.

A pattern without ``/`` (or with only a trailing one) matches a file (a folder) of that name at
any depth; one with an inner ``/`` is anchored at the repository's root and its ``*`` matches
across folders (:func:`matches`). A section of a shared file is pinned, not the file: an agent may
add a dependency to ``pyproject.toml`` but not change its ``[tool.pytest.ini_options]``.

Each changed pinned file is one ``ChangePinnedFile`` question to Cedar
(:func:`authorize_pinned_changes`); ``pinned_checks.cedar`` permits it only when
``LoopConfig.allow_test_changes`` covers it (``context.allowed_by_config``).
"""

from __future__ import annotations

import configparser
import tomllib
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

from loopwright.models import ExitConditionType, LoopConfig, LoopState
from loopwright.models.pins import ChangeKind, PinKind, PinnedChange
from loopwright.ports import PolicyEngine
from loopwright.steps.authorize import build_authorization_request
from loopwright.steps.features import all_conditions

#: Cedar action asked for each pinned file an iteration changed.
CHANGE_PINNED_FILE = 'Action::"ChangePinnedFile"'

#: Reads a file's text at one side of the change (None: absent); may raise NotImplementedError.
FileReader = Callable[[str], "str | None"]

_TEST_FILES = ("tests/", "test/", "test_*.py", "*_test.py", "conftest.py", "pytest.ini")
_LINT_FILES = ("ruff.toml", ".ruff.toml", ".flake8")
_SCAN_FILES = (".bandit", "bandit.yaml", "bandit.yml")
_LOOP_FILES = ("loopwright.toml", "loopwright.yaml", "loopwright.yml", "*.cedar", "*.cedarschema")
#: Suffixes of a command's argument taken for a file the command runs or reads.
_SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".toml", ".ini", ".cfg", ".yaml", ".yml", ".json", ".mk")


class SectionPin(NamedTuple):
    """A section of a shared configuration file: ``file`` (a file name, any folder), its format
    and the section (TOML: a dotted key path; INI: a section name)."""

    file: str
    format: str  # "toml" or "ini"
    section: str
    kind: PinKind


class PinRules(NamedTuple):
    """What is pinned: whole files (pattern, kind) and sections of shared files."""

    files: list[tuple[str, PinKind]]
    sections: list[SectionPin]

    def describe(self) -> list[str]:
        """The pins as short lines, e.g. ``tests: conftest.py`` or ``tests: pyproject.toml [tool.pytest]``."""
        return [f"{kind}: {pattern}" for pattern, kind in self.files] + [
            f"{pin.kind}: {pin.file} [{pin.section}]" for pin in self.sections
        ]


def pin_rules(config: LoopConfig) -> PinRules:
    """The pins of a loop with ``config`` (see the module docstring)."""
    files: list[tuple[str, PinKind]] = []
    sections: list[SectionPin] = []
    conditions = all_conditions(config)  # the features' acceptance conditions are pinned too
    types = {c.type for c in conditions}
    if ExitConditionType.ALL_TESTS_PASS in types or any(c.parser == "pytest" for c in conditions):
        files += [(p, "tests") for p in _TEST_FILES]
        sections += [
            SectionPin("pyproject.toml", "toml", "tool.pytest", "tests"),
            SectionPin("tox.ini", "ini", "pytest", "tests"),
            SectionPin("setup.cfg", "ini", "tool:pytest", "tests"),
        ]
    if ExitConditionType.LINTING_CLEAN in types:
        files += [(p, "lint-config") for p in _LINT_FILES]
        sections += [
            SectionPin("pyproject.toml", "toml", "tool.ruff", "lint-config"),
            SectionPin("setup.cfg", "ini", "flake8", "lint-config"),
            SectionPin("tox.ini", "ini", "flake8", "lint-config"),
        ]
    if ExitConditionType.SECURITY_SCAN_CLEAN in types:
        files += [(p, "scan-config") for p in _SCAN_FILES]
        sections.append(SectionPin("pyproject.toml", "toml", "tool.bandit", "scan-config"))
    for condition in conditions:
        for argument in condition.command or []:
            if _looks_like_file(argument):
                path = argument.removeprefix("./")
                files.append((f"{condition.cwd}/{path}" if condition.cwd else path, "condition-command"))
    files += [(p, "loop-config") for p in _LOOP_FILES]
    files += [(p, "protected") for p in config.protected_paths]
    return PinRules(files=list(dict.fromkeys(files)), sections=sections)


def pinned_files(config: LoopConfig, paths: Iterable[str]) -> list[str]:
    """Of ``paths`` (relative, ``/``-separated), the files a loop with ``config`` pins, sorted: those
    a whole-file pin matches, and the shared files that hold a pinned section (``pyproject.toml``,
    ``setup.cfg``, ``tox.ini``; whole, at any depth). The evidence bundle hashes these."""
    rules = pin_rules(config)
    shared = {pin.file for pin in rules.sections}
    return sorted(
        path
        for path in paths
        if any(matches(pattern, path) for pattern, _ in rules.files) or path.rsplit("/", 1)[-1] in shared
    )


def _looks_like_file(argument: str) -> bool:
    if (
        not argument
        or argument.startswith(("-", "/"))
        or any(ch.isspace() or ch in "=;\"'" for ch in argument)
    ):
        return False
    if ".." in argument.split("/"):
        return False
    return "/" in argument.strip("./") or argument.endswith(_SCRIPT_SUFFIXES)


def matches(pattern: str, path: str) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is pinned by ``pattern``: ``name/`` is a folder
    of that name at any depth, ``name`` (``*`` allowed) a file name at any depth, ``a/b*`` a
    path from the root whose ``*`` crosses folders."""
    if pattern.endswith("/") and "/" not in pattern[:-1]:
        return f"/{pattern}" in f"/{path}"
    if pattern.endswith("/"):
        return path.startswith(pattern)
    if "/" not in pattern:
        return fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatchcase(path, pattern.removeprefix("./"))


def _change(before: object, after: object) -> ChangeKind:
    if before is None:
        return "added"
    return "deleted" if after is None else "modified"


def _section(text: str | None, pin: SectionPin) -> Any:
    """The section's value in ``text`` (None when absent); raises ValueError when unreadable."""
    if text is None:
        return None
    if pin.format == "toml":
        try:
            node: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(str(exc)) from exc
        for key in pin.section.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ValueError(str(exc)) from exc
    return dict(parser[pin.section]) if parser.has_section(pin.section) else None


def find_pinned_changes(
    config: LoopConfig, changed: Sequence[str], before: FileReader, after: FileReader
) -> list[PinnedChange]:
    """The pinned files among ``changed`` (paths relative to the worktree's root), in order.

    A whole pinned file counts as changed; a shared file (``pyproject.toml``, ``setup.cfg``,
    ``tox.ini``) only when one of its pinned sections differs between ``before`` and ``after``
    (the file's text before and after the iteration). A file that cannot be read or parsed counts
    as changed (fail closed). ``allowed_by_config`` says whether ``allow_test_changes`` covers it.
    """
    rules = pin_rules(config)
    found: list[PinnedChange] = []
    for path in changed:
        kind = next((k for pattern, k in rules.files if matches(pattern, path)), None)
        change: ChangeKind = "modified"
        if kind is None:
            kind, change = _section_change(rules, path, before, after)
        elif (side := _read_both(path, before, after)) is not None:
            change = _change(*side)
        if kind is not None:
            found.append(
                PinnedChange(
                    path=path, kind=kind, change=change, allowed_by_config=_allowed(config, path, kind)
                )
            )
    return found


def _read_both(path: str, before: FileReader, after: FileReader) -> tuple[str | None, str | None] | None:
    try:
        return before(path), after(path)
    except NotImplementedError:
        return None


def _section_change(
    rules: PinRules, path: str, before: FileReader, after: FileReader
) -> tuple[PinKind | None, ChangeKind]:
    pins = [pin for pin in rules.sections if matches(pin.file, path)]
    if not pins:
        return None, "modified"
    texts = _read_both(path, before, after)
    if texts is None:
        return pins[0].kind, "modified"  # history cannot be read: the whole file counts
    for pin in pins:
        try:
            old, new = _section(texts[0], pin), _section(texts[1], pin)
        except ValueError:
            return pin.kind, "modified"  # unreadable: counts as a change to its pinned section
        if old != new:
            return pin.kind, _change(old, new)
    return None, "modified"


def _allowed(config: LoopConfig, path: str, kind: PinKind) -> bool:
    allow = config.allow_test_changes
    if allow is True:
        return kind == "tests"
    if isinstance(allow, list):
        return any(matches(pattern, path) for pattern in allow)
    return False


class PinnedVerdict(NamedTuple):
    """Cedar's answer about an iteration's pinned changes: the changes it did not allow and the
    ``@id`` of the policies that decided (denying ones when any change is denied)."""

    denied: list[PinnedChange]
    policy_ids: list[str]


def authorize_pinned_changes(
    state: LoopState, changes: Sequence[PinnedChange], policy: PolicyEngine
) -> PinnedVerdict:
    """Ask ``policy`` ``ChangePinnedFile`` for each change, as the loop's agent on its ``Loop``
    (context: ``iteration``, ``path``, ``kind``, ``change``, ``allowed_by_config``). A decision
    with evaluation errors is a denial (fail closed). Does not raise for a denial."""
    base = build_authorization_request(state, CHANGE_PINNED_FILE)
    requests = [
        base.model_copy(
            update={
                "context": {
                    "iteration": state.iteration,
                    "path": change.path,
                    "kind": change.kind,
                    "change": change.change,
                    "allowed_by_config": change.allowed_by_config,
                }
            }
        )
        for change in changes
    ]
    decisions = policy.is_authorized_batch(requests) if requests else []
    denied: list[PinnedChange] = []
    denying: list[str] = []
    allowing: list[str] = []
    for change, decision in zip(changes, decisions, strict=True):
        if decision.allowed and not decision.errors:
            allowing += decision.policy_ids
            continue
        denied.append(change)
        denying += decision.policy_ids or ["no permit"]
    ids = denying if denied else allowing
    return PinnedVerdict(denied=denied, policy_ids=list(dict.fromkeys(ids)))
