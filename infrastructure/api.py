"""REST API: ``POST /loops`` starts a loop (the ``start_loop`` function); the dashboard's routes are
added on the same API by :class:`infrastructure.dashboard.Dashboard`.

``POST /loops`` has IAM authorization (SigV4; no anonymous caller) and its body validated by API
Gateway against the JSON schema of :class:`loopwright.models.StartLoopRequest` before the
function runs. The stage ``v1`` has:

- access logs as JSON (:data:`ACCESS_LOG_FIELDS`: caller, Cognito user ``sub``, route, status,
  latencies, X-Ray trace id) in their own log group;
- X-Ray tracing;
- throttling per method (token bucket, API Gateway): :data:`DASHBOARD_THROTTLING_RATE_LIMIT`
  requests per second (bursts of :data:`DASHBOARD_THROTTLING_BURST_LIMIT`) by default, which the
  dashboard's reads use; ``POST /loops`` :data:`API_THROTTLING_RATE_LIMIT` /
  :data:`API_THROTTLING_BURST_LIMIT`; each control and plan POST
  :data:`CONTROL_THROTTLING_RATE_LIMIT` / :data:`CONTROL_THROTTLING_BURST_LIMIT`;
- gateway responses (:data:`GATEWAY_RESPONSES`) in the dashboard's error shape,
  ``{"message", "error": {"code", "message"}}``, so a refusal by API Gateway itself (no token,
  bad body, throttled) reads like the functions' own.

The API Gateway CloudWatch role (context key :data:`CTX_API_GATEWAY_CLOUDWATCH_ROLE`): a stage with
access logging is rejected on create unless the account's API Gateway settings in that region name
a CloudWatch Logs role (``AWS::ApiGateway::Account``). ``create`` (the default, so a first deploy
into a fresh account succeeds) lets CDK create that role and the ``AWS::ApiGateway::Account``
resource, both with removal policy RETAIN (``cloud_watch_role_removal_policy``; CDK API reference,
``aws_apigateway.RestApiBase``): the setting is account-wide, one per region ("you should only have
one AWS::ApiGateway::Account resource per region per account", CloudFormation template reference,
``AWS::ApiGateway::Account``), so deleting this stack must not take the role from under another
API; CDK makes the stage depend on the Account resource. ``existing`` creates neither, for accounts
whose platform team owns that setting (a landing zone): the role must then be set before the first
deploy (``aws apigateway get-account`` shows ``cloudwatchRoleArn``; README, "On AWS").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from pydantic import BaseModel

from infrastructure.constants import (
    API_THROTTLING_BURST_LIMIT,
    API_THROTTLING_RATE_LIMIT,
    CONTROL_THROTTLING_BURST_LIMIT,
    CONTROL_THROTTLING_RATE_LIMIT,
    DASHBOARD_THROTTLING_BURST_LIMIT,
    DASHBOARD_THROTTLING_RATE_LIMIT,
    LOG_RETENTION,
)
from loopwright.models import StartLoopRequest

#: Context key: who provides the account's API Gateway CloudWatch role (see the module docstring).
CTX_API_GATEWAY_CLOUDWATCH_ROLE = "loopwright:apiGatewayCloudWatchRole"
#: Its values: the stack creates (and retains) the role, or the account already has one.
CLOUDWATCH_ROLE_CREATE = "create"
CLOUDWATCH_ROLE_EXISTING = "existing"
#: API Gateway models are JSON Schema draft 4.
DRAFT_4 = "http://json-schema.org/draft-04/schema#"
#: The stage every URL of the API is under.
STAGE_NAME = "v1"
#: Access log record: field -> API Gateway context variable (strings quoted, numbers not).
ACCESS_LOG_FIELDS: dict[str, str] = {
    "requestId": '"$context.requestId"',
    "requestTime": '"$context.requestTime"',
    "ip": '"$context.identity.sourceIp"',
    "caller": '"$context.identity.caller"',
    "user": '"$context.identity.user"',
    "cognitoSub": '"$context.authorizer.claims.sub"',
    "httpMethod": '"$context.httpMethod"',
    "resourcePath": '"$context.resourcePath"',
    "protocol": '"$context.protocol"',
    "status": '"$context.status"',
    "responseLength": '"$context.responseLength"',
    "responseLatency": '"$context.responseLatency"',
    "integrationLatency": '"$context.integrationLatency"',
    "error": "$context.error.messageString",
    "xrayTraceId": '"$context.xrayTraceId"',
}
#: API Gateway's own refusals: response type -> (status code, error code, message; None keeps
#: API Gateway's message).
GATEWAY_RESPONSES: dict[str, tuple[str, str, str | None]] = {
    "UNAUTHORIZED": (
        "401",
        "unauthenticated",
        "not signed in: send a Cognito ID token in the Authorization header (the dashboard's /signin "
        "page gets one); it may have expired",
    ),
    "MISSING_AUTHENTICATION_TOKEN": (
        "403",
        "forbidden",
        "no such route, or a route that needs a signed request; see /swagger for the routes",
    ),
    "ACCESS_DENIED": ("403", "forbidden", None),
    "BAD_REQUEST_BODY": ("400", "bad_request", None),
    "BAD_REQUEST_PARAMETERS": ("400", "bad_request", None),
    "THROTTLED": ("429", "throttled", "too many requests: slow down and retry"),
    "DEFAULT_4XX": ("", "bad_request", None),
    "DEFAULT_5XX": ("", "internal", None),
}


def creates_cloudwatch_role(value: object) -> bool:
    """True for :data:`CLOUDWATCH_ROLE_CREATE` (also when ``value`` is None: the default), False
    for :data:`CLOUDWATCH_ROLE_EXISTING`. Raises ValueError naming the context key otherwise, so a
    typo fails synth instead of deploying a stage that a fresh account rejects."""
    mode = str(value or CLOUDWATCH_ROLE_CREATE).strip().lower()
    if mode not in (CLOUDWATCH_ROLE_CREATE, CLOUDWATCH_ROLE_EXISTING):
        raise ValueError(
            f"context {CTX_API_GATEWAY_CLOUDWATCH_ROLE}: {value!r} is not one of "
            f"{CLOUDWATCH_ROLE_CREATE}, {CLOUDWATCH_ROLE_EXISTING}"
        )
    return mode == CLOUDWATCH_ROLE_CREATE


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = copy.deepcopy(defs[ref.removeprefix("#/$defs/")])
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline_refs(merged, defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    return node


def _draft_4(node: Any) -> Any:
    """Draft 6+ keywords pydantic may emit, in their draft-4 form: a number ``exclusiveMinimum``
    (``exclusiveMaximum``) becomes ``minimum`` plus ``exclusiveMinimum: true``; ``const`` becomes a
    one-value ``enum``. A ``default`` of null is left out (CloudFormation drops nulls)."""
    if isinstance(node, list):
        return [_draft_4(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft_4(v) for k, v in node.items() if not (k == "default" and v is None)}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[limit], out[bound] = value, True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def gateway_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema for an API Gateway model (draft 4, no ``$ref``): the schema of its
    aliases (the names clients send), ``$defs`` inlined, draft-6 keywords rewritten. A model that
    also takes its field names (``populate_by_name``) gets them as properties too, and a required
    field is then required under neither name, nor is a rule requiring one of several fields
    (``oneOf``/``anyOf`` of ``required``): the function checks them."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    schema = _draft_4(_inline_refs(schema, defs))
    if model.model_config.get("populate_by_name"):
        properties: dict[str, Any] = schema.setdefault("properties", {})
        renamed = {
            name: field.alias
            for name, field in model.model_fields.items()
            if field.alias and field.alias != name
        }
        for name, alias in renamed.items():
            if alias in properties:
                properties[name] = properties[alias]
        required = [r for r in schema.get("required", []) if r not in renamed.values()]
        if required:
            schema["required"] = required
        else:
            schema.pop("required", None)
        for combinator in ("oneOf", "anyOf"):  # "one of these fields" rules name the aliases only
            if all(set(part) == {"required"} for part in schema.get(combinator, [{}])):
                schema.pop(combinator, None)
    return {"$schema": DRAFT_4, **schema}


def request_schema() -> dict[str, Any]:
    """StartLoopRequest's JSON schema for an API Gateway model (draft 4)."""
    return gateway_schema(StartLoopRequest)


def access_log_format() -> str:
    """The access log record (one JSON object per request; :data:`ACCESS_LOG_FIELDS`)."""
    return "{" + ",".join(f'"{name}":{value}' for name, value in ACCESS_LOG_FIELDS.items()) + "}"


def gateway_response_template(code: str, message: str | None) -> str:
    """The body of a gateway response: ``message`` (API Gateway's own when None) twice, at the top
    (what IAM callers of ``POST /loops`` read) and in ``error`` (what the dashboard reads)."""
    text = "$context.error.messageString" if message is None else json.dumps(message)
    return f'{{"message":{text},"error":{{"code":{json.dumps(code)},"message":{text}}}}}'


class LoopApi(Construct):
    """:attr:`api` with ``POST /loops`` (:attr:`post_loops`); ``throttled_posts`` are the
    ``<resource path>/POST`` keys of the dashboard's POST methods (throttled per method, see the
    module docstring); ``create_cloudwatch_role``: see :func:`creates_cloudwatch_role`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        start_loop: lambda_.IFunction,
        removal_policy: RemovalPolicy,
        throttled_posts: Sequence[str] = (),
        create_cloudwatch_role: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        self._create_cloudwatch_role = create_cloudwatch_role
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=LOG_RETENTION, removal_policy=removal_policy
        )
        self.api = self._build_api(throttled_posts)
        self._build_gateway_responses()
        #: Checks required parameters and bodies (models); the dashboard's methods use it too.
        self.validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        self.post_loops = self._build_post_loops(start_loop)

    def _build_api(self, throttled_posts: Sequence[str]) -> apigw.RestApi:
        method_options = {
            "/loops/POST": apigw.MethodDeploymentOptions(
                throttling_rate_limit=API_THROTTLING_RATE_LIMIT,
                throttling_burst_limit=API_THROTTLING_BURST_LIMIT,
            )
        }
        for key in throttled_posts:
            method_options[key] = apigw.MethodDeploymentOptions(
                throttling_rate_limit=CONTROL_THROTTLING_RATE_LIMIT,
                throttling_burst_limit=CONTROL_THROTTLING_BURST_LIMIT,
            )
        return apigw.RestApi(
            self,
            "Api",
            description="loopwright: start governed autonomous loops; the dashboard",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=self._create_cloudwatch_role,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if self._create_cloudwatch_role else None,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                throttling_rate_limit=DASHBOARD_THROTTLING_RATE_LIMIT,
                throttling_burst_limit=DASHBOARD_THROTTLING_BURST_LIMIT,
                method_options=method_options,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(access_log_format()),
            ),
        )

    def _build_gateway_responses(self) -> None:
        for name, (status, code, message) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{name.title().replace('_', '')}Response",
                type=getattr(apigw.ResponseType, name.replace("4XX", "4_XX").replace("5XX", "5_XX")),
                status_code=status or None,
                response_headers={"Cache-Control": "'no-store'"},
                templates={"application/json": gateway_response_template(code, message)},
            )

    def _build_post_loops(self, start_loop: lambda_.IFunction) -> apigw.Method:
        model = self.api.add_model(
            "StartLoopRequest",
            content_type="application/json",
            model_name="StartLoopRequest",
            schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4),
        )
        # The typed JsonSchema cannot hold pydantic's dict: give the model the schema as is.
        cfn_model = model.node.default_child
        assert isinstance(cfn_model, apigw.CfnModel)
        cfn_model.schema = request_schema()
        loops = self.api.root.add_resource("loops")
        return loops.add_method(
            "POST",
            apigw.LambdaIntegration(start_loop),
            authorization_type=apigw.AuthorizationType.IAM,
            request_models={"application/json": model},
            request_validator=self.validator,
        )
