"""Push a loop's branch and open its pull request with GitHub's CLI, ``gh`` (issue 15, part 4).

:func:`open_pull_request` pushes exactly the commit whose evaluation met the conditions
(``git push <remote> <head_commit>:refs/heads/<branch>``, so a commit added to the branch after the
loop ended is not proposed), then runs::

    gh pr create --base <base> --head <branch> --title <title> --body-file <file> [--draft]

These are ``gh pr create``'s documented flags, written from gh's well-known manual (``gh help pr
create``) without looking them up again here. ``gh`` runs in the workspace with the user's own
environment (its ``GH_TOKEN`` or login), so it finds the repository from the remote; it prints
the new pull request's URL.

Without ``gh`` on ``PATH`` nothing is pushed: :func:`manual_commands` gives the two commands to
run by hand. Nothing is ever pushed without the remote existing: :func:`check_remote` refuses
first, naming the remotes there are and how to add one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess  # nosec B404 - argv lists only, shell=False
from pathlib import Path

from loopwright.adapters.local.evidence_bundle import evidence_file, read_evidence
from loopwright.adapters.local.git_cli import GitCli
from loopwright.evidence import sha256_hex
from loopwright.exceptions import PullRequestError, WorkspaceError
from loopwright.pull_request import MAX_ATTACHED_EVIDENCE_CHARS, EvidenceLink, PullRequestDraft

#: Seconds ``gh pr create`` may take (it calls GitHub's API).
GH_TIMEOUT_SECONDS = 120.0
#: Folder (under the state folder) where each loop's pull request body is written.
BODY_FOLDER = "pull-requests"


def body_path(state_dir: Path, loop_id: str) -> Path:
    """``<state_dir>/pull-requests/<loop_id>.md``: where the body is written for ``--body-file``."""
    return state_dir / BODY_FOLDER / f"{loop_id}.md"


def write_body(state_dir: Path, draft: PullRequestDraft) -> Path:
    """Write the draft's body to :func:`body_path` (UTF-8); returns the path."""
    path = body_path(state_dir, draft.loop_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(draft.body, encoding="utf-8")
    return path


def current_branch(git: GitCli, root: Path) -> str | None:
    """The branch checked out in ``root`` (the default base), None on a detached HEAD."""
    code, out, _ = git.run(["symbolic-ref", "-q", "--short", "HEAD"], cwd=root, check=False)
    return out.strip() or None if code == 0 else None


def check_remote(git: GitCli, root: Path, remote: str) -> None:
    """Raise :class:`PullRequestError` (``bad_input``) when ``root``'s repository has no remote
    named ``remote``: the message names the remotes there are, or how to add one."""
    remotes = git.output(["remote"], cwd=root).split()
    if remote in remotes:
        return
    if not remotes:
        raise PullRequestError(
            f"--remote: the repository has no git remote, so there is nowhere to push; add one "
            f"(`git remote add {remote} <url>`) and run `loopwright pr` again",
            bad_input=True,
        )
    raise PullRequestError(
        f"--remote: the repository has no remote {remote!r} (it has: {', '.join(remotes)}); "
        "name one with --remote",
        bad_input=True,
    )


def gh_argv(draft: PullRequestDraft, body_file: Path, *, draft_pr: bool = False, gh: str = "gh") -> list[str]:
    """``gh pr create`` for ``draft``, its body read from ``body_file``."""
    argv = [gh, "pr", "create", "--base", draft.base, "--head", draft.branch, "--title", draft.title]
    argv += ["--body-file", str(body_file)]
    return argv + (["--draft"] if draft_pr else [])


def push_argv(draft: PullRequestDraft, remote: str) -> list[str]:
    """``git push <remote> <head_commit>:refs/heads/<branch>``."""
    return ["git", "push", remote, f"{draft.head_commit}:refs/heads/{draft.branch}"]


def manual_commands(
    draft: PullRequestDraft, body_file: Path, remote: str, *, draft_pr: bool = False
) -> list[str]:
    """The push and ``gh pr create`` command lines, shell-quoted, for a user to run by hand."""
    return [shlex.join(push_argv(draft, remote)), shlex.join(gh_argv(draft, body_file, draft_pr=draft_pr))]


def open_pull_request(
    draft: PullRequestDraft,
    *,
    root: Path,
    state_dir: Path,
    remote: str = "origin",
    draft_pr: bool = False,
    gh: str | None = None,
) -> str:
    """Push ``draft.head_commit`` to ``remote`` as ``draft.branch`` and open the pull request.

    Args:
        root: the workspace (a folder of the repository the loop ran on).
        state_dir: loopwright's folder (the body is written under it, :func:`body_path`).
        remote: the git remote to push to.
        draft_pr: open it as a draft.
        gh: the ``gh`` executable (default: the one on ``PATH``).

    Returns what ``gh`` printed (the pull request's URL), stripped.

    Raises:
        PullRequestError: no ``gh`` on ``PATH`` or no such remote (``bad_input``, nothing was
            pushed); the loop's commit is not in the repository any more; the push or ``gh``
            failed (the message carries their error).
    """
    executable = gh or shutil.which("gh")
    if executable is None:
        raise PullRequestError("gh (GitHub's CLI) is not on PATH", bad_input=True)
    git = GitCli(state_dir)
    try:
        check_remote(git, root, remote)
        code, _, _ = git.run(["cat-file", "-e", f"{draft.head_commit}^{{commit}}"], cwd=root, check=False)
        if code != 0:
            raise PullRequestError(
                f"the loop's commit {draft.head_commit[:12]} is no longer in the repository (its "
                "branch was deleted, `loopwright clean --branches`?): there is nothing to push",
                bad_input=True,
            )
        extra = (
            {"GIT_SSH_COMMAND": os.environ["GIT_SSH_COMMAND"]} if "GIT_SSH_COMMAND" in os.environ else None
        )
        code, out, err = git.run(push_argv(draft, remote)[1:], cwd=root, check=False, env=extra)
    except WorkspaceError as exc:
        raise PullRequestError(str(exc)) from exc
    if code != 0:
        raise PullRequestError(
            f"`git push {remote}` of {draft.branch} failed (exit {code}): {(err or out).strip()}"
        )
    body_file = write_body(state_dir, draft)
    argv = gh_argv(draft, body_file, draft_pr=draft_pr, gh=executable)
    try:
        done = subprocess.run(  # nosec B603 - argv list, shell=False
            argv, cwd=root, capture_output=True, text=True, timeout=GH_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PullRequestError(f"`gh pr create` took more than {GH_TIMEOUT_SECONDS:.0f} s") from exc
    except OSError as exc:
        raise PullRequestError(f"cannot run {executable}: {exc}") from exc
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split()) or "no message"
        raise PullRequestError(
            f"`gh pr create` failed (exit {done.returncode}): {message}; the branch was pushed, "
            f"the body is in {body_file}"
        )
    return done.stdout.strip()


def evidence_for(state_dir: Path, loop_id: str) -> EvidenceLink | None:
    """The loop's signed evidence bundle (``<state_dir>/evidence/<loop_id>.json``, written when the
    loop completed or by ``loopwright evidence export``) as an :class:`EvidenceLink`: its path,
    SHA-256, the command that verifies it and, when small enough, its content; None when it has
    none."""
    data = read_evidence(state_dir, loop_id)
    if data is None:
        return None
    path = evidence_file(state_dir, loop_id)
    text = data.decode("utf-8", errors="replace")
    return EvidenceLink(
        location=str(path),
        sha256=sha256_hex(data),
        verify_command=f"loopwright evidence verify {path} --checkout <a checkout of the branch>",
        content=text if len(text) <= MAX_ATTACHED_EVIDENCE_CHARS else None,
    )
