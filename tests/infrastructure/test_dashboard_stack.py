"""The dashboard in the synthesized stack: Cognito on every route but the public page, access logs,
throttling, request validation, the three functions' roles, the user pool and the outputs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from jsonschema import Draft4Validator
from pydantic import BaseModel

from infrastructure import constants
from infrastructure.api import (
    ACCESS_LOG_FIELDS,
    GATEWAY_RESPONSES,
    access_log_format,
    gateway_response_template,
    gateway_schema,
)
from infrastructure.dashboard import dashboard_projects, domain_prefix
from infrastructure.dashboard_routes import (
    CONTROL_FUNCTION_ACTIONS,
    DASHBOARD_ROUTES,
    LOG_ACTIONS,
    PLAN_FUNCTION_ACTIONS,
    READ_FUNCTION_ACTIONS,
    XRAY_WRITE_ACTIONS,
    DashboardRoute,
)
from loopwright.cloud.signin import SignInSettings, build_signin_router
from loopwright.dashboard.api import DashboardDeps, build_app
from loopwright.dashboard.identity import CognitoIdentityResolver
from loopwright.dashboard.models import ApproveBody, ControlBody, LimitsBody, ResumeBody, StopBody
from loopwright.planapi.router import (
    CreatePlanRequest,
    DispatchRequest,
    PlanApiDeps,
    VerifyRequest,
    build_plan_router,
)
from tests.infrastructure.conftest import Synthesized

PUBLIC = {"/", "/static/{name}", "/signin", "/signin.js", "/swagger", "/api/openapi.json"}
WRITE_WORDS = (
    "Put",
    "Update",
    "Delete",
    "Write",
    "Create",
    "Send",
    "Start",
    "Stop",
    "IsAuthorized",
    "Invoke",
)


# ----------------------------------------------------------------------------- helpers
def _resource_paths(synthesized: Synthesized) -> dict[str, str]:
    """Logical id of every API Gateway resource (and the root) -> its path."""
    resources = synthesized.resources("AWS::ApiGateway::Resource")
    (api_id,) = synthesized.resources("AWS::ApiGateway::RestApi")
    paths: dict[str, str] = {}

    def path_of(ref: dict[str, Any]) -> str:
        if "Fn::GetAtt" in ref and ref["Fn::GetAtt"] == [api_id, "RootResourceId"]:
            return ""
        logical = ref["Ref"]
        if logical not in paths:
            props = resources[logical]["Properties"]
            paths[logical] = f"{path_of(props['ParentId'])}/{props['PathPart']}"
        return paths[logical]

    for logical in resources:
        path_of({"Ref": logical})
    return paths


def _methods(synthesized: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    """(HTTP method, resource path) -> the method's properties."""
    paths = _resource_paths(synthesized)
    (api_id,) = synthesized.resources("AWS::ApiGateway::RestApi")
    methods: dict[tuple[str, str], dict[str, Any]] = {}
    for method in synthesized.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        resource = props["ResourceId"]
        path = "/" if resource == {"Fn::GetAtt": [api_id, "RootResourceId"]} else paths[resource["Ref"]]
        methods[(props["HttpMethod"], path)] = props
    return methods


def _logical_id_of(synthesized: Synthesized, construct: Any) -> str:
    return synthesized.stack.get_logical_id(construct.node.default_child)


def _role_actions(synthesized: Synthesized, mode: str) -> tuple[set[str], list[dict[str, Any]]]:
    function = synthesized.stack.dashboard.functions[mode]
    role_logical = _logical_id_of(synthesized, function.role)
    statements = [
        s
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_logical} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions, statements


def _powertools_path(path: str) -> str:
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def _app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the dashboard's app serves with the sign-in page and the plan router."""
    store: Any = object()  # the ports are never called: only the routes are listed
    deps = DashboardDeps(
        store=store, queries=store, checkpoints=store, controls=store, identity=CognitoIdentityResolver()
    )
    signin = SignInSettings(
        COGNITO_DOMAIN_URL="https://x.auth.eu-west-1.amazoncognito.com", COGNITO_CLIENT_ID="abc"
    )
    plans = build_plan_router(
        PlanApiDeps(
            store=store, planner=store, executor=store, authorizer=store, identity=CognitoIdentityResolver()
        )
    )
    app: APIGatewayRestResolver = build_app(deps, routers=[build_signin_router(signin), plans])
    return {(r.method, r.path) for r in app._static_routes + app._dynamic_routes}


# ----------------------------------------------------------------------------- routes
def test_the_route_table_covers_every_route_of_the_app_and_no_other() -> None:
    # Given the app with the sign-in page and the plan router (what the Lambda functions serve)
    served = _app_routes()
    # Then the API Gateway route table has exactly those methods, in Powertools' spelling
    declared = {(r.method, _powertools_path(r.path)) for r in DASHBOARD_ROUTES}
    assert declared == served


def test_every_dashboard_method_has_the_cognito_authorizer_but_the_public_page(
    synthesized: Synthesized,
) -> None:
    methods = _methods(synthesized)
    authorizer = _logical_id_of(synthesized, synthesized.stack.dashboard.authorizer)
    for route in DASHBOARD_ROUTES:
        props = methods[(route.method, route.path)]  # every route is there
        if route.path in PUBLIC:
            assert route.method == "GET" and route.public
            assert props["AuthorizationType"] == "NONE"
        else:
            assert not route.public
            assert props["AuthorizationType"] == "COGNITO_USER_POOLS", route.path
            assert props["AuthorizerId"] == {"Ref": authorizer}, route.path
    # And the API has no other method than these and the IAM-authorized POST /loops
    declared = {(r.method, r.path) for r in DASHBOARD_ROUTES}
    others = {key: p for key, p in methods.items() if key not in declared}
    assert set(others) == {("POST", "/loops")}
    assert others[("POST", "/loops")]["AuthorizationType"] == "AWS_IAM"


def test_the_authorizer_reads_the_id_token_of_the_user_pool(synthesized: Synthesized) -> None:
    pool = _logical_id_of(synthesized, synthesized.stack.dashboard.user_pool)
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Authorizer",
        {
            "Type": "COGNITO_USER_POOLS",
            "IdentitySource": "method.request.header.Authorization",
            "ProviderARNs": [{"Fn::GetAtt": [pool, "Arn"]}],
        },
    )


def test_gets_go_to_the_read_function_and_posts_to_controls_or_plans(synthesized: Synthesized) -> None:
    methods = _methods(synthesized)
    functions = {
        mode: _logical_id_of(synthesized, f) for mode, f in synthesized.stack.dashboard.functions.items()
    }
    for route in DASHBOARD_ROUTES:
        uri = json.dumps(methods[(route.method, route.path)]["Integration"]["Uri"])
        assert functions[route.function] in uri, route
        assert {m for m in functions if functions[m] in uri} == {route.function}
        assert methods[(route.method, route.path)]["Integration"]["Type"] == "AWS_PROXY"
    assert {r.function for r in DASHBOARD_ROUTES if r.method == "GET"} == {"read"}
    assert {r.function for r in DASHBOARD_ROUTES if r.method == "POST"} == {"controls", "plans"}


def test_one_invoke_permission_per_function_scoped_to_this_api(synthesized: Synthesized) -> None:
    permissions = [
        p["Properties"]
        for p in synthesized.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    for function in synthesized.stack.dashboard.functions.values():
        logical = _logical_id_of(synthesized, function)
        mine = [p for p in permissions if p["FunctionName"] == {"Fn::GetAtt": [logical, "Arn"]}]
        assert len(mine) == 1  # not one per method: Lambda's resource policy stays small
        assert "/*/*/*" in json.dumps(mine[0]["SourceArn"])


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("route", [r for r in DASHBOARD_ROUTES if r.method == "POST"], ids=lambda r: r.path)
def test_post_bodies_are_validated_against_their_model(
    synthesized: Synthesized, route: DashboardRoute
) -> None:
    props = _methods(synthesized)[(route.method, route.path)]
    validator_id = props["RequestValidatorId"]["Ref"]
    validator = synthesized.raw["Resources"][validator_id]["Properties"]
    assert validator["ValidateRequestBody"] is True and validator["ValidateRequestParameters"] is True
    model_id = props["RequestModels"]["application/json"]["Ref"]
    model = synthesized.raw["Resources"][model_id]["Properties"]
    assert route.body is not None
    assert model["ContentType"] == "application/json" and model["Schema"] == gateway_schema(route.body)


def test_required_parameters_are_checked_by_api_gateway(synthesized: Synthesized) -> None:
    methods = _methods(synthesized)
    for route in DASHBOARD_ROUTES:
        props = methods[(route.method, route.path)]
        parameters = props.get("RequestParameters", {})
        assert "RequestValidatorId" in props
        for name in route.required_query:
            assert parameters[f"method.request.querystring.{name}"] is True
        for name in re.findall(r"\{(\w+)\}", route.path):
            assert parameters[f"method.request.path.{name}"] is True
    assert methods[("GET", "/api/plans/{plan_id}")]["RequestParameters"]["method.request.querystring.project"]
    assert methods[("GET", "/api/loops")]["RequestParameters"]["method.request.querystring.limit"] is False


BODIES: list[tuple[type[BaseModel], dict[str, Any], bool]] = [
    (ControlBody, {}, True),
    (ControlBody, {"reason": "done for today"}, True),
    (ControlBody, {"reason": "x" * 2_001}, False),
    (ControlBody, {"reasn": "typo"}, False),
    (StopBody, {"reason": "runaway", "now": True}, True),
    (StopBody, {"now": "yes"}, False),
    (ControlBody, {"now": True}, False),  # only stop takes now
    (ApproveBody, {"response": "use the v2 API"}, True),
    (ResumeBody, {"checkpoint_id": "ckpt_0123456789ab"}, True),
    (ResumeBody, {"checkpoint_id": "../etc"}, False),
    (ResumeBody, {"checkpoint": "ckpt_0123456789ab"}, False),
    (LimitsBody, {"max_iterations": 40}, True),
    (LimitsBody, {"max_iterations": 0}, False),
    (LimitsBody, {"token_budget": "many"}, False),
    (CreatePlanRequest, {"loopId": "loop-1"}, True),
    (CreatePlanRequest, {"loop_id": "loop-1"}, True),  # the router takes snake_case names too
    (CreatePlanRequest, {"plan": {"goal": "g", "tasks": []}, "model": "m"}, True),
    (CreatePlanRequest, {"loopId": "loop-1", "extra": 1}, False),
    (DispatchRequest, {"parallel": True, "concurrency": 4}, True),
    (DispatchRequest, {"concurrency": 0}, False),
    (VerifyRequest, {}, True),
    (VerifyRequest, {"force": True}, False),
]


@pytest.mark.parametrize(("model", "body", "valid"), BODIES)
def test_gateway_schemas_are_draft_4_and_agree_with_the_models(
    model: type[BaseModel], body: dict[str, Any], valid: bool
) -> None:
    schema = gateway_schema(model)
    Draft4Validator.check_schema(schema)
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    assert Draft4Validator(schema).is_valid(body) is valid
    if valid:  # what API Gateway lets through, the function accepts
        model.model_validate(body)


# ----------------------------------------------------------------------------- stage
def test_access_logs_are_json_in_their_own_log_group(synthesized: Synthesized) -> None:
    (stage,) = synthesized.resources("AWS::ApiGateway::Stage").values()
    setting = stage["Properties"]["AccessLogSetting"]
    group = _logical_id_of(synthesized, synthesized.stack.api.access_logs)
    assert setting["DestinationArn"] == {"Fn::GetAtt": [group, "Arn"]}
    assert setting["Format"] == access_log_format()
    record = json.loads(setting["Format"].replace("$context.error.messageString", '"an error"'))
    assert set(record) == set(ACCESS_LOG_FIELDS)
    assert {"cognitoSub", "caller", "status", "resourcePath", "xrayTraceId"} <= set(record)
    assert stage["Properties"]["TracingEnabled"] is True


def test_throttling_per_method(synthesized: Synthesized) -> None:
    (stage,) = synthesized.resources("AWS::ApiGateway::Stage").values()
    settings = {
        (s["ResourcePath"], s["HttpMethod"]): (s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"])
        for s in stage["Properties"]["MethodSettings"]
    }
    assert settings[("/*", "*")] == (
        constants.DASHBOARD_THROTTLING_RATE_LIMIT,
        constants.DASHBOARD_THROTTLING_BURST_LIMIT,
    )
    assert settings[("/~1loops", "POST")] == (
        constants.API_THROTTLING_RATE_LIMIT,
        constants.API_THROTTLING_BURST_LIMIT,
    )
    posts = [r for r in DASHBOARD_ROUTES if r.method == "POST"]
    for route in posts:
        assert settings["/" + route.path.replace("/", "~1"), "POST"] == (
            constants.CONTROL_THROTTLING_RATE_LIMIT,
            constants.CONTROL_THROTTLING_BURST_LIMIT,
        )
    assert len(settings) == 2 + len(posts)


def test_gateway_responses_use_the_dashboards_error_shape(synthesized: Synthesized) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(responses) == set(GATEWAY_RESPONSES)
    assert responses["UNAUTHORIZED"]["StatusCode"] == "401"
    for name, (_, code, message) in GATEWAY_RESPONSES.items():
        template = responses[name]["ResponseTemplates"]["application/json"]
        assert template == gateway_response_template(code, message)
        body = json.loads(template.replace("$context.error.messageString", '"API Gateway says"'))
        assert body["error"]["code"] == code and body["message"] == body["error"]["message"]
    assert (
        "signin" in json.loads(responses["UNAUTHORIZED"]["ResponseTemplates"]["application/json"])["message"]
    )


# ----------------------------------------------------------------------------- roles
def test_each_function_role_holds_exactly_its_actions(synthesized: Synthesized) -> None:
    expected = {
        "read": READ_FUNCTION_ACTIONS,
        "controls": CONTROL_FUNCTION_ACTIONS,
        "plans": PLAN_FUNCTION_ACTIONS,
    }
    for mode, actions in expected.items():
        found, _ = _role_actions(synthesized, mode)
        assert found - LOG_ACTIONS - XRAY_WRITE_ACTIONS == set(actions), mode


def test_the_read_role_has_no_write_action(synthesized: Synthesized) -> None:
    actions, statements = _role_actions(synthesized, "read")
    own = actions - LOG_ACTIONS - XRAY_WRITE_ACTIONS
    assert not [a for a in own if any(word in a.split(":")[1] for word in WRITE_WORDS)]
    assert own == {
        "dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem", "bedrock-agentcore:ListEvents",
        "xray:GetTraceSummaries", "cloudwatch:GetMetricData",
        "kms:GetPublicKey",  # the evidence key only: tests/infrastructure/test_evidence_key.py
    }  # fmt: skip
    storage = synthesized.stack.storage
    tables = {
        _logical_id_of(synthesized, t)
        for t in (storage.loops_table, storage.events_table, storage.plans_table)
    }
    for statement in statements:
        if "dynamodb:Query" in statement["Action"]:
            named = set(re.findall(r"Storage\w+Table\w+", json.dumps(statement["Resource"])))
            assert named == tables  # these three tables (and their indexes), no other


def test_the_controls_role_acts_on_the_loop_state_machine_only(synthesized: Synthesized) -> None:
    _, statements = _role_actions(synthesized, "controls")
    machine = _logical_id_of(synthesized, synthesized.stack.loop.state_machine)
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(a.startswith("states:") for a in actions):
            assert machine in json.dumps(statement["Resource"])
        if any(a.startswith("dynamodb:") for a in actions):
            assert "/index/" not in json.dumps(statement["Resource"])  # item access, no query
        if "verifiedpermissions:IsAuthorized" in actions:
            assert "Policies" in json.dumps(statement["Resource"])
    # and it writes checkpoints (a rollback saves one) in the checkpoint Memory only
    memory = synthesized.stack.resolve(synthesized.stack.agentcore.memory.attr_memory_arn)
    (checkpoints,) = [s for s in statements if "bedrock-agentcore:CreateEvent" in s["Action"]]
    assert set(checkpoints["Action"]) == {
        "bedrock-agentcore:ListEvents",
        "bedrock-agentcore:CreateEvent",
        "bedrock-agentcore:DeleteEvent",
    }
    assert checkpoints["Resource"] == memory


def test_the_plans_role_asks_the_policy_store_only(synthesized: Synthesized) -> None:
    # Each plan change is a Cedar question (policies/plans.cedar) to this stack's policy store
    _, statements = _role_actions(synthesized, "plans")
    asking = [s for s in statements if "verifiedpermissions:IsAuthorized" in json.dumps(s["Action"])]
    assert len(asking) == 1 and "Policies" in json.dumps(asking[0]["Resource"])
    # And the store holds plans.cedar's policies, whose store ids the function maps to their @id
    policies = synthesized.stack.policy_store.policies
    assert {"operators-change-plans", "agent-cannot-change-plans"} <= set(policies)
    function = synthesized.stack.dashboard.functions["plans"]
    env = synthesized.raw["Resources"][_logical_id_of(synthesized, function)]["Properties"]["Environment"]
    policy_map = json.dumps(env["Variables"]["POLICY_MAP"])
    for policy_id in ("operators-change-plans", "agent-cannot-change-plans"):
        assert synthesized.stack.get_logical_id(policies[policy_id]) in policy_map and policy_id in policy_map


def test_function_modes_and_environment(synthesized: Synthesized) -> None:
    for mode, function in synthesized.stack.dashboard.functions.items():
        props = synthesized.raw["Resources"][_logical_id_of(synthesized, function)]["Properties"]
        env = props["Environment"]["Variables"]
        assert env["LOOPWRIGHT_DASHBOARD_MODE"] == mode and env["LOOPWRIGHT_ADAPTERS"] == "aws"
        assert props["Handler"] == "handler.handler" and props["Timeout"] == 29
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert ("POLICY_MAP" in env) == ("POLICY_STORE_ID" in env) == (mode in ("controls", "plans"))
        assert ("LOOP_STATE_MACHINE_ARN" in env) == (mode == "controls")
        assert ("COGNITO_CLIENT_ID" in env) == (mode == "read")
        assert ("PLAN_STATE_MACHINE_ARN" in env) == (mode == "plans")


# ----------------------------------------------------------------------------- Cognito
def test_the_user_pool_is_admin_only_with_mfa_and_threat_protection(synthesized: Synthesized) -> None:
    (pool,) = synthesized.resources("AWS::Cognito::UserPool").values()
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert props["MfaConfiguration"] == "ON" and props["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert props["UserPoolTier"] == "PLUS"
    assert props["UserPoolAddOns"]["AdvancedSecurityMode"] == "ENFORCED"
    policy = props["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12 and all(
        policy[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
    )
    groups = [
        g["Properties"]["GroupName"] for g in synthesized.resources("AWS::Cognito::UserPoolGroup").values()
    ]
    assert groups == ["default-operators"]


def test_the_app_client_is_public_with_the_code_grant_back_to_signin(synthesized: Synthesized) -> None:
    (client,) = synthesized.resources("AWS::Cognito::UserPoolClient").values()
    props = client["Properties"]
    assert props.get("GenerateSecret", False) is False
    assert props["AllowedOAuthFlows"] == ["code"] and props["AllowedOAuthFlowsUserPoolClient"] is True
    assert set(props["AllowedOAuthScopes"]) == {"openid", "email", "profile"}
    (callback,) = props["CallbackURLs"]
    assert props["LogoutURLs"] == [callback]
    text = json.dumps(callback)
    assert text.endswith('/v1/signin"]]}') and "execute-api" in text
    assert props["PreventUserExistenceErrors"] == "ENABLED"


def test_outputs_name_the_dashboard_and_the_user_pool(synthesized: Synthesized) -> None:
    outputs = synthesized.raw["Outputs"]
    assert {"DashboardUrl", "DashboardSignInUrl", "UserPoolId", "UserPoolClientId"} <= set(outputs)


def test_context_values_are_checked() -> None:
    assert dashboard_projects(None) == ["default"]
    assert dashboard_projects("demo, web") == ["demo", "web"]
    assert dashboard_projects(["a"]) == ["a"]
    with pytest.raises(ValueError, match="loopwright:dashboardProjects"):
        dashboard_projects("bad project")
    assert domain_prefix("my-team-loops", "Loopwright") == "my-team-loops"
    assert domain_prefix(None, "Loopwright").startswith("loopwright-")
    for bad in ("My_Prefix", "aws-loops", "-x", "my-cognito"):
        with pytest.raises(ValueError, match="loopwright:cognitoDomainPrefix"):
            domain_prefix(bad, "Loopwright")


def test_each_function_logs_to_its_own_group_with_retention(synthesized: Synthesized) -> None:
    groups = set()
    for function in synthesized.stack.dashboard.functions.values():
        props = synthesized.raw["Resources"][_logical_id_of(synthesized, function)]["Properties"]
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert synthesized.raw["Resources"][group]["Properties"]["RetentionInDays"] == 30
        groups.add(group)
    assert len(groups) == 3
