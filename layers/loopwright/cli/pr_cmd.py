"""``loopwright pr LOOP_ID``: push a finished loop's branch and open its pull request (issue 15).

The body is made from the loop's records (:mod:`loopwright.pull_request`); the push and ``gh``
are :mod:`loopwright.adapters.local.pull_request`. Without ``gh`` on ``PATH`` (or with
``--dry-run``) nothing is pushed: the body and the two commands to run are printed instead.
``on_complete = "pr"`` in the config runs the same after ``run``/``resume`` (:func:`propose`).

Errors (one line each, nothing pushed): an unknown loop, a loop that did not meet its conditions,
one without a branch or without changes, no base branch, no such remote: exit 2; the push or
``gh`` failing: exit 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from loopwright.adapters.local.git_cli import GitCli
from loopwright.adapters.local.pull_request import (
    check_remote,
    current_branch,
    evidence_for,
    manual_commands,
    open_pull_request,
    write_body,
)
from loopwright.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    JsonOpt,
    WorkspaceOpt,
    existing_store,
    fail,
    workspace_path,
)
from loopwright.engine.local import state_dir_for
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError, PullRequestError
from loopwright.models import LoopState
from loopwright.models.state import IterationEvent
from loopwright.pull_request import compose_pull_request, pull_request_problem


class ProposalError(Exception):
    """A pull request was not opened: ``message`` (one line) and the CLI ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def propose(
    state: LoopState,
    events: list[IterationEvent],
    *,
    root: Path,
    console: Console,
    base: str | None = None,
    remote: str = "origin",
    draft_pr: bool = False,
    dry_run: bool = False,
    as_json: bool = False,
) -> None:
    """Open the loop's pull request, or print its body and the commands (``dry_run``, or no
    ``gh`` on ``PATH``). ``base`` defaults to the branch checked out in ``root``.

    Raises:
        ProposalError: exit code 2 when nothing was tried (the loop does not qualify, no base,
            no such remote), 1 when git or ``gh`` failed.
    """
    problem = pull_request_problem(state)
    if problem is not None:
        raise ProposalError(problem, EXIT_BAD_INPUT)
    state_dir = state_dir_for(root)
    git = GitCli(state_dir)
    try:
        base = base or current_branch(git, root)
        if base is None:
            raise ProposalError(
                "--base: the workspace is on a detached HEAD, so there is no branch to propose "
                "into; name one with --base BRANCH",
                EXIT_BAD_INPUT,
            )
        code, _, _ = git.run(["check-ref-format", "--branch", base], cwd=root, check=False)
        if code != 0 or base.startswith("-"):
            raise ProposalError(f"--base: {base!r} is not a valid branch name", EXIT_BAD_INPUT)
        if base == state.branch:
            raise ProposalError(
                f"--base: {base!r} is the loop's own branch; name the branch the pull request goes into",
                EXIT_BAD_INPUT,
            )
        draft = compose_pull_request(
            state, events, base=base, evidence=evidence_for(state_dir, state.loop_id)
        )
        gh = shutil.which("gh")
        if dry_run or gh is None:
            try:
                check_remote(git, root, remote)
                missing_remote = None
            except PullRequestError as exc:
                missing_remote = str(exc)
            body_file = write_body(state_dir, draft)
            commands = manual_commands(draft, body_file, remote, draft_pr=draft_pr)
            why = "--dry-run" if dry_run else "gh (GitHub's CLI) is not on PATH"
            if as_json:
                shown = {"opened": False, "reason": why, "title": draft.title, "body": draft.body}
                shown |= {"body_file": str(body_file), "commands": commands, "remote_problem": missing_remote}
                typer.echo(json.dumps(shown, indent=2))
                return
            console.print(f"[bold]{escape(draft.title)}[/]")
            console.print(draft.body, markup=False)
            console.print(f"nothing pushed ({why}); the body is in {body_file}; to open it:")
            if missing_remote:
                console.print(f"[yellow]first:[/] {escape(missing_remote)}")
            for command in commands:
                console.print(f"  {escape(command)}")
            return
        url = open_pull_request(
            draft, root=root, state_dir=state_dir, remote=remote, draft_pr=draft_pr, gh=gh
        )
    except PullRequestError as exc:
        raise ProposalError(str(exc), EXIT_BAD_INPUT if exc.bad_input else EXIT_ERROR) from exc
    except LoopFrameworkError as exc:  # git could not run at all
        raise ProposalError(str(exc), EXIT_ERROR) from exc
    if as_json:
        typer.echo(json.dumps({"opened": True, "url": url, "branch": draft.branch, "base": draft.base}))
    else:
        console.print(f"pull request for {draft.branch} into {draft.base}: {escape(url)}")


def pr(
    loop_id: Annotated[str, typer.Argument(help="A loop that met its exit conditions.")],
    workspace: WorkspaceOpt = Path("."),
    base: Annotated[
        str | None, typer.Option(help="The branch to merge into (default: the one checked out).")
    ] = None,
    remote: Annotated[str, typer.Option(help="The git remote to push the loop's branch to.")] = "origin",
    draft: Annotated[bool, typer.Option("--draft", help="Open it as a draft pull request.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Push nothing: print the body and the commands.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Push a finished loop's branch and open a pull request whose body is its evidence."""
    root = workspace_path(workspace)
    store = existing_store(root, loop_id)
    assert store is not None
    with store:
        try:
            state = store.get_state(loop_id)
        except LoopNotFoundError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        events = store.list_events(loop_id)
    try:
        propose(
            state,
            events,
            root=root,
            console=Console(highlight=False, soft_wrap=True),
            base=base,
            remote=remote,
            draft_pr=draft,
            dry_run=dry_run,
            as_json=as_json,
        )
    except ProposalError as exc:
        fail(str(exc), exc.exit_code)
