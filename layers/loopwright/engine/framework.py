"""The in-process engine: :class:`LoopFramework` (seed 001 T025-T035, T068-T071).

It drives the core steps in the same order as the Step Functions state machine::

    authorize -> iterate -> checkpoint -> evaluate -> verify -> decide -> (authorize ...)

and records every transition as an :class:`~loopwright.models.IterationEvent` in the store and,
when the process uses OpenTelemetry (see :mod:`loopwright.engine.tracing`), as a span event.
By default it uses the local adapters (SQLite store under ``<workspace>/.loopwright``,
subprocess sandbox, cedarpy, git worktree); any port can be passed in.

Example::

    from loopwright import LoopConfig
    from loopwright.engine import LoopFramework

    loop = LoopFramework(config, workspace="path/to/repo")
    result = loop.run()                      # or loop.run(work_function=my_function)
    print(result.outcome, result.iterations)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from loopwright import pinning, workflow
from loopwright.adapters.local.isolation import check_isolation
from loopwright.adapters.local.project_env import ProjectEnvironment, check_python
from loopwright.adapters.local.python_agent import PythonAgent, WorkFunction
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.controls import RESUMABLE_OUTCOMES
from loopwright.engine.containment import check_programs, contain, release
from loopwright.engine.drive import SessionDriver
from loopwright.engine.local import (
    as_checkpoints,
    build_agent,
    build_workspace,
    local_ports,
    missing_port,
    state_dir_for,
)
from loopwright.engine.lock import LoopLock, workspace_lock
from loopwright.engine.policy_set import check_policy_location, check_policy_set
from loopwright.engine.restore import Restoring
from loopwright.engine.step_writer import StepWriter
from loopwright.engine.tracing import Tracing, tracing_enabled
from loopwright.exceptions import (
    ConfigError,
    LoopAlreadyRunningError,
    LoopFrameworkError,
    LoopNotFoundError,
)
from loopwright.models import (
    AgentKind,
    Checkpoint,
    ControlAction,
    ControlRequest,
    ExitConditionStatus,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopResult,
    LoopState,
    new_id,
    utcnow,
)
from loopwright.models.types import loop_id_problem
from loopwright.ports import (
    LOCAL_PRINCIPAL,
    Agent,
    CheckpointStore,
    LoopStore,
    OutputCallback,
    PolicyEngine,
    Sandbox,
    Workspace,
)
from loopwright.steps.checkpoint import recover

#: Called after every recorded event with the event and the loop's current state.
Observer = Callable[[IterationEvent, LoopState], None]

_EV = IterationEventType


class LoopFramework(SessionDriver, Restoring):
    """Runs one governed loop in this process.

    Args:
        config: the loop's configuration; may be omitted to reopen an existing ``loop_id``.
        workspace: the user's repository (any folder; a non-git folder is initialised as one).
        loop_id: reuse an id (to resume) or choose one; a new ``loop_<hex>`` id by default.
        agent_name: a label for the agent, recorded in the loop's events (seed API).
        store, checkpoints, sandbox, policy, agent, workspace_adapter: ports; local adapters
            by default.
        state_dir: where local state lives; ``<workspace>/.loopwright`` by default.
        observer: called after every event (the CLI's live display uses it).
        output_observer: called with ``(stream, text)`` (``"stdout"`` or ``"stderr"``, a decoded
            chunk) as the agent writes output, so a caller can show it live.

    Raises :class:`ConfigError` for a ``loop_id`` that is not a loop id (nothing is opened or
    created then), and when neither a config nor a stored loop is available.
    """

    def __init__(
        self,
        config: LoopConfig | None = None,
        *,
        workspace: str | Path = ".",
        loop_id: str | None = None,
        agent_name: str = "agent",
        store: LoopStore | None = None,
        checkpoints: CheckpointStore | None = None,
        sandbox: Sandbox | None = None,
        policy: PolicyEngine | None = None,
        agent: Agent | None = None,
        workspace_adapter: Workspace | None = None,
        state_dir: Path | None = None,
        observer: Observer | None = None,
        output_observer: OutputCallback | None = None,
    ) -> None:
        if loop_id is not None and (problem := loop_id_problem(loop_id)) is not None:
            raise ConfigError(problem)  # before anything is opened or created
        self.workspace = Path(workspace).resolve()
        self.state_dir = (state_dir or state_dir_for(self.workspace)).resolve()
        self.loop_id = loop_id or new_id("loop")
        self.agent_name = agent_name
        self._config = config
        defaults = None
        if store is None or sandbox is None or policy is None:
            defaults = local_ports(self.state_dir)
        self.store: LoopStore = store or (defaults.store if defaults else missing_port("store"))
        self.checkpoints: CheckpointStore = checkpoints or as_checkpoints(self.store)
        self.sandbox: Sandbox = sandbox or (defaults.sandbox if defaults else missing_port("sandbox"))
        self.policy: PolicyEngine = policy or (defaults.policy if defaults else missing_port("policy"))
        self._agent = agent
        self._workspace_adapter = workspace_adapter
        self._observer = observer
        self._output_observer = output_observer
        self._state: LoopState | None = None
        self._preflighted = False  # this object preflighted the loop it just created
        self._active = False
        self._writer = StepWriter(self.store, self.checkpoints)  # events, checkpoint, state writes
        self._tracing = Tracing(enabled=False)
        self._lock = LoopLock(self.state_dir, self.loop_id)
        self._asked_at = utcnow()  # when the current run() was asked for

    # ----------------------------------------------------------------------------- set-up
    @classmethod
    def open(cls, loop_id: str, *, workspace: str | Path = ".", **kwargs: Any) -> LoopFramework:
        """Reopen a stored loop (to resume it, or read its state). Raises LoopNotFoundError."""
        framework = cls(None, workspace=workspace, loop_id=loop_id, **kwargs)
        framework._state = framework.store.get_state(loop_id)
        framework._config = framework._state.config
        return framework

    async def initialize(self) -> LoopState:
        """Async form of :meth:`initialize_sync` (runs it in a worker thread)."""
        import asyncio  # only async callers pay for importing asyncio (about 25 ms)

        return await asyncio.to_thread(self.initialize_sync)

    def initialize_sync(self) -> LoopState:
        """Prepare the worktree and store the new loop (idempotent). SC-001: well under 5 s.

        Before anything is written, every program the new loop runs is found (preflight: the
        agent's, when the config names one or an agent was given, and each exit condition's;
        see :mod:`loopwright.preflight`).

        Raises :class:`ConfigError` without a config,
        :class:`~loopwright.preflight.PreflightError` (a ConfigError) naming every missing
        program, :class:`~loopwright.exceptions.WorkspaceError` when the workspace cannot be
        prepared.
        """
        return self._initialize(None)

    def _initialize(self, agent: Agent | None) -> LoopState:
        """:meth:`initialize_sync`, preflighting a new loop with ``agent`` (None: the given or
        configured agent, if any)."""
        if self._state is not None:
            return self._state
        try:
            self._state = self.store.get_state(self.loop_id)
            self._config = self._state.config
            return self._state
        except LoopNotFoundError:
            pass
        if self._config is None:
            raise ConfigError(f"loop {self.loop_id!r} does not exist and no config was given")
        # The worktree does not exist yet: relative programs are looked up in the workspace,
        # which the worktree starts from.
        agent = agent or self._configured_agent(self._config)
        check_programs(
            self._config,
            agent,
            self.sandbox,
            workspace=self.workspace,
            cwd=self.workspace,
            state_dir=self.state_dir,
        )
        self._preflighted = True
        with workspace_lock(self.state_dir):  # first runs in a folder must not race (git init...)
            return self._create_loop(self._config)

    def _create_loop(self, config: LoopConfig) -> LoopState:
        try:  # another process may have created it while this one waited for the lock
            self._state = self.store.get_state(self.loop_id)
            self._config = self._state.config
            return self._state
        except LoopNotFoundError:
            pass
        worktree, branch, base = self._workspace().prepare(self.loop_id)
        state = LoopState(
            loop_id=self.loop_id,
            project=config.project,
            config=config,
            workspace=str(self.workspace),
            worktree=str(worktree),
            branch=branch,
            base_commit=base,
            head_commit=base,
            exit_conditions=[
                ExitConditionStatus(name=c.key, type=c.type, required=c.required)
                for c in config.exit_conditions
            ],
        )
        self._state = self.store.create_loop(state)
        started = self._workspace().started_from(self.loop_id)
        if started is not None:
            self.emit_event(
                IterationEventType.WORKSPACE_SNAPSHOT, started.describe(), iteration=0, **started.model_dump()
            )
        return self._state

    # ----------------------------------------------------------------------------- queries
    def get_state(self) -> LoopState:
        """The loop's current state (from memory while running, else from the store)."""
        if self._state is None:
            self._state = self.store.get_state(self.loop_id)
        return self._state

    def get_exit_condition_status(self) -> list[ExitConditionStatus]:
        """The latest status of every exit condition."""
        return list(self.get_state().exit_conditions)

    @property
    def is_active(self) -> bool:
        """True while :meth:`run` is executing in this object (re-entry prevention, T033)."""
        return self._active

    # ----------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Checkpoint:
        """Store a checkpoint of the current state at the worktree's head commit."""
        return workflow.save_checkpoint(self.get_state(), self.checkpoints, self.emit_event)

    def load_checkpoint(self, checkpoint_id: str | None = None) -> Checkpoint:
        """The newest valid checkpoint (or the one named). Raises CheckpointRecoveryError."""
        return recover(self.loop_id, self.checkpoints, checkpoint_id).checkpoint

    # ----------------------------------------------------------------------------- events
    def emit_event(
        self,
        event_type: IterationEventType,
        message: str = "",
        *,
        iteration: int | None = None,
        **data: Any,
    ) -> IterationEvent:
        """Record an event: stored, added to the current OpenTelemetry span, and observed.

        ``iteration`` defaults to the number of completed iterations; events about the iteration
        about to run (started, policy warning or denial) pass its number. While the loop runs,
        events are written in batches: before the agent starts and with each state write, so a
        step's events land in one transaction (at most a step's events are lost with the process).
        Outside :meth:`run` an event is written at once.
        """
        state = self.get_state()
        event = IterationEvent(
            loop_id=self.loop_id,
            iteration=state.iteration if iteration is None else iteration,
            type=event_type,
            phase=state.phase,
            message=message,
            data={k: v for k, v in data.items() if v is not None},
        )
        self._writer.pending.append(event)
        if not self._active:
            self._writer.flush_events()
        if self._tracing.enabled:
            attributes: dict[str, Any] = {
                "loopwright.loop_id": self.loop_id,
                "loopwright.iteration": event.iteration,
                "loopwright.message": message,
            }
            attributes.update(
                {
                    f"loopwright.{k}": v
                    for k, v in event.data.items()
                    if isinstance(v, str | int | float | bool)
                }
            )
            self._tracing.add_event(event_type.value, attributes)
        if self._observer is not None:
            self._observer(event, state)
        return event

    # ----------------------------------------------------------------------------- run
    def request_stop(self, reason: str = "requested") -> None:
        """Ask the loop to stop after its current step (works from any process via the store)."""
        self.store.request_stop(self.loop_id, reason)

    def request_pause(self, reason: str = "requested") -> None:
        """Ask the loop to pause after its current step (phase PAUSED; ``run()`` again resumes it)."""
        self.store.add_control(
            ControlRequest(
                loop_id=self.loop_id, action=ControlAction.PAUSE, principal=LOCAL_PRINCIPAL, reason=reason
            )
        )

    def run(
        self,
        work_function: WorkFunction | None = None,
        *,
        resume_from: str | Checkpoint | None = None,
        accept_policy_change: str | None = None,
        requested_at: datetime | None = None,
    ) -> LoopResult:
        """Run the loop until it completes, a policy stops it, a human stops it, or it pauses.

        Args:
            work_function: the agent as a callable (seed API); overrides the config's agent.
            resume_from: a checkpoint (or its id, or ``"latest"``) to continue from. A loop that
                was interrupted (killed, Ctrl-C) or stopped by a human resumes from its newest
                valid checkpoint anyway.
            accept_policy_change: the Cedar principal of an operator who accepts that the policy
                files changed since the loop last ran (the caller authorizes them); without it
                such a resume is refused (see :mod:`loopwright.engine.policy_set`).
            requested_at: when this run was asked for (default: now): a STOP or PAUSE queued
                before it belongs to an earlier session and is forgotten; one queued after it
                applies to this session.

        Returns the :class:`LoopResult`; ``outcome`` is None when the loop paused for a human.
        Raises :class:`LoopAlreadyRunningError` on re-entry or when another process runs it,
        :class:`ConfigError` without an agent or with policies inside the state folder,
        :class:`PolicySetChangedError` when the policies changed and nobody accepted it,
        :class:`LoopFrameworkError` for a loop that ended.
        """
        if self._active:
            raise LoopAlreadyRunningError(f"loop {self.loop_id!r} is already running in this process")
        self._asked_at = requested_at or utcnow()
        check_policy_location(self.policy, self.state_dir)
        self._lock.acquire()
        self._active = True
        try:
            self._state = None  # read it again: a human may have changed it since the last run
            if self._config is not None:
                check_isolation(self._config)  # bubblewrap asked for but missing: before any write
                check_python(self._config, self.workspace)  # a python setting naming no interpreter
            agent = None
            if self._config is not None and not self._stored():
                agent = self._resolve_agent(work_function)  # preflighted before the loop is created
            state = self._initialize(agent)
            afresh = False
            if state.outcome in RESUMABLE_OUTCOMES:
                # A human's stop, a limit (raised since) or a failure is not final: the loop
                # continues from its last checkpoint (Cedar decides again whether it may).
                afresh = state.outcome is LoopOutcome.AGENT_FAILING  # a human looked: count afresh
                state.outcome, state.outcome_reason, state.ended_at = None, None, None
                state.phase = LoopPhase.INTERRUPTED
            if state.outcome is not None:
                raise LoopFrameworkError(
                    f"loop {self.loop_id!r} already ended with {state.outcome.value}; start a new loop"
                )
            agent = agent or self._resolve_agent(work_function)
            if not self._preflighted:  # a stored loop: its programs may have gone since it ran
                worktree = Path(state.worktree)
                cwd = worktree if state.worktree and worktree.is_dir() else self.workspace
                check_programs(
                    state.config,
                    agent,
                    self.sandbox,
                    workspace=self.workspace,
                    cwd=cwd,
                    state_dir=self.state_dir,
                )
            self._preflighted = False  # a later run() of this object checks again
            environment = contain(
                state,
                agent=agent,
                sandbox=self.sandbox,
                workspace=self.workspace,
                state_dir=self.state_dir,
                record=self.emit_event,
            )
            if isinstance(self.sandbox, SubprocessSandbox):  # stop --now ends a running condition too
                self.sandbox.watch_stop(self._stop_now)
            self._tracing = Tracing(enabled=tracing_enabled())
            with self._tracing.span("loopwright.loop", {"loopwright.loop_id": self.loop_id}):
                resuming = resume_from is not None or state.phase is not LoopPhase.INITIALIZING
                check_policy_set(state, self.policy, self.emit_event, accepted_by=accept_policy_change)
                self._start_session(resuming, resume_from, environment, failures_afresh=afresh)
                return self._drive(agent)
        except KeyboardInterrupt:
            self._interrupt("interrupted by Ctrl-C")
            raise
        finally:
            self._active = False
            self._writer.close()
            release(self.sandbox)
            if self._writer.pending and self._state is not None:
                # Ended by an error: write what was recorded, with the state it belongs to.
                try:
                    self._writer.save(self.get_state())
                except LoopFrameworkError:
                    self._writer.flush_events()
            self._lock.release()

    # ----------------------------------------------------------------------------- internals
    def _workspace(self) -> Workspace:
        if self._workspace_adapter is None:
            config = self._config
            assert config is not None
            self._workspace_adapter = build_workspace(config, self.workspace, self.state_dir)
        return self._workspace_adapter

    def _stored(self) -> bool:
        try:
            self.store.get_state(self.loop_id)
        except LoopNotFoundError:
            return False
        return True

    def _configured_agent(self, config: LoopConfig) -> Agent | None:
        """The agent to preflight for a loop created without run(): the given one, else the
        config's (None without one, or for an agent that runs in AWS, not here)."""
        if self._agent is not None:
            return self._agent
        if config.agent is None or config.agent.kind is AgentKind.AGENTCORE_RUNTIME:
            return None
        return build_agent(config, self.sandbox)

    def _resolve_agent(self, work_function: WorkFunction | None) -> Agent:
        if work_function is not None:
            return PythonAgent(work_function)
        if self._agent is not None:
            return self._agent
        agent = build_agent(self._config or self.get_state().config, self.sandbox)
        if agent is None:
            raise ConfigError("no agent: set 'agent' in the config or pass work_function to run()")
        self._agent = agent
        return agent

    def _start_session(
        self,
        resuming: bool,
        resume_from: str | Checkpoint | None,
        environment: ProjectEnvironment | None = None,
        *,
        failures_afresh: bool = False,
    ) -> None:
        """Restore a resumed loop and open its session; ``failures_afresh`` (a human resumed a
        loop that ended AGENT_FAILING) resets its consecutive agent failures to 0."""
        state = self.get_state()
        self.store.clear_stop(self.loop_id, before=self._asked_at)
        if resuming:
            self._restore(resume_from)
            state = self.get_state()
        if failures_afresh:
            state.consecutive_failures = 0
        workflow.start_session(
            state,
            self.emit_event,
            agent_name=self.agent_name,
            environment=environment.describe() if environment else None,
            **(environment.record() if environment else {}),
        )
        if not resuming:
            pinning.record_pins(self.get_state(), self.emit_event)
        if self.get_state().pinned_hold is not None:  # a human answered (approve): apply it
            pinning.settle_hold(self.get_state(), self._workspace(), self.emit_event)
        self._writer.save(self.get_state())
