"""The DynamoDB loop store's key schema, limits and table definitions (names shared with the CDK
stack, :mod:`infrastructure.storage`, and the dashboard's queries). The schema is described in
:mod:`loopwright.adapters.aws.dynamodb_store`; these names are re-exported there."""

from __future__ import annotations

from typing import Any

# ----------------------------------------------------------------------------- key schema
#: Loops table: partition key (S).
LOOPS_PARTITION_KEY = "loop_id"
#: GSI of the loops table: a project's loops by creation time.
LOOPS_BY_PROJECT_INDEX = "by_project"
#: Partition key (S) of :data:`LOOPS_BY_PROJECT_INDEX`.
LOOPS_PROJECT_ATTRIBUTE = "project"
#: Sort key (S, ISO 8601 UTC) of both loops GSIs.
LOOPS_CREATED_ATTRIBUTE = "created_at"
#: GSI of the loops table: every loop by creation time.
LOOPS_ALL_INDEX = "all_loops"
#: Partition key (S) of :data:`LOOPS_ALL_INDEX`, always :data:`LOOPS_ALL_VALUE`.
LOOPS_ALL_ATTRIBUTE = "gsi_all"
LOOPS_ALL_VALUE = "loops"
#: Events table: partition key (S) and sort key (S, zero-padded event number).
EVENTS_PARTITION_KEY = "loop_id"
EVENTS_SORT_KEY = "seq"
#: GSI of the events table: a loop's events of one type.
EVENTS_BY_TYPE_INDEX = "by_type"
#: Partition key (S, ``f"{loop_id}#{type}"``) of :data:`EVENTS_BY_TYPE_INDEX`; sort key ``seq``.
EVENTS_LOOP_TYPE_ATTRIBUTE = "loop_type"

# ----------------------------------------------------------------------------- limits
#: Digits of an event number in ``seq`` (10^12 events per loop).
SEQ_DIGITS = 12
#: Actions in one TransactWriteItems (DynamoDB quota, since September 2022).
MAX_TRANSACTION_ITEMS = 100
#: Keys in one BatchGetItem (DynamoDB quota).
MAX_BATCH_GET_KEYS = 100
#: State JSON stored as plain S up to this many UTF-8 bytes; above, zlib-compressed as B.
STATE_INLINE_LIMIT_BYTES = 300 * 1024
#: Largest stored ``state`` value (bytes), leaving room under DynamoDB's 400 KB item limit
#: (which counts attribute names and values) for the other attributes.
STATE_MAX_BYTES = 380 * 1024
#: Times an event write is retried after a concurrent writer moved the loop's event counter.
COUNTER_RACE_ATTEMPTS = 5
#: Rounds of BatchGetItem for keys DynamoDB left unprocessed (backoff 50 ms doubling).
UNPROCESSED_ROUNDS = 6

_STATE = "state"
_VERSION = "version"
_EVENT_COUNT = "event_count"
_CONTROLS = "controls"


def create_table_requests(loops_table: str, events_table: str) -> list[dict[str, Any]]:
    """``CreateTable`` arguments (on-demand billing) for both tables with the key schema above;
    for tests and local development. The CDK stack declares the same keys."""
    string = "S"
    return [
        {
            "TableName": loops_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": string}
                for name in (
                    LOOPS_PARTITION_KEY,
                    LOOPS_PROJECT_ATTRIBUTE,
                    LOOPS_CREATED_ATTRIBUTE,
                    LOOPS_ALL_ATTRIBUTE,
                )
            ],
            "KeySchema": [{"AttributeName": LOOPS_PARTITION_KEY, "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                _index(index, partition, LOOPS_CREATED_ATTRIBUTE, "KEYS_ONLY")
                for index, partition in (
                    (LOOPS_BY_PROJECT_INDEX, LOOPS_PROJECT_ATTRIBUTE),
                    (LOOPS_ALL_INDEX, LOOPS_ALL_ATTRIBUTE),
                )
            ],
        },
        {
            "TableName": events_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": string}
                for name in (EVENTS_PARTITION_KEY, EVENTS_SORT_KEY, EVENTS_LOOP_TYPE_ATTRIBUTE)
            ],
            "KeySchema": [
                {"AttributeName": EVENTS_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": EVENTS_SORT_KEY, "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                _index(EVENTS_BY_TYPE_INDEX, EVENTS_LOOP_TYPE_ATTRIBUTE, EVENTS_SORT_KEY, "ALL")
            ],
        },
    ]


def _index(name: str, partition: str, sort: str, projection: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": partition, "KeyType": "HASH"},
            {"AttributeName": sort, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": projection},
    }
