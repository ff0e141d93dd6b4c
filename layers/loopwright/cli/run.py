"""``loopwright run`` and ``loopwright resume``: drive a loop in this process, with a live display.

``run --engine stepfunctions`` drives the synthesized state machine on moto instead.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console, Group
from rich.live import Live

from loopwright.adapters.local.isolation import check_isolation
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.cli import display
from loopwright.cli.agent_tail import AgentTail
from loopwright.cli.common import (
    EXIT_AWAITING,
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_POLICY,
    EXIT_STOPPED,
    RESULT_FILE_NAME,
    JsonOpt,
    WorkspaceOpt,
    check_loop_id,
    existing_store,
    fail,
    interrupt_on_signals,
    workspace_path,
)
from loopwright.cli.pr_cmd import ProposalError, propose
from loopwright.cli.usage_wait import usage_limit_reset, wait_for_reset
from loopwright.config_loader import load_config
from loopwright.engine.containment import check_programs
from loopwright.engine.framework import LoopFramework
from loopwright.engine.local import DB_FILE_NAME, build_agent, open_store, state_dir_for
from loopwright.engine.local_controls import local_caller, local_control_service
from loopwright.exceptions import (
    ConfigError,
    ControlDeniedError,
    LoopFrameworkError,
    LoopNotFoundError,
    PolicySetChangedError,
)
from loopwright.models import (
    FAILURE_CAUSE_EVENTS,
    ControlAction,
    ControlRequest,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopResult,
    LoopState,
)

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output and no agent output.")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="When the agent hits its provider's usage limit, wait until it resets and continue "
        "(default); --no-wait exits at once with the loop PAUSED (exit code 6).",
    ),
]


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


class Progress:
    """Feeds the live panel (terminal) or prints one line per notable event (pipes, CI)."""

    _LINE_EVENTS = frozenset(
        {
            IterationEventType.LOOP_STARTED,
            IterationEventType.LOOP_RESUMED,
            IterationEventType.WORKSPACE_SNAPSHOT,
            IterationEventType.POLICY_WARNING,
            IterationEventType.POLICY_DENIED,
            IterationEventType.AGENT_COMPLETED,
            IterationEventType.AGENT_FAILED,
            IterationEventType.CHECKPOINT_CORRUPT,
            IterationEventType.CHECKPOINT_RECOVERED,
            IterationEventType.EXIT_CONDITIONS_EVALUATED,
            IterationEventType.LOOP_COMPLETED,
            IterationEventType.HUMAN_INPUT_REQUESTED,
            *FAILURE_CAUSE_EVENTS.values(),  # why the agent did no work (issue 15.3)
        }
    )

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.events: list[IterationEvent] = []
        self.state: LoopState | None = None
        self.live: Live | None = None
        # The agent's output (the engine's output_observer): its last lines under the live panel
        # on a terminal, "agent| " lines when piped, nothing with --quiet or --json.
        self.tail = None if quiet else AgentTail(console, live=console.is_terminal)

    def __call__(self, event: IterationEvent, state: LoopState) -> None:
        self.state = state
        self.events.append(event)
        del self.events[:-20]
        if self.quiet:
            return
        if self.tail is not None:
            if event.type is IterationEventType.ITERATION_STARTED:
                self.tail.reset()
            elif event.type in (IterationEventType.AGENT_COMPLETED, IterationEventType.AGENT_FAILED):
                self.tail.finish()
        if self.live is not None:
            if event.type is IterationEventType.WORKSPACE_SNAPSHOT:  # kept above the live panel
                self.live.console.print(display.event_line(event), highlight=False, soft_wrap=True)
            self.live.refresh()
        elif event.type in self._LINE_EVENTS:
            self.console.print(display.event_line(event), highlight=False, soft_wrap=True)

    def render(self) -> Any:
        if self.state is None:
            return ""
        panel = display.progress_panel(self.state, self.events)
        lines = self.tail.renderable() if self.tail is not None else None
        return panel if lines is None else Group(panel, lines)


def execute(
    framework: LoopFramework,
    *,
    as_json: bool,
    resume_from: str | None = None,
    progress: Progress,
    accept_policy_change: str | None = None,
    wait: bool = True,
) -> None:
    """Run the loop with the live display and print its result; with ``wait``, a pause for a
    usage limit is waited out and the loop continued (:mod:`loopwright.cli.usage_wait`)."""
    console = progress.console
    waiting = False
    try:
        with interrupt_on_signals():
            while True:
                if console.is_terminal and not as_json:
                    with Live(get_renderable=progress.render, console=console, refresh_per_second=4) as live:
                        progress.live = live
                        result = framework.run(
                            resume_from=resume_from, accept_policy_change=accept_policy_change
                        )
                    progress.live = None
                else:
                    result = framework.run(resume_from=resume_from, accept_policy_change=accept_policy_change)
                reset = usage_limit_reset(framework.get_state())
                if not wait or reset is None:
                    break
                waiting = True
                if not wait_for_reset(
                    framework.store, framework.loop_id, reset, console=None if as_json else console
                ):  # changed while it waited (a human stopped it...): report it as it is now
                    result = LoopResult.from_state(framework.store.get_state(framework.loop_id))
                    break
                waiting, resume_from, accept_policy_change = False, None, None
    except KeyboardInterrupt:
        if waiting:  # nothing runs: the loop stays PAUSED until a resume
            fail(
                f"left paused; continue it with `loopwright resume {framework.loop_id} "
                f"-w {framework.workspace}`",
                EXIT_PAUSED,
            )
        fail(
            f"interrupted; resume with `loopwright resume {framework.loop_id} -w {framework.workspace}`",
            130,
        )
    except (ConfigError, PolicySetChangedError) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except LoopFrameworkError as exc:
        fail(str(exc))
    state = framework.store.get_state(framework.loop_id)
    result_json = result.model_dump_json(indent=2)
    (framework.state_dir / RESULT_FILE_NAME).write_text(result_json + "\n", encoding="utf-8")
    if as_json:
        typer.echo(result_json)
    else:
        console.print(display.result_panel(result, state))
    if result.success and state.config.on_complete == "pr":
        _open_pull_request(framework, state, console, as_json=as_json)
    raise typer.Exit(_exit_code(result))


def _open_pull_request(
    framework: LoopFramework, state: LoopState, console: Console, *, as_json: bool
) -> None:
    """``on_complete = "pr"``: the loop met its conditions, propose it (``loopwright pr``); a
    failure is one line and exit code 1 (2 when nothing was tried), the loop's result stays.
    With ``--json`` what it prints goes to stderr: stdout keeps only the result's JSON."""
    try:
        propose(
            state,
            framework.store.list_events(state.loop_id),
            root=framework.workspace,
            console=Console(stderr=True, highlight=False, soft_wrap=True) if as_json else console,
        )
    except ProposalError as exc:
        fail(
            f'on_complete = "pr": the loop met its conditions but no pull request was opened: {exc} '
            f"(then: `loopwright pr {state.loop_id} -w {framework.workspace}`)",
            exc.exit_code,
        )


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
        from loopwright.engine.stepfunctions_loops import execute_loop
    except ImportError as exc:
        fail(f"--engine stepfunctions needs the dev extra (pip install -e '.[dev]'): {exc}", EXIT_BAD_INPUT)
    console = Console()
    try:
        done = execute_loop(config, root, loop_id, state_machine=state_machine)
    except ConfigError as exc:  # a program missing (preflight): nothing was stored
        fail(str(exc), EXIT_BAD_INPUT)
    except LoopFrameworkError as exc:
        fail(str(exc))
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
    cost_budget_usd: Annotated[float | None, typer.Option(help="Cost budget, US dollars (Cedar).")] = None,
    max_duration: Annotated[int | None, typer.Option(help="Wall-clock limit, seconds (Cedar).")] = None,
    checkpoint_interval: Annotated[int | None, typer.Option(help="Checkpoint every N iterations.")] = None,
    checkpoint_retention: Annotated[int | None, typer.Option(help="Checkpoints kept per loop.")] = None,
    git_isolation: Annotated[
        bool | None,
        typer.Option("--git-isolation/--no-git-isolation", help="Work in a git worktree."),
    ] = None,
    from_head: Annotated[
        bool,
        typer.Option(
            "--from-head",
            help="Start the loop's branch from your last commit (HEAD), without your uncommitted "
            "and untracked files (default: a snapshot of the working tree; config start_from).",
        ),
    ] = False,
    allow_test_changes: Annotated[
        bool,
        typer.Option(
            "--allow-test-changes",
            help="Let the agent change the test files and the test configuration (a goal about "
            "the tests); by default a change to them is reverted and waits for you.",
        ),
    ] = False,
    protected_path: Annotated[
        list[str] | None,
        typer.Option(help="A path or glob the agent may not change, besides the checks' files (repeatable)."),
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
    quiet: QuietOpt = False,
    wait: WaitOpt = True,
) -> None:
    """Start a loop: the agent iterates until the exit conditions hold or a policy stops it."""
    root = workspace_path(workspace)
    if loop_id is not None:
        _refuse_existing(root, check_loop_id(loop_id, "--loop-id"))
    overrides: dict[str, Any] = {
        "goal": goal,
        "max_iterations": max_iterations,
        "token_budget": token_budget,
        "cost_budget_usd": cost_budget_usd,
        "max_duration_seconds": max_duration,
        "checkpoint_interval": checkpoint_interval,
        "checkpoint_retention": checkpoint_retention,
        "git_isolation": git_isolation,
        "start_from": "head" if from_head else None,
        "allow_test_changes": True if allow_test_changes else None,
        "protected_paths": protected_path,
    }
    if condition:
        overrides["exit_conditions"] = _condition_overrides(condition)
    if agent_command and agent_function:
        fail("--agent-command and --agent-function exclude each other; give one", EXIT_BAD_INPUT)
    if agent_command:
        overrides["agent"] = {"kind": "command", "command": agent_command}
    elif agent_function:
        overrides["agent"] = {"kind": "python", "function": agent_function}
    try:
        loop_config, _ = load_config(root, config, overrides)
    except ConfigError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    if loop_config.agent is None:
        fail(
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
        fail("--state-machine: only with --engine stepfunctions", EXIT_BAD_INPUT)
    try:
        agent = build_agent(loop_config, sandbox)  # a bad module:function fails here, before any write
        check_isolation(loop_config)  # bubblewrap asked for but missing: refused before any write
        # A program missing: refused before the store exists (looked up in the project's environment).
        check_programs(loop_config, agent, sandbox, workspace=root, cwd=root, state_dir=state_dir_for(root))
    except ConfigError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    console = Console()
    progress = Progress(console, quiet or as_json)
    framework = LoopFramework(
        loop_config,
        workspace=root,
        loop_id=loop_id,
        observer=progress,
        output_observer=progress.tail,
        agent=agent,
        sandbox=sandbox,
    )
    execute(framework, as_json=as_json, progress=progress, wait=wait)


def _refuse_existing(root: Path, loop_id: str) -> None:
    """Exit 2 when the workspace already has a loop ``loop_id``: ``run`` starts new loops only
    (it would otherwise continue the old one and ignore the new config)."""
    if not (state_dir_for(root) / DB_FILE_NAME).is_file():
        return
    with open_store(state_dir_for(root)) as store:
        try:
            state = store.get_state(loop_id)
        except LoopNotFoundError:
            return
    shown = state.outcome.value if state.outcome else state.phase.value
    fail(
        f"--loop-id: loop {loop_id!r} already exists ({shown}); continue it with "
        f"`loopwright resume {loop_id}`, or choose another --loop-id",
        EXIT_BAD_INPUT,
    )


def resume(
    loop_id: Annotated[str, typer.Argument(help="The loop to continue.")],
    workspace: WorkspaceOpt = Path("."),
    checkpoint: Annotated[
        str | None,
        typer.Option(help="Checkpoint id to resume from (default: the newest valid one)."),
    ] = None,
    accept_policy_change: Annotated[
        bool,
        typer.Option(
            "--accept-policy-change",
            help="The Cedar policy files changed since the loop last ran: continue under the new "
            "ones (recorded as POLICY_SET_CHANGED with your name).",
        ),
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = True,
) -> None:
    """Continue a loop that was interrupted, killed, stopped by a human or paused for one.

    Authorized by Cedar as ResumeLoop (policies/controls.cedar) for the caller: you, or the agent
    of a loop when run from inside one (refused).
    """
    root = workspace_path(workspace)
    store = existing_store(root, loop_id)
    assert store is not None
    caller = local_caller(state_dir_for(root))
    if accept_policy_change and caller.agent_of is not None:
        store.close()
        fail(
            f"--accept-policy-change: {caller.principal} is a loop's agent; only a human operator may "
            "accept changed policies",
            EXIT_POLICY,
        )
    try:
        state = store.get_state(loop_id)
        local_control_service(state_dir_for(root), store).authorize(
            ControlRequest(
                loop_id=loop_id,
                action=ControlAction.RESUME,
                principal=caller.principal,
                groups=caller.groups(state.project),
            ),
            accepting_policy_change=accept_policy_change,
        )
    except LoopNotFoundError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except ControlDeniedError as exc:
        fail(str(exc), EXIT_POLICY)
    finally:
        store.close()
    console = Console()
    progress = Progress(console, quiet or as_json)
    framework = LoopFramework.open(loop_id, workspace=root, observer=progress, output_observer=progress.tail)
    execute(
        framework,
        as_json=as_json,
        resume_from=checkpoint or "latest",
        progress=progress,
        accept_policy_change=caller.principal if accept_policy_change else None,
        wait=wait,
    )
