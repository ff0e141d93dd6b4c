"""DynamoDbPlanStore on moto: what is DynamoDB-specific (the PlanStore behaviour shared with SQLite
is in test_plans_store.py): one transaction per write, no Scan, the counter race, compression."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from typing import Any

import pytest

from loopwright.adapters.aws.dynamodb_plan_store import INLINE_LIMIT_BYTES, SORT_KEY, plan_key
from loopwright.exceptions import LoopFrameworkError
from loopwright.models.plans import ActivityEvent, ActivityEventType, Plan, PlanTask
from loopwright.plans.transitions import begin_dispatch, mark_running, start_task
from tests.integration.plans_aws_helpers import PLANS_TABLE, MotoPlanStore
from tests.integration.test_plans_store import _plan

EV = ActivityEventType


@pytest.fixture
def store() -> Iterator[MotoPlanStore]:
    opened = MotoPlanStore()
    yield opened
    opened.close()


def _calls(store: MotoPlanStore) -> list[str]:
    seen: list[str] = []
    store._client.meta.events.register("before-call.dynamodb.*", lambda model, **_: seen.append(model.name))
    return seen


def test_a_transition_is_one_transaction_and_nothing_scans(store: MotoPlanStore) -> None:
    calls = _calls(store)
    plan, events = _plan("shop")
    stored = store.create_plan("shop", plan, events)
    assert calls == ["TransactWriteItems"]
    calls.clear()
    change = begin_dispatch(stored)
    store.save_plan("shop", change.plan, change.events)
    assert calls == ["GetItem", "TransactWriteItems"]  # the counter read, then plan + event at once
    store.list_plans("shop")
    store.list_events("shop", plan.plan_id, types=[EV.PLAN_DISPATCHED])
    assert "Scan" not in calls and calls[-3:] == ["Query", "BatchGetItem", "Query"]


def test_events_numbered_after_a_concurrent_append_are_kept_in_order(store: MotoPlanStore) -> None:
    plan, events = _plan("shop")
    stored = store.create_plan("shop", plan, events)
    change = begin_dispatch(stored)
    raced: list[int] = []

    def concurrent_writer(**_: Any) -> None:
        if not raced:  # another writer appends between our read and our transaction
            raced.append(1)
            store.append_events(
                "shop", [ActivityEvent(project="shop", plan_id=plan.plan_id, type=EV.PLAN_CANCELLED)]
            )

    store._client.meta.events.register("before-call.dynamodb.TransactWriteItems", concurrent_writer)
    store.save_plan("shop", change.plan, change.events)
    kinds = [e.type for e in store.list_events("shop", plan.plan_id)]
    assert kinds == [EV.PLAN_CREATED, EV.PLAN_CANCELLED, EV.PLAN_DISPATCHED]
    keys = store._client.query(
        TableName=PLANS_TABLE,
        KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
        ExpressionAttributeNames={"#pk": "project", "#sk": SORT_KEY},
        ExpressionAttributeValues={":pk": {"S": "shop"}, ":prefix": {"S": f"EVENT#{plan.plan_id}#"}},
    )["Items"]
    assert [k[SORT_KEY]["S"][-3:] for k in keys] == ["001", "002", "003"]


def test_a_large_plan_is_stored_compressed_and_read_back(store: MotoPlanStore) -> None:
    plan, events = _plan("shop")
    filler = "make the parser handle every token kind. " * 500
    big = plan.model_copy(
        update={
            "tasks": [PlanTask(task_id=f"t{i}", description="x", loop={"goal": filler}) for i in range(20)]
        }
    )
    assert len(big.model_dump_json()) > INLINE_LIMIT_BYTES
    store.create_plan("shop", big, events)
    item = store._client.get_item(TableName=PLANS_TABLE, Key=plan_key("shop", plan.plan_id))["Item"]
    assert "B" in item["plan"]
    assert store.get_plan("shop", plan.plan_id).tasks[19].loop["goal"] == filler
    noise = "".join(random.Random(1).choices(string.ascii_letters, k=600_000))
    huge = plan.model_copy(update={"plan_id": "plan_huge", "goal": "", "defaults": {"note": noise}})
    with pytest.raises(LoopFrameworkError, match="DynamoDB item can hold"):
        store.create_plan("shop", huge)


def test_more_events_than_one_transaction_holds_are_refused_and_nothing_is_written(
    store: MotoPlanStore,
) -> None:
    plan, events = _plan("shop")
    stored = store.create_plan("shop", plan, events)
    running = mark_running(begin_dispatch(stored).plan).plan
    change = start_task(running, "a")
    too_many = change.events * 100
    with pytest.raises(LoopFrameworkError, match="100 of a DynamoDB transaction"):
        store.save_plan("shop", change.plan, too_many)
    assert store.get_plan("shop", plan.plan_id) == stored  # nothing written


def test_plans_of_two_projects_with_the_same_id_stay_apart(store: MotoPlanStore) -> None:
    plan, events = _plan("a")
    store.create_plan("a", plan, events)
    twin = Plan.model_validate({**plan.model_dump(), "project": "b", "goal": "b's"})
    store.create_plan("b", twin)
    assert store.get_plan("a", plan.plan_id).goal != store.get_plan("b", plan.plan_id).goal
    assert len(store.list_events("a", plan.plan_id)) == 1 and store.list_events("b", plan.plan_id) == []
