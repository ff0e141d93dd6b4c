"""The dashboard's control routes (POST pause, resume, stop, approve, limits; rollback and fork,
time travel), each authorized by Cedar in :class:`~loopwright.controls.ControlService`. See
:mod:`loopwright.dashboard.api`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from pydantic import ValidationError

from loopwright.dashboard.deps import DashboardDeps
from loopwright.dashboard.errors import JSON, NO_STORE, ApiError, error_doc
from loopwright.dashboard.identity import Identity
from loopwright.dashboard.models import (
    ApproveBody,
    ControlBody,
    ForkBody,
    LimitsBody,
    ResumeBody,
    RollbackBody,
    StopBody,
)
from loopwright.dashboard.reads import check_loop_id
from loopwright.models import ControlAction, ControlRequest, ControlResult, LimitChange

_CONTROL_DOC = {
    200: {
        "description": "applied: the loop was idle and is changed",
        "content": {JSON: {"model": ControlResult}},
    },
    202: {
        "description": "queued for the running loop's next step",
        "content": {JSON: {"model": ControlResult}},
    },
    **error_doc(400, 401, 403, 404, 409, 415, 500),
}


def register_controls(app: APIGatewayRestResolver, deps: DashboardDeps) -> None:
    def submit(
        loop_id: str,
        action: ControlAction,
        body: ControlBody | None,
        *,
        limits: LimitChange | None = None,
        response: str | None = None,
        checkpoint_id: str | None = None,
        accept_pinned_change: bool = False,
        now: bool = False,
        **travel: Any,
    ) -> Response[ControlResult]:
        identity: Identity = deps.identity(app.current_event.raw_event)
        state = deps.store.get_state(check_loop_id(loop_id))
        groups = identity.groups_for(state.project)
        try:
            request = ControlRequest(
                loop_id=loop_id,
                action=action,
                principal=identity.principal,
                groups=groups,
                reason=body.reason if body is not None else "",
                limits=limits,
                response=response,
                checkpoint_id=checkpoint_id,
                accept_pinned_change=accept_pinned_change,
                now=now,
                **travel,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(400, "bad_request", f"body {name}: {first['msg']}", field=name) from exc
        result = deps.controls.submit(request)
        status = 202 if result.status == "queued" else 200
        return Response(status_code=status, content_type=JSON, body=result, headers=dict(NO_STORE))

    @app.post(
        "/api/loops/<loop_id>/pause",
        summary="Pause a loop",
        description="The loop pauses after its current step, without an outcome; resume continues it.",
        responses=_CONTROL_DOC,
    )
    def post_pause(loop_id: str, body: ControlBody | None = None) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.PAUSE, body)

    @app.post(
        "/api/loops/<loop_id>/resume",
        summary="Resume a loop",
        description="Continue a PAUSED, INTERRUPTED, STOPPED, FAILED or limit-ended loop from its newest "
        "valid checkpoint, or from the checkpoint named by checkpoint_id.",
        responses=_CONTROL_DOC,
    )
    def post_resume(loop_id: str, body: ResumeBody | None = None) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.RESUME, body, checkpoint_id=body.checkpoint_id if body else None)

    @app.post(
        "/api/loops/<loop_id>/stop",
        summary="Stop a loop",
        description="The loop stops after its current step with outcome STOPPED; with `now: true` "
        "the running agent or exit condition is ended at once (its partial work is kept on a ref).",
        responses=_CONTROL_DOC,
    )
    def post_stop(loop_id: str, body: StopBody | None = None) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.STOP, body, now=body is not None and body.now)

    @app.post(
        "/api/loops/<loop_id>/approve",
        summary="Answer a loop awaiting a response",
        description="Give the agent's question (AWAITING_RESPONSE) an answer; the loop continues.",
        responses=_CONTROL_DOC,
    )
    def post_approve(loop_id: str, body: ApproveBody | None = None) -> Response[ControlResult]:
        return submit(
            loop_id,
            ControlAction.APPROVE,
            body,
            response=body.response if body else None,
            accept_pinned_change=body.accept_pinned_change if body else False,
        )

    @app.post(
        "/api/loops/<loop_id>/limits",
        summary="Change a loop's limits",
        description="Each limit given replaces the loop's (iterations, tokens, US dollars, "
        "wall-clock seconds, agent sessions).",
        responses=_CONTROL_DOC,
    )
    def post_limits(loop_id: str, body: LimitsBody) -> Response[ControlResult]:
        try:
            limits = LimitChange(
                max_iterations=body.max_iterations,
                token_budget=body.token_budget,
                cost_budget_usd=body.cost_budget_usd,
                max_duration_seconds=body.max_duration_seconds,
                max_sessions=body.max_sessions,
            )
        except ValidationError as exc:  # the body's bounds are LimitChange's: a safety net
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(400, "bad_request", f"body field {name}: {first['msg']}", field=name) from exc
        return submit(loop_id, ControlAction.RAISE_LIMIT, body, limits=limits)

    @app.post(
        "/api/loops/<loop_id>/rollback",
        summary="Roll a loop back to a checkpoint",
        description="Reset an idle loop to its checkpoint of to_iteration: its state and its branch "
        "head (later commits stay on refs/loopwright/<loop_id>/set-aside/rollback-<n>). The loop is "
        "then PAUSED; resume continues it. 409 when it is running or has no such checkpoint.",
        responses=_CONTROL_DOC,
    )
    def post_rollback(loop_id: str, body: RollbackBody) -> Response[ControlResult]:
        return submit(loop_id, ControlAction.ROLLBACK, body, iteration=body.to_iteration)

    @app.post(
        "/api/loops/<loop_id>/fork",
        summary="Fork a new loop from a checkpoint",
        description="Start a new loop (new_loop_id in the answer) on a new branch from the loop's "
        "checkpoint of from_iteration, with the loop's configuration (goal replaced when given); "
        "the new loop records its parent. 409 when the loop has no such checkpoint.",
        responses=_CONTROL_DOC,
    )
    def post_fork(loop_id: str, body: ForkBody) -> Response[ControlResult]:
        return submit(
            loop_id,
            ControlAction.FORK,
            body,
            iteration=body.from_iteration,
            goal=body.goal,
            new_loop_id=body.loop_id,
        )
