"""Lambda behind ``POST /loops``: validate, store the loop, start its state machine execution."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.runtime import RuntimeSettings, ports
from loopwright.cloud.start import start_loop
from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import StartLoopRequest

app = APIGatewayRestResolver(enable_validation=True)


def _start_execution(name: str, payload: str) -> str:
    client = boto3.client("stepfunctions")
    started = client.start_execution(
        stateMachineArn=os.environ["STATE_MACHINE_ARN"], name=name, input=payload
    )
    return str(started["executionArn"])


@app.post("/loops")
def post_loop(request: StartLoopRequest) -> Response[dict[str, Any]]:
    """Start a loop: 202 with its id; 400 naming the field for a bad config; 409 if it exists."""
    try:
        event = start_loop(request, ports(RuntimeSettings.from_environ()), _start_execution)
    except ConfigError as exc:
        return Response(status_code=400, body={"message": str(exc)})
    except LoopFrameworkError as exc:
        return Response(status_code=409, body={"message": str(exc)})
    return Response(status_code=202, body={"loop_id": event.loop_id})


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway proxy event -> proxy response."""
    return app.resolve(event, context)
