"""DynamoDbStore against moto: DynamoDB-specific behaviour (the LoopStore behaviour shared with
SqliteStore is in test_aws_adapters_contract.py), and throttling through botocore."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from loopwright.adapters.aws._errors import retry_config
from loopwright.adapters.aws.dynamodb_store import (
    EVENTS_BY_TYPE_INDEX,
    LOOPS_ALL_INDEX,
    LOOPS_BY_PROJECT_INDEX,
    MAX_TRANSACTION_ITEMS,
    DynamoDbStore,
)
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import ExitConditionStatus, ExitConditionType, IterationEventType
from tests.integration.aws_moto import (
    EVENTS_TABLE,
    LOOPS_TABLE,
    REGION,
    fake_credentials,
    json_error_response,
    moto_dynamodb_store,
)
from tests.integration.test_sqlite_store import event, make_state

EV = IterationEventType


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDbStore]:
    fake_credentials(monkeypatch)
    with moto_dynamodb_store() as opened:
        yield opened


def raw_item(store: DynamoDbStore, loop_id: str) -> dict[str, Any]:
    item: dict[str, Any] = store._client.get_item(
        TableName=LOOPS_TABLE, Key={"loop_id": {"S": loop_id}}, ConsistentRead=True
    )["Item"]
    return item


def test_tables_have_the_documented_indexes(store: DynamoDbStore) -> None:
    loops = store._client.describe_table(TableName=LOOPS_TABLE)["Table"]
    events = store._client.describe_table(TableName=EVENTS_TABLE)["Table"]
    assert {i["IndexName"] for i in loops["GlobalSecondaryIndexes"]} == {
        LOOPS_BY_PROJECT_INDEX,
        LOOPS_ALL_INDEX,
    }
    assert [i["IndexName"] for i in events["GlobalSecondaryIndexes"]] == [EVENTS_BY_TYPE_INDEX]


def test_events_need_an_existing_loop(store: DynamoDbStore) -> None:
    with pytest.raises(LoopNotFoundError, match="loop_x"):
        store.append_events([event("loop_x", 1, EV.LOOP_STARTED)])
    with pytest.raises(LoopNotFoundError, match="loop_x"):
        store.save_state(make_state("loop_x"), [event("loop_x", 1, EV.LOOP_STARTED)])
    with pytest.raises(LoopNotFoundError, match="loop_x"):
        store.request_stop("loop_x", "no such loop")
    store.clear_stop("loop_x")  # nothing pending: fine
    assert store.list_events("loop_x") == []


def test_dollar_figures_round_trip_exactly(store: DynamoDbStore) -> None:
    # DynamoDB numbers need Decimal; the state is stored as JSON, so floats come back as they went.
    state = make_state("loop_cost")
    state.config = state.config.model_copy(update={"cost_budget_usd": 12.34})
    state = store.create_loop(state)
    state.cost_usd = 0.1 + 0.2  # 0.30000000000000004: not a decimal fraction
    state.unpriced_models = ["my-local-llama"]
    store.save_state(state, [event("loop_cost", 1, EV.AGENT_COMPLETED)])
    read = store.get_state("loop_cost")
    assert read.cost_usd == 0.1 + 0.2 and read.config.cost_budget_usd == 12.34
    assert read.unpriced_models == ["my-local-llama"]


def test_a_lost_save_writes_none_of_its_events(store: DynamoDbStore) -> None:
    first = store.create_loop(make_state())
    store.save_state(first, [event("loop_a", 1, EV.LOOP_STARTED)])
    with pytest.raises(LoopFrameworkError, match=r"another writer.*expected.*1.*found 2"):
        store.save_state(first, [event("loop_a", 1, EV.ITERATION_STARTED)])
    assert [e.type for e in store.list_events("loop_a")] == [EV.LOOP_STARTED]
    assert raw_item(store, "loop_a")["event_count"] == {"N": "1"}


def test_stop_requests_do_not_touch_the_version_and_survive_saves(store: DynamoDbStore) -> None:
    state = store.create_loop(make_state())
    store.request_stop("loop_a", "from the dashboard")
    assert raw_item(store, "loop_a")["version"] == {"N": "1"}
    state = store.save_state(state, [event("loop_a", 1, EV.STOP_REQUESTED)])
    assert store.stop_requested("loop_a") == "from the dashboard"
    store.clear_stop("loop_a")
    assert store.stop_requested("loop_a") is None
    assert raw_item(store, "loop_a")["controls"] == {"M": {}}


def test_many_events_are_chunked_and_keep_their_order(store: DynamoDbStore) -> None:
    # Given more events than one transaction can hold
    state = store.create_loop(make_state())
    many = [event("loop_a", i, EV.ITERATION_STARTED) for i in range(MAX_TRANSACTION_ITEMS + 30)]
    # When they are saved with the state
    store.save_state(state, many)
    store.append_events([event("loop_a", 999, EV.LOOP_COMPLETED)])
    # Then all are stored in recording order, numbered without gaps
    stored = store.list_events("loop_a")
    assert [e.event_id for e in stored] == [e.event_id for e in many] + [stored[-1].event_id]
    assert raw_item(store, "loop_a")["event_count"] == {"N": str(len(many) + 1)}
    newest = store.list_events("loop_a", types=[EV.ITERATION_STARTED], limit=3, newest_first=True)
    assert [e.iteration for e in newest] == [129, 128, 127]


def test_events_of_several_loops_in_one_append(store: DynamoDbStore) -> None:
    store.create_loop(make_state("l1"))
    store.create_loop(make_state("l2"))
    store.append_events([event("l1", 1, EV.LOOP_STARTED), event("l2", 1, EV.LOOP_STARTED)])
    store.append_events([event("l2", 2, EV.ITERATION_STARTED), event("l1", 2, EV.ITERATION_STARTED)])
    assert [e.iteration for e in store.list_events("l1")] == [1, 2]
    assert [e.iteration for e in store.list_events("l2")] == [1, 2]


def test_a_concurrent_event_writer_is_retried_not_overwritten(
    store: DynamoDbStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a writer that read the event counter before another writer advanced it
    store.create_loop(make_state())
    store.append_events([event("loop_a", 1, EV.LOOP_STARTED)])
    real_head = store._head
    reads: list[str] = []

    def head(loop_id: str) -> tuple[int, int] | None:
        reads.append(loop_id)
        found = real_head(loop_id)
        if found is not None and len(reads) == 1:
            return found[0], found[1] - 1  # what the loop item held before the other write
        return found

    monkeypatch.setattr(store, "_head", head)
    # When it writes its event
    store.append_events([event("loop_a", 2, EV.ITERATION_STARTED)])
    # Then its transaction was cancelled once, re-read, and nothing was overwritten
    assert reads == ["loop_a", "loop_a"]
    assert [e.iteration for e in store.list_events("loop_a")] == [1, 2]


def test_large_states_are_compressed_and_huge_ones_refused(store: DynamoDbStore) -> None:
    state = make_state()
    condition = ExitConditionStatus(name="tests", type=ExitConditionType.ALL_TESTS_PASS)
    state.exit_conditions = [condition.model_copy(update={"stdout": "FAILED test_x\n" * 40_000})]
    created = store.create_loop(state)
    assert "B" in raw_item(store, "loop_a")["state"]
    assert store.get_state("loop_a") == created

    created.exit_conditions = [condition.model_copy(update={"stdout": os.urandom(450_000).hex()})]
    with pytest.raises(LoopFrameworkError, match=r"loop_a.*\d+ bytes of JSON.*compressed"):
        store.save_state(created)
    assert store.get_state("loop_a").version == 1


def test_throttling_surfaces_as_a_domain_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_credentials(monkeypatch)
    client = boto3.client("dynamodb", region_name=REGION, config=retry_config(max_attempts=1))
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    store = DynamoDbStore(LOOPS_TABLE, EVENTS_TABLE, client=client)
    with Stubber(client) as stubber:
        stubber.add_client_error("get_item", "ProvisionedThroughputExceededException", http_status_code=400)
        stubber.add_client_error("get_item", "ThrottlingException", http_status_code=400)
        with pytest.raises(LoopFrameworkError, match=r"ProvisionedThroughputExceeded.*throttled") as info:
            store.get_state("loop_a")
        assert not isinstance(info.value, LoopNotFoundError)
        assert info.value.__cause__ is not None
        with pytest.raises(LoopFrameworkError, match=r"ThrottlingException.*throttled"):
            store.stop_requested("loop_a")


def test_throttling_is_retried_by_botocore_until_attempts_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a DynamoDB endpoint that always throttles (a before-send hook; no network)
    fake_credentials(monkeypatch)
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _seconds: None)
    store = DynamoDbStore(LOOPS_TABLE, EVENTS_TABLE, region_name=REGION, max_attempts=3)
    sent: list[str] = []

    def throttle(request: Any, **_: Any) -> Any:
        sent.append(request.url)
        return json_error_response(400, "ProvisionedThroughputExceededException")

    store._client.meta.events.register("before-send.dynamodb", throttle)
    # When the store reads, Then the call is tried max_attempts times and fails as a domain error
    with pytest.raises(LoopFrameworkError, match="throttled"):
        store.get_state("loop_a")
    assert len(sent) == 3


def test_a_missing_table_names_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_credentials(monkeypatch)
    with moto_dynamodb_store() as good:
        store = DynamoDbStore("no-such-table", EVENTS_TABLE, client=good._client)
        with pytest.raises(LoopFrameworkError, match=r"ResourceNotFoundException.*stack is deployed"):
            store.create_loop(make_state())
