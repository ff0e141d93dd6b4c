"""The ``loopwright`` command line (Typer + Rich).

Commands: ``run``, ``status``, ``events``, ``resume``, ``stop``, ``pause``, ``approve``, ``limits``,
``dashboard`` and ``plan ...``.
Every command takes
``--workspace`` (default: the current folder; local state lives in ``<workspace>/.loopwright``)
and ``--json`` for machine-readable output.

Exit codes: 0 the loop met its conditions (or the command succeeded); 1 an error; 2 bad input, or
a control that does not apply to the loop now (nothing was written); 3 a policy stopped the loop
(iteration, token or time limit) or refused a control; 4 a human stopped it; 5 it waits for a
human (AWAITING_RESPONSE); 6 it is paused (PAUSED: by a human, or until a usage limit resets).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live

from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cli import display
from loopwright.cli.dashboard import dashboard
from loopwright.cli.plan import plan_app
from loopwright.config_loader import load_config
from loopwright.controls import Resumer
from loopwright.engine.framework import LoopFramework
from loopwright.engine.local import DB_FILE_NAME, build_agent, open_store, state_dir_for
from loopwright.engine.local_controls import local_control_service, local_user
from loopwright.engine.lock import LoopLock
from loopwright.exceptions import (
    ConfigError,
    ControlConflictError,
    ControlDeniedError,
    LoopFrameworkError,
    LoopNotFoundError,
)
from loopwright.models import (
    ControlAction,
    ControlRequest,
    IterationEvent,
    IterationEventType,
    LimitChange,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopResult,
    LoopState,
    operators_group,
)

app = typer.Typer(
    name="loopwright",
    help="Governed autonomous loops for AI coding agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(plan_app, name="plan")
app.command()(dashboard)

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_POLICY, EXIT_STOPPED, EXIT_AWAITING, EXIT_PAUSED = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
)
RESULT_FILE_NAME = "last-result.json"

WorkspaceOpt = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="The repository the loop works on.", file_okay=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]loopwright: error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _exit_code(result: LoopResult) -> int:
    if result.outcome is LoopOutcome.CONDITIONS_MET:
        return EXIT_OK
    if result.outcome is None:
        return EXIT_PAUSED if result.phase is LoopPhase.PAUSED else EXIT_AWAITING
    if result.outcome is LoopOutcome.STOPPED:
        return EXIT_STOPPED
    if result.outcome is LoopOutcome.FAILED:
        return EXIT_ERROR
    return EXIT_POLICY


def _condition_overrides(values: list[str]) -> list[dict[str, Any]]:
    conditions = []
    for value in values:
        kind, sep, command = value.partition("=")
        entry: dict[str, Any] = {"type": kind.strip().upper()}
        if sep:
            entry["command"] = command
        conditions.append(entry)
    return conditions


def _existing_store(root: Path, loop_id: str | None) -> SqliteStore | None:
    """The workspace's store, or None (after saying so) when it has none; never creates one."""
    if (state_dir_for(root) / DB_FILE_NAME).is_file():
        return open_store(state_dir_for(root))
    if loop_id is not None:
        _fail(
            f"no loop {loop_id!r}: {root} has no loopwright state (run `loopwright run` first)",
            EXIT_BAD_INPUT,
        )
    return None


def _workspace_path(workspace: Path) -> Path:
    if not workspace.is_dir():
        _fail(f"--workspace: {workspace} is not a folder", EXIT_BAD_INPUT)
    return workspace.resolve()


class _Progress:
    """Feeds the live panel (terminal) or prints one line per notable event (pipes, CI)."""

    _LINE_EVENTS = frozenset(
        {
            IterationEventType.LOOP_STARTED,
            IterationEventType.LOOP_RESUMED,
            IterationEventType.POLICY_WARNING,
            IterationEventType.POLICY_DENIED,
            IterationEventType.AGENT_COMPLETED,
            IterationEventType.AGENT_FAILED,
            IterationEventType.CHECKPOINT_CORRUPT,
            IterationEventType.CHECKPOINT_RECOVERED,
            IterationEventType.EXIT_CONDITIONS_EVALUATED,
            IterationEventType.LOOP_COMPLETED,
            IterationEventType.HUMAN_INPUT_REQUESTED,
        }
    )

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.events: list[IterationEvent] = []
        self.state: LoopState | None = None
        self.live: Live | None = None

    def __call__(self, event: IterationEvent, state: LoopState) -> None:
        self.state = state
        self.events.append(event)
        del self.events[:-20]
        if self.quiet:
            return
        if self.live is not None:
            self.live.refresh()
        elif event.type in self._LINE_EVENTS:
            self.console.print(display.event_line(event), highlight=False, soft_wrap=True)

    def render(self) -> Any:
        if self.state is None:
            return ""
        return display.progress_panel(self.state, self.events)


def _execute(
    framework: LoopFramework,
    *,
    as_json: bool,
    resume_from: str | None = None,
    progress: _Progress,
) -> None:
    console = progress.console
    try:
        if console.is_terminal and not as_json:
            with Live(get_renderable=progress.render, console=console, refresh_per_second=4) as live:
                progress.live = live
                result = framework.run(resume_from=resume_from)
            progress.live = None
        else:
            result = framework.run(resume_from=resume_from)
    except KeyboardInterrupt:
        _fail(
            f"interrupted; resume with `loopwright resume {framework.loop_id} -w {framework.workspace}`",
            130,
        )
    except ConfigError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except LoopFrameworkError as exc:
        _fail(str(exc))
    state = framework.get_state()
    result_json = result.model_dump_json(indent=2)
    (framework.state_dir / RESULT_FILE_NAME).write_text(result_json + "\n", encoding="utf-8")
    if as_json:
        typer.echo(result_json)
    else:
        console.print(display.result_panel(result, state))
    raise typer.Exit(_exit_code(result))


class StateMachineVariant(StrEnum):
    """The synthesized state machine's variant (CDK context ``loopwright:stateMachine``)."""

    STEPS = "steps"
    COMPACT = "compact"


class Engine(StrEnum):
    """Which engine drives the loop."""

    LOCAL = "local"
    STEPFUNCTIONS = "stepfunctions"


def _run_stepfunctions(
    config: LoopConfig, root: Path, loop_id: str | None, *, as_json: bool, state_machine: str | None = None
) -> NoReturn:
    try:
        # Imported only for this engine: moto, boto3 and the CDK app take seconds to load.
        from loopwright.engine.stepfunctions import execute_loop
    except ImportError as exc:
        _fail(f"--engine stepfunctions needs the dev extra (pip install -e '.[dev]'): {exc}", EXIT_BAD_INPUT)
    console = Console()
    try:
        done = execute_loop(config, root, loop_id, state_machine=state_machine)
    except LoopFrameworkError as exc:
        _fail(str(exc))
    for execution in done.executions:
        if not as_json:
            console.print(
                f"execution {execution.name}: {execution.status}, {execution.events} history events, "
                f"{execution.seconds:.1f} s",
                highlight=False,
            )
    state_dir = state_dir_for(root)
    result_json = done.result.model_dump_json(indent=2)
    (state_dir / RESULT_FILE_NAME).write_text(result_json + "\n", encoding="utf-8")
    if as_json:
        typer.echo(result_json)
    else:
        console.print(display.result_panel(done.result, open_store(state_dir).get_state(done.result.loop_id)))
    raise typer.Exit(_exit_code(done.result))


@app.command()
def run(
    workspace: WorkspaceOpt = Path("."),
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML or YAML config (default: loopwright.toml/.yaml in the workspace).",
        ),
    ] = None,
    loop_id: Annotated[str | None, typer.Option(help="Id for the new loop (default: generated).")] = None,
    goal: Annotated[str | None, typer.Option(help="What the agent must achieve.")] = None,
    condition: Annotated[
        list[str] | None,
        typer.Option(
            help="Exit condition TYPE or TYPE=COMMAND (repeatable; replaces the config's list). "
            "Types: ALL_TESTS_PASS, LINTING_CLEAN, BUILD_SUCCEEDS, SECURITY_SCAN_CLEAN, CUSTOM."
        ),
    ] = None,
    agent_command: Annotated[str | None, typer.Option(help="Run this command line as the agent.")] = None,
    agent_function: Annotated[str | None, typer.Option(help="Use module:function as the agent.")] = None,
    max_iterations: Annotated[int | None, typer.Option(help="Iteration limit (Cedar).")] = None,
    token_budget: Annotated[int | None, typer.Option(help="Token budget (Cedar).")] = None,
    max_duration: Annotated[int | None, typer.Option(help="Wall-clock limit, seconds (Cedar).")] = None,
    checkpoint_interval: Annotated[int | None, typer.Option(help="Checkpoint every N iterations.")] = None,
    checkpoint_retention: Annotated[int | None, typer.Option(help="Checkpoints kept per loop.")] = None,
    git_isolation: Annotated[
        bool | None,
        typer.Option("--git-isolation/--no-git-isolation", help="Work in a git worktree."),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="local: the in-process engine. stepfunctions: the synthesized CDK state machine "
            "executed locally against moto, with the real Lambda handler code (needs the dev extra)."
        ),
    ] = Engine.LOCAL,
    state_machine: Annotated[
        StateMachineVariant | None,
        typer.Option(
            help="With --engine stepfunctions: steps (one Lambda per step) or compact (one per "
            "iteration); default: LOOPWRIGHT_STATE_MACHINE, else steps."
        ),
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Start a loop: the agent iterates until the exit conditions hold or a policy stops it."""
    root = _workspace_path(workspace)
    overrides: dict[str, Any] = {
        "goal": goal,
        "max_iterations": max_iterations,
        "token_budget": token_budget,
        "max_duration_seconds": max_duration,
        "checkpoint_interval": checkpoint_interval,
        "checkpoint_retention": checkpoint_retention,
        "git_isolation": git_isolation,
    }
    if condition:
        overrides["exit_conditions"] = _condition_overrides(condition)
    if agent_command and agent_function:
        _fail("--agent-command and --agent-function exclude each other; give one", EXIT_BAD_INPUT)
    if agent_command:
        overrides["agent"] = {"kind": "command", "command": agent_command}
    elif agent_function:
        overrides["agent"] = {"kind": "python", "function": agent_function}
    try:
        loop_config, _ = load_config(root, config, overrides)
    except ConfigError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    if loop_config.agent is None:
        _fail(
            "no agent: set [agent] in the config, or pass --agent-command or --agent-function",
            EXIT_BAD_INPUT,
        )
    sandbox = SubprocessSandbox()
    if engine is Engine.STEPFUNCTIONS:
        _run_stepfunctions(
            loop_config,
            root,
            loop_id,
            as_json=as_json,
            state_machine=state_machine.value if state_machine else None,
        )
    elif state_machine is not None:
        _fail("--state-machine: only with --engine stepfunctions", EXIT_BAD_INPUT)
    try:
        agent = build_agent(loop_config, sandbox)  # a bad module:function fails here, before any write
    except ConfigError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    console = Console()
    progress = _Progress(console, quiet or as_json)
    framework = LoopFramework(
        loop_config,
        workspace=root,
        loop_id=loop_id,
        observer=progress,
        agent=agent,
        sandbox=sandbox,
    )
    _execute(framework, as_json=as_json, progress=progress)


@app.command()
def resume(
    loop_id: Annotated[str, typer.Argument(help="The loop to continue.")],
    workspace: WorkspaceOpt = Path("."),
    checkpoint: Annotated[
        str | None,
        typer.Option(help="Checkpoint id to resume from (default: the newest valid one)."),
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Continue a loop that was interrupted, killed, stopped by a human or paused for one."""
    root = _workspace_path(workspace)
    _existing_store(root, loop_id)
    console = Console()
    progress = _Progress(console, quiet or as_json)
    try:
        framework = LoopFramework.open(loop_id, workspace=root, observer=progress)
    except LoopNotFoundError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    _execute(framework, as_json=as_json, resume_from=checkpoint or "latest", progress=progress)


@app.command()
def stop(
    loop_id: Annotated[str, typer.Argument(help="The loop to stop.")],
    workspace: WorkspaceOpt = Path("."),
    reason: Annotated[str, typer.Option(help="Recorded with the stop.")] = "stopped from the CLI",
) -> None:
    """Stop a loop: a running one after its current step, an idle one at once (resumable later)."""
    _control(workspace, loop_id, ControlAction.STOP, reason=reason)


@app.command()
def pause(
    loop_id: Annotated[str, typer.Argument(help="The loop to pause.")],
    workspace: WorkspaceOpt = Path("."),
    reason: Annotated[str, typer.Option(help="Recorded with the pause.")] = "paused from the CLI",
) -> None:
    """Pause a running loop after its current step (phase PAUSED; `loopwright resume` continues it)."""
    _control(workspace, loop_id, ControlAction.PAUSE, reason=reason)


@app.command()
def approve(
    loop_id: Annotated[str, typer.Argument(help="The loop waiting for an answer (AWAITING_RESPONSE).")],
    workspace: WorkspaceOpt = Path("."),
    response: Annotated[
        str | None, typer.Option(help="Your answer to the agent's question (default: 'approved').")
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Answer the agent's question and continue the loop in this terminal."""
    root = _workspace_path(workspace)

    def run_here(state: LoopState, request: ControlRequest) -> None:
        progress = _Progress(Console(), quiet or as_json)
        framework = LoopFramework.open(state.loop_id, workspace=root, observer=progress)
        _execute(framework, as_json=as_json, progress=progress)

    _control(root, loop_id, ControlAction.APPROVE, response=response, resumer=run_here)


@app.command()
def limits(
    loop_id: Annotated[str, typer.Argument(help="The loop whose limits change.")],
    workspace: WorkspaceOpt = Path("."),
    max_iterations: Annotated[int | None, typer.Option(help="New iteration limit.")] = None,
    token_budget: Annotated[int | None, typer.Option(help="New token budget (tokens).")] = None,
    max_duration: Annotated[
        int | None, typer.Option("--max-duration", help="New wall-clock limit (seconds from the start).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the change.")] = "",
) -> None:
    """Raise (or change) a loop's limits; a running loop applies them before its next iteration."""
    try:
        change = LimitChange(
            max_iterations=max_iterations, token_budget=token_budget, max_duration_seconds=max_duration
        )
    except ValidationError as exc:
        _fail(_first_error(exc, {"max_duration_seconds": "--max-duration"}), EXIT_BAD_INPUT)
    _control(workspace, loop_id, ControlAction.RAISE_LIMIT, reason=reason, limits=change)


def _first_error(exc: ValidationError, flags: dict[str, str]) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    flag = flags.get(field, "--" + field.replace("_", "-")) if field else "limits"
    return f"{flag}: {error['msg']}"


def _control(
    workspace: Path,
    loop_id: str,
    action: ControlAction,
    *,
    resumer: Resumer | None = None,
    **fields: Any,
) -> None:
    """Submit one control as the local user; print what became of it. Exit 2 when it does not
    apply or the loop is unknown, 3 when Cedar refuses it; nothing is written then."""
    root = _workspace_path(workspace)
    store = _existing_store(root, loop_id)
    assert store is not None
    service = local_control_service(state_dir_for(root), store, resumer=resumer)
    try:
        state = store.get_state(loop_id)
        request = ControlRequest(
            loop_id=loop_id,
            action=action,
            principal=local_user(),
            groups=[operators_group(state.project)],
            **fields,
        )
        result = service.submit(request)
    except LoopNotFoundError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except ControlDeniedError as exc:
        _fail(str(exc), EXIT_POLICY)
    except ControlConflictError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    running = LoopLock(state_dir_for(root), loop_id).holder() if result.status == "queued" else None
    where = f" (process {running} runs it)" if running else ""
    typer.echo(f"{action.value.lower()} {result.status} for {loop_id}: {result.message}{where}")


def _shown_phase(state: LoopState, root: Path) -> str:
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


@app.command()
def status(
    loop_id: Annotated[str | None, typer.Argument(help="A loop id; all loops when omitted.")] = None,
    workspace: WorkspaceOpt = Path("."),
    project: Annotated[str | None, typer.Option(help="Only loops of this project.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one loop's progress, or list the loops of the workspace."""
    root = _workspace_path(workspace)
    store = _existing_store(root, loop_id)
    console = Console()
    if store is None:
        typer.echo("[]") if as_json else console.print(f"no loops in {root}")
        return
    if loop_id is None:
        states = store.list_loops(project=project)
        if as_json:
            typer.echo(json.dumps([_status_json(s, root) for s in states], indent=2))
        elif not states:
            console.print(f"no loops in {root}")
        else:
            console.print(display.loops_table([(s, _shown_phase(s, root)) for s in states]))
        return
    try:
        state = store.get_state(loop_id)
    except LoopNotFoundError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    if as_json:
        typer.echo(json.dumps(_status_json(state, root), indent=2))
        return
    console.print(f"[bold]{state.loop_id}[/] · {_shown_phase(state, root)}", highlight=False)
    console.print(display.limits_line(state), highlight=False)
    if state.outcome:
        console.print(f"outcome {state.outcome.value}: {state.outcome_reason}", highlight=False)
    if state.human_request:
        console.print(f"[yellow]awaiting response:[/] {state.human_request}", highlight=False)
    console.print(display.conditions_table(state))


def _status_json(state: LoopState, root: Path) -> dict[str, Any]:
    data = state.model_dump(mode="json", exclude={"config"})
    for condition in data["exit_conditions"]:
        condition.pop("stdout", None)
        condition.pop("stderr", None)
    data["shown_phase"] = _shown_phase(state, root)
    data["max_iterations"] = state.config.max_iterations
    return data


@app.command()
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
    root = _workspace_path(workspace)
    types = None
    if event_type:
        allowed = {t.value for t in IterationEventType}
        unknown = [t for t in event_type if t.upper() not in allowed]
        if unknown:
            _fail(
                f"--type: unknown event type {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
                EXIT_BAD_INPUT,
            )
        types = [IterationEventType(t.upper()) for t in event_type]
    store = _existing_store(root, loop_id)
    assert store is not None
    try:
        store.get_state(loop_id)
    except LoopNotFoundError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
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


def main() -> None:
    """Entry point of the ``loopwright`` script."""
    try:
        app()
    except LoopFrameworkError as exc:  # anything a command did not map itself
        Console(stderr=True, soft_wrap=True).print(f"[bold red]loopwright: error:[/] {exc}", highlight=False)
        sys.exit(EXIT_ERROR)
