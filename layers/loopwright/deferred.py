"""Commands that run without a caller blocked on them: start, return, poll later (issue 12.5).

A Lambda that waits for the agent or the checks pays for every second it waits (a 5-minute agent
and 2 minutes of checks at 1 GB cost about $0.0056 of Lambda duration an iteration). With a
sandbox that can run a command in the background (:class:`~loopwright.ports.BackgroundSandbox`,
AWS: the Code Interpreter's ``startCommandExecution`` / ``getTask`` / ``stopTask``), a step runs
the same code as always through a :class:`DeferringSandbox`:

1. The step calls ``sandbox.run(...)`` as usual. The first time a given command is reached, it is
   started in the background and, if it has not ended within ``inline_seconds`` (a quick check, a
   ``cat``: waiting in the Lambda costs less than a round trip through the state machine), the
   sandbox raises :class:`CommandPending`. The step then saves NOTHING and returns a *pending*
   output: the started tasks (:class:`~loopwright.models.DeferredCommand`, by key) and how long the
   state machine should wait before asking again (:func:`next_wait`).
2. After a ``Wait`` state the state machine invokes the same step again with that output. The step
   runs its code from the start (a *replay*): each command it reaches that has a task is not
   started again; its result is fetched (``poll``); one still running raises
   :class:`CommandPending` again. Once every command has ended, the step completes and saves as it
   always did, from the stored state it started from.
3. A task the completed step did not reach (a human stopped the loop during the checks: the
   replay ended early) is cancelled (:meth:`DeferringSandbox.step_done`).

Commands are matched by a *key*, not by their arguments (which may hold a temporary folder's
name): the key the caller sets with :func:`deferral_key` (``condition:<name>``, ``agent``) and
the number of commands run under it so far in this invocation (``agent#0`` is the agent, ``agent#1``
reading its report). So a replay must reach the same commands in the same order under each key,
which holds for the steps: what they run is decided by the loop's config and stored state, which
a pending step does not change. Conditions run concurrently (``parallel_conditions``) each run
under their own key, in their own thread.

A command's time limit is kept here, from the task's start (``started_at``): a task still running
past ``timeout_seconds`` is cancelled and reported ``timed_out`` as the blocking sandbox would.
So is ``should_stop`` (``loopwright stop --now``, issue 10 point 8): each time a running task is
looked at (while it is awaited in the step, and at each replay after a ``Wait``), the check is
asked, and a True cancels the task and reports it ``stopped``. The stop therefore lands within
the state machine's wait between two polls (:func:`next_wait`: ``min_wait_seconds`` at first,
growing for a command past its expected duration up to ``max_wait_seconds``).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from loopwright.models import CommandResult, DeferredCommand, utcnow
from loopwright.ports import BackgroundSandbox, OutputCallback, Sandbox, StopCheck

#: Seconds a started command is awaited in the step before it is left to run in the background.
DEFAULT_INLINE_SECONDS = 2.0
#: Seconds between two looks at a command awaited in the step.
INLINE_POLL_SECONDS = 0.25
#: Bounds (seconds) of the state machine's wait between two polls (:func:`next_wait`).
DEFAULT_MIN_WAIT_SECONDS = 10
DEFAULT_MAX_WAIT_SECONDS = 300
#: A command already past its expected duration is looked at again after this fraction of the time
#: it has run (at least the minimum wait): late commands are polled less and less often.
LATE_POLL_FRACTION = 0.25

_KEY: contextvars.ContextVar[str] = contextvars.ContextVar("loopwright_deferral_key", default="command")
_STARTED: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "loopwright_replay_started", default=None
)


class CommandPending(Exception):
    """A command of the step runs in the background (see the module docstring). Deliberately not
    a :class:`~loopwright.exceptions.LoopFrameworkError`: code that turns those into a failed
    agent run or a condition ERROR must let this one through to the step."""

    def __init__(self, key: str) -> None:
        super().__init__(f"command {key!r} runs in the background")
        self.key = key


@contextlib.contextmanager
def deferral_key(key: str) -> Iterator[None]:
    """Run the block's sandbox commands under ``key`` (see the module docstring)."""
    token = _KEY.set(key)
    try:
        yield
    finally:
        _KEY.reset(token)


@contextlib.contextmanager
def replaying(started_at: datetime | None) -> Iterator[None]:
    """Run a replayed step whose first command started at ``started_at`` (None: not a replay), so
    the durations it records count from then (:func:`replayed_seconds`)."""
    token = _STARTED.set(started_at)
    try:
        yield
    finally:
        _STARTED.reset(token)


def replayed_seconds() -> float:
    """Seconds since the replayed step's first command started (0.0 outside a replay): a step
    that times its own work takes the larger of this and its own clock."""
    started = _STARTED.get()
    return 0.0 if started is None else max(0.0, (utcnow() - started).total_seconds())


def next_wait(
    elapsed_seconds: float,
    expected_seconds: float | None,
    *,
    minimum: int = DEFAULT_MIN_WAIT_SECONDS,
    maximum: int = DEFAULT_MAX_WAIT_SECONDS,
) -> int:
    """Seconds the state machine waits before it polls a command that has run ``elapsed_seconds``.

    - The command's duration can be expected (``expected_seconds``: the same agent's or check's
      last run) and has not passed: the wait ends just after it, so one poll usually finds it
      done.
    - It has passed: :data:`LATE_POLL_FRACTION` of the time the command has run.
    - Nothing to expect (the first iteration's agent): as long as it has run, so the polls come
      at 10, 20, 40, 80... seconds: a command is found done at most twice its duration after it
      started, after about log2(duration / minimum) polls.

    Always within [``minimum``, ``maximum``]: each poll costs three state transitions (Wait, the
    task, the Choice: $0.000075, AWS Step Functions pricing) and a short Lambda invocation; a wait
    costs nothing.
    """
    if expected_seconds is None:
        wanted = elapsed_seconds
    elif elapsed_seconds < expected_seconds:
        wanted = expected_seconds - elapsed_seconds + 1
    else:
        wanted = elapsed_seconds * LATE_POLL_FRACTION
    return int(max(minimum, min(maximum, round(wanted))))


class DeferringSandbox(Sandbox):
    """A :class:`Sandbox` whose commands run in ``background`` without the step waiting for them.

    Args:
        background: starts, polls and cancels commands.
        commands: the tasks started by earlier invocations of this step (key -> task), updated in
            place with the tasks started now.
        token: names this run of the step across its invocations (the first invocation's, kept
            in the pending output); default: a new one. Files a replay must find again (the
            agent's run folder) are named by it.
        inline_seconds: how long a new command is awaited here before :class:`CommandPending`.
        min_wait_seconds, max_wait_seconds: the bounds of :func:`next_wait` for this step.
    """

    def __init__(
        self,
        background: BackgroundSandbox,
        commands: dict[str, DeferredCommand] | None = None,
        *,
        token: str | None = None,
        inline_seconds: float = DEFAULT_INLINE_SECONDS,
        min_wait_seconds: int = DEFAULT_MIN_WAIT_SECONDS,
        max_wait_seconds: int = DEFAULT_MAX_WAIT_SECONDS,
    ) -> None:
        self.background = background
        self.commands: dict[str, DeferredCommand] = dict(commands or {})
        self.token = token or uuid.uuid4().hex[:12]
        self.inline_seconds = inline_seconds
        self.min_wait_seconds = min_wait_seconds
        self.max_wait_seconds = max_wait_seconds
        self._reached: set[str] = set()
        self._counts: dict[str, int] = {}
        self._guard = threading.Lock()
        self._stop_check: StopCheck | None = None

    def watch_stop(self, check: StopCheck | None) -> None:
        """Ask ``check`` for every command run without its own ``should_stop`` (the exit
        conditions), as the local sandbox's ``watch_stop`` does; None stops asking."""
        self._stop_check = check

    def _next_key(self) -> str:
        base = _KEY.get()
        with self._guard:
            number = self._counts.get(base, 0)
            self._counts[base] = number + 1
            key = f"{base}#{number}"
            self._reached.add(key)
        return key

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
        """The command's result once it has ended; raises :class:`CommandPending` while it runs
        (started now, or by an earlier invocation under the same key). ``timeout_seconds`` and
        ``should_stop`` end it when it is looked at (see the module docstring: a stopped command
        is cancelled and its result has ``stopped``). ``idle_timeout_seconds`` is ignored: no
        step reads a background command's output as it comes."""
        key = self._next_key()
        should_stop = should_stop or self._stop_check
        with self._guard:
            task = self.commands.get(key)
        if task is None:
            task_id = self.background.start(
                command, cwd=cwd, timeout_seconds=timeout_seconds, env=env, stdin=stdin
            )
            task = DeferredCommand(
                task_id=task_id,
                command=list(command)[:1],
                started_at=utcnow(),
                timeout_seconds=timeout_seconds,
            )
            with self._guard:
                self.commands[key] = task
            result = self._await(task, list(command), max_output_bytes, self.inline_seconds, should_stop)
        else:
            result = self._await(task, list(command), max_output_bytes, 0.0, should_stop)
        if result is None:
            raise CommandPending(key)
        if on_output is not None:
            for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                if text:
                    with contextlib.suppress(Exception):
                        on_output(stream, text)
        return result

    def _await(
        self,
        task: DeferredCommand,
        command: list[str],
        max_output_bytes: int,
        seconds: float,
        should_stop: StopCheck | None = None,
    ) -> CommandResult | None:
        deadline = time.monotonic() + seconds
        while True:
            result = self.background.poll(task.task_id, max_output_bytes=max_output_bytes)
            if result is not None:
                return result.model_copy(
                    update={"command": command, "started_at": task.started_at}
                    | ({"duration_seconds": self.elapsed(task)} if not result.duration_seconds else {})
                )
            timed_out = self.elapsed(task) > task.timeout_seconds
            if timed_out or (should_stop is not None and should_stop()):
                self.background.cancel(task.task_id)  # past its time limit, or a `stop --now`
                return CommandResult(
                    command=command,
                    exit_code=None,
                    timed_out=timed_out,
                    stopped=not timed_out,
                    duration_seconds=self.elapsed(task),
                    started_at=task.started_at,
                )
            if time.monotonic() >= deadline:
                return None
            time.sleep(INLINE_POLL_SECONDS)

    @staticmethod
    def elapsed(task: DeferredCommand, now: datetime | None = None) -> float:
        """Seconds since ``task`` started."""
        return max(0.0, ((now or utcnow()) - task.started_at).total_seconds())

    def running(self) -> dict[str, DeferredCommand]:
        """The tasks started so far (key -> task)."""
        with self._guard:
            return dict(self.commands)

    def first_started_at(self) -> datetime | None:
        """When the oldest task started (None without tasks): a replayed step's start."""
        with self._guard:
            starts = [task.started_at for task in self.commands.values()]
        return min(starts) if starts else None

    def step_done(self) -> list[str]:
        """The step that ran through this sandbox completed: cancel the tasks it never reached
        (it ended early: a human stopped the loop during its checks), forget the tasks it
        reached, and start counting keys afresh for the next step of the same invocation (the
        compact variant runs several). Returns the keys cancelled; a task that cannot be
        cancelled is left to its own time limit."""
        with self._guard:
            unreached = {key: task for key, task in self.commands.items() if key not in self._reached}
            self.commands = {}
            self._reached = set()
            self._counts = {}
        for task in unreached.values():
            with contextlib.suppress(Exception):
                self.background.cancel(task.task_id)
        return sorted(unreached)

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        """See :meth:`BackgroundSandbox.find_program`."""
        return self.background.find_program(name, cwd=cwd)
