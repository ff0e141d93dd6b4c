"""``loopwright plan``: create, dispatch, verify, show and list plans (seed 003, issue 5).

Registered in :mod:`loopwright.cli.app` with ``app.add_typer(plan_app, name="plan")``. Every
command takes ``--workspace`` and ``--project``: plans live per project in the workspace's local
store; ``--project`` defaults to the ``project`` of the workspace's ``loopwright.toml``/``.yaml``,
else ``default`` (``create --from-loop`` defaults to the inspected loop's project).

``create``, ``dispatch`` and ``verify`` change the project's plans: each is first authorized by
Cedar (:class:`~loopwright.plans.authorize.PlanAuthorizer`, ``policies/plans.cedar``) as the local
user, ``User::"<OS user>"`` in the project's operators group, as the control commands act; the
shipped policies allow it, a policy added to the folder may forbid it.

Exit codes: 0 success (create: a DRAFT plan; dispatch: every task COMPLETED; verify: VERIFIED);
1 an error, or the plan FAILED / some task did not complete; 2 bad input (nothing was written);
3 Cedar refused the change (nothing was written).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.file_planner import read_plan_file
from loopwright.cli.display import format_duration
from loopwright.config_loader import find_config, read_config_file
from loopwright.engine.local import DB_FILE_NAME, state_dir_for
from loopwright.engine.local_controls import local_caller
from loopwright.engine.plan_dispatch import LocalPlans
from loopwright.exceptions import ConfigError, LoopFrameworkError, LoopNotFoundError
from loopwright.models.plans import (
    DEFAULT_PLAN_CONCURRENCY,
    MAX_PLAN_CONCURRENCY,
    ActivityEvent,
    ActivityEventType,
    GateCheckStatus,
    Plan,
    PlanStatus,
    TaskState,
)
from loopwright.models.types import ProjectId
from loopwright.plans.authorize import PlanAction, PlanAuthorizer
from loopwright.plans.dag import wave_of
from loopwright.plans.decompose import ConditionPlanner
from loopwright.plans.errors import PlanConflictError, PlanDeniedError, PlanNotFoundError
from loopwright.plans.service import create_plan, generate_plan
from loopwright.plans.validation import validate_draft

plan_app = typer.Typer(
    name="plan",
    help="Plans: split work into tasks run as parallel loops, then verify the result (gate:all).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_POLICY = 0, 1, 2, 3

WorkspaceOpt = Annotated[
    Path, typer.Option("--workspace", "-w", help="The repository the plan works on.", file_okay=False)
]
ProjectOpt = Annotated[
    str | None,
    typer.Option(help="Project of the plan (default: the workspace config's 'project', else 'default')."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
PlanIdArg = Annotated[str, typer.Argument(help="The plan's id (plan_...).")]

_PROJECT = TypeAdapter(ProjectId)

_STATUS_STYLE = {
    PlanStatus.DRAFT: "cyan",
    PlanStatus.DISPATCHING: "yellow",
    PlanStatus.RUNNING: "yellow",
    PlanStatus.VERIFYING: "yellow",
    PlanStatus.VERIFIED: "bold green",
    PlanStatus.FAILED: "bold red",
    PlanStatus.CANCELLED: "dim",
}
_TASK_STYLE = {
    TaskState.CREATED: "dim",
    TaskState.RUNNING: "yellow",
    TaskState.COMPLETED: "bold green",
    TaskState.ERROR: "bold red",
    TaskState.SKIPPED: "magenta",
    TaskState.CANCELLED: "dim",
}
_CHECK_STYLE = {
    GateCheckStatus.PASSED: "bold green",
    GateCheckStatus.FAILED: "bold red",
    GateCheckStatus.ERROR: "bold magenta",
    GateCheckStatus.TIMEOUT: "bold magenta",
    GateCheckStatus.SKIPPED: "dim",
}
_EVENT_STYLE = {
    ActivityEventType.TASK_COMPLETED: "green",
    ActivityEventType.TASK_FAILED: "red",
    ActivityEventType.TASK_SKIPPED: "magenta",
    ActivityEventType.PLAN_VERIFIED: "bold green",
    ActivityEventType.PLAN_FAILED: "bold red",
}


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]loopwright: error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _root(workspace: Path) -> Path:
    if not workspace.is_dir():
        _fail(f"--workspace: {workspace} is not a folder", EXIT_BAD_INPUT)
    return workspace.resolve()


def _project(root: Path, given: str | None) -> str:
    """``given``, else the workspace config's ``project``, else ``default``; validated."""
    if given is None:
        path = find_config(root)
        try:
            given = str(read_config_file(path).get("project", "default")) if path else "default"
        except ConfigError:
            given = "default"
    try:
        return _PROJECT.validate_python(given)
    except ValidationError:
        _fail(f"--project: {given!r} is not a project id (letters, digits, '.', '_', '-')", EXIT_BAD_INPUT)


def _authorize(action: PlanAction, project: str, root: Path) -> None:
    """Ask Cedar whether the caller (the local user, or a loop's agent when run from inside a
    loop's processes: :func:`local_caller`) may ``action`` the plans of ``project`` (exit 3 if
    not)."""
    caller = local_caller(state_dir_for(root))
    try:
        PlanAuthorizer(CedarPolicyEngine()).authorize(
            action, project, principal=caller.principal, groups=caller.groups(project)
        )
    except PlanDeniedError as exc:
        _fail(str(exc), EXIT_POLICY)
    except ConfigError as exc:
        _fail(f"Cedar policies: {exc}")


def _open(root: Path, *, observer: Any = None) -> LocalPlans:
    """The workspace's plans; fails (exit 2) when it has no loopwright state (nothing is created)."""
    if not (state_dir_for(root) / DB_FILE_NAME).is_file():
        _fail(
            f"{root} has no loopwright state: create a plan first (`loopwright plan create`)", EXIT_BAD_INPUT
        )
    return LocalPlans(root, observer=observer)


# ----------------------------------------------------------------------------- rendering
def event_line(event: ActivityEvent) -> Text:
    """``21:04:05 task_started    b  write b.txt`` styled by type."""
    text = Text(f"{event.timestamp:%H:%M:%S} ", style="dim")
    text.append(f"{event.type.value:<15}", style=_EVENT_STYLE.get(event.type, "cyan"))
    text.append(f" {event.task_id or '':<12} ", style="bold")
    text.append(event.message)
    return text


def tasks_table(plan: Plan) -> Table:
    """One row per task: id, wave, status, dependencies, iterations, commit, duration, reason (the
    task's loop is ``<plan_id>.<task_id>``)."""
    try:
        waves = wave_of(plan.tasks)
    except ValueError:  # graphlib.CycleError: a FAILED plan may keep the cyclic draft as evidence
        waves = {}
    table = Table(box=None, pad_edge=False)
    table.add_column("task", no_wrap=True)
    for column in ("wave", "status", "depends on", "iter", "commit", "time", "note"):
        table.add_column(column, overflow="fold")
    for task in plan.tasks:
        seconds = (
            (task.ended_at - task.started_at).total_seconds() if task.started_at and task.ended_at else None
        )
        table.add_row(
            task.task_id,
            str(waves.get(task.task_id, "")),
            Text(task.status.value, style=_TASK_STYLE[task.status]),
            ", ".join(task.depends_on),
            str(task.iterations) if task.loop_id else "",
            (task.head_commit or "")[:10],
            format_duration(seconds) if seconds is not None else "",
            task.reason or task.description[:60],
        )
    return table


def checks_table(plan: Plan) -> Table:
    """One row per gate check: name, status, duration, exit code, message."""
    table = Table(box=None, pad_edge=False)
    for column in ("check", "status", "time", "exit", "message"):
        table.add_column(column, overflow="fold")
    for check in plan.gate_result.checks if plan.gate_result else []:
        table.add_row(
            check.name,
            Text(check.status.value, style=_CHECK_STYLE[check.status]),
            format_duration(check.duration_seconds),
            "" if check.exit_code is None else str(check.exit_code),
            check.message[:200],
        )
    return table


def _print_plan(console: Console, plan: Plan, events: Sequence[ActivityEvent] = ()) -> None:
    headline = Text(f"plan {plan.plan_id} · project {plan.project} · ", style="bold")
    headline.append(plan.status.value, style=_STATUS_STYLE[plan.status])
    if plan.status is PlanStatus.RUNNING and plan.completed_at and plan.is_partial:
        headline.append(" (partial: some tasks did not complete)", style="red")
    console.print(headline, highlight=False)
    if plan.goal:
        console.print(Text(plan.goal.splitlines()[0][:200], style="dim"), highlight=False)
    if plan.tasks:
        console.print(tasks_table(plan))
    if plan.gate_result:
        console.print(Text("gate:all " + ("passed" if plan.gate_result.passed else "failed"), style="bold"))
        console.print(checks_table(plan))
    elif plan.gates:
        console.print(Text(f"gates: {', '.join(g.key for g in plan.gates)}", style="dim"), highlight=False)
    for event in events:
        console.print(event_line(event), highlight=False)


def _plan_json(plan: Plan, events: Sequence[ActivityEvent] | None = None) -> str:
    data = plan.model_dump(mode="json")
    if events is not None:
        data["events"] = [e.model_dump(mode="json") for e in events]
    return json.dumps(data, indent=2)


# ----------------------------------------------------------------------------- commands
@plan_app.command()
def create(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A plan file (TOML, YAML or JSON) to store as a plan.")
    ] = None,
    from_loop: Annotated[
        str | None,
        typer.Option(help="Inspect this ended loop and plan one task per failing exit condition."),
    ] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create a plan from a plan file, or from an inspected loop (--from-loop)."""
    root = _root(workspace)
    if (file is None) == (from_loop is None):
        _fail("give either --file PATH or --from-loop LOOP_ID", EXIT_BAD_INPUT)
    console = Console()
    if file is not None:
        chosen = _project(root, project)
        try:
            draft = read_plan_file(file)
            validate_draft(draft, chosen)
        except ConfigError as exc:
            where = "" if str(exc).startswith(str(file)) else f"{file}: "
            _fail(f"plan file {where}{exc}", EXIT_BAD_INPUT)
        _authorize(PlanAction.CREATE, chosen, root)
        with LocalPlans(root) as plans:
            plan = create_plan(plans.store, chosen, draft)
    else:
        assert from_loop is not None
        if not (state_dir_for(root) / DB_FILE_NAME).is_file():
            _fail(f"--from-loop: no loop {from_loop!r}: {root} has no loopwright state", EXIT_BAD_INPUT)
        with LocalPlans(root) as plans:
            try:
                loop_project = plans.loops.get_state(from_loop).project
                chosen = _project(root, project or loop_project)
                _authorize(PlanAction.CREATE, chosen, root)
                packet = plans.inspect_loop(chosen, from_loop)
            except (LoopNotFoundError, ConfigError) as exc:
                _fail(f"--from-loop: {exc}", EXIT_BAD_INPUT)
            plan = generate_plan(plans.store, ConditionPlanner(), packet)
    if as_json:
        typer.echo(_plan_json(plan))
    else:
        _print_plan(console, plan)
        if plan.status is PlanStatus.DRAFT:
            console.print(
                f"dispatch it with `loopwright plan dispatch {plan.plan_id} --project {plan.project}`"
            )
    if plan.status is PlanStatus.FAILED:
        raise typer.Exit(EXIT_ERROR)


@plan_app.command()
def dispatch(
    plan_id: PlanIdArg,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-j", min=1, max=MAX_PLAN_CONCURRENCY, help="Most task loops running at a time."
        ),
    ] = DEFAULT_PLAN_CONCURRENCY,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Run a DRAFT plan's tasks as loops, in parallel where dependencies allow."""
    root = _root(workspace)
    chosen = _project(root, project)
    console = Console()

    def show(event: ActivityEvent, _plan: Plan) -> None:
        if not (quiet or as_json):
            console.print(event_line(event), highlight=False, soft_wrap=True)

    _authorize(PlanAction.DISPATCH, chosen, root)
    with _open(root, observer=show) as plans:
        try:
            plan = plans.dispatch(chosen, plan_id, concurrency=concurrency)
        except (PlanNotFoundError, PlanConflictError) as exc:
            _fail(str(exc), EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            _fail(
                f"interrupted; the running loops were asked to stop (see `loopwright plan show {plan_id}`)",
                130,
            )
        except LoopFrameworkError as exc:
            _fail(str(exc))
    if as_json:
        typer.echo(_plan_json(plan))
    else:
        _print_plan(console, plan)
        console.print(f"verify it with `loopwright plan verify {plan.plan_id} --project {plan.project}`")
    raise typer.Exit(EXIT_ERROR if plan.is_partial else EXIT_OK)


@plan_app.command()
def verify(
    plan_id: PlanIdArg,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Run gate:all on the merged result of a dispatched plan: VERIFIED or FAILED (no retry)."""
    root = _root(workspace)
    chosen = _project(root, project)
    _authorize(PlanAction.VERIFY, chosen, root)
    with _open(root) as plans:
        try:
            plan = plans.verify(chosen, plan_id)
        except (PlanNotFoundError, PlanConflictError) as exc:
            _fail(str(exc), EXIT_BAD_INPUT)
        except LoopFrameworkError as exc:
            _fail(str(exc))
    if as_json:
        typer.echo(_plan_json(plan))
    else:
        _print_plan(Console(), plan)
    raise typer.Exit(EXIT_OK if plan.status is PlanStatus.VERIFIED else EXIT_ERROR)


@plan_app.command()
def show(
    plan_id: PlanIdArg,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = Path("."),
    events: Annotated[bool, typer.Option("--events", help="Also list the plan's evidence trail.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a plan: its tasks (wave, status, loop, commit), gate:all checks, and events."""
    root = _root(workspace)
    chosen = _project(root, project)
    with _open(root) as plans:
        try:
            plan = plans.store.get_plan(chosen, plan_id)
        except PlanNotFoundError as exc:
            _fail(str(exc), EXIT_BAD_INPUT)
        trail = plans.store.list_events(chosen, plan_id) if events else None
    if as_json:
        typer.echo(_plan_json(plan, trail))
    else:
        _print_plan(Console(), plan, trail or ())


@plan_app.command("list")
def list_plans(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = Path("."),
    limit: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List the plans of a project, newest first."""
    root = _root(workspace)
    chosen = _project(root, project)
    if not (state_dir_for(root) / DB_FILE_NAME).is_file():
        typer.echo("[]") if as_json else Console().print(f"no plans in project {chosen}")
        return
    with LocalPlans(root) as plans:
        found = plans.store.list_plans(chosen, limit=limit)
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in found], indent=2))
        return
    if not found:
        Console().print(f"no plans in project {chosen}")
        return
    table = Table()
    for column in ("plan", "status", "tasks", "created", "goal"):
        table.add_column(column, overflow="fold")
    for plan in found:
        done = sum(t.status is TaskState.COMPLETED for t in plan.tasks)
        table.add_row(
            plan.plan_id,
            Text(plan.status.value, style=_STATUS_STYLE[plan.status]),
            f"{done}/{len(plan.tasks)}",
            plan.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            (plan.goal.splitlines() or [""])[0][:60],
        )
    Console().print(table)
