"""Local dispatch of plans: each task runs as a loop of the in-process engine, in a thread pool.

:class:`PlanDispatcher` starts every task as soon as all the tasks it depends on COMPLETED (not
wave by wave: a slow task holds back only its own dependents), at most ``concurrency`` loops at a
time (default :data:`DEFAULT_PLAN_CONCURRENCY`). A task whose loop fails ends ERROR, the tasks
depending on it are SKIPPED, the others go on (seed 003 "Dispatch Failure": the plan stays
RUNNING, partial). Every start and end is an ActivityEvent saved with the plan in one write. Only
the calling thread writes the plan; the pool's threads only run loops.

:class:`LocalTaskRunner` runs a task's loop with :class:`~loopwright.engine.LoopFramework` in the
workspace's local store, on its own branch started from its dependencies' results
(:class:`~loopwright.adapters.local.plan_workspace.GitPlanWorkspace`). :class:`LocalPlans` wires
everything for one workspace: the CLI's and the local API's backend.

Ctrl-C during dispatch asks every running loop to stop after its current step, records how each
ended, and re-raises.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import TracebackType

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.plan_workspace import GitPlanWorkspace, TaskWorktreeWorkspace
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.engine.framework import LoopFramework
from loopwright.engine.local import DB_FILE_NAME, open_store, state_dir_for
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import LoopResult
from loopwright.models.plans import (
    DEFAULT_PLAN_CONCURRENCY,
    MAX_PLAN_CONCURRENCY,
    ActivityEvent,
    InspectionPacket,
    Plan,
    TaskRunRequest,
)
from loopwright.plans import service
from loopwright.plans.dag import ready_tasks
from loopwright.plans.ports import PlanExecutor, PlanStore, TaskRunner
from loopwright.plans.transitions import (
    PlanChange,
    begin_dispatch,
    finish_task,
    finish_verify,
    mark_running,
    start_task,
    task_run_request,
)
from loopwright.plans.verify import verify_error_check
from loopwright.ports import Sandbox

#: Called after each stored activity event with the event and the plan as stored.
EventObserver = Callable[[ActivityEvent, Plan], None]


class LocalTaskRunner(TaskRunner):
    """Runs a task's loop in this process (:class:`LoopFramework`, local adapters).

    Args:
        workspace: the user's project folder.
        store: the workspace's loop store (shared by the task loops; thread-safe).
        sandbox: runs agents' commands and exit conditions (default: subprocesses).
        state_dir: default ``<workspace>/.loopwright``.

    Worktrees are prepared one at a time (git writes shared files of the repository); the loops
    then run concurrently. Each loop gets its own Cedar engine.
    """

    def __init__(
        self,
        workspace: Path,
        store: SqliteStore,
        *,
        sandbox: Sandbox | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.state_dir = (state_dir or state_dir_for(self.workspace)).resolve()
        self.store = store
        self.sandbox = sandbox or SubprocessSandbox()
        self.git = GitPlanWorkspace(self.workspace, self.state_dir)
        self._prepare_lock = threading.Lock()

    def run_task(self, request: TaskRunRequest) -> LoopResult:
        """Create (or reopen) the task's loop, on a branch started from the merge of
        ``request.dependency_heads``, and run it to its end. Raises :class:`LoopFrameworkError`
        (a :class:`~loopwright.plans.errors.MergeConflictError` when the dependencies' results
        conflict) when it cannot start."""
        config = request.config
        with self._prepare_lock:
            adapter = None
            if config.git_isolation:
                start = self.git.start_branch(request.loop_id, request.dependency_heads)
                starts = {request.loop_id: start} if start else {}
                adapter = TaskWorktreeWorkspace(self.workspace, self.state_dir, starts)
            framework = LoopFramework(
                config,
                workspace=self.workspace,
                loop_id=request.loop_id,
                agent_name=f"plan {request.plan_id} task {request.task_id}",
                store=self.store,
                checkpoints=self.store,
                # Loops run concurrently: each needs its own sandbox to bind (attach) to it.
                sandbox=self.sandbox.fresh() if isinstance(self.sandbox, SubprocessSandbox) else self.sandbox,
                policy=CedarPolicyEngine(),
                workspace_adapter=adapter,
                state_dir=self.state_dir,
            )
            framework.initialize_sync()
        return framework.run()

    def request_stop(self, loop_id: str, reason: str) -> None:
        """Ask the loop to stop after its current step (through the store)."""
        self.store.request_stop(loop_id, reason)


class PlanDispatcher:
    """Dispatches a plan's tasks through a :class:`TaskRunner` in a thread pool.

    Args:
        store: where the plan lives.
        runner: runs one task's loop.
        concurrency: most loops at a time, 1 to :data:`MAX_PLAN_CONCURRENCY`.
        observer: called with each stored event (the CLI prints them).

    Raises ValueError for a concurrency out of range.
    """

    def __init__(
        self,
        store: PlanStore,
        runner: TaskRunner,
        *,
        concurrency: int = DEFAULT_PLAN_CONCURRENCY,
        observer: EventObserver | None = None,
    ) -> None:
        if not 1 <= concurrency <= MAX_PLAN_CONCURRENCY:
            raise ValueError(f"concurrency must be 1 to {MAX_PLAN_CONCURRENCY}, got {concurrency}")
        self.store = store
        self.runner = runner
        self.concurrency = concurrency
        self.observer = observer

    def dispatch(self, project: str, plan_id: str) -> Plan:
        """:meth:`start` then :meth:`run`: returns the plan once every task ended."""
        return self.run(self.start(project, plan_id))

    def start(self, project: str, plan_id: str) -> Plan:
        """DRAFT -> RUNNING, each task given its loop id (event ``plan_dispatched``).

        Raises :class:`~loopwright.plans.errors.PlanNotFoundError`,
        :class:`~loopwright.plans.errors.PlanConflictError` (not DRAFT, or dispatched meanwhile).
        """
        dispatched = begin_dispatch(self.store.get_plan(project, plan_id))
        running = mark_running(dispatched.plan)
        return self._apply(PlanChange(running.plan, dispatched.events + running.events))

    def run(self, plan: Plan) -> Plan:
        """Run the RUNNING plan's ready tasks until every task ended; returns the stored plan."""
        running: dict[Future[LoopResult], str] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"{plan.plan_id}-") as pool:
            try:
                while True:
                    for task in ready_tasks(plan)[: self.concurrency - len(running)]:
                        plan = self._apply(start_task(plan, task.task_id))
                        try:
                            request = task_run_request(plan, task.task_id)
                        except LoopFrameworkError as exc:
                            plan = self._apply(finish_task(plan, task.task_id, error=str(exc)))
                            continue
                        running[pool.submit(self.runner.run_task, request)] = task.task_id
                    if not running:
                        return plan
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        plan = self._finish(plan, running.pop(future), future)
            except KeyboardInterrupt:
                for task_id in running.values():
                    loop_id = plan.task(task_id).loop_id
                    if loop_id:
                        self.runner.request_stop(loop_id, "the plan's dispatch was interrupted (Ctrl-C)")
                wait(running)
                for future, task_id in running.items():
                    plan = self._finish(plan, task_id, future)
                raise

    def _finish(self, plan: Plan, task_id: str, future: Future[LoopResult]) -> Plan:
        try:
            result = future.result()
        except LoopFrameworkError as exc:
            return self._apply(finish_task(plan, task_id, error=str(exc)))
        return self._apply(finish_task(plan, task_id, result=result))

    def _apply(self, change: PlanChange) -> Plan:
        stored = self.store.save_plan(change.plan.project, change.plan, change.events)
        if self.observer is not None:
            for event in change.events:
                self.observer(event, stored)
        return stored


class LocalPlans(PlanExecutor):
    """Plans of one local workspace: its SQLite store (plans and loops), its git repository, the
    subprocess sandbox. Use :meth:`close` (or ``with``) to release the store.

    Args:
        workspace: the user's project folder.
        state_dir: default ``<workspace>/.loopwright``.
        background: :meth:`dispatch` returns once the plan is RUNNING and runs its tasks in a
            thread, :meth:`verify` once it is VERIFYING and runs its gates in a thread (the local
            API); :meth:`join` waits for those threads.
        observer: called with each stored event during dispatch.
    """

    def __init__(
        self,
        workspace: Path,
        *,
        state_dir: Path | None = None,
        background: bool = False,
        observer: EventObserver | None = None,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.state_dir = (state_dir or state_dir_for(self.workspace)).resolve()
        self.store = SqlitePlanStore(self.state_dir / DB_FILE_NAME)
        self.loops = open_store(self.state_dir)
        self.sandbox = SubprocessSandbox()
        self.git = GitPlanWorkspace(self.workspace, self.state_dir)
        self.background = background
        self.observer = observer
        self._threads: list[threading.Thread] = []

    def inspect_loop(self, project: str, loop_id: str) -> InspectionPacket:
        """See :func:`loopwright.plans.service.inspect_loop`."""
        return service.inspect_loop(self.loops, self.store, self.git, project, loop_id)

    def dispatch(self, project: str, plan_id: str, *, concurrency: int = DEFAULT_PLAN_CONCURRENCY) -> Plan:
        """Dispatch the plan; returns it when every task ended (or, in background mode, once it
        is RUNNING)."""
        runner = LocalTaskRunner(self.workspace, self.loops, sandbox=self.sandbox, state_dir=self.state_dir)
        dispatcher = PlanDispatcher(self.store, runner, concurrency=concurrency, observer=self.observer)
        plan = dispatcher.start(project, plan_id)
        if not self.background:
            return dispatcher.run(plan)
        thread = threading.Thread(target=dispatcher.run, args=(plan,), name=f"dispatch-{plan_id}")
        thread.start()
        self._threads.append(thread)
        return plan

    def verify(self, project: str, plan_id: str) -> Plan:
        """gate:all (:func:`loopwright.plans.service.verify_plan`): returns the plan VERIFIED or
        FAILED, or, in background mode, once it is VERIFYING (the gates then run in a thread;
        the plan's status and ``gate_result`` tell when they are done; :meth:`join` waits).
        A plan that cannot be verified raises before anything starts
        (:class:`~loopwright.plans.errors.PlanConflictError`)."""
        if not self.background:
            return service.verify_plan(self.store, project, plan_id, self.sandbox, self.git)
        plan = service.start_verify(self.store, project, plan_id)
        thread = threading.Thread(target=self._run_verify, args=(plan,), name=f"verify-{plan_id}")
        thread.start()
        self._threads.append(thread)
        return plan

    def _run_verify(self, plan: Plan) -> None:
        try:
            service.run_verify(self.store, plan, self.sandbox, self.git)
        except LoopFrameworkError as exc:  # the store failed: record it rather than stay VERIFYING
            change = finish_verify(plan, [verify_error_check(f"verification could not finish: {exc}")])
            with contextlib.suppress(LoopFrameworkError):
                self.store.save_plan(plan.project, change.plan, change.events)

    def join(self, timeout: float | None = None) -> None:
        """Wait for background dispatches and verifications (``timeout`` seconds each; None: until
        they end)."""
        for thread in self._threads:
            thread.join(timeout)

    def close(self) -> None:
        """Close the stores."""
        self.store.close()
        self.loops.close()

    def __enter__(self) -> LocalPlans:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
