"""The task graph of a plan: cycles, waves (topological layers), ready tasks and dependents.

A task depends on the tasks named in its ``depends_on``; an edge points from a task to each of
its dependencies. The graph is handled by the standard library's :mod:`graphlib`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

from loopwright.models.plans import Plan, PlanTask, PlanTaskDraft, TaskState


def dependency_graph(tasks: Sequence[PlanTaskDraft]) -> dict[str, list[str]]:
    """``{task_id: depends_on}`` (the predecessor map :class:`graphlib.TopologicalSorter` takes)."""
    return {task.task_id: list(task.depends_on) for task in tasks}


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle of ``graph`` as task ids, each depending on the next, the first repeated last
    (``["a", "b", "a"]``: a depends on b, which depends on a); None when there is none.

    Every id named as a dependency should be a key (unknown ones are checked first by the caller).
    """
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        # graphlib lists the cycle with each node a dependency of the next: reverse it so that
        # each node depends on the next.
        return list(reversed(exc.args[1]))
    return None


def _order(tasks: Sequence[PlanTaskDraft]) -> dict[str, tuple[int, int]]:
    return {task.task_id: (task.priority, index) for index, task in enumerate(tasks)}


def compute_waves(tasks: Sequence[PlanTaskDraft]) -> list[list[str]]:
    """Topological layers: wave 0 holds the tasks without dependencies, wave n the tasks whose
    dependencies are all in earlier waves. Inside a wave, tasks are ordered by priority (lower
    first), then by their position in the plan.

    Raises :class:`graphlib.CycleError` for a cyclic graph (validate the plan first).
    """
    sorter = TopologicalSorter(dependency_graph(tasks))
    sorter.prepare()
    order = _order(tasks)
    waves: list[list[str]] = []
    while sorter.is_active():
        wave = sorted(sorter.get_ready(), key=lambda task_id: order.get(task_id, (0, len(order))))
        waves.append(wave)
        sorter.done(*wave)
    return waves


def wave_of(tasks: Sequence[PlanTaskDraft]) -> dict[str, int]:
    """``{task_id: wave number}`` (see :func:`compute_waves`)."""
    return {task_id: number for number, wave in enumerate(compute_waves(tasks)) for task_id in wave}


def dependents(tasks: Sequence[PlanTaskDraft], task_id: str) -> list[str]:
    """The tasks that depend on ``task_id`` directly or through other tasks, in plan order."""
    found: set[str] = set()
    frontier = {task_id}
    while frontier:
        frontier = {t.task_id for t in tasks if frontier & set(t.depends_on)} - found
        found |= frontier
    return [t.task_id for t in tasks if t.task_id in found]


def ready_tasks(plan: Plan) -> list[PlanTask]:
    """The CREATED tasks whose dependencies all COMPLETED, by priority (lower first) then position."""
    status = {task.task_id: task.status for task in plan.tasks}
    ready = [
        task
        for task in plan.tasks
        if task.status is TaskState.CREATED
        and all(status.get(d) is TaskState.COMPLETED for d in task.depends_on)
    ]
    order = _order(plan.tasks)
    return sorted(ready, key=lambda task: order[task.task_id])


def sink_tasks(plan: Plan) -> list[PlanTask]:
    """The COMPLETED tasks no other COMPLETED task depends on: their results contain all the
    completed work (each task starts from the merge of its dependencies' results)."""
    completed = [t for t in plan.tasks if t.status is TaskState.COMPLETED]
    needed = {d for t in completed for d in t.depends_on}
    return [t for t in completed if t.task_id not in needed]
