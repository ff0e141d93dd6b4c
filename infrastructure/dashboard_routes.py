"""The dashboard's route table and what each of its functions may do (:mod:`infrastructure.dashboard`
builds them into API Gateway methods and IAM roles).

- :data:`DASHBOARD_ROUTES`: every method of the dashboard app, the sign-in page and the plan
  router, with the function mode serving it, whether it is public, its query parameters and the
  model its body is validated against (a test checks the table against the app's routes).
- The IAM actions of each function (``READ_FUNCTION_ACTIONS``, ``CONTROL_FUNCTION_ACTIONS``,
  ``PLAN_FUNCTION_ACTIONS``; tests compare the synthesized roles with them).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from loopwright.dashboard.models import (
    ApproveBody,
    ControlBody,
    ForkBody,
    LimitsBody,
    ResumeBody,
    RollbackBody,
    StopBody,
)
from loopwright.planapi.router import CreatePlanRequest, DispatchRequest, VerifyRequest

#: What the read function may do with the loops, events and plans tables (and their indexes).
READ_ACTIONS = ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem")
#: Item writes of the DynamoDB stores (TransactWriteItems is authorized per item action).
WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
#: The checkpoint Memory: listing a loop's checkpoints.
MEMORY_READ_ACTIONS = ("bedrock-agentcore:ListEvents",)
#: The checkpoint Memory: a rollback saves the rolled-back state as the newest checkpoint and
#: prunes to the loop's retention (CreateEvent, DeleteEvent).
MEMORY_WRITE_ACTIONS = ("bedrock-agentcore:CreateEvent", "bedrock-agentcore:DeleteEvent")
#: X-Ray and CloudWatch reads (no resource-level permissions: Resource "*").
OBSERVABILITY_ACTIONS = ("xray:GetTraceSummaries", "cloudwatch:GetMetricData")
#: The loop state machine: approve (SendTaskSuccess), resume (StartExecution).
LOOP_STATE_MACHINE_ACTIONS = ("states:SendTaskSuccess", "states:StartExecution")
#: The loop state machine's executions: is the parked one still running (approve).
LOOP_EXECUTION_ACTIONS = ("states:DescribeExecution",)
#: Each function's actions, all resources together (tests compare roles with these).
#: The evidence key's public half (``GET /api/evidence/public-key``; granted by
#: :meth:`infrastructure.evidence.EvidenceKey.connect_reader`, on that key only).
EVIDENCE_KEY_READ_ACTIONS = ("kms:GetPublicKey",)
READ_FUNCTION_ACTIONS = frozenset(
    READ_ACTIONS + MEMORY_READ_ACTIONS + OBSERVABILITY_ACTIONS + EVIDENCE_KEY_READ_ACTIONS
)
#: The controls function also reads the loop's checkpoints in AgentCore Memory: a resume continues
#: from the newest valid one, or the one named (issue 12); a rollback writes one (issue 10).
CONTROL_FUNCTION_ACTIONS = frozenset(
    {
        "dynamodb:GetItem",
        *WRITE_ACTIONS,
        *MEMORY_READ_ACTIONS,
        *MEMORY_WRITE_ACTIONS,
        "verifiedpermissions:IsAuthorized",
        *LOOP_STATE_MACHINE_ACTIONS,
        *LOOP_EXECUTION_ACTIONS,
    }
)
#: The plans function starts PlanDispatch executions (dispatch and verify): gate:all never runs in it.
PLAN_FUNCTION_ACTIONS = frozenset(
    READ_ACTIONS + WRITE_ACTIONS + ("states:StartExecution", "verifiedpermissions:IsAuthorized")
)
#: X-Ray's own writes, added to every traced function by Tracing.ACTIVE.
XRAY_WRITE_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})
#: Log writes (each function's own log group).
LOG_ACTIONS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})

READ, CONTROLS, PLANS = "read", "controls", "plans"
FUNCTION_MODES = (READ, CONTROLS, PLANS)


@dataclass(frozen=True)
class DashboardRoute:
    """One dashboard method: ``method`` on resource ``path`` (API Gateway's ``{name}`` variables),
    served by the ``function`` of that mode; ``public`` ones have no authorizer (see the module
    docstring); ``query`` are optional query parameters, ``required_query`` required ones (the
    validator refuses a request without them); ``body`` the model a POST body is validated
    against."""

    method: str
    path: str
    function: str
    public: bool = False
    query: tuple[str, ...] = ()
    required_query: tuple[str, ...] = ()
    body: type[BaseModel] | None = None


def _get(
    path: str, *, public: bool = False, query: tuple[str, ...] = (), required: tuple[str, ...] = ()
) -> DashboardRoute:
    return DashboardRoute("GET", path, READ, public=public, query=query, required_query=required)


#: Every route of the dashboard app (``loopwright.dashboard.api.build_app``), the sign-in page
#: and the plan router; a test checks the list against the app's routes.
DASHBOARD_ROUTES: tuple[DashboardRoute, ...] = (
    _get("/", public=True),
    _get("/static/{name}", public=True),
    _get("/signin", public=True, query=("code", "state", "error", "error_description", "signout")),
    _get("/signin.js", public=True),
    _get("/swagger", public=True, query=("format",)),
    _get("/api/openapi.json", public=True),
    _get("/api/identity"),
    _get("/api/loops", query=("project", "status", "limit", "cursor")),
    _get("/api/loops/{loop_id}"),
    _get("/api/loops/{loop_id}/events", query=("type", "limit", "cursor")),
    _get("/api/loops/{loop_id}/checkpoints"),
    _get("/api/loops/{loop_id}/conditions", query=("limit", "cursor")),
    _get("/api/loops/{loop_id}/traces", query=("limit",)),
    _get("/api/loops/{loop_id}/metrics"),
    _get("/api/loops/{loop_id}/iterations"),
    _get("/api/loops/{loop_id}/iterations/{iteration}"),
    _get("/api/loops/{loop_id}/evidence"),
    _get("/api/evidence/public-key"),
    _get("/progress/{session_id}"),
    _get("/events/{session_id}", query=("limit", "cursor")),
    _get("/checkpoints/{session_id}"),
    DashboardRoute("POST", "/api/loops/{loop_id}/pause", CONTROLS, body=ControlBody),
    DashboardRoute("POST", "/api/loops/{loop_id}/resume", CONTROLS, body=ResumeBody),
    DashboardRoute("POST", "/api/loops/{loop_id}/stop", CONTROLS, body=StopBody),
    DashboardRoute("POST", "/api/loops/{loop_id}/approve", CONTROLS, body=ApproveBody),
    DashboardRoute("POST", "/api/loops/{loop_id}/limits", CONTROLS, body=LimitsBody),
    DashboardRoute("POST", "/api/loops/{loop_id}/rollback", CONTROLS, body=RollbackBody),
    DashboardRoute("POST", "/api/loops/{loop_id}/fork", CONTROLS, body=ForkBody),
    _get("/api/projects/{project_id}/plans", query=("limit",)),
    _get("/api/plans/{plan_id}", required=("project",)),
    _get("/api/plans/{plan_id}/events", required=("project",)),
    DashboardRoute("POST", "/api/projects/{project_id}/plan", PLANS, body=CreatePlanRequest),
    DashboardRoute(
        "POST", "/api/plans/{plan_id}/dispatch", PLANS, required_query=("project",), body=DispatchRequest
    ),
    DashboardRoute(
        "POST", "/api/plans/{plan_id}/verify", PLANS, required_query=("project",), body=VerifyRequest
    ),
)
#: The POST routes, throttled per method by :class:`infrastructure.api.LoopApi`.
CONTROL_ROUTE_KEYS = tuple(f"{r.path}/{r.method}" for r in DASHBOARD_ROUTES if r.method == "POST")
