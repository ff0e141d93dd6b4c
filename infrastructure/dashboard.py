"""The dashboard on the loop API: a Cognito user pool, three functions, their routes.

**Sign-in.** A Cognito user pool (no self sign-up: an administrator creates each user; MFA
required, TOTP only; a 12-character password with every character class; the Plus feature plan
with threat protection enforcing, cdk-nag COG1/COG2/COG8), its managed login domain
(``<prefix>.auth.<region>.amazoncognito.com``, prefix from the context key
:data:`CTX_COGNITO_DOMAIN_PREFIX`, default ``<stack name>-<account>``), one group per project of
:data:`CTX_DASHBOARD_PROJECTS` named ``<project>-operators`` (the Cedar group of
``policies/controls.cedar``), and a public app client (no secret) for the authorization code
grant with PKCE, whose callback and sign-out URL is the API's ``/signin``
(:mod:`loopwright.cloud.signin`). ID tokens last :data:`ID_TOKEN_VALIDITY`.

**Routes** (:data:`DASHBOARD_ROUTES`) on the REST API of :class:`infrastructure.api.LoopApi`, each
a Lambda proxy integration: every route has the Cognito authorizer (the ID token in
``Authorization``) except the few that hold no loop data and that a browser opens by navigation,
which cannot send a token: the page (``/``, ``/static/{name}``), the sign-in page (``/signin``,
``/signin.js``) and the API's description (``/swagger``, ``/api/openapi.json``). The request
validator checks required query parameters (``?project=`` of the plan routes) and every POST body
against the JSON schema of its pydantic model (:func:`infrastructure.api.gateway_schema`).

**Functions** (``functions/dashboard``, one code, ``LOOPWRIGHT_DASHBOARD_MODE``; see
:mod:`loopwright.cloud.dashboard_runtime`), each with its own log group and a role holding only
what its routes use (the actions of :mod:`infrastructure.dashboard_routes`, where the route
table :data:`~infrastructure.dashboard_routes.DASHBOARD_ROUTES` lives too):

- ``read`` (every GET): ``GetItem``/``Query``/``BatchGetItem`` on the loops, events and plans
  tables and their indexes, ``ListEvents`` on the checkpoint Memory, ``xray:GetTraceSummaries``
  and ``cloudwatch:GetMetricData`` (neither has resource-level permissions), ``kms:GetPublicKey``
  on the evidence key (granted by the stack: :mod:`infrastructure.evidence`), nothing else.
- ``controls`` (POST pause, resume, stop, approve, limits, rollback, fork): item reads and writes
  of the loops and events tables, ``IsAuthorized`` on the policy store, ``ListEvents``,
  ``CreateEvent`` and ``DeleteEvent`` on the checkpoint Memory (a rollback saves a checkpoint:
  :mod:`loopwright.cloud.time_travel`), ``SendTaskSuccess`` and ``StartExecution`` on the loop
  state machine and ``DescribeExecution`` on its executions (:mod:`loopwright.cloud.resume`).
- ``plans`` (POST create, dispatch, verify a plan): the plans table (read, write), item and event
  reads of the loops (inspecting an ended loop), ``StartExecution`` on the PlanDispatch state
  machine (dispatch and verify executions: gate:all runs in the state machine, not here) and
  ``IsAuthorized`` on the policy store (each plan change is a Cedar question: ``policies/plans.cedar``).
"""

from __future__ import annotations

import re

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from pydantic import BaseModel

from infrastructure.agentcore import AgentCore
from infrastructure.api import STAGE_NAME, LoopApi, gateway_schema
from infrastructure.constants import (
    FUNCTIONS_DIR,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    LOG_RETENTION,
    METRICS_NAMESPACE,
    SERVICE_NAME,
)
from infrastructure.dashboard_routes import (
    CONTROLS,
    DASHBOARD_ROUTES,
    FUNCTION_MODES,
    LOOP_EXECUTION_ACTIONS,
    LOOP_STATE_MACHINE_ACTIONS,
    MEMORY_READ_ACTIONS,
    MEMORY_WRITE_ACTIONS,
    OBSERVABILITY_ACTIONS,
    PLANS,
    READ,
    READ_ACTIONS,
    WRITE_ACTIONS,
    DashboardRoute,
)
from infrastructure.functions import LAYER_POLICIES_DIR
from infrastructure.policies import PolicyStore
from infrastructure.storage import Storage

#: Context key: the Cognito domain prefix (``[a-z0-9-]``, no ``aws``, ``amazon`` or ``cognito``;
#: unique in the region). Default: ``<stack name, lower case>-<account id>``.
CTX_COGNITO_DOMAIN_PREFIX = "loopwright:cognitoDomainPrefix"
#: Context key: the projects whose operators group is created (a list, or one comma-separated
#: string). Default: ``default`` (the project of a loop whose config names none).
CTX_DASHBOARD_PROJECTS = "loopwright:dashboardProjects"
DEFAULT_DASHBOARD_PROJECTS = ("default",)
#: Lifetime of the ID token the page sends (Cognito allows 5 minutes to 1 day); the sign-in page
#: gets a new one from Cognito's session when it expires.
ID_TOKEN_VALIDITY = Duration.hours(1)
#: Lifetime of the refresh token (the page does not use it; the CLI may). Cognito's minimum is 1 hour.
REFRESH_TOKEN_VALIDITY = Duration.hours(12)
#: How long API Gateway caches a token's authorization (its default; Cognito revocation takes effect
#: after at most this).
AUTHORIZER_CACHE_TTL = Duration.minutes(5)
#: Every dashboard function: API Gateway waits at most 29 s for an integration (REST API quota).
DASHBOARD_TIMEOUT = Duration.seconds(29)
DASHBOARD_MEMORY_MIB = 512
#: The function folder the three functions share.
DASHBOARD_CODE_DIR = FUNCTIONS_DIR / "dashboard"

_DOMAIN_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_FORBIDDEN_IN_PREFIX = ("aws", "amazon", "cognito")


def dashboard_projects(value: object) -> list[str]:
    """The projects of :data:`CTX_DASHBOARD_PROJECTS` (``value``: None, a list, or a string with
    commas). Raises ValueError naming the context key for a name Cognito or Cedar would refuse."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    projects = [str(item).strip() for item in items if str(item).strip()] or list(DEFAULT_DASHBOARD_PROJECTS)
    for project in projects:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,118}", project):
            raise ValueError(
                f"context {CTX_DASHBOARD_PROJECTS}: {project!r} is not a project id (letters, digits, "
                "'.', '_', '-'; at most 119 characters, so '<project>-operators' fits Cognito's 128)"
            )
    return projects


def domain_prefix(value: object, stack_name: str) -> str:
    """The Cognito domain prefix of :data:`CTX_COGNITO_DOMAIN_PREFIX` (``value``), default
    ``<stack name>-<account id>`` (the account a deploy-time token). Raises ValueError naming the
    context key for a prefix Cognito refuses."""
    if value:
        prefix = str(value)
        literal = prefix
    else:
        literal = re.sub(r"[^a-z0-9-]", "-", stack_name.lower()).strip("-")[:50] or "loopwright"
        prefix = f"{literal}-{Aws.ACCOUNT_ID}"
    if not _DOMAIN_PREFIX.match(literal) or any(word in literal for word in _FORBIDDEN_IN_PREFIX):
        raise ValueError(
            f"context {CTX_COGNITO_DOMAIN_PREFIX}: {literal!r} is not a Cognito domain prefix (lower-case "
            "letters, digits and '-', at most 63, not containing 'aws', 'amazon' or 'cognito'); set one"
        )
    return prefix


class Dashboard(Construct):
    """:attr:`user_pool`, :attr:`client`, :attr:`domain`, :attr:`authorizer`, :attr:`functions`
    (mode -> function) and :attr:`methods` ((method, path) -> Method); see the module docstring."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: LoopApi,
        layer: lambda_.ILayerVersion,
        storage: Storage,
        agentcore: AgentCore,
        policy_store: PolicyStore,
        loop_state_machine: sfn.StateMachine,
        plan_state_machine: sfn.IStateMachine,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._api = api.api
        self._validator = api.validator
        self._storage = storage
        self._agentcore = agentcore
        self._policy_store = policy_store
        self._loop_state_machine = loop_state_machine
        self._plan_state_machine = plan_state_machine
        self._removal_policy = removal_policy
        self._layer = layer
        stack = Stack.of(self)
        # Built from the API's id and the stage's name, not the stage resource: the stage depends
        # on every method, hence on the read function, whose environment names the app client.
        self.signin_url = (
            f"https://{self._api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{STAGE_NAME}/signin"
        )
        self.user_pool = self._build_user_pool(removal_policy)
        self.groups = [
            cognito.UserPoolGroup(
                self,
                f"Operators{index}",
                user_pool=self.user_pool,
                group_name=f"{project}-operators",
                description=f"operators of project {project}: may control its loops (controls.cedar)",
            )
            for index, project in enumerate(
                dashboard_projects(self.node.try_get_context(CTX_DASHBOARD_PROJECTS))
            )
        ]
        self.domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=domain_prefix(
                    self.node.try_get_context(CTX_COGNITO_DOMAIN_PREFIX), stack.stack_name
                )
            ),
        )
        self.client = self._build_client()
        self.authorizer = apigw.CognitoUserPoolsAuthorizer(
            self,
            "Authorizer",
            cognito_user_pools=[self.user_pool],
            identity_source=apigw.IdentitySource.header("Authorization"),
            results_cache_ttl=AUTHORIZER_CACHE_TTL,
        )
        self.functions = {mode: self._build_function(mode) for mode in FUNCTION_MODES}
        self.methods = self._build_routes()

    def public_routes(self) -> list[DashboardRoute]:
        """The routes without an authorizer (see the module docstring)."""
        return [route for route in DASHBOARD_ROUTES if route.public]

    # ----------------------------------------------------------------------------- Cognito
    def _build_user_pool(self, removal_policy: RemovalPolicy) -> cognito.UserPool:
        return cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=False),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            user_invitation=cognito.UserInvitationConfig(
                email_subject="loopwright dashboard: your account",
                email_body="Your loopwright dashboard user name is {username} and your temporary "
                "password is {####}. Open the dashboard's sign-in page (stack output "
                "DashboardSignInUrl) to choose a password and set up your authenticator app.",
            ),
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
        )

    def _build_client(self) -> cognito.UserPoolClient:
        return self.user_pool.add_client(
            "DashboardClient",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
                callback_urls=[self.signin_url],
                logout_urls=[self.signin_url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            id_token_validity=ID_TOKEN_VALIDITY,
            access_token_validity=ID_TOKEN_VALIDITY,
            refresh_token_validity=REFRESH_TOKEN_VALIDITY,
            enable_token_revocation=True,
        )

    # ----------------------------------------------------------------------------- functions
    def _environment(self, mode: str) -> dict[str, str]:
        """What :mod:`loopwright.cloud.dashboard_runtime` reads in ``mode`` (and nothing more)."""
        environment = {
            "LOOPWRIGHT_ADAPTERS": "aws",
            "LOOPWRIGHT_DASHBOARD_MODE": mode,
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,  # the dimension of the metrics the page shows
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "LOOPS_TABLE_NAME": self._storage.loops_table.table_name,
            "EVENTS_TABLE_NAME": self._storage.events_table.table_name,
        }
        if mode in (READ, PLANS):
            environment["PLANS_TABLE_NAME"] = self._storage.plans_table.table_name
        if mode in (READ, CONTROLS):  # the checkpoints (read); the runtime's ports ask for it (controls)
            environment["MEMORY_ID"] = self._agentcore.memory.attr_memory_id
        if mode == READ:
            environment["COGNITO_DOMAIN_URL"] = self.domain.base_url()
            environment["COGNITO_CLIENT_ID"] = self.client.user_pool_client_id
        if mode in (CONTROLS, PLANS):  # Cedar in Verified Permissions: controls and plan changes
            environment["POLICY_STORE_ID"] = self._policy_store.policy_store_id
            environment["POLICY_MAP"] = self._policy_store.policy_map_json()
        if mode == CONTROLS:
            environment["LOOPWRIGHT_POLICIES_DIR"] = LAYER_POLICIES_DIR
            environment["LOOP_STATE_MACHINE_ARN"] = self._loop_state_machine.state_machine_arn
        if mode == PLANS:
            environment["PLAN_STATE_MACHINE_ARN"] = self._plan_state_machine.state_machine_arn
        return environment

    def _table_arns(self, *, indexes: bool, plans: bool) -> list[str]:
        tables = [self._storage.loops_table, self._storage.events_table]
        if plans:
            tables.append(self._storage.plans_table)
        arns = [t.table_arn for t in tables]
        return arns + [f"{arn}/index/*" for arn in arns] if indexes else arns

    def _statements(self, mode: str) -> list[iam.PolicyStatement]:
        if mode == READ:
            return [
                iam.PolicyStatement(
                    actions=list(READ_ACTIONS), resources=self._table_arns(indexes=True, plans=True)
                ),
                iam.PolicyStatement(
                    actions=list(MEMORY_READ_ACTIONS), resources=[self._agentcore.memory.attr_memory_arn]
                ),
                iam.PolicyStatement(actions=list(OBSERVABILITY_ACTIONS), resources=["*"]),
            ]
        if mode == CONTROLS:
            machine = self._loop_state_machine
            executions = Stack.of(self).format_arn(
                service="states",
                resource="execution",
                resource_name=f"{machine.state_machine_name}:*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            return [
                iam.PolicyStatement(
                    actions=["dynamodb:GetItem", *WRITE_ACTIONS],
                    resources=self._table_arns(indexes=False, plans=False),
                ),
                iam.PolicyStatement(
                    actions=["verifiedpermissions:IsAuthorized"],
                    resources=[self._policy_store.policy_store_arn],
                ),
                iam.PolicyStatement(  # a resume reads the loop's checkpoints, a rollback writes one
                    actions=[*MEMORY_READ_ACTIONS, *MEMORY_WRITE_ACTIONS],
                    resources=[self._agentcore.memory.attr_memory_arn],
                ),
                iam.PolicyStatement(
                    actions=list(LOOP_STATE_MACHINE_ACTIONS), resources=[machine.state_machine_arn]
                ),
                iam.PolicyStatement(actions=list(LOOP_EXECUTION_ACTIONS), resources=[executions]),
            ]
        plans_table = self._storage.plans_table.table_arn
        return [
            iam.PolicyStatement(
                actions=list(READ_ACTIONS + WRITE_ACTIONS), resources=[plans_table, f"{plans_table}/index/*"]
            ),
            iam.PolicyStatement(
                actions=list(READ_ACTIONS), resources=self._table_arns(indexes=False, plans=False)
            ),
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[self._plan_state_machine.state_machine_arn]
            ),
            iam.PolicyStatement(
                actions=["verifiedpermissions:IsAuthorized"], resources=[self._policy_store.policy_store_arn]
            ),
        ]

    def _build_function(self, mode: str) -> lambda_.Function:
        name = mode.capitalize()
        log_group = logs.LogGroup(
            self, f"{name}Logs", retention=LOG_RETENTION, removal_policy=self._removal_policy
        )
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"loopwright dashboard ({mode}): its log group and what its routes use",
        )
        log_group.grant_write(role)
        for statement in self._statements(mode):
            role.add_to_principal_policy(statement)
        return lambda_.Function(
            self,
            f"{name}Function",
            description=f"loopwright dashboard, {mode} routes (functions/dashboard/handler.py)",
            code=lambda_.Code.from_asset(str(DASHBOARD_CODE_DIR)),
            handler="handler.handler",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            layers=[self._layer],
            timeout=DASHBOARD_TIMEOUT,
            memory_size=DASHBOARD_MEMORY_MIB,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            role=role,
            environment=self._environment(mode),
        )

    # ----------------------------------------------------------------------------- routes
    def _resource(self, path: str) -> apigw.IResource:
        resource: apigw.IResource = self._api.root
        for part in [p for p in path.split("/") if p]:
            resource = resource.get_resource(part) or resource.add_resource(part)
        return resource

    def _build_routes(self) -> dict[tuple[str, str], apigw.Method]:
        validator = self._validator
        integrations = {
            mode: apigw.LambdaIntegration(function, proxy=True, scope_permission_to_method=False)
            for mode, function in self.functions.items()
        }
        methods: dict[tuple[str, str], apigw.Method] = {}
        for route in DASHBOARD_ROUTES:
            parameters = {f"method.request.querystring.{q}": False for q in route.query}
            parameters |= {f"method.request.querystring.{q}": True for q in route.required_query}
            parameters |= {
                f"method.request.path.{name}": True for name in re.findall(r"\{(\w+)\}", route.path)
            }
            models = None
            if route.body is not None:
                models = {"application/json": self._model(route.body)}
            methods[(route.method, route.path)] = self._resource(route.path).add_method(
                route.method,
                integrations[route.function],
                authorization_type=(
                    apigw.AuthorizationType.NONE if route.public else apigw.AuthorizationType.COGNITO
                ),
                authorizer=None if route.public else self.authorizer,
                request_parameters=parameters or None,
                request_models=models,
                request_validator=validator,
            )
        return methods

    def _model(self, body: type[BaseModel]) -> apigw.IModel:
        name = body.__name__
        existing = self.node.try_find_child(f"{name}Model")
        if isinstance(existing, apigw.Model):
            return existing
        model = apigw.Model(
            self,
            f"{name}Model",
            rest_api=self._api,
            content_type="application/json",
            model_name=f"Dashboard{name}",
            schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4),
        )
        cfn_model = model.node.default_child
        assert isinstance(cfn_model, apigw.CfnModel)
        cfn_model.schema = gateway_schema(body)
        return model
