"""Powertools Idempotency on the state machine's steps: a retried task does not act twice.

Step Functions retries a Lambda task after a Lambda service error or a failure
(``infrastructure/state_machine.py``), and the first attempt may already have applied its step (saved
the loop's state and events) when the error reached Step Functions. Each step handler is wrapped in
:func:`idempotent_step`: the first call for a key runs the step and stores its output (the
``StepOutput`` JSON) in DynamoDB; a later call with the same key returns the stored output without
running the step again (logged, metric ``StepsReplayed``).

Key (:func:`step_key`): the step's name and, from the raw event, ``loop_id``, ``generation`` (the
execution: a continued or resumed loop runs in a new one), ``iteration`` and ``action`` (how the
state was reached: Decide after Verify has none, Decide after a Cedar denial has STOP, Authorize
after Decide has CONTINUE or AWAIT_HUMAN), and ``baseline: true`` for an execution's input that
asks for its baseline (the Evaluate Lambda's baseline at iteration N is not iteration N's
evaluation; the other events' keys do not have it), ``settle_pins: true`` for the Evaluate,
Verify and Decide of an iteration held for changing pinned files once a human answered (the
same states ran for iteration N when it was held; ``loopwright.cloud.steps.authorize_step``),
and ``polls`` for the polls of a step whose
agent or checks run in the background (:mod:`loopwright.cloud.deferral`: each poll is a new
invocation of the same state), so two visits of one state in an execution
never share a key while a retry, which gets the same input, always does. The whole event is
hashed as the payload to validate: a key reused with another event raises
``IdempotencyValidationError`` instead of replaying a stale output.

Records: table ``IDEMPOTENCY_TABLE_NAME`` (partition key :data:`PARTITION_KEY`, TTL attribute
:data:`EXPIRY_ATTRIBUTE`; ``infrastructure/storage.py``). A completed record is kept
:data:`EXPIRY_SECONDS` (retries come within seconds to minutes). An in-progress record expires when
the invocation that wrote it times out (``register_lambda_context``), so a retry after a crash or a
timeout runs the step instead of waiting for the record to expire. A stored output is a task's
result, which Step Functions caps at 256 KiB (its payload quota), under DynamoDB's 400 KB item limit.

Without ``IDEMPOTENCY_TABLE_NAME``: with ``LOOPWRIGHT_ADAPTERS=local`` idempotency is off (a warning
is logged once per container); with ``aws`` every step fails with a :class:`ConfigError` naming the
variable (the CDK stack always sets it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.metrics import MetricUnit

from loopwright.cloud.observability import logger, metrics
from loopwright.cloud.runtime import RuntimeSettings

if TYPE_CHECKING:  # imported when a table is configured: a local run without one never needs boto3
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

#: The idempotency table's partition key and TTL attribute (Powertools' DynamoDBPersistenceLayer
#: defaults; the CDK table is built from these).
PARTITION_KEY = "id"
EXPIRY_ATTRIBUTE = "expiration"
#: How long a step's stored output answers retries: one day, in seconds.
EXPIRY_SECONDS = 24 * 60 * 60
#: In-progress expiry when the context cannot tell the time left (a local run): Lambda's maximum
#: timeout, 900 seconds (AWS Lambda quotas).
LOCAL_REMAINING_MILLIS = 900 * 1000

#: The error a step fails with while another invocation holds its key in progress (Powertools'
#: exception class: Lambda reports its name as the error, which the state machine retries).
IN_PROGRESS_ERROR = "IdempotencyAlreadyInProgressError"

#: A Lambda handler: (event, context) -> result.
Handler = Callable[[Any, Any], Any]


def step_key(event: Any) -> dict[str, Any] | None:
    """The idempotency key fields of a raw step event (a StepInput/StepOutput JSON object):
    ``loop_id``, ``generation``, ``iteration``, ``action``, ``baseline: True`` when the event
    asks for the baseline, ``settle_pins: True`` when it evaluates a held iteration, and
    ``polls`` and ``pending_step`` for a poll of a pending step; None when the event has no
    ``loop_id`` (the handler's parser then rejects it, naming the field)."""
    if not isinstance(event, Mapping) or not event.get("loop_id"):
        return None
    key = {
        "loop_id": event["loop_id"],
        "generation": event.get("generation", 0),
        "iteration": event.get("iteration", 0),
        "action": event.get("action"),
    }
    if event.get("baseline") is True:
        key["baseline"] = True
    if event.get("settle_pins") is True:  # Evaluate N again, after a held iteration's answer
        key["settle_pins"] = True
    if event.get("polls"):  # a poll of a pending step is a new invocation (loopwright.cloud.deferral)
        key["polls"] = event["polls"]
        key["pending_step"] = event.get("pending_step")  # compact: iterate N+1 vs evaluate N
    return key


def create_table_request(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments of an idempotency table (the local run's moto table; in AWS the
    CDK table of ``infrastructure/storage.py`` has the same key)."""
    return {
        "TableName": table_name,
        "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": PARTITION_KEY, "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }


@dataclass
class _RemainingTime:
    """A Lambda context that cannot tell the time left (a local run's): Lambda's maximum."""

    context: Any

    def get_remaining_time_in_millis(self) -> int:
        return LOCAL_REMAINING_MILLIS

    def __getattr__(self, name: str) -> Any:
        return getattr(self.context, name)


def _replayed(response: Any, idempotent_data: DataRecord) -> Any:
    logger.info(
        "step replayed from the idempotency store", extra={"idempotency_key": idempotent_data.idempotency_key}
    )
    metrics.add_metric(name="StepsReplayed", unit=MetricUnit.Count, value=1)
    return response


@dataclass
class IdempotencyStore:
    """The persistence layer and config of one container (built once per settings)."""

    persistence: DynamoDBPersistenceLayer
    config: IdempotencyConfig

    def run(self, step: str, key: dict[str, Any], event: Any, context: Any, handler: Handler) -> Any:
        """``handler(event, context)`` once per ``step`` and ``key``; the stored output after."""
        from aws_lambda_powertools.utilities.idempotency import idempotent_function

        remaining = getattr(context, "get_remaining_time_in_millis", None)
        lambda_context = context if callable(remaining) else _RemainingTime(context)
        self.config.register_lambda_context(cast("LambdaContext", lambda_context))

        def call(*, step_input: dict[str, Any]) -> Any:
            return handler(event, context)

        once = idempotent_function(
            call,
            data_keyword_argument="step_input",
            persistence_store=self.persistence,
            config=self.config,
            key_prefix=f"loopwright.{step}",
        )
        return once(step_input={"key": key, "event": event})


@functools.cache
def idempotency_store(settings: RuntimeSettings) -> IdempotencyStore | None:
    """The container's store for ``settings``; None (logged once) when idempotency is off.

    Raises :class:`~loopwright.exceptions.ConfigError` when ``IDEMPOTENCY_TABLE_NAME`` is missing
    with ``LOOPWRIGHT_ADAPTERS=aws``.
    """
    if not settings.idempotency_table:
        if settings.adapters == "aws":
            settings.require("idempotency_table")  # raises, naming IDEMPOTENCY_TABLE_NAME
        logger.warning(
            "idempotency is off: IDEMPOTENCY_TABLE_NAME is not set, so a retried step may act twice "
            "(fine for a local run without a table; the CDK stack always sets it)"
        )
        return None
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    return IdempotencyStore(
        persistence=DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, key_attr=PARTITION_KEY, expiry_attr=EXPIRY_ATTRIBUTE
        ),
        config=IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="event",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=EXPIRY_SECONDS,
            response_hook=_replayed,
        ),
    )


def idempotent_step(step: str) -> Callable[[Handler], Handler]:
    """Decorate a step's Lambda handler (outside its event parser: it reads the raw event) so a
    retried invocation returns the first one's output instead of applying the step again.

    ``step`` names the step in the key (``authorize``, ``iterate``...). Errors: those of the
    handler (the record is deleted, so a retry runs the step); ``IdempotencyAlreadyInProgressError``
    while another invocation for the key runs; ``IdempotencyValidationError`` for a key reused with
    another event; :class:`~loopwright.exceptions.ConfigError` as :func:`idempotency_store`.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            store = idempotency_store(RuntimeSettings.from_environ())
            key = step_key(event)
            if store is None or key is None:
                return handler(event, context)
            return store.run(step, key, event, context, handler)

        return wrapper

    return decorate
