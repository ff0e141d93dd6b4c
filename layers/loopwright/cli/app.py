"""The ``loopwright`` command line (Typer + Rich).

Commands: ``run``, ``status``, ``events``, ``resume``, ``stop``, ``pause``, ``approve``, ``limits``,
``rollback``, ``fork``, ``dashboard``, ``logs``, ``show``, ``plan ...``, ``evidence ...``, ``init``,
``clean`` and ``pr``;
``loopwright --version`` prints the installed version.
Every command takes
``--workspace`` (default: the current folder; local state lives in ``<workspace>/.loopwright``)
and ``--json`` for machine-readable output.

Exit codes: 0 the loop met its conditions (or the command succeeded); 1 an error; 2 bad input, or
a control that does not apply to the loop now (nothing was written); 3 a policy stopped the loop
(iteration, token or time limit) or refused a control; 4 a human stopped it; 5 it waits for a
human (AWAITING_RESPONSE); 6 it is paused (PAUSED: by a human, or until a usage limit resets).
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated

import typer
from rich.console import Console

from loopwright.cli.clean_cmd import clean
from loopwright.cli.common import EXIT_ERROR
from loopwright.cli.controls import approve, fork, limits, pause, rollback, stop
from loopwright.cli.dashboard import dashboard
from loopwright.cli.evidence_cmd import evidence_app
from loopwright.cli.init_cmd import init
from loopwright.cli.inspect_cmds import events, status
from loopwright.cli.plan import plan_app
from loopwright.cli.pr_cmd import pr
from loopwright.cli.records import logs, show
from loopwright.cli.run import resume, run
from loopwright.exceptions import LoopFrameworkError

app = typer.Typer(
    name="loopwright",
    help="Governed autonomous loops for AI coding agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(plan_app, name="plan")
# The signed evidence bundle of a completed loop (issue 15).
app.add_typer(evidence_app, name="evidence")
for command in (run, status, events, resume, stop, pause, approve, limits, rollback, fork, dashboard):
    app.command()(command)
# The agent's record of each iteration (issue 9).
app.command()(logs)
app.command()(show)

# Setting up and tidying a project (issue 9).
app.command()(init)
app.command()(clean)

# A finished loop's pull request (issue 15).
app.command()(pr)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"loopwright {metadata.version('loopwright')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print loopwright's version and exit."
        ),
    ] = False,
) -> None:
    """Governed autonomous loops for AI coding agents."""


def main() -> None:
    """Entry point of the ``loopwright`` script."""
    try:
        app()
    except LoopFrameworkError as exc:  # anything a command did not map itself
        Console(stderr=True, soft_wrap=True).print(f"[bold red]loopwright: error:[/] {exc}", highlight=False)
        sys.exit(EXIT_ERROR)
