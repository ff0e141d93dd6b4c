"""The local dashboard's wiring: SQLite store and queries, Cedar via cedarpy, the local identity,
and a resumer that continues loops in background threads of the dashboard's process.

Loops resumed or approved from the dashboard run inside it (one thread per loop, the in-process
engine as ``loopwright resume`` runs it); closing the dashboard asks them to pause after their
current step (:meth:`BackgroundResumer.shutdown`), and ``loopwright resume`` or the dashboard
continues them later. A loop another process runs is refused (409), never run twice: the loop's
lock file says who runs it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aws_lambda_powertools.event_handler.api_gateway import Router

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.evidence_bundle import read_evidence
from loopwright.adapters.local.peer import loop_of_client
from loopwright.adapters.local.sqlite_queries import SqliteQueries
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cli.evidence_cmd import local_evidence_key
from loopwright.dashboard.api import DashboardDeps
from loopwright.dashboard.identity import OPERATORS_FILE_NAME, LocalIdentityResolver, user_uid
from loopwright.engine.framework import LoopFramework
from loopwright.engine.local import DB_FILE_NAME
from loopwright.engine.local_controls import local_control_service
from loopwright.engine.lock import LoopLock
from loopwright.engine.plan_dispatch import LocalPlans
from loopwright.exceptions import ControlConflictError, LoopFrameworkError
from loopwright.models import ControlAction, ControlRequest, LoopState
from loopwright.planapi.router import PlanApiDeps, build_plan_router
from loopwright.plans.authorize import PlanAuthorizer
from loopwright.plans.decompose import ConditionPlanner

#: Seconds :meth:`BackgroundResumer.shutdown` waits for the loops it runs to pause.
SHUTDOWN_WAIT_SECONDS = 10.0


class BackgroundResumer:
    """A :data:`~loopwright.controls.Resumer`: runs ``LoopFramework.run()`` of the loop in a
    daemon thread, from its stored state (a paused or awaiting loop) or its newest valid
    checkpoint. ``log`` receives one line when a run starts and when it ends.

    Raises :class:`ControlConflictError` (synchronously, before any thread starts) when a process
    already runs the loop.
    """

    def __init__(self, state_dir: Path, *, log: Callable[[str], None] = lambda _: None) -> None:
        self.state_dir = state_dir
        self.log = log
        self._threads: dict[str, threading.Thread] = {}
        self._guard = threading.Lock()

    def __call__(self, state: LoopState, request: ControlRequest) -> None:
        holder = LoopLock(self.state_dir, state.loop_id).holder()
        with self._guard:
            alive = self._threads.get(state.loop_id)
            if holder is not None or (alive is not None and alive.is_alive()):
                who = f"process {holder}" if holder is not None else "this dashboard"
                raise ControlConflictError(f"loop {state.loop_id!r} is already running ({who})")
            thread = threading.Thread(
                target=self._run,
                args=(state, request),
                name=f"loopwright-{state.loop_id}",
                daemon=True,
            )
            self._threads[state.loop_id] = thread
            thread.start()

    def _run(self, state: LoopState, request: ControlRequest) -> None:
        workspace = Path(state.workspace) if state.workspace else self.state_dir.parent
        self.log(f"{state.loop_id}: {request.action.value.lower()} by {request.principal}: running it here")
        try:
            framework = LoopFramework.open(state.loop_id, workspace=workspace, state_dir=self.state_dir)
            result = framework.run(  # a later pause applies
                resume_from=request.checkpoint_id, requested_at=request.requested_at
            )
        except LoopFrameworkError as exc:
            self.log(f"{state.loop_id}: could not continue: {exc}")
            return
        ended = result.outcome.value if result.outcome else result.phase.value
        self.log(f"{state.loop_id}: {ended} after {result.iterations} iteration(s)")

    def running(self) -> list[str]:
        """Ids of the loops this process runs now."""
        with self._guard:
            return [loop_id for loop_id, thread in self._threads.items() if thread.is_alive()]

    def shutdown(
        self, store: SqliteStore, principal: str, *, wait_seconds: float = SHUTDOWN_WAIT_SECONDS
    ) -> list[str]:
        """Ask every loop this process runs to pause after its current step and wait up to
        ``wait_seconds`` for them; returns the ids of the loops still running (they are left
        INTERRUPTED when the process exits, and resume from their checkpoint)."""
        loops = self.running()
        for loop_id in loops:
            store.add_control(
                ControlRequest(
                    loop_id=loop_id,
                    action=ControlAction.PAUSE,
                    principal=principal,
                    reason="dashboard closed",
                )
            )
        with self._guard:
            threads = [self._threads[loop_id] for loop_id in loops]
        for thread in threads:
            thread.join(timeout=wait_seconds / max(1, len(threads)))
        return self.running()


@dataclass
class LocalDashboard:
    """What ``loopwright dashboard`` serves and must close."""

    deps: DashboardDeps
    store: SqliteStore
    queries: SqliteQueries
    resumer: BackgroundResumer
    identity: LocalIdentityResolver
    plans: LocalPlans
    routers: list[Router]

    def close(self) -> None:
        """Pause the loops this process runs (see :meth:`BackgroundResumer.shutdown`), then close
        the store files."""
        self.resumer.shutdown(self.store, user_uid(self.identity.user))
        self.plans.close()
        self.queries.close()
        self.store.close()


def local_dashboard(
    state_dir: Path,
    *,
    user: str,
    log: Callable[[str], None] = lambda _: None,
    workspace: Path | None = None,
    allow_impersonation: bool = True,
) -> LocalDashboard:
    """The local dashboard over ``state_dir`` (its store is created when missing), with the plan
    routes over the plans of ``workspace`` (default: the folder holding ``state_dir``).

    Controls and plan changes (create, dispatch, verify) are authorized by Cedar over one
    cedarpy engine (``policies/``); the caller is ``user``, or the user named by the
    ``X-Loopwright-User`` header when ``allow_impersonation`` (a loopback-only server: the CLI
    turns it off on any other address).

    Raises :class:`~loopwright.exceptions.ConfigError` for a bad ``user`` name or Cedar policy
    folder, :class:`LoopFrameworkError` when the store cannot be opened.
    """
    store = SqliteStore(state_dir / DB_FILE_NAME)
    queries = SqliteQueries(state_dir / DB_FILE_NAME)
    resumer = BackgroundResumer(state_dir, log=log)
    identity = LocalIdentityResolver(
        user=user,
        operators_path=state_dir / OPERATORS_FILE_NAME,
        allow_impersonation=allow_impersonation,
        agent_of=lambda event: loop_of_client(state_dir, event),  # a loop's agent acts as itself
    )
    policy = CedarPolicyEngine()
    deps = DashboardDeps(
        store=store,
        queries=queries,
        checkpoints=store,
        controls=local_control_service(state_dir, store, resumer=resumer, policy=policy),
        identity=identity,
        liveness=lambda loop_id: LoopLock(state_dir, loop_id).holder() is not None,
        evidence=lambda loop_id: read_evidence(state_dir, loop_id),
        evidence_key=local_evidence_key,
    )
    plans = LocalPlans(workspace or state_dir.parent, state_dir=state_dir, background=True)
    router = build_plan_router(
        PlanApiDeps(
            store=plans.store,
            planner=ConditionPlanner(),
            executor=plans,
            authorizer=PlanAuthorizer(policy),
            identity=identity,
        )
    )
    return LocalDashboard(
        deps=deps,
        store=store,
        queries=queries,
        resumer=resumer,
        identity=identity,
        plans=plans,
        routers=[router],
    )
