"""The loop's workspace in AWS: a git clone inside the loop's Code Interpreter session.

:class:`SessionWorkspace` is the AWS counterpart of the local
:class:`~loopwright.adapters.local.git_workspace.GitWorktreeWorkspace`: the loop's agent and its
exit conditions run in the same session, on a clone of the loop's repository
(:class:`~loopwright.models.RepositoryConfig`) at ``<root>/<loop_id>``, on the branch
``loopwright/<loop_id>``.

Every git call is an argv list handed to the session's :class:`~loopwright.ports.Sandbox`
(:class:`~loopwright.adapters.aws.code_interpreter_sandbox.CodeInterpreterSandbox` quotes each
argument with :func:`shlex.join`, so nothing from the config reaches a shell unquoted); git runs
without hooks or signing, with the identity ``loopwright <loopwright@localhost>``, never prompts
(``GIT_TERMINAL_PROMPT=0``, ssh in batch mode), and build noise
(:data:`~loopwright.adapters.local.git_workspace.NOISE_PATTERNS`) is never committed.

Sessions are ephemeral: a Code Interpreter session lasts at most 8 hours (AgentCore developer
guide, "Session management"; default 15 minutes) and its files go with it. With
``repository.push`` the branch is pushed to the remote after every commit (and when it is
created, and force-pushed on a reset), so a new session continues from the pushed branch:
:meth:`SessionWorkspace.prepare` clones again and checks out ``origin/loopwright/<loop_id>`` when
the remote has it. Without ``push`` the work lives only in the session.

With ``fetch_agent_commits`` (an agent in AgentCore Runtime, which works on its own clone and
pushes the loop's branch itself), the remote branch is the truth: :meth:`SessionWorkspace.commit`
fetches it and resets the session's clone to it (changes left by the exit conditions are
discarded) instead of committing.

The session must reach the remote: a Code Interpreter in network mode ``SANDBOX`` reaches only
Amazon S3, so clone and push need ``PUBLIC`` (or ``VPC``) network mode. A private repository's
HTTPS token (``repository.credentials``, AWS Secrets Manager) is given to the git calls that talk
to the remote (clone, fetch, push) by
:class:`~loopwright.adapters.aws.git_credentials.SessionGitCredentials`, for each call only and
never on a command line; credentials in the URL are refused by the config. Git is assumed to be
installed in the Code Interpreter image (not verified here).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path, PurePosixPath

from loopwright.adapters.aws.git_credentials import SessionGitCredentials
from loopwright.adapters.local.git_workspace import (
    BRANCH_PREFIX,
    GIT_TIMEOUT_SECONDS,
    MAX_LISTED_COMMITS,
    NOISE_PATTERNS,
)
from loopwright.exceptions import LoopFrameworkError, WorkspaceError
from loopwright.models import CommandResult, RepositoryConfig
from loopwright.models.workspace import SavedWork, set_aside_ref
from loopwright.ports import Sandbox, Workspace

#: Folder of the session under which each loop's clone lives (``<root>/<loop_id>``).
DEFAULT_ROOT = PurePosixPath("/tmp/loopwright/worktrees")  # nosec B108 - a folder of the session's own VM
#: The clones' folder relative to the session's working directory (what the Lambdas use, next to
#: the agent's files: see :mod:`loopwright.adapters.aws.interpreter_agent`).
SESSION_WORKTREES_FOLDER = PurePosixPath(".loopwright/worktrees")
#: A ref recording the commit the loop's branch started from (its base, kept across reopenings).
BASE_REF = "refs/loopwright/base"
#: Options of every git call: no hooks, no signing (the session's git config is not ours).
_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", "-c", "tag.gpgSign=false")
#: Identity of the loop's commits.
_IDENTITY = ("-c", "user.name=loopwright", "-c", "user.email=loopwright@localhost")
#: Environment of every git call: parseable messages, never a prompt (a prompt would hang).
GIT_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}
#: The git commands that talk to the remote (the only ones given the repository's token).
_REMOTE_COMMANDS = frozenset({"clone", "fetch", "push"})
_COMMIT = re.compile(r"[0-9a-f]{4,64}")
_LOOP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def noise_pathspecs() -> list[str]:
    """``git add`` pathspecs that leave :data:`NOISE_PATTERNS` out, at any depth."""
    specs = []
    for pattern in NOISE_PATTERNS:
        glob = f"**/{pattern}**" if pattern.endswith("/") else f"**/{pattern}"
        specs.append(f":(exclude,glob){glob}")
    return specs


class SessionWorkspace(Workspace):
    """The loop's clone in its Code Interpreter session (see the module docstring).

    Args:
        sandbox: runs the git commands in the session (the loop's ``CodeInterpreterSandbox``).
        repository: what to clone, from which ref, and whether to push.
        root: folder of the session holding the clones.
        fetch_agent_commits: the agent pushes the loop's branch itself (AgentCore Runtime):
            ``commit`` fetches and resets to it instead of committing.
        timeout_seconds: limit of each git command (a clone or a push included).
        credentials: gives a private repository's token to clone, fetch and push; None: the
            remote needs none.

    Every method raises :class:`~loopwright.exceptions.WorkspaceError` naming the git command
    and its stderr when git fails, times out or cannot run, or when the session cannot be reached.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        repository: RepositoryConfig,
        *,
        root: PurePosixPath = DEFAULT_ROOT,
        fetch_agent_commits: bool = False,
        timeout_seconds: float = GIT_TIMEOUT_SECONDS,
        credentials: SessionGitCredentials | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.repository = repository
        self.root = PurePosixPath(root)
        self.fetch_agent_commits = fetch_agent_commits
        self.timeout_seconds = timeout_seconds
        self.credentials = credentials
        #: The loops whose clone :meth:`prepare` made afresh in this session (not reopened).
        self.cloned: set[str] = set()
        self._known_heads: dict[str, str] = {}  # loop id -> the head loopwright last saw

    # ----------------------------------------------------------------------------- port
    def prepare(self, loop_id: str) -> tuple[Path, str, str | None]:
        """Reopen the loop's clone, or clone the repository and check out the loop's branch.

        A new clone continues the remote's ``loopwright/<loop_id>`` when it exists (a session
        that ended), else starts the branch from ``repository.ref`` (default: the remote's
        default branch) and, with ``push``, pushes it. Returns (clone folder, branch, base
        commit: the commit the branch started from).
        """
        path, branch = self.path(loop_id), BRANCH_PREFIX + loop_id
        head = self._rev(path, f"refs/heads/{branch}")
        if head is not None:  # the session still holds the clone
            self._known_heads[loop_id] = head
            return Path(path), branch, self._rev(path, BASE_REF)
        # No usable clone: start afresh (a half-made clone of a killed call holds no loop commit)
        self._git(["rm", "-rf", "--", str(path)], program="rm")
        self._git(["clone", "-q", "--", self.repository.url, str(path)])
        self.cloned.add(loop_id)
        start = self._start_commit(path)
        pushed = self._rev(path, f"refs/remotes/origin/{branch}")
        if pushed is not None:  # the loop's branch outlived an earlier session
            self._git(["checkout", "-q", "-B", branch, pushed], cwd=path)
            base = self._merge_base(path, start, pushed)
            head = pushed
        else:
            self._git(["checkout", "-q", "-b", branch, start], cwd=path)
            base = head = start
            self._push(path, branch)
        if base is not None:
            self._git(["update-ref", BASE_REF, base], cwd=path)
        self._known_heads[loop_id] = head
        return Path(path), branch, base

    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        """Commit every change in the clone (build noise left out) and, with ``push``, push it.

        Returns (new head, changed paths), or (None, []) when nothing changed. An agent that
        committed by itself (or, with ``fetch_agent_commits``, pushed to the remote branch)
        leaves nothing to commit but moves the branch: its head and changed paths are returned.
        """
        path, branch = self.path(loop_id), BRANCH_PREFIX + loop_id
        if self.fetch_agent_commits:
            return self._take_remote(loop_id, path, branch)
        status = self._git(["status", "--porcelain", "-z", "--untracked-files=normal"], cwd=path)
        if not status.strip("\0"):
            return self._moved(loop_id, path, branch)
        self._git(["add", "-A", "--", ".", *noise_pathspecs()], cwd=path)
        changed = _names(self._git(["diff", "--cached", "--name-only", "-z"], cwd=path))
        if not changed:
            return self._moved(loop_id, path, branch)
        self._git([*_IDENTITY, "commit", "-q", "--no-verify", "-m", message], cwd=path)
        head = self._git(["rev-parse", "HEAD"], cwd=path).strip()
        self._known_heads[loop_id] = head
        self._push(path, branch)
        return head, changed

    def reset(self, loop_id: str, commit: str) -> None:
        """Move the loop's branch to ``commit`` and discard every change (``git reset --hard``,
        ``git clean -fd``); with ``push``, force-push the branch so the remote agrees. A commit
        the clone lacks (a new session's clone: the commit is kept on a pushed set-aside ref, such
        as an accepted change to pinned files) is fetched first from the loop's
        ``refs/loopwright/<loop_id>/`` refs on the remote. Raises WorkspaceError when a git
        command fails."""
        if _COMMIT.fullmatch(commit) is None:
            raise WorkspaceError(f"cannot reset loop {loop_id!r} to {commit!r}: not a commit id")
        path, branch = self.path(loop_id), BRANCH_PREFIX + loop_id
        if self.repository.push and self._rev(path, commit) is None:
            refs = f"refs/loopwright/{loop_id}/*"
            self._run(["fetch", "-q", "origin", f"+{refs}:{refs}"], path)  # reset names a failure
        self._git(["reset", "-q", "--hard", commit], cwd=path)
        self._git(["clean", "-q", "-f", "-d"], cwd=path)
        self._known_heads[loop_id] = self._git(["rev-parse", "HEAD"], cwd=path).strip()
        self._push(path, branch, force=True)

    def head(self, loop_id: str) -> str | None:
        """The commit the loop's branch points at in the session, or None without a clone."""
        return self._rev(self.path(loop_id), f"refs/heads/{BRANCH_PREFIX}{loop_id}")

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        """Before the loop's branch moves back to ``commit`` (a checkpoint's): point
        ``refs/loopwright/<loop_id>/set-aside/<label>`` (or ``-2``, ``-3``... when taken) at the
        branch's head when it has commits ``commit`` does not contain, and, with ``push``, push
        that ref, so the commits stay reachable after the reset's force-push. The commits are
        listed newest first (at most :data:`MAX_LISTED_COMMITS`); None when there are none."""
        path, head = self.path(loop_id), self.head(loop_id)
        if head is None or head == commit:
            return None
        listed = self._git(
            ["log", "--format=%H %s", f"--max-count={MAX_LISTED_COMMITS}", f"{commit}..{head}"], cwd=path
        )
        commits = [line for line in listed.splitlines() if line.strip()]
        if not commits:
            return None  # the branch is behind or at ``commit``: nothing would be lost
        ref, number = set_aside_ref(loop_id, label), 1
        while self._rev(path, ref) is not None:
            number += 1
            ref = f"{set_aside_ref(loop_id, label)}-{number}"
        self._git(["update-ref", ref, head], cwd=path)
        if self.repository.push:
            self._git(["push", "-q", "origin", f"{ref}:{ref}"], cwd=path)
        return SavedWork(ref=ref, commit=head, commits=commits)

    def file_text(self, loop_id: str, commit: str, path: str) -> str | None:
        """``git show <commit>:<path>`` in the loop's clone (``path`` relative to its root): the
        file's text at ``commit``; None when the file (or the commit) is not there. Raises
        WorkspaceError when the command cannot run in the session."""
        if _COMMIT.fullmatch(commit) is None:
            return None
        code, out, _ = self._run(["show", f"{commit}:{path}"], self.path(loop_id))
        return out if code == 0 else None

    def clean_tree(self, loop_id: str) -> str | None:
        """``HEAD^{tree}`` of the loop's clone when ``git status`` lists nothing there but build
        noise (no change, no untracked file that is not ignored or noise, which :meth:`commit`
        leaves out too); else None (also without a clone)."""
        path = self.path(loop_id)
        status = ["status", "--porcelain", "-z", "--untracked-files=normal", "--", ".", *noise_pathspecs()]
        code, out, _ = self._run(["-C", str(path), *status], None)
        if code != 0 or out.strip("\0"):
            return None
        code, out, _ = self._run(["-C", str(path), "rev-parse", "--verify", "-q", "HEAD^{tree}"], None)
        return out.strip() if code == 0 and out.strip() else None

    def tree_hash(self, loop_id: str, commit: str) -> str | None:
        """The tree hash of ``commit`` in the loop's clone (``git rev-parse <commit>^{tree}``);
        None when it is not a commit there. Raises WorkspaceError when the command cannot run."""
        if _COMMIT.fullmatch(commit) is None:
            return None
        code, out, _ = self._run(["rev-parse", "--verify", "-q", f"{commit}^{{tree}}"], self.path(loop_id))
        return out.strip() if code == 0 and out.strip() else None

    def has_commit(self, loop_id: str, commit: str) -> bool:
        """True when the loop's clone holds ``commit`` (a reset to it can work)."""
        return _COMMIT.fullmatch(commit) is not None and self._rev(self.path(loop_id), commit) is not None

    # ----------------------------------------------------------------------------- extra
    def path(self, loop_id: str) -> PurePosixPath:
        """``<root>/<loop_id>``, the loop's clone in the session."""
        if _LOOP_ID.fullmatch(loop_id) is None:
            raise WorkspaceError(f"invalid loop id {loop_id!r} for a folder of the session")
        return self.root / loop_id

    def known_head(self, loop_id: str) -> str | None:
        """The head of the loop's branch as last seen by this workspace (no git call)."""
        return self._known_heads.get(loop_id)

    # ----------------------------------------------------------------------------- internals
    def _start_commit(self, path: PurePosixPath) -> str:
        """The commit ``repository.ref`` names (a remote branch, a tag or a commit), or HEAD."""
        ref = self.repository.ref
        candidates = ["HEAD"] if ref is None else [f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref]
        for candidate in candidates:
            found = self._rev(path, candidate)
            if found is not None:
                return found
        raise WorkspaceError(
            f"repository.ref {ref!r} is not a branch, tag or commit of {self.repository.url}; "
            "set repository.ref to one that exists (or leave it out for the default branch)"
        )

    def _take_remote(self, loop_id: str, path: PurePosixPath, branch: str) -> tuple[str | None, list[str]]:
        """Fetch the loop's branch the agent pushed and reset the clone to it."""
        code, _, err = self._run(
            ["fetch", "-q", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}"], path
        )
        if code != 0:
            if "couldn't find remote ref" in err:
                return None, []  # the agent pushed nothing yet
            raise WorkspaceError(f"`git fetch origin {branch}` failed in {path} (exit {code}): {err.strip()}")
        self._git(["reset", "-q", "--hard", f"refs/remotes/origin/{branch}"], cwd=path)
        self._git(["clean", "-q", "-f", "-d"], cwd=path)
        return self._moved(loop_id, path, branch, push=False)

    def _moved(
        self, loop_id: str, path: PurePosixPath, branch: str, *, push: bool = True
    ) -> tuple[str | None, list[str]]:
        """(head, paths changed since the known head) when the branch moved without us, else
        (None, [])."""
        head = self._git(["rev-parse", "HEAD"], cwd=path).strip()
        known = self._known_heads.get(loop_id)
        self._known_heads[loop_id] = head
        if known is None or head == known:
            return None, []
        if push:
            self._push(path, branch)
        return head, _names(self._git(["diff", "--name-only", "-z", known, head], cwd=path))

    def _merge_base(self, path: PurePosixPath, first: str, second: str) -> str | None:
        code, out, _ = self._run(["merge-base", first, second], path)
        return out.strip() if code == 0 and out.strip() else None

    def _push(self, path: PurePosixPath, branch: str, *, force: bool = False) -> None:
        if self.repository.push:
            refspec = f"{'+' if force else ''}refs/heads/{branch}:refs/heads/{branch}"
            self._git(["push", "-q", "origin", refspec], cwd=path)

    def _rev(self, path: PurePosixPath, ref: str) -> str | None:
        """The commit ``ref`` names in the clone at ``path``; None when it (or the clone) does not exist."""
        code, out, _ = self._run(["-C", str(path), "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"], None)
        return out.strip() if code == 0 and out.strip() else None

    def _git(self, args: list[str], *, cwd: PurePosixPath | None = None, program: str = "git") -> str:
        """Run ``git <args>`` (or ``program <args>``) in ``cwd`` (default ``/``); its stdout.
        Raises WorkspaceError naming the command and its stderr when it fails."""
        code, out, err = self._run(args, cwd, program=program)
        if code != 0:
            shown = " ".join(args)
            raise WorkspaceError(
                f"`{program} {shown}` failed in {cwd or '/'} of the Code Interpreter session (exit {code}): "
                f"{err.strip() or out.strip()}"
            )
        return out

    def _run(
        self, args: list[str], cwd: PurePosixPath | None, *, program: str = "git"
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of ``git <args>`` (or ``program <args>``) in ``cwd``
        (default ``/``). Raises WorkspaceError when the command could not run or timed out, or
        when the session failed (an AWS error)."""
        argv = ["git", *_OPTIONS, *args] if program == "git" else [program, *args]
        where = Path(str(cwd)) if cwd is not None else Path("/")
        try:
            with contextlib.ExitStack() as stack:
                if program == "git" and args[0] in _REMOTE_COMMANDS and self.credentials is not None:
                    options = stack.enter_context(self.credentials.git_options())
                    argv = ["git", *_OPTIONS, *options, *args]
                done: CommandResult = self.sandbox.run(
                    argv, cwd=where, timeout_seconds=self.timeout_seconds, env=GIT_ENV
                )
        except WorkspaceError:
            raise
        except LoopFrameworkError as exc:
            raise WorkspaceError(f"`{program} {' '.join(args)}` could not run in the session: {exc}") from exc
        if done.timed_out:
            raise WorkspaceError(
                f"`{program} {' '.join(args)}` took more than {self.timeout_seconds:g} s in {where}"
            )
        if done.exit_code is None:
            raise WorkspaceError(f"`{program} {' '.join(args)}` could not run in {where}: {done.error}")
        return done.exit_code, done.stdout, done.stderr


def _names(output: str) -> list[str]:
    return [name for name in output.split("\0") if name]
