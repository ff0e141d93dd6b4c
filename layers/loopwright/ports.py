"""Ports: the small interfaces through which the steps reach the outside world.

Each port has a local adapter (``loopwright.adapters.local``: SQLite, subprocess sandbox,
cedarpy, git, command/python agents) and, for the cloud, an AWS adapter (DynamoDB, AgentCore
Memory, Code Interpreter, Verified Permissions). The core (models, steps, conditions) imports
only this module, never an adapter.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from loopwright.models import (
    AgentRequest,
    AgentResult,
    AuthorizationRequest,
    Checkpoint,
    CommandResult,
    ControlAction,
    ControlRequest,
    IterationEvent,
    IterationEventType,
    LoopState,
    PolicyDecision,
)
from loopwright.models.notifications import Notification
from loopwright.models.records import DiffStat, IterationRecord, IterationSummary
from loopwright.models.workspace import SavedWork, WorkspaceSnapshot

#: The principal of controls given through the library API or the local CLI (the local user owns
#: the state folder, so these are not authorized by Cedar).
LOCAL_PRINCIPAL = 'User::"local"'

#: A callable an agent may poll to end its work early (True: a human asked the loop to stop).
StopCheck = Callable[[], bool]

#: Called with ``(stream, text)`` as a command or agent writes output: ``stream`` is ``"stdout"``
#: or ``"stderr"``, ``text`` a decoded chunk (UTF-8, invalid bytes replaced; not split on lines).
#: It runs on a reader thread and must return quickly; an exception it raises is ignored.
OutputCallback = Callable[[str, str], None]


class LoopStore(ABC):
    """Durable store of loops and their events.

    Errors: :class:`~loopwright.exceptions.LoopNotFoundError` for an unknown loop id;
    :class:`~loopwright.exceptions.LoopFrameworkError` when a conditional write loses (the stored
    ``version`` is not the expected one).
    """

    @abstractmethod
    def create_loop(self, state: LoopState) -> LoopState:
        """Store a new loop; returns it with ``version`` 1. Fails if the id exists."""

    @abstractmethod
    def save_state(self, state: LoopState, events: Sequence[IterationEvent] = ()) -> LoopState:
        """Store ``state`` if the stored version equals ``state.version``, with ``events``
        atomically (all or nothing); returns the state with version + 1."""

    @abstractmethod
    def get_state(self, loop_id: str) -> LoopState:
        """The stored state of ``loop_id``."""

    @abstractmethod
    def list_loops(self, project: str | None = None, limit: int = 100) -> list[LoopState]:
        """Loops, newest first, optionally of one project."""

    @abstractmethod
    def append_events(self, events: Sequence[IterationEvent]) -> None:
        """Store events atomically (all or none)."""

    @abstractmethod
    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[IterationEvent]:
        """Events of ``loop_id`` in order of recording (or newest first), optionally of some types."""

    @abstractmethod
    def add_control(self, request: ControlRequest) -> None:
        """Queue a human control for the running loop (applied at its next step boundary, see
        :func:`loopwright.workflow.apply_controls`); replaces a pending one with the same
        ``control_id``. :class:`~loopwright.exceptions.LoopNotFoundError` for an unknown loop."""

    @abstractmethod
    def pending_controls(self, loop_id: str) -> list[ControlRequest]:
        """The queued controls of ``loop_id``, oldest first (none, also for an unknown loop)."""

    @abstractmethod
    def clear_controls(self, loop_id: str, control_ids: Sequence[str]) -> None:
        """Forget the given queued controls (unknown ids are ignored)."""

    # The agent's record of each iteration (issue 9). Optional: a store without records keeps
    # the default, which raises NotImplementedError; the engine then logs once and goes on.
    def save_iteration_record(self, record: IterationRecord) -> None:
        """Store ``record``, replacing the stored record of the same loop and iteration (the
        engine rewrites it while the agent works, after it, and after the evaluation).

        Raises :class:`~loopwright.exceptions.LoopFrameworkError` when the store fails,
        NotImplementedError when this store keeps no records."""
        raise NotImplementedError(f"{type(self).__name__} keeps no iteration records")

    def get_iteration_record(self, loop_id: str, iteration: int) -> IterationRecord | None:
        """The record of ``iteration`` of ``loop_id``; None when there is none (also for an
        unknown loop: callers check the loop exists)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no iteration records")

    def list_iteration_records(self, loop_id: str) -> list[IterationSummary]:
        """The summaries of ``loop_id``'s records, oldest iteration first ([] for none)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no iteration records")

    # Conveniences over the three control methods above.
    def request_stop(self, loop_id: str, reason: str, *, principal: str = LOCAL_PRINCIPAL) -> None:
        """Ask the running loop to stop after its current step (a STOP control, not authorized:
        callers that need Cedar use :class:`loopwright.controls.ControlService`)."""
        self.add_control(
            ControlRequest(loop_id=loop_id, action=ControlAction.STOP, principal=principal, reason=reason)
        )

    def stop_requested(self, loop_id: str) -> str | None:
        """The reason of the first pending STOP control, or None."""
        for control in self.pending_controls(loop_id):
            if control.action is ControlAction.STOP:
                return control.reason or f"by {control.principal}"
        return None

    def clear_stop(self, loop_id: str, *, before: datetime | None = None) -> None:
        """Forget pending STOP and PAUSE controls (when the loop is resumed): all of them, or
        only those requested before ``before`` (a pause asked for after the resume was, while
        the new session was starting, must still pause it)."""
        halts = {ControlAction.STOP, ControlAction.PAUSE}
        ids = [
            c.control_id
            for c in self.pending_controls(loop_id)
            if c.action in halts and (before is None or c.requested_at < before)
        ]
        if ids:
            self.clear_controls(loop_id, ids)


class CheckpointStore(ABC):
    """Durable store of checkpoints, newest kept, older ones pruned by retention.

    Adapters store and return checkpoints as written, including corrupt ones; the core checks
    each checksum (:meth:`Checkpoint.is_valid`) and falls back to an older checkpoint.
    """

    @abstractmethod
    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        """Store ``checkpoint`` and delete all but the newest ``retention`` of its loop."""

    @abstractmethod
    def list_checkpoints(self, loop_id: str) -> list[Checkpoint | str]:
        """Checkpoints of ``loop_id``, newest first. An entry that cannot even be parsed is
        returned as its checkpoint id (a string) so the caller can report it."""


@runtime_checkable
class AtomicCheckpointStore(Protocol):
    """A :class:`LoopStore` that is also the loop's :class:`CheckpointStore` and can write a
    state, its events and a checkpoint in one transaction (the local SQLite store)."""

    def save_state_with_checkpoint(
        self,
        state: LoopState,
        events: Sequence[IterationEvent],
        checkpoint: Checkpoint,
        retention: int,
    ) -> LoopState:
        """Store all three or none; returns the state with its new version."""
        ...


class SandboxSessions(ABC):
    """Ends a loop's sandbox session by its id (AWS: a Code Interpreter session), from any step:
    the step that ends a loop or parks it for a human holds the id, not the session."""

    @abstractmethod
    def stop(self, session_id: str) -> None:
        """Stop the session ``session_id``; a session that already ended is not an error.
        Raises :class:`~loopwright.exceptions.LoopFrameworkError` when it cannot be stopped."""


class Sandbox(ABC):
    """Runs one command, never through a shell, with a timeout that kills its whole process tree."""

    @abstractmethod
    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: StopCheck | None = None,
    ) -> CommandResult:
        """Run ``command`` in ``cwd``; stdout and stderr are each kept up to ``max_output_bytes``.

        ``should_stop``: a sandbox that can watch the command asks it every fraction of a second
        and ends the command once it answers True (``stopped=True`` in the result: ``stop --now``,
        a crossed budget); one that cannot ignores it (it says so in its docstring).

        ``stdin`` is written to the command's standard input (UTF-8), which is then closed;
        without it stdin is empty. ``on_output`` sees the output as it is produced (all of it,
        not only what is kept). ``idle_timeout_seconds`` (seconds; None or 0: none): a sandbox
        that can watch the command ends it, as on a timeout, once it has printed nothing and
        changed no file under ``cwd`` for that long, and reports ``idle=True``; one that cannot
        watch it ignores the value (it says so in its docstring). Never raises for the command's
        own failure: a missing executable, a non-zero exit, a timeout and idleness are reported
        in the :class:`CommandResult`.
        """

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        """The absolute path ``run`` would execute for ``argv[0] == name`` in ``cwd``, or None
        when it would fail with "command not found" (preflight). The default looks ``name`` up
        on this process's ``PATH``; adapters with their own environment override it."""
        if "/" in name:
            candidate = Path(name) if Path(name).is_absolute() else cwd / name
            return str(candidate) if candidate.is_file() else None
        return shutil.which(name)


class BackgroundSandbox(ABC):
    """Runs a command in the background: start it, look at it later, cancel it (AWS: the Code
    Interpreter's ``startCommandExecution``, ``getTask``, ``stopTask``). Used through
    :class:`loopwright.deferred.DeferringSandbox`, so no step waits for the agent or the checks.
    Errors of the service raise :class:`~loopwright.exceptions.LoopFrameworkError`."""

    @abstractmethod
    def start(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> str:
        """Start ``command`` in ``cwd`` (as :meth:`Sandbox.run` would run it, time limit
        included) and return its task id at once."""

    @abstractmethod
    def poll(self, task_id: str, *, max_output_bytes: int = 256 * 1024) -> CommandResult | None:
        """The result of task ``task_id`` once it has ended (stdout and stderr each kept up to
        ``max_output_bytes``), None while it runs."""

    @abstractmethod
    def cancel(self, task_id: str) -> None:
        """Stop task ``task_id``; one that already ended is not an error."""

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        """As :meth:`Sandbox.find_program`; None: this sandbox cannot tell (the command's
        failure then says it)."""
        return None


class PolicyEngine(ABC):
    """Evaluates Cedar authorization requests."""

    @abstractmethod
    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        """Decide ``request``; ``policy_ids`` are the ``@id`` of the determining policies."""

    def is_authorized_batch(self, requests: Sequence[AuthorizationRequest]) -> list[PolicyDecision]:
        """Decide several requests, in order. Adapters may answer them in one call."""
        return [self.is_authorized(request) for request in requests]

    def policy_files(self) -> dict[str, str] | None:
        """The policy set this engine decides with, as file name -> SHA-256 (hex) of its
        content, so a loop can record what it runs under; None when the engine cannot tell (a
        remote policy store such as Verified Permissions, versioned by its deployment)."""
        return None


class Agent(ABC):
    """The agent that works on the worktree, one call per iteration.

    ``in_process``: True for an agent that runs as a function in loopwright's own process (it may
    take microseconds); the engine then writes an iteration's start only if the agent works for a
    while. An agent in another process (a CLI, a remote runtime) has its start written before it
    begins.

    ``supports_sessions``: True for an agent that can continue a session of an earlier run
    (Claude Code ``--resume``, Codex ``exec resume``): it resumes ``request.session_id`` when one
    is given and reports its session in ``AgentResult.session_id``; the loop hands a full session
    off to a fresh one (:mod:`loopwright.sessions`). False: every run is a fresh call.
    """

    in_process: bool = False
    supports_sessions: bool = False

    def required_programs(self) -> list[str]:
        """The executables the agent needs (``argv[0]`` of what it runs), checked before its
        first iteration (preflight) with :meth:`Sandbox.find_program`; [] when it runs none."""
        return []

    @abstractmethod
    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        """Do one iteration of work in ``request.worktree``; ``on_output`` sees the agent's
        output as it is produced, when the agent has any to show.

        Raises :class:`~loopwright.exceptions.AgentError` when the agent cannot be started.
        """


class Workspace(ABC):
    """The loop's working copy: a git worktree on the loop's own branch.

    Errors are raised as :class:`~loopwright.exceptions.WorkspaceError`.
    """

    @abstractmethod
    def prepare(self, loop_id: str) -> tuple[Path, str | None, str | None]:
        """Create (or reopen) the loop's worktree; returns (path, branch, base commit)."""

    @abstractmethod
    def commit(self, loop_id: str, message: str) -> tuple[str | None, list[str]]:
        """Commit every change in the worktree.

        Returns (the new head, or None when nothing changed; the changed paths).
        """

    @abstractmethod
    def reset(self, loop_id: str, commit: str) -> None:
        """Discard worktree changes and move the loop's branch to ``commit``."""

    @abstractmethod
    def head(self, loop_id: str) -> str | None:
        """The commit the loop's branch points at."""

    def diff_stat(self, loop_id: str, commit: str) -> DiffStat | None:
        """What ``commit`` of the loop changed against its first parent (files, lines inserted
        and deleted); None when the workspace cannot tell (no history, a remote session)."""
        return None

    def salvage(self, loop_id: str, label: str) -> SavedWork | None:
        """Keep the worktree's uncommitted changes (an interrupted iteration's partial work) on
        ``refs/loopwright/<loop_id>/salvage/<label>``, without changing the worktree or branch;
        None when there is nothing to keep. Workspaces without history keep nothing."""
        return None

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        """Before the loop's branch moves back to ``commit``: keep the commits after it reachable
        on ``refs/loopwright/<loop_id>/set-aside/<label>``; None when the branch is at ``commit``.
        Workspaces without history keep nothing."""
        return None

    def file_text(self, loop_id: str, commit: str, path: str) -> str | None:
        """The text of ``path`` (relative to the worktree's root) at ``commit`` of the loop's
        branch; None when the file is not in that commit. Raises NotImplementedError when the
        workspace cannot read its history (the pinned checks then treat the whole file as
        changed)."""
        raise NotImplementedError

    def tree_hash(self, loop_id: str, commit: str) -> str | None:
        """The git tree hash of ``commit`` of the loop's branch (equal trees: equal files); None
        when the workspace cannot tell (no history), which turns oscillation detection off
        (``LoopProgress.tree_seen_before`` stays false)."""
        return None

    def started_from(self, loop_id: str) -> WorkspaceSnapshot | None:
        """What :meth:`prepare` started the loop's new branch from, when there is something to
        tell (a snapshot of the user's working tree, or files left out as secrets), in this
        process; None otherwise (a clean tree, a reopened worktree, a workspace without history)."""
        return None

    def withheld(self, loop_id: str) -> list[str]:
        """Paths the last :meth:`commit` left uncommitted because they look like secrets
        (relative to the worktree's root); empty for workspaces that commit nothing."""
        return []

    def clean_tree(self, loop_id: str) -> str | None:
        """The git tree hash of the loop's worktree (``HEAD^{tree}``) when the hash covers all of
        it: no uncommitted change and no untracked file that git does not ignore. None otherwise,
        and for workspaces without history (the evaluation cache is then not used)."""
        return None

    def branch_from(self, loop_id: str, commit: str) -> None:
        """Create the loop's branch at ``commit`` before :meth:`prepare` opens it (a fork: a new
        loop starting from another loop's checkpoint). Raises
        :class:`~loopwright.exceptions.WorkspaceError` when the branch exists or ``commit`` is
        unknown, NotImplementedError when the workspace cannot create branches."""
        raise NotImplementedError


class Notifier(ABC):
    """Tells the people who follow a loop what happened (:mod:`loopwright.notifications`): AWS
    publishes to the stack's SNS notifications topic, locally nothing is sent."""

    @abstractmethod
    def notify(self, notification: Notification) -> None:
        """Send ``notification``. Raises :class:`~loopwright.exceptions.LoopFrameworkError` when
        it cannot be sent (callers log it and go on)."""
