"""``loopwright clean``: remove the worktrees (and, when asked, the branches) of ended loops.

A loop's worktree is ``<workspace>/.loopwright/worktrees/<loop_id>`` on branch
``loopwright/<loop_id>`` (:mod:`loopwright.adapters.local.git_workspace`). Which loops are cleaned:

- never one that runs now: its loop lock (:mod:`loopwright.engine.lock`) is held by a process.
  Each loop's lock is taken while its worktree is removed, so a resume cannot start under it;
- an ended loop (phase COMPLETED), and a worktree or branch no stored loop owns;
- a loop that can still go on (PAUSED, INTERRUPTED, AWAITING_RESPONSE, or stopped mid-step by a
  crash) only with ``--include-paused``.

The loop's record (status, events, checkpoints) stays; its salvage refs
(``refs/loopwright/<loop_id>/...``) too. A loop resumed after its worktree was removed gets a new
one from its branch; after ``--branches``, the branch's commits are gone unless merged. The
workspace lock is held throughout, so no loop is being created meanwhile.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loopwright.adapters.local.git_cli import GitCli
from loopwright.adapters.local.git_workspace import BRANCH_PREFIX, GitWorktreeWorkspace
from loopwright.cli.common import EXIT_ERROR, JsonOpt, WorkspaceOpt, existing_store, workspace_path
from loopwright.engine.local import state_dir_for
from loopwright.engine.lock import LoopLock, workspace_lock
from loopwright.exceptions import LoopAlreadyRunningError, LoopNotFoundError, WorkspaceError
from loopwright.models import LoopPhase, LoopState
from loopwright.models.types import is_loop_id
from loopwright.ports import LoopStore


@dataclass
class CleanItem:
    """What ``clean`` found for one loop, and what it did (or would do, with ``--dry-run``)."""

    loop_id: str
    status: str  # "COMPLETED ITERATION_LIMIT", "PAUSED", "running", "no record"...
    worktree: Path | None  # the worktree folder, when it exists
    branch: str | None  # the loop's branch, when it exists and --branches was given
    action: str = "kept"  # "removed", "would remove", "kept", "failed"
    reason: str = ""
    removed: list[str] = field(default_factory=list)


def clean(
    workspace: WorkspaceOpt = Path("."),
    branches: Annotated[
        bool, typer.Option("--branches", help="Also delete the loops' loopwright/<loop_id> branches.")
    ] = False,
    include_paused: Annotated[
        bool,
        typer.Option(
            "--include-paused",
            help="Also clean loops that could still be resumed (paused, interrupted, awaiting a human).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove the worktrees of ended loops (and their branches with --branches); never a running loop's."""
    root = workspace_path(workspace)
    state_dir = state_dir_for(root)
    console = Console(soft_wrap=True)
    if not state_dir.is_dir():
        typer.echo("[]") if as_json else console.print(f"nothing to clean: {root} has no loopwright state")
        return
    store = existing_store(root, None)
    with workspace_lock(state_dir):
        items = plan_clean(root, store, branches=branches, include_paused=include_paused)
        for item in items:
            if item.action == "remove":
                _apply(root, item, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps([asdict(item) for item in items], indent=2, default=str))
    else:
        _print(console, items, dry_run=dry_run)
    if any(item.action == "failed" for item in items):
        raise typer.Exit(EXIT_ERROR)


def plan_clean(
    root: Path, store: LoopStore | None, *, branches: bool, include_paused: bool
) -> list[CleanItem]:
    """One item per loop that has a worktree folder (or, with ``branches``, a branch) in ``root``,
    sorted by loop id, with ``action`` "remove" or "kept" and why."""
    state_dir = state_dir_for(root)
    folders = state_dir / "worktrees"
    worktrees = (
        {p.name: p for p in folders.iterdir() if p.is_dir() and is_loop_id(p.name)}
        if folders.is_dir()
        else {}
    )
    found = _loop_branches(root, state_dir) if branches else set()
    items = []
    for loop_id in sorted(set(worktrees) | found):
        item = CleanItem(
            loop_id=loop_id,
            status="",
            worktree=worktrees.get(loop_id),
            branch=BRANCH_PREFIX + loop_id if loop_id in found else None,
        )
        item.status, item.action, item.reason = _decide(state_dir, store, loop_id, include_paused)
        items.append(item)
    return items


def _decide(
    state_dir: Path, store: LoopStore | None, loop_id: str, include_paused: bool
) -> tuple[str, str, str]:
    """(status shown, "remove" or "kept", reason when kept)."""
    holder = LoopLock(state_dir, loop_id).holder()
    if holder is not None:
        return "running", "kept", f"process {holder} runs it" if holder > 0 else "a process runs it"
    state = _state(store, loop_id)
    if state is None:
        return "no record", "remove", ""
    if state.phase is LoopPhase.COMPLETED:
        outcome = state.outcome.value if state.outcome else ""
        return f"{state.phase.value} {outcome}".strip(), "remove", ""
    shown = (
        state.phase.value
        if state.phase in _RESUMABLE
        else f"{LoopPhase.INTERRUPTED.value} (was {state.phase.value})"
    )
    if include_paused:
        return shown, "remove", ""
    return shown, "kept", f"it can be resumed (`loopwright resume {loop_id}`); --include-paused cleans it"


_RESUMABLE = (LoopPhase.PAUSED, LoopPhase.INTERRUPTED, LoopPhase.AWAITING_RESPONSE)


def _state(store: LoopStore | None, loop_id: str) -> LoopState | None:
    if store is None:
        return None
    try:
        return store.get_state(loop_id)
    except LoopNotFoundError:
        return None


def _loop_branches(root: Path, state_dir: Path) -> set[str]:
    """Loop ids of the ``loopwright/<loop_id>`` branches of ``root``'s repository (none when it is
    not a git repository)."""
    git = GitCli(state_dir)
    code, out, _ = git.run(
        ["for-each-ref", "--format=%(refname)", f"refs/heads/{BRANCH_PREFIX}"], cwd=root, check=False
    )
    if code != 0:
        return set()
    prefix = f"refs/heads/{BRANCH_PREFIX}"
    names = (line.strip().removeprefix(prefix) for line in out.splitlines() if line.startswith(prefix))
    return {name for name in names if is_loop_id(name)}


def _apply(root: Path, item: CleanItem, *, dry_run: bool) -> None:
    """Remove the item's worktree and branch under its loop lock; record what was done."""
    targets = [f"worktree {item.worktree}"] if item.worktree else []
    targets += [f"branch {item.branch}"] if item.branch else []
    if dry_run:
        item.action, item.removed = "would remove", targets
        return
    state_dir = state_dir_for(root)
    lock = LoopLock(state_dir, item.loop_id)
    try:
        lock.acquire()
    except LoopAlreadyRunningError as exc:  # a resume started since the plan was made
        item.status, item.action, item.reason = "running", "kept", str(exc)
        return
    workspace = GitWorktreeWorkspace(root, state_dir)
    try:
        if item.worktree is not None:
            workspace.remove(item.loop_id)
            if item.worktree.exists():  # not a git worktree any more (its .git was removed): files only
                shutil.rmtree(item.worktree)
            item.removed.append(targets[0])
        if item.branch is not None and workspace.delete_branch(item.loop_id):
            item.removed.append(f"branch {item.branch}")
        item.action = "removed"
    except (WorkspaceError, OSError) as exc:
        item.action, item.reason = "failed", str(exc)
    finally:
        lock.release()


def _print(console: Console, items: list[CleanItem], *, dry_run: bool) -> None:
    if not items:
        console.print("nothing to clean: no loop has a worktree here (or a branch, with --branches)")
        return
    for item in items:
        line = f"{item.loop_id} ({item.status}): "
        if item.action in ("removed", "would remove"):
            line += f"{item.action} " + (", ".join(item.removed) or "nothing")
        else:
            line += f"{item.action}: {item.reason}"
        console.print(line, highlight=False)
    done = sum(item.action in ("removed", "would remove") for item in items)
    verb = "would be cleaned (dry run: nothing changed)" if dry_run else "cleaned"
    console.print(f"{done} of {len(items)} loop(s) {verb}", highlight=False)
