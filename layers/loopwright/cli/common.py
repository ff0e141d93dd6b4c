"""What every ``loopwright`` command shares: exit codes, options, errors, the workspace's store."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine.local import DB_FILE_NAME, open_store, state_dir_for
from loopwright.models.types import loop_id_problem

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


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]loopwright: error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def existing_store(root: Path, loop_id: str | None) -> SqliteStore | None:
    """The workspace's store, or None (after saying so) when it has none; never creates one.
    A ``loop_id`` that is not a loop id exits 2 first."""
    if loop_id is not None:
        check_loop_id(loop_id)
    if (state_dir_for(root) / DB_FILE_NAME).is_file():
        return open_store(state_dir_for(root))
    if loop_id is not None:
        fail(
            f"no loop {loop_id!r}: {root} has no loopwright state (run `loopwright run` first)",
            EXIT_BAD_INPUT,
        )
    return None


def workspace_path(workspace: Path) -> Path:
    if not workspace.is_dir():
        fail(f"--workspace: {workspace} is not a folder", EXIT_BAD_INPUT)
    return workspace.resolve()


def first_error(exc: ValidationError, flags: dict[str, str]) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    flag = flags.get(field, "--" + field.replace("_", "-")) if field else "limits"
    return f"{flag}: {error['msg']}"


def check_loop_id(loop_id: str, field: str = "LOOP_ID") -> str:
    """``loop_id`` when it is a loop id; else exit 2 naming ``field`` (nothing is opened)."""
    problem = loop_id_problem(loop_id, field)
    if problem is not None:
        fail(problem, EXIT_BAD_INPUT)
    return loop_id


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (``kill``, a closed terminal, a supervisor stopping the job) end the run
    like Ctrl-C: the engine ends the agent's processes, keeps its partial work on a salvage ref
    and records the loop as INTERRUPTED, so ``loopwright resume`` continues it. Further signals
    are ignored while that clean-up runs; the previous handlers come back afterwards."""
    signals = (signal.SIGTERM, signal.SIGHUP)

    def interrupt(signum: int, frame: object) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
