"""Lambda behind ``POST /loops``: validate, store the loop, start its state machine execution.
Also the target of the one-time schedules that resume a loop paused until a usage limit resets,
and of the continuations (issue 12.8, :mod:`loopwright.cloud.continuation`): a loop's recurring
schedule, a ``loopwright.continue`` event, a git push for a loop that exists."""

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
from pydantic import ValidationError

from loopwright.cloud.continuation import (
    CONTINUE_EVENT_SOURCE,
    ContinueEventBridgeModel,
    ContinueLoopEvent,
    ContinueRequest,
    continue_stored,
    create_loop_schedule,
    delete_loop_schedule,
    push_continuation,
)
from loopwright.cloud.observability import logger, metrics, tracer
from loopwright.cloud.resume import AwsControls, StepFunctionsResumer
from loopwright.cloud.runtime import RuntimeSettings, check_agent_for_adapters, ports
from loopwright.cloud.schedule import (
    ResumeNotStartedError,
    ResumeScheduleSettings,
    ScheduledResumeEvent,
    resume_scheduled,
    resume_summary,
)
from loopwright.cloud.start import LoopNotStartedError, start_loop
from loopwright.config_loader import format_validation_error
from loopwright.controls import ControlService
from loopwright.exceptions import (
    ConfigError,
    ControlDeniedError,
    LoopFrameworkError,
    LoopNotFoundError,
)
from loopwright.models import LoopConfig, StartLoopRequest

app = APIGatewayRestResolver(enable_validation=True)
#: How a continue event's detail looks (appended to its parse errors).
CONTINUE_DETAIL_HINT = '; expected detail {"loop_id": "<loop id>", "reason": "<optional text>"}'


def _start_execution(name: str, payload: str) -> str:
    client = boto3.client("stepfunctions")
    started = client.start_execution(
        stateMachineArn=os.environ["STATE_MACHINE_ARN"], name=name, input=payload
    )
    return str(started["executionArn"])


def _create_schedule(loop_id: str, config: LoopConfig) -> str | None:
    return create_loop_schedule(
        loop_id, config, ResumeScheduleSettings.from_environ(), boto3.client("scheduler")
    )


def _delete_schedule(loop_id: str) -> bool:
    return delete_loop_schedule(loop_id, ResumeScheduleSettings.from_environ(), boto3.client("scheduler"))


def _controls(settings: RuntimeSettings) -> AwsControls:
    """The control service a continuation goes through (Cedar, then a new execution)."""
    base = ports(settings)
    if base.policy is None:
        raise ConfigError("start_loop: continuations need a policy engine (POLICY_MAP, POLICY_STORE_ID)")
    resumer = StepFunctionsResumer(
        base.store,
        boto3.client("stepfunctions"),
        os.environ["STATE_MACHINE_ARN"],
        checkpoints=base.checkpoints,
    )
    return AwsControls(ControlService(base.store, base.policy, resumer), resumer)


def _json(status: int, body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _start(request: StartLoopRequest, *, asynchronous: bool = False) -> Response[dict[str, Any]]:
    """Start the loop, creating its recurring schedule first when its config has ``schedule``
    (loopwright.cloud.start). A stored loop whose schedule was not created or whose execution did
    not start is INTERRUPTED with an ERROR event: ``POST /loops``
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
            create_schedule=_create_schedule,
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


def _continue(request: ContinueRequest) -> dict[str, Any]:
    """Continue a loop (its schedule fired, a continue event, a push): 202 continued; 200 a no-op
    (running, waiting for a human, ended for good: its schedule deleted), logged with its reason;
    404 unknown loop; 403 Cedar denied. Neither is retried. A continuation whose execution did
    not start raises (Lambda retries it, then the on-failure queue)."""
    settings = RuntimeSettings.from_environ()
    try:
        outcome = continue_stored(
            request, ports(settings).store, _controls(settings).submit, _delete_schedule
        )
    except ResumeNotStartedError:
        raise
    except LoopNotFoundError as exc:
        logger.warning("continuation of an unknown loop", extra={"loop_id": request.loop_id})
        return {"statusCode": 404, "body": json.dumps({"message": str(exc)})}
    except ControlDeniedError as exc:
        logger.warning("continuation denied", extra={"loop_id": request.loop_id, "error": str(exc)})
        return {"statusCode": 403, "body": json.dumps({"message": str(exc)})}
    summary = outcome.model_dump(mode="json")
    logger.info("continuation", extra=summary)
    if outcome.continued:
        metrics.add_metric(name="LoopsContinued", unit=MetricUnit.Count, value=1)
    return {"statusCode": 202 if outcome.continued else 200, "body": json.dumps(summary)}


def _bad_event(exc: ValidationError, where: str, hint: str = "") -> dict[str, Any]:
    """An event that does not parse: 400 naming the field, logged, not retried; nothing written."""
    message = format_validation_error(exc, where) + hint
    logger.error("bad event", extra={"error": message})
    return {"statusCode": 400, "body": json.dumps({"message": message})}


def _event(event: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge event: a continue event, else a StartLoopRequest (a git push or CI rule)
    that starts the loop, or continues it when it exists."""
    if event.get("source") == CONTINUE_EVENT_SOURCE:
        try:
            parsed = parse(event=event, model=ContinueEventBridgeModel)
        except ValidationError as exc:
            return _bad_event(exc, "event", CONTINUE_DETAIL_HINT)
        return _continue(parsed.request())
    try:
        request = StartLoopRequest.model_validate(parse(event=event, model=EventBridgeModel).detail)
    except ValidationError as exc:
        return _bad_event(exc, "detail")
    continuation = push_continuation(request, ports(RuntimeSettings.from_environ()).store)
    if continuation is not None:
        return _continue(continuation)
    response = _start(request, asynchronous=True)
    return {"statusCode": response.status_code, "body": json.dumps(response.body)}


@app.post("/loops")
def post_loop(request: StartLoopRequest) -> Response[dict[str, Any]]:
    """Start a loop: 202 with its id; 400 naming the field for a bad config; 409 if it exists
    (and is not a start that failed); 503 with its id when its execution did not start."""
    return _start(request)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway proxy event -> proxy response; an EventBridge event (a git push or CI rule)
    whose ``detail`` is a StartLoopRequest -> the same response as a dict (a loop that exists is
    continued); a ``loopwright.continue`` event or a loop schedule's ``{"continue_loop": ...}``
    (loopwright.cloud.continuation) -> 202 continued, 200 not; a resume schedule's
    ``{"scheduled_resume": ...}`` (loopwright.cloud.schedule) -> 202 resumed, 200 not."""
    if "scheduled_resume" in event:
        return _resume(event)
    if "continue_loop" in event:
        try:
            scheduled = parse(event=event, model=ContinueLoopEvent)
        except ValidationError as exc:
            return _bad_event(exc, "event")
        return _continue(scheduled.continue_loop)
    if "detail-type" in event:
        return _event(event)
    return app.resolve(event, context)
