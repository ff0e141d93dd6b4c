"""REST API: ``POST /loops`` starts a loop (the ``start_loop`` function).

IAM authorization (SigV4; no anonymous caller), the body validated by API Gateway against the
JSON schema of :class:`loopwright.models.StartLoopRequest` before the function runs, access logs
as JSON to their own log group, X-Ray tracing, stage throttling (:data:`API_THROTTLING_RATE_LIMIT`
requests per second, bursts of :data:`API_THROTTLING_BURST_LIMIT`).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infrastructure.constants import API_THROTTLING_BURST_LIMIT, API_THROTTLING_RATE_LIMIT, LOG_RETENTION
from loopwright.models import StartLoopRequest

#: API Gateway models are JSON Schema draft 4.
DRAFT_4 = "http://json-schema.org/draft-04/schema#"


def request_schema() -> dict[str, Any]:
    """StartLoopRequest's JSON schema for an API Gateway model (draft 4; pydantic's schema of
    this model uses only draft-4 keywords: type, properties, anyOf, pattern, required)."""
    schema = StartLoopRequest.model_json_schema()
    if "$defs" in schema:  # a $ref would need rewriting to the model's URL: refuse, loudly
        raise ValueError("StartLoopRequest's schema has $defs: inline them for API Gateway")
    return {"$schema": DRAFT_4, **schema}


class LoopApi(Construct):
    """:attr:`api` with ``POST /loops``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        start_loop: lambda_.IFunction,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=LOG_RETENTION, removal_policy=removal_policy
        )
        self.api = self._build_api()
        self.post_loops = self._build_post_loops(start_loop)

    def _build_api(self) -> apigw.RestApi:
        return apigw.RestApi(
            self,
            "Api",
            description="loopwright: start governed autonomous loops",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                tracing_enabled=True,
                throttling_rate_limit=API_THROTTLING_RATE_LIMIT,
                throttling_burst_limit=API_THROTTLING_BURST_LIMIT,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
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
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        loops = self.api.root.add_resource("loops")
        return loops.add_method(
            "POST",
            apigw.LambdaIntegration(start_loop),
            authorization_type=apigw.AuthorizationType.IAM,
            request_models={"application/json": model},
            request_validator=validator,
        )
