"""What the dashboard's Lambda functions need at run time (``functions/dashboard/handler.py``):
their mode and settings from the environment, their ports, and the requests a mode refuses.

Three functions run the dashboard (``infrastructure/dashboard.py``), told apart by
``LOOPWRIGHT_DASHBOARD_MODE``, each with a role holding only what its mode uses:

- ``read``: the GET routes (loops, progress, events, checkpoints, traces, metrics, identity, the
  page and the sign-in page, the plans' reads). Read-only role; any other method is answered 405
  before routing (:func:`refusal`), so a control never reaches a store it may not write.
- ``controls``: the loops' POST routes (pause, resume, stop, approve, limits), authorized by
  Cedar (Verified Permissions) and continued by
  :class:`loopwright.cloud.resume.StepFunctionsResumer` (approve: ``SendTaskSuccess``; resume: a
  new execution).
- ``plans``: the plans' POST routes (create, dispatch, verify; seed 003) over the DynamoDB plan
  store, :class:`~loopwright.adapters.aws.step_functions_plans.StepFunctionsPlanExecutor` (the
  PlanDispatch state machine: dispatch and verify executions, so gate:all never runs in the
  API call) and the
  :class:`~loopwright.plans.decompose.ConditionPlanner` (no model). Each plan change is
  authorized by Cedar in Verified Permissions (``POLICY_STORE_ID``, ``POLICY_MAP``) through
  :class:`~loopwright.plans.authorize.PlanAuthorizer`: the shipped ``policies/plans.cedar``
  allows members of the project's operators group (``Group::"<project>-operators"``, the Cognito
  group), never an agent; else 403 with the deciding policies.
- ``all`` (default, for local runs and tests): every route.

A request of another mode's method is answered 405, and a POST route of the other POST mode 404,
before routing (:func:`refusal`); the decision about a plan change is Cedar's, in the router.

Ports come from :class:`~loopwright.cloud.runtime.RuntimeSettings`: ``LOOPWRIGHT_ADAPTERS=aws``
gives DynamoDB (store and queries), AgentCore Memory (checkpoints), Verified Permissions (Cedar),
X-Ray (traces, ``annotation.loop_id``) and CloudWatch (metrics of ``POWERTOOLS_METRICS_NAMESPACE``
with dimension ``service = POWERTOOLS_SERVICE_NAME``); ``local`` the SQLite store of
``LOOPWRIGHT_STATE_DIR``. More settings (:class:`DashboardSettings`): ``LOOP_STATE_MACHINE_ARN``
(resume, approve and fork; without it they answer 409; rollback and fork on AWS:
:mod:`loopwright.cloud.time_travel`), ``COGNITO_DOMAIN_URL`` and
``COGNITO_CLIENT_ID`` (the sign-in page, :mod:`loopwright.cloud.signin`), ``PLANS_TABLE_NAME``
and ``PLAN_STATE_MACHINE_ARN`` (the plan routes). The caller is the Cognito user of the API
Gateway authorizer's claims.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright.cloud.observability import DEFAULT_METRICS_NAMESPACE
from loopwright.cloud.runtime import RuntimeSettings, check_agent_for_adapters, ports
from loopwright.cloud.signin import SignInSettings, build_signin_router
from loopwright.controls import ControlService
from loopwright.dashboard.api import ControlSubmitter, DashboardDeps, build_app
from loopwright.dashboard.deps import EvidenceKey
from loopwright.dashboard.identity import CognitoIdentityResolver
from loopwright.dashboard.ports import (
    LoopQueries,
    LoopStatus,
    LoopSummary,
    MetricQueries,
    Page,
    TraceQueries,
    UnavailableMetrics,
    UnavailableTraces,
)
from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import (
    AuthorizationRequest,
    Checkpoint,
    ControlRequest,
    ControlResult,
    IterationEvent,
    IterationEventType,
    LoopConfig,
    PolicyDecision,
)
from loopwright.models.plans import InspectionPacket, Plan
from loopwright.plans.ports import PlanExecutor, PlanStore
from loopwright.ports import CheckpointStore, LoopStore, PolicyEngine

Mode = Literal["read", "controls", "plans", "all"]
#: Methods each mode serves (HEAD and OPTIONS never reach the functions: API Gateway has no such
#: methods on these routes).
MODE_METHODS: dict[str, frozenset[str]] = {
    "read": frozenset({"GET"}),
    "controls": frozenset({"POST"}),
    "plans": frozenset({"POST"}),
    "all": frozenset({"GET", "POST"}),
}
#: Paths of the POST routes each POST mode serves.
MODE_POST_PATHS: dict[str, re.Pattern[str]] = {
    "controls": re.compile(r"^/api/loops/[^/]+/[a-z]+$"),
    "plans": re.compile(r"^/api/(projects/[^/]+/plan|plans/[^/]+/(dispatch|verify))$"),
}
_JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class DashboardSettings(BaseModel):
    """This function's own environment variables (besides :class:`RuntimeSettings`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    mode: Mode = Field(default="all", alias="LOOPWRIGHT_DASHBOARD_MODE")
    loop_state_machine_arn: str | None = Field(default=None, alias="LOOP_STATE_MACHINE_ARN")
    plans_table: str | None = Field(default=None, alias="PLANS_TABLE_NAME")
    plan_state_machine_arn: str | None = Field(default=None, alias="PLAN_STATE_MACHINE_ARN")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DashboardSettings:
        """Parse ``environ`` (default ``os.environ``). Raises :class:`ConfigError` naming the variable."""
        try:
            return cls.model_validate(dict(environ if environ is not None else os.environ))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"environment variable {name}: {first['msg']}") from exc


class _ServedElsewhere(LoopQueries, CheckpointStore):
    """The read ports of the ``controls`` function, which serves no GET route (its role may not
    read the indexes or the checkpoints): never called, as GET is answered 405 before routing."""

    def _refuse(self) -> LoopFrameworkError:
        return LoopFrameworkError("reads are served by the dashboard's read function")

    def list_loops(
        self,
        *,
        project: str | None = None,
        status: LoopStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[LoopSummary]:
        raise self._refuse()

    def list_events(
        self,
        loop_id: str,
        *,
        types: Sequence[IterationEventType] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[IterationEvent]:
        raise self._refuse()

    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        raise self._refuse()

    def list_checkpoints(self, loop_id: str) -> list[Checkpoint | str]:
        raise self._refuse()


class _NoControls:
    """The controls of the ``read`` and ``plans`` functions: none (answered 405 or 404 before
    routing)."""

    def submit(self, request: ControlRequest) -> ControlResult:
        raise LoopFrameworkError("controls are served by the dashboard's controls function")


class _NoPlanChanges(PlanExecutor, PolicyEngine):
    """The plan executor and policy engine of the ``read`` function: none (POST is answered 405
    before routing; were one to arrive, Cedar would deny it)."""

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        return PolicyDecision(
            allowed=False, errors=["plan changes are served by the dashboard's plans function"]
        )

    def _refuse(self) -> LoopFrameworkError:
        return LoopFrameworkError("plan changes are served by the dashboard's plans function")

    def inspect_loop(self, project: str, loop_id: str) -> InspectionPacket:
        raise self._refuse()

    def dispatch(self, project: str, plan_id: str, *, concurrency: int) -> Plan:
        raise self._refuse()

    def verify(self, project: str, plan_id: str) -> Plan:
        raise self._refuse()


def _read_side(settings: RuntimeSettings) -> tuple[LoopQueries, TraceQueries, MetricQueries]:
    if settings.adapters == "local":
        from loopwright.adapters.local.sqlite_queries import SqliteQueries  # local runs only

        return SqliteQueries(settings.state_dir / "loopwright.db"), UnavailableTraces(), UnavailableMetrics()
    from loopwright.adapters.aws.dynamodb_queries import DynamoDbQueries
    from loopwright.adapters.aws.observability_queries import CloudWatchMetricQueries, XRayTraceQueries

    queries = DynamoDbQueries(
        settings.require("loops_table"), settings.require("events_table"), region_name=settings.region
    )
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE)
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "loopwright")
    return (
        queries,
        XRayTraceQueries(region_name=settings.region),
        CloudWatchMetricQueries(namespace, service, region_name=settings.region),
    )


def _loop_store(settings: RuntimeSettings) -> LoopStore:
    """The loop store alone (the ``plans`` function reads loops to inspect them)."""
    if settings.adapters == "local":
        return ports(settings).store
    from loopwright.adapters.aws.dynamodb_store import DynamoDbStore  # AWS only

    return DynamoDbStore(
        settings.require("loops_table"), settings.require("events_table"), region_name=settings.region
    )


def _read_stores(settings: RuntimeSettings) -> tuple[LoopStore, CheckpointStore]:
    """The store and checkpoints without the policy engine (the read function has none)."""
    if settings.adapters == "local":
        base = ports(settings)
        assert base.checkpoints is not None  # the local ports always have them
        return base.store, base.checkpoints
    from loopwright.adapters.aws.memory_checkpoints import MemoryCheckpointStore  # AWS only

    return _loop_store(settings), MemoryCheckpointStore(
        settings.require("memory_id"), region_name=settings.region
    )


def _controls(settings: RuntimeSettings, dashboard: DashboardSettings) -> tuple[LoopStore, ControlSubmitter]:
    """The store and the control service (Cedar; a resumer when the state machine is known)."""
    base = ports(settings)
    if base.policy is None:
        raise ConfigError(f"LOOPWRIGHT_ADAPTERS={settings.adapters} gives no policy engine")
    if dashboard.loop_state_machine_arn is None or settings.adapters == "local":
        return base.store, ControlService(base.store, base.policy)
    import boto3  # AWS only

    from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, retry_config
    from loopwright.cloud.resume import AwsControls, StepFunctionsResumer

    client = boto3.client(
        "stepfunctions", region_name=settings.region, config=retry_config(DEFAULT_MAX_ATTEMPTS)
    )
    resumer = StepFunctionsResumer(
        base.store, client, dashboard.loop_state_machine_arn, checkpoints=base.checkpoints
    )
    travel = None
    if base.checkpoints is not None:  # rollback and fork (issue 10): from the loop's checkpoints
        from loopwright.cloud.time_travel import session_time_travel

        travel = session_time_travel(base.store, base.checkpoints)
    service = ControlService(base.store, base.policy, resumer, travel=travel)
    return base.store, AwsControls(service, resumer)


def _plan_routers(settings: RuntimeSettings, dashboard: DashboardSettings) -> list[Router]:
    """The plan routes (seed 003) on AWS when ``PLANS_TABLE_NAME`` is set: reads only in ``read``
    mode; with the executor (``PLAN_STATE_MACHINE_ARN`` required: dispatch and verify start its
    executions) in ``plans`` and ``all`` modes. None in
    ``controls`` mode or with the local adapters (``loopwright dashboard`` serves those itself)."""
    if dashboard.plans_table is None or settings.adapters == "local" or dashboard.mode == "controls":
        return []
    from loopwright.adapters.aws.dynamodb_plan_store import DynamoDbPlanStore  # AWS only
    from loopwright.planapi.router import PlanApiDeps, build_plan_router
    from loopwright.plans.authorize import PlanAuthorizer
    from loopwright.plans.decompose import ConditionPlanner

    store = DynamoDbPlanStore(dashboard.plans_table, region_name=settings.region)
    executor: PlanExecutor = _NoPlanChanges()
    policy: PolicyEngine = _NoPlanChanges()
    if dashboard.mode != "read":
        executor = _plan_executor(store, settings, dashboard)
        policy = _policy_engine(settings)
    deps = PlanApiDeps(
        store=store,
        planner=ConditionPlanner(),
        executor=executor,
        authorizer=PlanAuthorizer(policy),
        identity=CognitoIdentityResolver(),
    )
    return [build_plan_router(deps)]


def _policy_engine(settings: RuntimeSettings) -> PolicyEngine:
    """Verified Permissions (``POLICY_STORE_ID``, ``POLICY_MAP``) for the plan changes; without
    the Memory and loop tables the full :func:`ports` would ask for."""
    from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine  # AWS only
    from loopwright.adapters.local.cedar_policy import policy_annotations

    return VerifiedPermissionsPolicyEngine.from_json(
        settings.require("policy_store_id"),
        settings.require("policy_map"),
        annotations=policy_annotations(settings.policies_dir),
        region_name=settings.region,
    )


def _plan_executor(store: PlanStore, settings: RuntimeSettings, dashboard: DashboardSettings) -> PlanExecutor:
    from loopwright.adapters.aws.step_functions_plans import StepFunctionsPlanExecutor

    if dashboard.plan_state_machine_arn is None:
        raise ConfigError("environment variable PLAN_STATE_MACHINE_ARN is required for the plan routes")
    loops = _loop_store(settings)

    def check(config: LoopConfig, repository: str | None) -> None:
        check_agent_for_adapters(config, "aws", repository=repository)

    return StepFunctionsPlanExecutor(
        store,
        dashboard.plan_state_machine_arn,
        loops=loops,
        region_name=settings.region,
        check_loop=check,
    )


def _evidence(settings: RuntimeSettings) -> Callable[[str], bytes | None] | None:
    """The reader of a loop's signed evidence file: on AWS the loops table's evidence items
    (written by the step that completes a loop, :mod:`loopwright.cloud.evidence_record`); None
    with the local adapters (``loopwright dashboard`` reads ``.loopwright/evidence/`` itself)."""
    if settings.adapters == "local":
        return None
    from loopwright.adapters.aws.dynamodb_evidence import DynamoDbEvidenceStore  # AWS only

    return DynamoDbEvidenceStore(settings.require("loops_table"), region_name=settings.region).get


def _evidence_key(settings: RuntimeSettings) -> Callable[[], EvidenceKey | None] | None:
    """The public half of the stack's evidence key (``EVIDENCE_KEY_ARN``: KMS ``GetPublicKey``,
    asked once per container), or None when the function is not told the key."""
    arn = settings.evidence_key_arn
    if settings.adapters == "local" or not arn:
        return None
    from loopwright.adapters.aws.kms_evidence_signer import KmsEvidenceSigner  # AWS only

    @functools.cache
    def key() -> EvidenceKey:
        signer = KmsEvidenceSigner(arn, region_name=settings.region)
        return EvidenceKey(signer.algorithm, signer.key_id, signer.public_pem().decode())

    return key


def _deps(settings: RuntimeSettings, dashboard: DashboardSettings) -> DashboardDeps:
    identity = CognitoIdentityResolver()
    if dashboard.mode in ("controls", "plans"):
        elsewhere = _ServedElsewhere()
        if dashboard.mode == "controls":
            writer, service = _controls(settings, dashboard)
        else:
            writer, service = _loop_store(settings), _NoControls()
        return DashboardDeps(
            store=writer, queries=elsewhere, checkpoints=elsewhere, controls=service, identity=identity
        )
    store, checkpoints = _read_stores(settings)  # first: locally it creates the file the queries read
    queries, traces, metrics = _read_side(settings)
    controls: ControlSubmitter = _NoControls()
    if dashboard.mode == "all":
        store, controls = _controls(settings, dashboard)
    return DashboardDeps(
        store=store,
        queries=queries,
        checkpoints=checkpoints,
        controls=controls,
        identity=identity,
        traces=traces,
        metrics=metrics,
        evidence=_evidence(settings),
        evidence_key=_evidence_key(settings),
    )


def build_dashboard(runtime: RuntimeSettings, dashboard: DashboardSettings) -> APIGatewayRestResolver:
    """The resolver of ``dashboard.mode`` over the ports of ``runtime`` (with the sign-in page
    when configured, in ``read`` and ``all`` modes, and the plan routes, :func:`_plan_routers`).
    Raises ConfigError naming a missing variable."""
    routers: list[Router] = []
    signin = SignInSettings.from_environ() if dashboard.mode in ("read", "all") else None
    if signin is not None:
        routers.append(build_signin_router(signin))
    routers += _plan_routers(runtime, dashboard)
    return build_app(_deps(runtime, dashboard), routers=routers)


def error_answer(
    status: int, code: str, message: str, *, field: str | None = None, **headers: str
) -> dict[str, Any]:
    """A proxy response with the dashboard's JSON error body ``{"error": {code, message, field}}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {
        "statusCode": status,
        "headers": {**_JSON, **headers},
        "body": json.dumps({"error": error}),
        "isBase64Encoded": False,
    }


def refusal(event: Mapping[str, Any], mode: str) -> dict[str, Any] | None:
    """The answer to a request this function does not serve: 405 for a method of another mode
    (with ``Allow``), 404 for a POST route of the other POST mode; None when the request goes on
    to the resolver (which authorizes controls and plan changes with Cedar)."""
    method = str(event.get("httpMethod") or "").upper()
    allowed = MODE_METHODS.get(mode, MODE_METHODS["all"])
    if method not in allowed:
        return error_answer(
            405,
            "method_not_allowed",
            f"{method or 'this method'} is not served by the dashboard's {mode} function",
            Allow=", ".join(sorted(allowed)),
        )
    path = str(event.get("path") or "")
    served = MODE_POST_PATHS.get(mode)
    if method == "POST" and served is not None and not served.match(path):
        return error_answer(
            404, "not_found", f"POST {path[:200]} is not served by the dashboard's {mode} function"
        )
    return None
