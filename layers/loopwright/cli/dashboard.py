"""``loopwright dashboard``: the dashboard's API and web page on localhost, over the local store.

Registered in :mod:`loopwright.cli.app` with ``app.command()(dashboard)``.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from loopwright.cli.common import interrupt_on_signals
from loopwright.engine.local import state_dir_for
from loopwright.exceptions import ConfigError, LoopFrameworkError

EXIT_ERROR, EXIT_BAD_INPUT = 1, 2


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]loopwright: error:[/] {message}", highlight=False)
    raise typer.Exit(code)


#: Environment variable holding the access token of a dashboard on a non-loopback address.
TOKEN_ENV = "LOOPWRIGHT_DASHBOARD_TOKEN"


def dashboard(
    workspace: Annotated[
        Path,
        typer.Option("--workspace", "-w", help="The repository whose loops to show.", file_okay=False),
    ] = Path("."),
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the local store (default: <workspace>/.loopwright).", file_okay=False),
    ] = None,
    host: Annotated[
        str,
        typer.Option(help="Interface to listen on (loopback by default; any other needs the access token)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).", min=0, max=65535)] = 8765,
    user: Annotated[
        str | None, typer.Option(help='Who you are to Cedar, User::"NAME" (default: the OS user).')
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help=f"File holding the access token (else ${TOKEN_ENV}, else a random one is printed).",
            dir_okay=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request.")] = False,
) -> None:
    r"""Serve the dashboard (loops, progress, events, checkpoints, controls, plans) on localhost.

    Controls and plan changes are authorized by Cedar (policies/controls.cedar, plans.cedar):
    operators of a project are listed in <state-dir>/operators.toml as
    `\[projects.NAME] operators = ["alice"]`; without that file you operate every project. The
    X-Loopwright-User header acts as another user, on a loopback address only.
    On any other --host, every request needs the access token (--token-file, $LOOPWRIGHT_DASHBOARD_TOKEN
    or a random one, printed once in the URL to open). Loops resumed from the page run in this
    process; closing it pauses them.
    """
    # Imported here: `loopwright --help` and the other commands never load the web stack.
    from loopwright.cli.dashboard_local import local_dashboard
    from loopwright.dashboard.api import build_app
    from loopwright.dashboard.identity import IMPERSONATION_HEADER, OPERATORS_FILE_NAME, default_user
    from loopwright.dashboard.server import DashboardServer, check_token, is_loopback, new_token

    if not workspace.is_dir():
        _fail(f"--workspace: {workspace} is not a folder", EXIT_BAD_INPUT)
    folder = (state_dir or state_dir_for(workspace.resolve())).resolve()
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    loopback = is_loopback(host)
    token, token_source = None, ""
    try:
        if token_file is not None:
            token, token_source = check_token(_read(token_file), f"--token-file {token_file}"), "--token-file"
        elif os.environ.get(TOKEN_ENV):
            token, token_source = check_token(os.environ[TOKEN_ENV], f"${TOKEN_ENV}"), f"${TOKEN_ENV}"
        elif not loopback:
            token, token_source = new_token(), ""
    except LoopFrameworkError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)

    def log(line: str) -> None:
        console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {line}", markup=True)

    try:
        local = local_dashboard(
            folder,
            user=user or default_user(),
            log=log,
            workspace=workspace.resolve(),
            allow_impersonation=loopback,
        )
    except LoopFrameworkError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    try:
        server = DashboardServer(
            build_app(local.deps, routers=local.routers),
            host,
            port,
            log=log if verbose else None,
            token=token,
        )
    except OSError as exc:
        local.close()
        _fail(f"--host/--port: cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_BAD_INPUT)
    operators = local.identity.operators_path
    rule = (
        f"operators per project from {operators}"
        if operators.is_file()
        else f"no {OPERATORS_FILE_NAME}: {local.identity.user} operates every project"
    )
    console.print(f"loopwright dashboard on [bold]{server.url}[/]", markup=True)
    if token is not None:
        value = token if not token_source else f"<the token of {token_source}>"
        link = f"{_open_url(host, server.server_address[1])}?token={value}"
        console.print(f"  open    {link}  (sets a cookie; the token is shown only here)")
        console.print(
            "  access  every request needs the token: that cookie, or Authorization: Bearer <token>"
        )
    console.print(f"  store   {folder}")
    console.print(f'  user    User::"{local.identity.user}" ({rule})')
    if loopback:
        console.print(f"  others  send header {IMPERSONATION_HEADER}: NAME to act as another user")
    else:
        console.print(f"  others  not on {host}: {IMPERSONATION_HEADER} is refused (loopback only)")
    console.print("  loops resumed from the page run in this process; Ctrl-C pauses them and quits")
    try:
        with interrupt_on_signals():  # SIGTERM (kill, systemd, a test harness) closes it like Ctrl-C
            server.serve_forever()
    except KeyboardInterrupt:
        console.print("closing: pausing the loops this dashboard runs")
    finally:
        server.server_close()
        local.close()


def _read(path: Path) -> str:
    """The text of ``path``; :class:`ConfigError` naming it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--token-file {path}: cannot read: {exc}") from exc


def _open_url(host: str, port: int) -> str:
    """The URL to open in a browser: the machine's name for an unspecified address (0.0.0.0, ::)."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
