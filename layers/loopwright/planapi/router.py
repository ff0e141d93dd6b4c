"""The plan API (seed 003 "API Endpoints") as a Powertools event-handler :class:`Router`.

Include it in the dashboard's resolver (``build_app(deps, routers=[build_plan_router(...)])``):
it relies on that resolver's request validation (``enable_validation=True``) and error answers
(:func:`loopwright.dashboard.errors.register_errors`).

=======  ===================================  ============================================  ====
method   path                                 body                                          ok
=======  ===================================  ============================================  ====
POST     /api/projects/{projectId}/plan       one of ``packetId``, ``loopId``, ``plan``;      201
                                              optional ``model``
GET      /api/projects/{projectId}/plans      (``?limit=``, 1-100, default 50)              200
POST     /api/plans/{planId}/dispatch         ``{"parallel": true, "concurrency": 4}``       202
POST     /api/plans/{planId}/verify           ``{}``                                        202
GET      /api/plans/{planId}                                                                200
GET      /api/plans/{planId}/events                                                         200
=======  ===================================  ============================================  ====

**Authorization**: every POST (create, dispatch, verify) is a Cedar question asked through
:class:`~loopwright.plans.authorize.PlanAuthorizer` before anything is read or written: may the
caller (:attr:`PlanApiDeps.identity`) take ``CreatePlan`` / ``DispatchPlan`` / ``VerifyPlan`` on
``Project::"<project>"``? The shipped policies (``policies/plans.cedar``) allow members of the
project's operators group (``Group::"<project>-operators"``) and never an agent. A denial is 403
``forbidden`` with the deciding ``policy_ids``; no identity is 401.

**Project isolation**: the routes under ``/api/plans/{planId}`` require the query parameter
``?project=<project_id>``; the plan is looked up by (project, plan id), so a plan of another
project is 404, exactly like an unknown one. (Plan ids do not embed the project: the project is
always said, never guessed.) Bodies: :mod:`loopwright.planapi.models`.

**Asynchronous changes**: dispatch and verify answer 202 once the work has started, with the
plan as it then is; ``GET /api/plans/{planId}`` (and its events) shows the progress. Verify
answers VERIFYING (``verify_run_id`` set, no ``gate_result`` yet): gate:all runs outside the
request (locally in a thread of the dashboard, on AWS in a verify execution of the PlanDispatch
state machine) and the plan ends VERIFIED or FAILED with every check in ``gate_result``. A plan
that cannot be verified (still running tasks, verified already) is 409 and nothing starts.

``POST .../plan`` with ``packetId`` plans a stored inspection packet, with ``loopId`` inspects
that ended loop first, both through the configured :class:`Planner`: a planner that cannot make a
valid plan gives a FAILED plan with a ``plan_generation`` check (still 201: the plan is recorded).
With ``plan`` (a plan draft, as in a plan file) the draft is validated here: an invalid one is 400
and nothing is stored.

Errors are the dashboard's (:class:`~loopwright.dashboard.models.ErrorResponse`): 400
``bad_request`` (``field`` names the input), 401 ``unauthenticated``, 403 ``forbidden``, 404
``not_found``, 409 ``conflict`` (the plan's status forbids the action), 415
``unsupported_media_type``, 500 ``internal``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import TypeAdapter, ValidationError

from loopwright.dashboard.errors import JSON, NO_STORE, ApiError, answer_doc, error_doc
from loopwright.dashboard.identity import IdentityResolver
from loopwright.exceptions import ConfigError, LoopNotFoundError
from loopwright.models.plans import Plan, PlanId
from loopwright.planapi.models import (
    MAX_PLANS_LISTED,
    PROJECT_PATTERN,
    CreatePlanRequest,
    DispatchRequest,
    DispatchResult,
    PlanEvents,
    PlanList,
    VerifyRequest,
    VerifyResult,
)
from loopwright.plans import service
from loopwright.plans.authorize import PlanAction, PlanAuthorizer
from loopwright.plans.errors import (
    PlanConflictError,
    PlanDeniedError,
    PlanNotFoundError,
    PlanValidationError,
)
from loopwright.plans.ports import PlanExecutor, Planner, PlanStore
from loopwright.plans.validation import parse_draft

__all__ = [
    "CreatePlanRequest",
    "DispatchRequest",
    "PlanApiDeps",
    "VerifyRequest",
    "build_plan_router",
]

_PLAN_ID = TypeAdapter(PlanId)
_R = TypeVar("_R")

ProjectPath = Annotated[
    str, Path(pattern=PROJECT_PATTERN, description="project id (letters, digits, '.', '_', '-')")
]
ProjectQuery = Annotated[
    str,
    Query(pattern=PROJECT_PATTERN, description="the plan's project (required: plans never cross projects)"),
]


@dataclass(frozen=True)
class PlanApiDeps:
    """What the routes use: the plan store, the planner, the executor (inspect, dispatch,
    verify), the Cedar authorizer of plan changes and who the caller is.

    Locally the store, planner and executor come from
    :class:`~loopwright.engine.plan_dispatch.LocalPlans` (``store``,
    :class:`~loopwright.plans.decompose.ConditionPlanner`, itself), the authorizer over cedarpy
    and the identity from :class:`~loopwright.dashboard.identity.LocalIdentityResolver`; on AWS
    over DynamoDB, Step Functions, Verified Permissions and the Cognito claims."""

    store: PlanStore
    planner: Planner
    executor: PlanExecutor
    authorizer: PlanAuthorizer
    identity: IdentityResolver


def _guarded(handler: Callable[..., _R]) -> Callable[..., _R]:
    """The plans' domain errors as :class:`ApiError` answers (the resolver writes them)."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> _R:
        try:
            return handler(*args, **kwargs)
        except PlanValidationError as exc:
            raise ApiError(400, "bad_request", str(exc), field=exc.field) from exc
        except PlanDeniedError as exc:
            raise ApiError(403, "forbidden", str(exc), policy_ids=list(exc.policy_ids)) from exc
        except ConfigError as exc:
            raise ApiError(400, "bad_request", str(exc)) from exc
        except (PlanNotFoundError, LoopNotFoundError) as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        except PlanConflictError as exc:
            raise ApiError(409, "conflict", str(exc)) from exc

    return wrapper


_CHANGE_ERRORS = error_doc(400, 401, 403, 404, 409, 415, 500)


def build_plan_router(deps: PlanApiDeps) -> Router:
    """A :class:`Router` serving the plan endpoints (module docstring) over ``deps``."""
    router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated

    def authorize(action: PlanAction, project: str) -> None:
        identity = deps.identity(router.current_event.raw_event)
        deps.authorizer.authorize(
            action, project, principal=identity.principal, groups=identity.groups_for(project)
        )

    def plan_id_of(plan_id: str, project: str) -> str:
        try:
            return _PLAN_ID.validate_python(plan_id)
        except ValidationError as exc:
            message = f"no plan {plan_id[:80]!r} in project {project!r}: not a plan id"
            raise ApiError(404, "not_found", message, field="plan_id") from exc

    def answer(status: int, body: Any) -> Response[Any]:
        return Response(status_code=status, content_type=JSON, body=body, headers=dict(NO_STORE))

    @router.post(
        "/api/projects/<project_id>/plan",
        summary="Create a plan",
        description="From a stored inspection packet (packetId), an ended loop (loopId, inspected "
        "first) or a plan draft (plan). Cedar: CreatePlan on the project (its operators group).",
        responses={
            **answer_doc(Plan, "the plan: DRAFT, or FAILED with a plan_generation check", 201),
            **_CHANGE_ERRORS,
        },
    )
    @_guarded
    def create_plan(project_id: ProjectPath, body: CreatePlanRequest) -> Response[Plan]:
        authorize(PlanAction.CREATE, project_id)
        if body.plan is not None:
            draft = parse_draft(body.plan, prefix=["plan"])
            try:
                plan = service.create_plan(deps.store, project_id, draft)
            except PlanValidationError as exc:
                raise PlanValidationError(f"plan.{exc.field}", exc.problem) from exc
            return answer(201, plan)
        if body.loop_id is not None:
            packet = deps.executor.inspect_loop(project_id, body.loop_id)
        else:
            assert body.packet_id is not None
            packet = deps.store.get_packet(project_id, body.packet_id)
        return answer(201, service.generate_plan(deps.store, deps.planner, packet, model=body.model))

    @router.get(
        "/api/projects/<project_id>/plans",
        summary="List a project's plans",
        description="The project's plans, newest first.",
        responses={**answer_doc(PlanList, "the plans", 200), **error_doc(400, 500)},
    )
    @_guarded
    def list_plans(
        project_id: ProjectPath,
        limit: Annotated[int, Query(ge=1, le=MAX_PLANS_LISTED, description="plans, at most")] = 50,
    ) -> PlanList:
        return PlanList(plans=deps.store.list_plans(project_id, limit=limit))

    @router.post(
        "/api/plans/<plan_id>/dispatch",
        summary="Dispatch a plan",
        description="Start a DRAFT plan's tasks as loops, in parallel where dependencies allow. "
        "Cedar: DispatchPlan on the project.",
        responses={**answer_doc(DispatchResult, "dispatched: each task's loop", 202), **_CHANGE_ERRORS},
    )
    @_guarded
    def dispatch_plan(
        plan_id: str, project: ProjectQuery, body: DispatchRequest | None = None
    ) -> Response[DispatchResult]:
        authorize(PlanAction.DISPATCH, project)
        request = body or DispatchRequest()
        concurrency = request.concurrency if request.parallel else 1
        plan = deps.executor.dispatch(project, plan_id_of(plan_id, project), concurrency=concurrency)
        return answer(202, DispatchResult.of(plan))

    @router.post(
        "/api/plans/<plan_id>/verify",
        summary="Verify a plan (gate:all)",
        description="Start gate:all on the merged result of a dispatched plan whose tasks ended: "
        "answers the plan VERIFYING; it ends VERIFIED or FAILED with every check (GET the plan). "
        "Cedar: VerifyPlan on the project.",
        responses={
            **answer_doc(VerifyResult, "verifying: the plan's status (its gate result once done)", 202),
            **_CHANGE_ERRORS,
        },
    )
    @_guarded
    def verify_plan(
        plan_id: str, project: ProjectQuery, body: VerifyRequest | None = None
    ) -> Response[VerifyResult]:
        authorize(PlanAction.VERIFY, project)
        plan = deps.executor.verify(project, plan_id_of(plan_id, project))
        return answer(202, VerifyResult.of(plan))

    @router.get(
        "/api/plans/<plan_id>",
        summary="A plan",
        description="The plan with all its tasks' statuses.",
        responses={**answer_doc(Plan, "the plan", 200), **error_doc(400, 404, 500)},
    )
    @_guarded
    def get_plan(plan_id: str, project: ProjectQuery) -> Plan:
        return deps.store.get_plan(project, plan_id_of(plan_id, project))

    @router.get(
        "/api/plans/<plan_id>/events",
        summary="A plan's events",
        description="The plan's evidence trail, oldest first.",
        responses={**answer_doc(PlanEvents, "the events", 200), **error_doc(400, 404, 500)},
    )
    @_guarded
    def plan_events(plan_id: str, project: ProjectQuery) -> PlanEvents:
        plan_id = plan_id_of(plan_id, project)
        deps.store.get_plan(project, plan_id)  # 404 for a plan not in the project
        return PlanEvents(events=deps.store.list_events(project, plan_id))

    return router
