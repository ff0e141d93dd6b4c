"""Plans a user writes: a TOML, YAML or JSON file holding a :class:`PlanDraft`.

Example (``examples/plans/diamond.toml``)::

    goal = "Split the parser and add its tests"

    [defaults]                       # LoopConfig fields shared by every task's loop
    max_iterations = 5
    agent = { kind = "command", command = ["my-agent", "--prompt-file", "{prompt_file}"] }

    [[tasks]]
    task_id = "models"
    description = "Add the token models"
    [[tasks.loop.exit_conditions]]   # this task's loop
    type = "CUSTOM"
    command = "python -m pytest -q tests/test_models.py"

    [[tasks]]
    task_id = "parser"
    description = "Parse with the token models"
    depends_on = ["models"]
    ...

    [[gates]]                        # gate:all (default: the tasks' exit conditions)
    name = "gate:tests"
    type = "ALL_TESTS_PASS"
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from loopwright.models.plans import InspectionPacket, PlanDraft
from loopwright.plans.errors import PlanValidationError
from loopwright.plans.ports import Planner
from loopwright.plans.validation import parse_draft

#: File suffixes a plan file may have.
PLAN_FILE_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def _load(path: Path, text: str) -> Any:
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PlanValidationError(str(path), f"invalid TOML: {exc}") from exc
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanValidationError(str(path), f"invalid JSON: {exc}") from exc
    import yaml  # only YAML plan files pay for importing PyYAML

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanValidationError(str(path), f"invalid YAML: {exc}") from exc


def read_plan_file(path: Path) -> PlanDraft:
    """The draft in ``path`` (shapes validated; see
    :func:`~loopwright.plans.validation.validate_draft` for the DAG).

    Raises :class:`PlanValidationError` whose field is ``<path>: <field>`` for an unreadable file,
    an unknown suffix, invalid syntax or an invalid field.
    """
    if path.suffix not in PLAN_FILE_SUFFIXES:
        raise PlanValidationError(
            str(path), f"unknown plan file type {path.suffix!r}; use {', '.join(PLAN_FILE_SUFFIXES)}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanValidationError(str(path), f"cannot read the plan file: {exc.strerror}") from exc
    data = _load(path, text)
    try:
        return parse_draft(data)
    except PlanValidationError as exc:
        raise PlanValidationError(f"{path}: {exc.field}", exc.problem) from exc


class FilePlanner(Planner):
    """A :class:`Planner` that returns the plan a user wrote in ``path``, whatever the packet."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def plan(self, packet: InspectionPacket, *, model: str | None = None) -> PlanDraft:
        """The file's draft. Raises :class:`PlanValidationError` (see :func:`read_plan_file`)."""
        return read_plan_file(self.path)
