"""Fakes for the plan tests."""

from __future__ import annotations

import threading
import time

from loopwright.exceptions import WorkspaceError
from loopwright.models import LoopOutcome, LoopPhase, LoopResult
from loopwright.models.plans import TaskRunRequest
from loopwright.plans.ports import TaskRunner


class FakeRunner(TaskRunner):
    """Each task sleeps ``delays[task]`` seconds; tasks in ``fail`` end ITERATION_LIMIT, in
    ``broken`` cannot start."""

    def __init__(
        self,
        delays: dict[str, float],
        fail: frozenset[str] = frozenset(),
        broken: frozenset[str] = frozenset(),
    ) -> None:
        self.delays, self.fail, self.broken = delays, fail, broken
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.requests: list[TaskRunRequest] = []

    def run_task(self, request: TaskRunRequest) -> LoopResult:
        with self.lock:
            self.requests.append(request)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if request.task_id in self.broken:
                raise WorkspaceError("git exploded")
            time.sleep(self.delays.get(request.task_id, 0.0))
            success = request.task_id not in self.fail
            return LoopResult(
                loop_id=request.loop_id,
                success=success,
                outcome=LoopOutcome.CONDITIONS_MET if success else LoopOutcome.ITERATION_LIMIT,
                phase=LoopPhase.COMPLETED,
                iterations=1,
                features_completed=int(success),
                features_total=1,
                sessions_used=1,
                total_tokens=0,
                errors_recovered=0,
                duration_seconds=0.0,
                head_commit=f"commit-{request.task_id}",
            )
        finally:
            with self.lock:
                self.active -= 1
