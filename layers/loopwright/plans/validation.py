"""Validating plan drafts: shapes (pydantic), the DAG, the size limits and each task's loop.

Every problem is raised as one :class:`~loopwright.plans.errors.PlanValidationError` naming the
field (``tasks.2.depends_on``) and what to do; the first problem found is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from loopwright.models import CommandAgentConfig, ExitConditionConfig, LoopConfig, PythonAgentConfig
from loopwright.models.plans import (
    MAX_PLAN_BYTES,
    MAX_PLAN_TASKS,
    GateConfig,
    PlanDraft,
    PlanTaskDraft,
)
from loopwright.plans.dag import dependency_graph, find_cycle
from loopwright.plans.errors import PlanValidationError

#: Characters of a gate's name kept from its exit condition's name (gate names are at most 64).
_GATE_KEY_CHARS = 59


def _allowed(loc: Sequence[int | str]) -> list[str]:
    """Field names of the model at ``loc`` inside a PlanDraft (for "unknown field" messages)."""
    models: list[type[BaseModel]]
    if not loc:
        models = [PlanDraft]
    elif loc[0] == "tasks" and len(loc) == 2:
        models = [PlanTaskDraft]
    elif loc[0] == "gates" and len(loc) == 2:
        models = [GateConfig]
    elif loc[-1] == "agent" or (len(loc) >= 2 and loc[-2] == "agent"):
        models = [CommandAgentConfig, PythonAgentConfig]
    elif "exit_conditions" in loc:
        models = [ExitConditionConfig]
    elif loc[-1] in ("defaults", "loop"):
        models = [LoopConfig]
    else:
        return []
    return sorted({name for model in models for name in model.model_fields})


def first_error(exc: ValidationError, prefix: Sequence[int | str] = ()) -> PlanValidationError:
    """The first error of ``exc`` as a :class:`PlanValidationError`, its location under ``prefix``."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [*prefix, *first["loc"]]
    # A discriminated union adds its tag ('command'/'python') to the location: drop it.
    for index in range(len(loc) - 1):
        if loc[index] == "agent" and loc[index + 1] in ("command", "python"):
            del loc[index + 1]
            break
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        allowed = _allowed(loc[:-1])
        message = "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    elif first["type"] == "missing":
        message = "required field is missing"
    elif "input" in first and first["type"] not in ("model_type", "dict_type"):
        message += f" (got {first['input']!r})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return PlanValidationError(".".join(str(p) for p in loc) or "(top level)", message)


def parse_draft(data: Any, *, prefix: Sequence[int | str] = ()) -> PlanDraft:
    """``data`` (a mapping, as read from a plan file or a request body) as a :class:`PlanDraft`.

    Shapes only (see :func:`validate_draft`). Raises :class:`PlanValidationError`.
    """
    if not isinstance(data, Mapping):
        raise PlanValidationError(
            ".".join(map(str, prefix)) or "(top level)", "must be a table/mapping of fields"
        )
    try:
        return PlanDraft.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, prefix) from exc


def task_loop_config(
    project: str, defaults: Mapping[str, Any], task: PlanTaskDraft, *, index: int = 0
) -> LoopConfig:
    """The LoopConfig of ``task``'s loop: ``defaults`` overridden by ``task.loop``, ``goal``
    defaulting to the task's description, ``project`` the plan's.

    Raises :class:`PlanValidationError` naming ``tasks.<index>.loop.<field>`` or
    ``defaults.<field>`` (whichever gave the value).
    """
    for source, fields in (("defaults", defaults), (f"tasks.{index}.loop", task.loop)):
        if "project" in fields:
            raise PlanValidationError(
                f"{source}.project", "remove it: a plan's loops run in the plan's project"
            )
    if "goal" in defaults:
        raise PlanValidationError(
            "defaults.goal", "remove it: a task's goal is its description, or the goal in its loop"
        )
    if "git_isolation" in task.loop:
        raise PlanValidationError(
            f"tasks.{index}.loop.git_isolation",
            "remove it: set git_isolation in the plan's defaults (it applies to every task)",
        )
    data: dict[str, Any] = {"goal": task.description, **defaults, **task.loop, "project": project}
    try:
        return LoopConfig.model_validate(data)
    except ValidationError as exc:
        field = exc.errors(include_url=False)[0]["loc"][:1]
        in_defaults = bool(field) and field[0] in defaults and field[0] not in task.loop
        error = first_error(exc, ["defaults"] if in_defaults else ["tasks", index, "loop"])
        if error.problem.startswith("required field is missing"):
            error = PlanValidationError(
                error.field, error.problem + " (set it in the plan's defaults or in the task's loop)"
            )
        raise error from exc


def default_gates(project: str, draft: PlanDraft) -> list[GateConfig]:
    """The gates of a draft: its own, or else each distinct exit condition of its tasks' loops
    (by name, the first one met in plan order), named ``gate:<condition name>``."""
    if draft.gates:
        return list(draft.gates)
    gates: dict[str, GateConfig] = {}
    for index, task in enumerate(draft.tasks):
        for condition in task_loop_config(project, draft.defaults, task, index=index).exit_conditions:
            if condition.key not in gates:
                fields = condition.model_dump(exclude={"name"})
                gates[condition.key] = GateConfig(name=f"gate:{condition.key[:_GATE_KEY_CHARS]}", **fields)
    return list(gates.values())


def validate_draft(draft: PlanDraft, project: str) -> None:
    """Check that ``draft`` is a plan that can be dispatched. Raises :class:`PlanValidationError`:

    * ``tasks``: no task (an empty plan), or more than :data:`MAX_PLAN_TASKS` (oversized);
    * ``tasks.<i>.task_id``: an id used twice;
    * ``tasks.<i>.depends_on``: an unknown task, or a cycle (the message gives its path);
    * ``tasks.<i>.loop.<field>`` / ``defaults.<field>``: the task's loop config is invalid;
    * ``(plan)``: its JSON is larger than :data:`MAX_PLAN_BYTES` (oversized).
    """
    tasks = draft.tasks
    if not tasks:
        raise PlanValidationError("tasks", "the plan has no tasks; give at least one")
    if len(tasks) > MAX_PLAN_TASKS:
        raise PlanValidationError(
            "tasks",
            f"the plan has {len(tasks)} tasks, more than {MAX_PLAN_TASKS}; split it into several plans",
        )
    first_index: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.task_id in first_index:
            raise PlanValidationError(
                f"tasks.{index}.task_id",
                f"task id {task.task_id!r} is already used by tasks.{first_index[task.task_id]}; "
                "give each task a unique id",
            )
        first_index[task.task_id] = index
    for index, task in enumerate(tasks):
        for dependency in task.depends_on:
            if dependency not in first_index:
                raise PlanValidationError(
                    f"tasks.{index}.depends_on",
                    f"task {task.task_id!r} depends on unknown task {dependency!r}; "
                    f"known tasks: {', '.join(first_index)}",
                )
    cycle = find_cycle(dependency_graph(tasks))
    if cycle is not None:
        raise PlanValidationError(
            f"tasks.{first_index[cycle[0]]}.depends_on",
            f"the dependencies form a cycle: {' -> '.join(cycle)} (each depends on the next); "
            "remove one of them",
        )
    for index, task in enumerate(tasks):
        task_loop_config(project, draft.defaults, task, index=index)
    size = len(draft.model_dump_json())
    if size > MAX_PLAN_BYTES:
        raise PlanValidationError(
            "(plan)",
            f"the plan is {size} bytes of JSON, more than {MAX_PLAN_BYTES}; shorten goals or split it",
        )
