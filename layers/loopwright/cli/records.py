"""``loopwright logs`` and ``loopwright show``: the agent's record of an iteration (issue 9).

``logs LOOP_ID [--iteration N] [--follow]`` prints what the agent wrote (stdout and stderr as one
stream, as kept: the first 16 Ki and last 256 Ki characters, see
:mod:`loopwright.models.records`); ``--follow`` keeps printing while the loop runs, moving on to
each new iteration, and ends when no process runs the loop (or, with ``--iteration``, when that
iteration's agent is done). The engine rewrites a working agent's record every 2 seconds, so
followed output arrives in steps of about that much.

``show LOOP_ID [--iteration N]`` prints the whole record: prompt, usage, exit code, duration,
commit and its diff stat, each condition's status and output tail, the last lines of the agent's
output. Both default to the newest iteration. Text is cleaned for the terminal (escape sequences
and control characters removed, see :func:`loopwright.cli.agent_tail.clean_text`).

Errors (one line, exit 2, like ``status`` and ``events``): an unknown loop, an iteration without
a record, a loop without records yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cli import display
from loopwright.cli.agent_tail import clean_text
from loopwright.cli.common import EXIT_BAD_INPUT, JsonOpt, WorkspaceOpt, existing_store, fail, workspace_path
from loopwright.engine.local import state_dir_for
from loopwright.engine.lock import LoopLock
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models.records import IterationRecord
from loopwright.ports import LoopStore

#: Seconds between two reads of the record while following.
FOLLOW_POLL_SECONDS = 0.5
#: Lines of a condition's output and of the agent's output that ``show`` prints.
SHOW_TAIL_LINES = 20

IterationOpt = Annotated[
    int | None, typer.Option("--iteration", "-i", min=1, help="The iteration (default: the newest).")
]


def _open(root: Path, loop_id: str) -> SqliteStore:
    store = existing_store(root, loop_id)
    assert store is not None
    try:
        store.get_state(loop_id)
    except LoopNotFoundError as exc:
        store.close()
        fail(str(exc), EXIT_BAD_INPUT)
    return store


def _record(store: LoopStore, loop_id: str, iteration: int | None) -> IterationRecord:
    """The record asked for; exit 2 with one line when there is none."""
    summaries = store.list_iteration_records(loop_id)
    if iteration is None:
        if not summaries:
            fail(
                f"loop {loop_id!r} has no iteration record yet (its agent has not run, or ran "
                "before loopwright kept records)",
                EXIT_BAD_INPUT,
            )
        iteration = summaries[-1].iteration
    record = store.get_iteration_record(loop_id, iteration)
    if record is None:
        kept = ", ".join(str(s.iteration) for s in summaries[-20:]) or "none"
        fail(
            f"--iteration: loop {loop_id!r} has no record of iteration {iteration} (records: {kept})",
            EXIT_BAD_INPUT,
        )
    return record


def logs(
    loop_id: Annotated[str, typer.Argument(help="The loop.")],
    workspace: WorkspaceOpt = Path("."),
    iteration: IterationOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the loop ends.")
    ] = False,
) -> None:
    """Print the agent's output of an iteration (stdout and stderr, as kept)."""
    root = workspace_path(workspace)
    store = _open(root, loop_id)
    lock = LoopLock(state_dir_for(root), loop_id)
    with store:
        try:
            if not follow or lock.holder() is None:  # an ended loop: what is stored
                typer.echo(clean_text(_record(store, loop_id, iteration).output.text()), nl=False)
                return
            follow_output(
                store,
                loop_id,
                iteration,
                running=lambda: lock.holder() is not None,
                write=lambda text: typer.echo(text, nl=False),
            )
        except LoopFrameworkError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def follow_output(
    store: LoopStore,
    loop_id: str,
    iteration: int | None,
    *,
    running: Callable[[], bool],
    write: Callable[[str], None],
    poll_seconds: float = FOLLOW_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print the output of ``iteration`` (None: the newest, then each newer one, with a header
    line) as its record grows, until ``running()`` says no process runs the loop (or the given
    iteration's agent is done); what was stored by then is printed first."""
    current, seen, newest = iteration, 0, None
    while True:
        alive = running()  # asked before reading, so the last read sees all the loop stored
        if current is None or iteration is None:
            summaries = store.list_iteration_records(loop_id)
            newest = summaries[-1].iteration if summaries else None
        record = store.get_iteration_record(loop_id, current) if current is not None else None
        if record is not None:
            write(clean_text(record.output.since(seen)))
            seen = record.output.total_chars
            if iteration is not None and not record.agent_running:
                return
        if iteration is None and newest is not None and newest != current:
            current, seen = newest, 0  # a newer iteration started: the older one's agent is done
            write(f"--- iteration {current} ---\n")
            continue
        if not alive:
            return
        sleep(poll_seconds)


def show(
    loop_id: Annotated[str, typer.Argument(help="The loop.")],
    workspace: WorkspaceOpt = Path("."),
    iteration: IterationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the whole record of an iteration: prompt, usage, diff stat, commit, conditions."""
    root = workspace_path(workspace)
    with _open(root, loop_id) as store:
        try:
            record = _record(store, loop_id, iteration)
        except LoopFrameworkError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    print_record(Console(highlight=False, soft_wrap=True), record)


def _last_lines(text: str, count: int = SHOW_TAIL_LINES) -> str:
    lines = clean_text(text).rstrip("\n").split("\n")
    return "\n".join(lines[-count:])


def print_record(console: Console, record: IterationRecord) -> None:
    """The record, section by section (Rich markup in the labels only; texts escaped)."""
    state = "agent working" if record.agent_running else ("agent failed" if record.failed else "agent done")
    took = display.format_duration(record.duration_seconds) if record.duration_seconds is not None else "-"
    console.print(
        f"[bold]{record.loop_id}[/] · iteration {record.iteration} · {state} · started "
        f"{record.started_at:%Y-%m-%d %H:%M:%S} UTC · {took}"
    )
    usage = record.usage
    if usage is not None:
        cost = f"${usage.cost_usd:.4f}" if usage.cost_usd is not None else "cost not reported"
        console.print(
            f"usage: {usage.tokens_used} tokens (input {usage.input_tokens}, cached "
            f"{usage.cached_input_tokens}, output {usage.output_tokens}) · {cost}"
            f" · model {escape(usage.model or '-')} · session {escape(usage.session_id or '-')}"
        )
    exit_code = "-" if record.exit_code is None else str(record.exit_code)
    changes = str(record.diff_stat) if record.diff_stat else "no diff stat"
    console.print(f"exit code {exit_code} · commit {record.commit or '(nothing committed)'} · {changes}")
    if record.summary:
        console.print(f"summary: {escape(clean_text(record.summary))}")
    console.rule("prompt", align="left")
    console.print(escape(clean_text(record.prompt).rstrip("\n")))
    evaluated = f"evaluated {record.evaluated_at:%H:%M:%S} UTC" if record.evaluated_at else "not evaluated"
    console.rule(f"conditions ({evaluated})", align="left")
    for condition in record.conditions:
        code = "-" if condition.exit_code is None else str(condition.exit_code)
        console.print(
            f"[bold]{escape(condition.name)}[/] {condition.status.value} · exit code {code} · "
            f"{condition.duration_seconds:.1f}s · {escape(condition.summary)}"
        )
        for label, text in (("stdout", condition.stdout_tail), ("stderr", condition.stderr_tail)):
            if text.strip():
                console.print(f"  [dim]{label} (last lines):[/]")
                console.print(escape(_last_lines(text)), style="dim")
    output = record.output
    console.rule(f"agent output ({output.total_chars} characters)", align="left")
    console.print(f"[dim]all of it: loopwright logs {record.loop_id} --iteration {record.iteration}[/]")
    if output.total_chars:
        console.print(escape(_last_lines(output.text())))
