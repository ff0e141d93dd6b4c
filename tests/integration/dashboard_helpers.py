"""Helpers for the dashboard tests (API, local server, benchmark): seeded stores and requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.sqlite_queries import SqliteQueries
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.controls import ControlService
from loopwright.dashboard.api import DashboardDeps, build_app
from loopwright.dashboard.identity import OPERATORS_FILE_NAME, LocalIdentityResolver
from loopwright.dashboard.server import http_to_event
from loopwright.models import (
    ControlRequest,
    ExitConditionConfig,
    ExitConditionStatus,
    ExitConditionType,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
)
from loopwright.steps.checkpoint import recover
from loopwright.travel import TimeTravel

EV = IterationEventType
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def loop_state(
    loop_id: str,
    *,
    project: str = "demo",
    phase: LoopPhase = LoopPhase.ITERATING,
    outcome: LoopOutcome | None = None,
    iteration: int = 0,
    max_iterations: int = 10,
) -> LoopState:
    """A loop with two exit conditions (tests, lint), started at :data:`T0`."""
    config = LoopConfig(
        goal=f"goal of {loop_id}",
        project=project,
        max_iterations=max_iterations,
        exit_conditions=[
            ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS),
            ExitConditionConfig(type=ExitConditionType.LINTING_CLEAN),
        ],
    )
    return LoopState(
        loop_id=loop_id,
        project=project,
        config=config,
        phase=phase,
        outcome=outcome,
        iteration=iteration,
        started_at=T0,
        updated_at=T0,
        is_active=phase not in (LoopPhase.COMPLETED, LoopPhase.AWAITING_RESPONSE, LoopPhase.PAUSED),
        exit_conditions=[
            ExitConditionStatus(name="all_tests_pass", type=ExitConditionType.ALL_TESTS_PASS),
            ExitConditionStatus(name="linting_clean", type=ExitConditionType.LINTING_CLEAN),
        ],
    )


def iteration_events(loop_id: str, iterations: int, *, seconds: float = 5.0) -> list[IterationEvent]:
    """Oldest first: per iteration STARTED, AGENT_COMPLETED (100 tokens), EXIT_CONDITIONS_EVALUATED
    (tests MET from iteration 2, lint MET from 3) and COMPLETED, ``seconds`` apart from start to
    completion."""
    events: list[IterationEvent] = []
    steps = (
        (EV.ITERATION_STARTED, 0.0, LoopPhase.ITERATING),
        (EV.AGENT_COMPLETED, seconds / 2, LoopPhase.ITERATING),
        (EV.EXIT_CONDITIONS_EVALUATED, seconds - 1, LoopPhase.EVALUATING),
        (EV.ITERATION_COMPLETED, seconds, LoopPhase.DECIDING),
    )
    for number in range(1, iterations + 1):
        start = T0 + timedelta(seconds=(number - 1) * (seconds + 1))
        statuses = {
            "all_tests_pass": "MET" if number >= 2 else "NOT_MET",
            "linting_clean": "MET" if number >= 3 else "NOT_MET",
        }
        for kind, at, phase in steps:
            data: dict[str, Any] = {}
            if kind is EV.AGENT_COMPLETED:
                data = {"tokens_used": 100}
            elif kind is EV.EXIT_CONDITIONS_EVALUATED:
                data = {"statuses": statuses, "summaries": {}}
            events.append(
                IterationEvent(
                    loop_id=loop_id,
                    iteration=number,
                    type=kind,
                    phase=phase,
                    timestamp=start + timedelta(seconds=at),
                    message=f"{kind.value.lower()} {number}",
                    data=data,
                )
            )
    return events


@dataclass
class Dashboard:
    """An app over a real SQLite store, Cedar over ``policies/`` and a recording resumer."""

    store: SqliteStore
    queries: SqliteQueries
    app: APIGatewayRestResolver
    identity: LocalIdentityResolver
    running: set[str] = field(default_factory=set)
    resumed: list[tuple[str, ControlRequest]] = field(default_factory=list)

    def call(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON body or text, headers) of one request resolved as Lambda would."""
        payload = raw.encode() if raw is not None else (b"" if body is None else json.dumps(body).encode())
        event = http_to_event(method, target, list((headers or {}).items()), payload)
        response = self.app.resolve(event, None)  # type: ignore[arg-type]
        out_headers = {k: str(v) for k, v in (response.get("headers") or {}).items()}
        for key, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[key] = ", ".join(str(v) for v in values)
        text = response.get("body") or ""
        content_type = out_headers.get("Content-Type", "")
        return response["statusCode"], json.loads(text) if "json" in content_type else text, out_headers

    def snapshot(self, loop_id: str) -> tuple[int, int, list[str]]:
        """What a rejected request must leave alone: version, event count, queued controls."""
        return (
            self.store.get_state(loop_id).version,
            len(self.store.list_events(loop_id)),
            [c.control_id for c in self.store.pending_controls(loop_id)],
        )


def open_dashboard(
    state_dir: Path,
    *,
    user: str = "alice",
    operators: str | None = None,
    evidence: Callable[[str], bytes | None] | None = None,
    travel: TimeTravel | None = None,
) -> Dashboard:
    """A :class:`Dashboard` over ``state_dir/loopwright.db`` (created); ``operators`` is the text of
    ``operators.toml`` (None: no file, so ``user`` operates every project); ``evidence`` reads a
    loop's evidence file (None: the deployment keeps none); ``travel`` applies rollback and fork
    (None: they are refused, as on AWS)."""
    store = SqliteStore(state_dir / "loopwright.db")
    if operators is not None:
        (state_dir / OPERATORS_FILE_NAME).write_text(operators)
    queries = SqliteQueries(state_dir / "loopwright.db")
    running: set[str] = set()
    resumed: list[tuple[str, ControlRequest]] = []

    def resumer(state: LoopState, request: ControlRequest) -> None:
        if request.checkpoint_id is not None:  # as the engines do: a named checkpoint must exist
            recover(state.loop_id, store, request.checkpoint_id)
        resumed.append((state.loop_id, request))

    identity = LocalIdentityResolver(user=user, operators_path=state_dir / OPERATORS_FILE_NAME)
    deps = DashboardDeps(
        store=store,
        queries=queries,
        checkpoints=store,
        controls=ControlService(
            store,
            CedarPolicyEngine(),
            resumer,
            is_running=lambda state: state.loop_id in running,
            travel=travel,
        ),
        identity=identity,
        liveness=lambda loop_id: loop_id in running,
        clock=lambda: T0 + timedelta(seconds=30),
        evidence=evidence,
    )
    return Dashboard(
        store=store,
        queries=queries,
        app=build_app(deps),
        identity=identity,
        running=running,
        resumed=resumed,
    )
