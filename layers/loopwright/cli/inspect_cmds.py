"""``loopwright status`` and ``loopwright events``: read a workspace's loops and their events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from loopwright.cli import display
from loopwright.cli.common import (
    EXIT_BAD_INPUT,
    JsonOpt,
    WorkspaceOpt,
    existing_store,
    fail,
    workspace_path,
)
from loopwright.engine.local import state_dir_for
from loopwright.engine.lock import LoopLock
from loopwright.exceptions import LoopNotFoundError
from loopwright.models import IterationEventType, LoopPhase, LoopResult, LoopState
from loopwright.steps.progress import progress_summary
from loopwright.travel import children_of


def shown_phase(state: LoopState, root: Path) -> str:
    if state.phase in (
        LoopPhase.COMPLETED,
        LoopPhase.AWAITING_RESPONSE,
        LoopPhase.INTERRUPTED,
        LoopPhase.PAUSED,
    ):
        return state.phase.value
    if LoopLock(state_dir_for(root), state.loop_id).holder() is None:
        return f"{LoopPhase.INTERRUPTED.value} (was {state.phase.value}; no process runs it)"
    return state.phase.value


def status(
    loop_id: Annotated[str | None, typer.Argument(help="A loop id; all loops when omitted.")] = None,
    workspace: WorkspaceOpt = Path("."),
    project: Annotated[str | None, typer.Option(help="Only loops of this project.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one loop's progress, or list the loops of the workspace."""
    root = workspace_path(workspace)
    store = existing_store(root, loop_id)
    console = Console()
    if store is None:
        typer.echo("[]") if as_json else console.print(f"no loops in {root}")
        return
    if loop_id is None:
        states = store.list_loops(project=project)
        if as_json:
            typer.echo(json.dumps([status_json(s, root) for s in states], indent=2))
        elif not states:
            console.print(f"no loops in {root}")
        else:
            console.print(display.loops_table([(s, shown_phase(s, root)) for s in states]))
        return
    try:
        state = store.get_state(loop_id)
    except LoopNotFoundError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    children = [child.loop_id for child in children_of(store, state)]
    if as_json:
        typer.echo(json.dumps(status_json(state, root) | {"children": children}, indent=2))
        return
    console.print(f"[bold]{state.loop_id}[/] · {shown_phase(state, root)}", highlight=False)
    console.print(display.limits_line(state), highlight=False)
    for line in lineage_lines(state, children):
        console.print(line, highlight=False)
    if state.outcome:
        console.print(f"outcome {state.outcome.value}: {state.outcome_reason}", highlight=False)
    if state.human_request:
        console.print(f"[yellow]awaiting response:[/] {state.human_request}", highlight=False)
    if state.handoff_reason:
        console.print(f"last session handoff: {state.handoff_reason}", highlight=False)
    summary = progress_summary(state.progress, state.config.max_stuck_iterations)
    if summary:
        console.print(f"progress: {summary}", highlight=False, markup=False)
    if state.progress.stuck_reason:
        console.print(f"stuck: {state.progress.stuck_reason}", highlight=False, markup=False)
    console.print(display.conditions_table(state))


def lineage_lines(state: LoopState, children: list[str]) -> list[str]:
    """``forked from <parent> at iteration N`` and ``forks: <child>, ...`` (time travel), as
    they apply."""
    lines = []
    if state.parent_loop_id:
        lines.append(f"forked from {state.parent_loop_id} at iteration {state.forked_from_iteration}")
    if children:
        lines.append(f"forks: {', '.join(children)}")
    return lines


def status_json(state: LoopState, root: Path) -> dict[str, Any]:
    """The state as ``status --json`` prints it: without config, tool output and the evaluation
    cache, with the shown
    phase and the limits (``max_iterations``; ``token_budget``, tokens, and ``cost_budget_usd``,
    US dollars, null for none; ``max_duration_seconds``, seconds). ``cost_usd`` is the US dollars
    spent so far, ``elapsed_seconds`` the seconds that count against the time limit (the sessions'
    running time, or wall clock with ``count_paused_time``). ``features`` (names, in order),
    ``features_completed``, ``features_total`` and ``max_sessions`` (null for none) come from the
    config and :class:`~loopwright.models.LoopResult`. ``progress`` holds the stuck facts and the
    recent iterations (:class:`~loopwright.models.progress.LoopProgress`), ``progress_summary``
    their one line (:func:`~loopwright.steps.progress.progress_summary`)."""
    data = state.model_dump(mode="json", exclude={"config", "evaluation_cache"})
    for condition in data["exit_conditions"]:
        condition.pop("stdout", None)
        condition.pop("stderr", None)
    data["shown_phase"] = shown_phase(state, root)
    data["max_iterations"] = state.config.max_iterations
    data["token_budget"] = state.config.token_budget
    data["cost_budget_usd"] = state.config.cost_budget_usd
    result = LoopResult.from_state(state)  # features and agent sessions as the result counts them
    data["features_completed"], data["features_total"] = result.features_completed, result.features_total
    data["features"] = [f.name for f in state.config.features]
    data["max_sessions"] = state.config.max_sessions
    data["max_duration_seconds"] = state.config.max_duration_seconds
    data["elapsed_seconds"] = round(state.elapsed_seconds, 3)
    data["progress_summary"] = progress_summary(state.progress, state.config.max_stuck_iterations)
    return data


def events(
    loop_id: Annotated[str, typer.Argument(help="The loop.")],
    workspace: WorkspaceOpt = Path("."),
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only events of this type (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many (the newest).", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a loop's recorded events, oldest first."""
    root = workspace_path(workspace)
    types = None
    if event_type:
        allowed = {t.value for t in IterationEventType}
        unknown = [t for t in event_type if t.upper() not in allowed]
        if unknown:
            fail(
                f"--type: unknown event type {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
                EXIT_BAD_INPUT,
            )
        types = [IterationEventType(t.upper()) for t in event_type]
    store = existing_store(root, loop_id)
    assert store is not None
    try:
        store.get_state(loop_id)
    except LoopNotFoundError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    found = store.list_events(loop_id, types=types, limit=limit, newest_first=limit is not None)
    if limit is not None:
        found.reverse()
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in found], indent=2))
        return
    console = Console()
    for event in found:
        line = display.event_line(event)
        line.append(f"  {event.timestamp:%H:%M:%S}", style="dim")
        console.print(line, highlight=False)
