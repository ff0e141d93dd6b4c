"""Lambda behind ``POST /loops``: validate, store the loop, start its state machine execution.
Also the target of the one-time schedules that resume a loop paused until a usage limit resets."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.runtime import RuntimeSettings, check_agent_for_adapters, ports
from loopwright.cloud.schedule import (
    ResumeNotStartedError,
    ScheduledResumeEvent,
    resume_scheduled,
    resume_summary,
)
from loopwright.cloud.start import LoopNotStartedError, start_loop
from loopwright.exceptions import ConfigError, LoopFrameworkError, LoopNotFoundError
from loopwright.models import StartLoopRequest

app = APIGatewayRestResolver(enable_validation=True)


def _start_execution(name: str, payload: str) -> str:
    client = boto3.client("stepfunctions")
    started = client.start_execution(
        stateMachineArn=os.environ["STATE_MACHINE_ARN"], name=name, input=payload
    )
    return str(started["executionArn"])


def _json(status: int, body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _start(request: StartLoopRequest, *, asynchronous: bool = False) -> Response[dict[str, Any]]:
    """Start the loop. A stored loop whose execution did not start is INTERRUPTED: ``POST /loops``
    answers 503 with its id (retry the same request); an asynchronous event raises, so Lambda
    retries it and then sends it to start_loop's on-failure queue (infrastructure/continuation.py)."""
    try:
        settings = RuntimeSettings.from_environ()
        event = start_loop(
            request,
            ports(settings),
            _start_execution,
            check_agent=lambda config: check_agent_for_adapters(
                config, settings.adapters, repository=request.repository
            ),
        )
    except ConfigError as exc:
        return _json(400, {"message": str(exc)})
    except LoopNotStartedError as exc:
        logger.error("loop stored, execution not started", extra={"loop_id": exc.loop_id})
        if asynchronous:
            raise
        return _json(503, {"message": str(exc), "loop_id": exc.loop_id})
    except LoopFrameworkError as exc:
        return _json(409, {"message": str(exc)})
    metrics.add_metric(name="LoopsStarted", unit=MetricUnit.Count, value=1)
    return _json(202, {"loop_id": event.loop_id})


def _resume(event: dict[str, Any]) -> dict[str, Any]:
    """A resume schedule fired: resume the loop if it is still paused by that pause. A failed
    start raises (the loop is PAUSED again), so Lambda's asynchronous retries try again."""
    request = parse(event=event, model=ScheduledResumeEvent).scheduled_resume
    try:
        resumed = resume_scheduled(request, ports(RuntimeSettings.from_environ()), _start_execution)
    except ResumeNotStartedError:
        raise
    except LoopNotFoundError as exc:
        return {"statusCode": 404, "body": json.dumps({"message": str(exc)})}
    except LoopFrameworkError as exc:  # a concurrent write won (another delivery resumed it)
        return {"statusCode": 409, "body": json.dumps({"message": str(exc)})}
    summary = resume_summary(resumed, request)
    logger.info("scheduled resume", extra=summary)
    if resumed is not None:
        metrics.add_metric(name="LoopsResumed", unit=MetricUnit.Count, value=1)
    return {"statusCode": 202 if resumed is not None else 200, "body": json.dumps(summary)}


@app.post("/loops")
def post_loop(request: StartLoopRequest) -> Response[dict[str, Any]]:
    """Start a loop: 202 with its id; 400 naming the field for a bad config; 409 if it exists
    (and is not a start that failed); 503 with its id when its execution did not start."""
    return _start(request)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway proxy event -> proxy response; an EventBridge event (a git push or CI rule,
    a schedule) whose ``detail`` is a StartLoopRequest -> the same response as a dict; a resume
    schedule's ``{"scheduled_resume": ...}`` (loopwright.cloud.schedule) -> 202 resumed, 200 not."""
    if "scheduled_resume" in event:
        return _resume(event)
    if "detail-type" in event:
        request = StartLoopRequest.model_validate(parse(event=event, model=EventBridgeModel).detail)
        response = _start(request, asynchronous=True)
        return {"statusCode": response.status_code, "body": json.dumps(response.body)}
    return app.resolve(event, context)
