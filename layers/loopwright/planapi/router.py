"""The plan API (seed 003 "API Endpoints") as a Powertools event-handler :class:`Router`.

Include it in any resolver (``app.include_router(build_plan_router(deps))``):

=======  ===================================  ============================================  ====
method   path                                 body                                          ok
=======  ===================================  ============================================  ====
POST     /api/projects/{projectId}/plan       one of ``packetId``, ``loopId``, ``plan``;      201
                                              optional ``model``
GET      /api/projects/{projectId}/plans      (``?limit=``)                                 200
POST     /api/plans/{planId}/dispatch         ``{"parallel": true, "concurrency": 4}``       202
POST     /api/plans/{planId}/verify           ``{}``                                        200
GET      /api/plans/{planId}                                                                200
GET      /api/plans/{planId}/events                                                         200
=======  ===================================  ============================================  ====

**Project isolation**: the routes under ``/api/plans/{planId}`` require the query parameter
``?project=<project_id>``; the plan is looked up by (project, plan id), so a plan of another
project is 404, exactly like an unknown one. (Plan ids do not embed the project: the project is
always said, never guessed.) Bodies may use the seed's camelCase (``packetId``) or snake_case
names; responses are snake_case like the rest of loopwright.

``POST .../plan`` with ``packetId`` plans a stored inspection packet, with ``loopId`` inspects
that ended loop first, both through the configured :class:`Planner`: a planner that cannot make a
valid plan gives a FAILED plan with a ``plan_generation`` check (still 201: the plan is recorded).
With ``plan`` (a plan draft, as in a plan file) the draft is validated here: an invalid one is 400
and nothing is stored.

Errors are JSON ``{"error": {"code", "message", "field"?}}``: 400 ``BAD_REQUEST`` (the field
named), 404 ``NOT_FOUND``, 409 ``CONFLICT`` (the plan's status forbids the action), 500 ``ERROR``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from loopwright.exceptions import ConfigError, LoopFrameworkError, LoopNotFoundError
from loopwright.models.plans import DEFAULT_PLAN_CONCURRENCY, MAX_PLAN_CONCURRENCY, Plan, PlanId
from loopwright.models.types import LoopId, ProjectId
from loopwright.plans import service
from loopwright.plans.errors import PlanConflictError, PlanNotFoundError, PlanValidationError
from loopwright.plans.ports import PlanExecutor, Planner, PlanStore
from loopwright.plans.validation import parse_draft

JsonResponse = Response[dict[str, Any]]

_PROJECT = TypeAdapter(ProjectId)
_PLAN_ID = TypeAdapter(PlanId)


@dataclass(frozen=True)
class PlanApiDeps:
    """What the routes use: the plan store, the planner, and the executor (inspect, dispatch,
    verify); locally all three come from :class:`~loopwright.engine.plan_dispatch.LocalPlans`
    (``store``, :class:`~loopwright.plans.decompose.ConditionPlanner`, itself)."""

    store: PlanStore
    planner: Planner
    executor: PlanExecutor


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class CreatePlanRequest(_Body):
    """Body of ``POST /api/projects/{projectId}/plan``: exactly one source of the plan."""

    packet_id: str | None = Field(default=None, max_length=64, description="a stored inspection packet")
    loop_id: LoopId | None = Field(default=None, description="an ended loop to inspect, then plan")
    plan: dict[str, Any] | None = Field(default=None, description="a plan draft written by the caller")
    model: str | None = Field(default=None, max_length=256, description="the planner's model (optional)")

    @model_validator(mode="after")
    def _one_source(self) -> CreatePlanRequest:
        given = [name for name in ("packet_id", "loop_id", "plan") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of packetId, loopId, plan")
        return self


class DispatchRequest(_Body):
    """Body of ``POST /api/plans/{planId}/dispatch`` (seed: ``parallel``, default true).

    ``parallel=false`` runs one task at a time; ``concurrency`` caps the loops running at once.
    """

    parallel: bool = True
    concurrency: int = Field(default=DEFAULT_PLAN_CONCURRENCY, ge=1, le=MAX_PLAN_CONCURRENCY)


class VerifyRequest(_Body):
    """Body of ``POST /api/plans/{planId}/verify``: empty (seed 003)."""


_BodyT = TypeVar("_BodyT", bound=_Body)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def _json(status: int, body: dict[str, Any]) -> JsonResponse:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _error(error: _ApiError) -> JsonResponse:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.field:
        body["field"] = error.field
    return _json(error.status, {"error": body})


def _guarded(handler: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Map domain errors to JSON error responses (never a stack trace)."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return handler(*args, **kwargs)
        except _ApiError as exc:
            return _error(exc)
        except PlanValidationError as exc:
            return _error(_ApiError(400, "BAD_REQUEST", exc.problem, exc.field))
        except ConfigError as exc:
            return _error(_ApiError(400, "BAD_REQUEST", str(exc)))
        except (PlanNotFoundError, LoopNotFoundError) as exc:
            return _error(_ApiError(404, "NOT_FOUND", str(exc)))
        except PlanConflictError as exc:
            return _error(_ApiError(409, "CONFLICT", str(exc)))
        except LoopFrameworkError as exc:
            return _error(_ApiError(500, "ERROR", str(exc)))

    return wrapper


def _body_error(exc: ValidationError) -> _ApiError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(to_camel(p) if isinstance(p, str) else str(p) for p in first["loc"]) or "(body)"
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return _ApiError(400, "BAD_REQUEST", message, field)


def build_plan_router(deps: PlanApiDeps) -> Router:
    """A :class:`Router` serving the plan endpoints (module docstring) over ``deps``."""
    router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated

    def body(model: type[_BodyT]) -> _BodyT:
        raw = router.current_event.decoded_body or "{}"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _ApiError(400, "BAD_REQUEST", f"the body is not JSON: {exc.msg}", "(body)") from exc
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _body_error(exc) from exc

    def project_of(value: str | None, field: str) -> str:
        if value is None:
            raise _ApiError(
                400,
                "BAD_REQUEST",
                "required query parameter: the plan's project (plans never cross projects)",
                field,
            )
        try:
            return _PROJECT.validate_python(value)
        except ValidationError as exc:
            raise _ApiError(
                400, "BAD_REQUEST", "not a project id (letters, digits, '.', '_', '-')", field
            ) from exc

    def plan_ref(plan_id: str) -> tuple[str, str]:
        project = project_of(router.current_event.get_query_string_value("project"), "project")
        try:
            return project, _PLAN_ID.validate_python(plan_id)
        except ValidationError as exc:
            raise _ApiError(404, "NOT_FOUND", f"no plan {plan_id!r} in project {project!r}") from exc

    @router.post("/api/projects/<project_id>/plan")
    @_guarded
    def create_plan(project_id: str) -> JsonResponse:
        """Create a plan from a packet, a loop, or a draft: 201 with the plan."""
        project = project_of(project_id, "projectId")
        request = body(CreatePlanRequest)
        if request.plan is not None:
            draft = parse_draft(request.plan, prefix=["plan"])
            try:
                plan = service.create_plan(deps.store, project, draft)
            except PlanValidationError as exc:
                raise PlanValidationError(f"plan.{exc.field}", exc.problem) from exc
            return _json(201, plan.model_dump(mode="json"))
        if request.loop_id is not None:
            packet = deps.executor.inspect_loop(project, request.loop_id)
        else:
            assert request.packet_id is not None
            packet = deps.store.get_packet(project, request.packet_id)
        plan = service.generate_plan(deps.store, deps.planner, packet, model=request.model)
        return _json(201, plan.model_dump(mode="json"))

    @router.get("/api/projects/<project_id>/plans")
    @_guarded
    def list_plans(project_id: str) -> JsonResponse:
        """The project's plans, newest first (``?limit=``, default 50, at most 100)."""
        project = project_of(project_id, "projectId")
        raw_limit = router.current_event.get_query_string_value("limit") or "50"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise _ApiError(400, "BAD_REQUEST", "must be a whole number from 1 to 100", "limit")
        plans = deps.store.list_plans(project, limit=int(raw_limit))
        return _json(200, {"plans": [p.model_dump(mode="json") for p in plans]})

    @router.post("/api/plans/<plan_id>/dispatch")
    @_guarded
    def dispatch_plan(plan_id: str) -> JsonResponse:
        """Dispatch a DRAFT plan: 202 with its runs (task id, loop id)."""
        project, plan_id = plan_ref(plan_id)
        request = body(DispatchRequest)
        plan = deps.executor.dispatch(
            project, plan_id, concurrency=request.concurrency if request.parallel else 1
        )
        return _json(202, _dispatch_response(plan))

    @router.post("/api/plans/<plan_id>/verify")
    @_guarded
    def verify_plan(plan_id: str) -> JsonResponse:
        """Run gate:all: 200 with the gate result (VERIFIED or FAILED)."""
        project, plan_id = plan_ref(plan_id)
        body(VerifyRequest)
        plan = deps.executor.verify(project, plan_id)
        return _json(
            200,
            {
                "plan_id": plan.plan_id,
                "status": plan.status.value,
                "verify_run_id": plan.verify_run_id,
                "gate_result": plan.gate_result.model_dump(mode="json") if plan.gate_result else None,
                "verified_at": plan.verified_at.isoformat() if plan.verified_at else None,
            },
        )

    @router.get("/api/plans/<plan_id>")
    @_guarded
    def get_plan(plan_id: str) -> JsonResponse:
        """The plan with all its tasks' statuses."""
        project, plan_id = plan_ref(plan_id)
        return _json(200, deps.store.get_plan(project, plan_id).model_dump(mode="json"))

    @router.get("/api/plans/<plan_id>/events")
    @_guarded
    def plan_events(plan_id: str) -> JsonResponse:
        """The plan's evidence trail, oldest first."""
        project, plan_id = plan_ref(plan_id)
        deps.store.get_plan(project, plan_id)  # 404 for a plan not in the project
        events = deps.store.list_events(project, plan_id)
        return _json(200, {"events": [e.model_dump(mode="json") for e in events]})

    return router


def _dispatch_response(plan: Plan) -> dict[str, Any]:
    return {
        "plan_id": plan.plan_id,
        "status": plan.status.value,
        "runs": [{"task_id": t.task_id, "loop_id": t.loop_id} for t in plan.tasks],
        "executed_at": plan.executed_at.isoformat() if plan.executed_at else None,
    }
