"""The control commands: ``stop``, ``pause``, ``approve`` and ``limits`` (issue 4); ``rollback``
and ``fork`` (time travel, issue 10; docs/time-travel.md).

Each is a :class:`~loopwright.models.ControlRequest` authorized by Cedar before anything is
written (:mod:`loopwright.controls`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from loopwright.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_POLICY,
    JsonOpt,
    WorkspaceOpt,
    existing_store,
    fail,
    first_error,
    workspace_path,
)
from loopwright.cli.run import Progress, execute
from loopwright.controls import Resumer
from loopwright.engine.framework import LoopFramework
from loopwright.engine.local import state_dir_for
from loopwright.engine.local_controls import local_caller, local_control_service
from loopwright.engine.lock import LoopLock
from loopwright.exceptions import ControlConflictError, ControlDeniedError, LoopNotFoundError
from loopwright.models import ControlAction, ControlRequest, LimitChange, LoopState


def stop(
    loop_id: Annotated[str, typer.Argument(help="The loop to stop.")],
    workspace: WorkspaceOpt = Path("."),
    reason: Annotated[str, typer.Option(help="Recorded with the stop.")] = "stopped from the CLI",
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="End the running agent or exit condition at once (its partial work is kept on a "
            "ref) instead of after the current step.",
        ),
    ] = False,
) -> None:
    """Stop a loop: a running one after its current step (with --now at once), an idle one at
    once (resumable later)."""
    _control(workspace, loop_id, ControlAction.STOP, reason=reason, now=now)


def pause(
    loop_id: Annotated[str, typer.Argument(help="The loop to pause.")],
    workspace: WorkspaceOpt = Path("."),
    reason: Annotated[str, typer.Option(help="Recorded with the pause.")] = "paused from the CLI",
) -> None:
    """Pause a running loop after its current step (phase PAUSED; `loopwright resume` continues it)."""
    _control(workspace, loop_id, ControlAction.PAUSE, reason=reason)


def approve(
    loop_id: Annotated[str, typer.Argument(help="The loop waiting for an answer (AWAITING_RESPONSE).")],
    workspace: WorkspaceOpt = Path("."),
    response: Annotated[
        str | None, typer.Option(help="Your answer to the agent's question (default: 'approved').")
    ] = None,
    accept_pinned_change: Annotated[
        bool,
        typer.Option(
            "--accept-pinned-change",
            help="Accept the reverted change to pinned files (tests, check configuration) the "
            "loop waits on: the branch takes it and the pin moves. Without it the change stays "
            "reverted.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Answer the agent's question (or decide on a change to pinned files) and continue the loop
    in this terminal."""
    root = workspace_path(workspace)

    def run_here(state: LoopState, request: ControlRequest) -> None:
        progress = Progress(Console(), quiet or as_json)
        framework = LoopFramework.open(state.loop_id, workspace=root, observer=progress)
        execute(framework, as_json=as_json, progress=progress)

    _control(
        root,
        loop_id,
        ControlAction.APPROVE,
        response=response,
        accept_pinned_change=accept_pinned_change,
        resumer=run_here,
    )


def limits(
    loop_id: Annotated[str, typer.Argument(help="The loop whose limits change.")],
    workspace: WorkspaceOpt = Path("."),
    max_iterations: Annotated[int | None, typer.Option(help="New iteration limit.")] = None,
    token_budget: Annotated[int | None, typer.Option(help="New token budget (tokens).")] = None,
    cost_budget_usd: Annotated[float | None, typer.Option(help="New cost budget (US dollars).")] = None,
    max_duration: Annotated[
        int | None, typer.Option("--max-duration", help="New wall-clock limit (seconds from the start).")
    ] = None,
    max_sessions: Annotated[int | None, typer.Option(help="New agent session limit.")] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the change.")] = "",
) -> None:
    """Raise (or change) a loop's limits; a running loop applies them before its next iteration."""
    try:
        change = LimitChange(
            max_iterations=max_iterations,
            token_budget=token_budget,
            cost_budget_usd=cost_budget_usd,
            max_duration_seconds=max_duration,
            max_sessions=max_sessions,
        )
    except ValidationError as exc:
        fail(first_error(exc, {"max_duration_seconds": "--max-duration"}), EXIT_BAD_INPUT)
    _control(workspace, loop_id, ControlAction.RAISE_LIMIT, reason=reason, limits=change)


def rollback(
    loop_id: Annotated[str, typer.Argument(help="The loop to roll back (not running).")],
    to: Annotated[
        int,
        typer.Option(
            "--to", min=0, help="Iteration of the checkpoint to go back to (see CHECKPOINT_SAVED events)."
        ),
    ],
    workspace: WorkspaceOpt = Path("."),
    reason: Annotated[str, typer.Option(help="Recorded with the rollback.")] = "",
) -> None:
    """Reset an idle loop to its checkpoint of iteration N: its state and its branch head (later
    commits stay on refs/loopwright/<loop>/set-aside/rollback-N); `loopwright resume` continues it."""
    _control(workspace, loop_id, ControlAction.ROLLBACK, iteration=to, reason=reason)


def fork(
    loop_id: Annotated[str, typer.Argument(help="The loop to fork from.")],
    from_: Annotated[
        int, typer.Option("--from", min=0, help="Iteration of the checkpoint the new loop starts from.")
    ],
    workspace: WorkspaceOpt = Path("."),
    goal: Annotated[str | None, typer.Option(help="The new loop's goal (default: the parent's).")] = None,
    new_loop_id: Annotated[
        str | None, typer.Option("--loop-id", help="Id for the new loop (default: generated).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the fork.")] = "",
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Start a new loop on a new branch from the loop's checkpoint of iteration N, recording its
    parent; it runs in this terminal like `loopwright run`."""
    root = workspace_path(workspace)

    def run_here(state: LoopState, request: ControlRequest) -> None:
        typer.echo(
            f"fork applied for {loop_id}: loop {state.loop_id} starts from iteration "
            f"{state.forked_from_iteration} on branch {state.branch}",
            err=as_json,
        )
        progress = Progress(Console(), quiet or as_json)
        framework = LoopFramework.open(state.loop_id, workspace=root, observer=progress)
        execute(framework, as_json=as_json, progress=progress)

    _control(
        root,
        loop_id,
        ControlAction.FORK,
        resumer=run_here,
        iteration=from_,
        goal=goal,
        new_loop_id=new_loop_id,
        reason=reason,
    )


def _control(
    workspace: Path,
    loop_id: str,
    action: ControlAction,
    *,
    resumer: Resumer | None = None,
    **fields: Any,
) -> None:
    """Submit one control as the caller (the local user, or the agent of the loop whose process
    runs this command: see :func:`local_caller`); print what became of it. Exit 2 when it does not
    apply or the loop is unknown, 3 when Cedar refuses it; nothing is written then."""
    root = workspace_path(workspace)
    store = existing_store(root, loop_id)
    assert store is not None
    service = local_control_service(state_dir_for(root), store, resumer=resumer)
    caller = local_caller(state_dir_for(root))
    try:
        state = store.get_state(loop_id)
        request = ControlRequest(
            loop_id=loop_id,
            action=action,
            principal=caller.principal,
            groups=caller.groups(state.project),
            **fields,
        )
        result = service.submit(request)
    except ValidationError as exc:
        fail(first_error(exc, {"new_loop_id": "--loop-id", "goal": "--goal"}), EXIT_BAD_INPUT)
    except LoopNotFoundError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except ControlDeniedError as exc:
        fail(str(exc), EXIT_POLICY)
    except ControlConflictError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    running = LoopLock(state_dir_for(root), loop_id).holder() if result.status == "queued" else None
    where = f" (process {running} runs it)" if running else ""
    typer.echo(f"{action.value.lower()} {result.status} for {loop_id}: {result.message}{where}")
