"""The PlanStore contract, run against every plan store (the AWS helper adds DynamoDB here).

Project isolation is part of the contract: a plan, its events or a packet of project A can never
be read, changed or appended to through project B.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.models import LoopConfig, LoopOutcome, LoopState
from loopwright.models.plans import ActivityEvent, ActivityEventType, Plan, PlanStatus
from loopwright.plans.errors import PlanConflictError, PlanNotFoundError, PlanValidationError
from loopwright.plans.inspect import build_packet
from loopwright.plans.ports import PlanStore
from loopwright.plans.transitions import begin_dispatch, new_plan
from loopwright.plans.validation import parse_draft
from tests.integration.plans_aws_helpers import MotoPlanStore

EV = ActivityEventType

StoreFactory = Callable[[Path], PlanStore]
FACTORIES: dict[str, StoreFactory] = {
    "sqlite": lambda tmp: SqlitePlanStore(tmp / "loopwright.db"),
    "dynamodb": lambda tmp: MotoPlanStore(),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlanStore]:
    made = FACTORIES[request.param](tmp_path)
    yield made
    close = getattr(made, "close", None)
    if close is not None:
        close()


def _plan(project: str) -> tuple[Plan, list[ActivityEvent]]:
    draft = parse_draft(
        {
            "defaults": {"exit_conditions": [{"type": "CUSTOM", "command": "true"}]},
            "tasks": [{"task_id": "a", "description": "a"}],
        }
    )
    change = new_plan(draft, project=project)
    return change.plan, change.events


def test_create_get_save_with_versions_and_events(store: PlanStore) -> None:
    plan, events = _plan("shop")
    stored = store.create_plan("shop", plan, events)
    assert stored.version == 1
    assert store.get_plan("shop", plan.plan_id) == stored
    change = begin_dispatch(stored)
    saved = store.save_plan("shop", change.plan, change.events)
    assert (saved.version, store.get_plan("shop", plan.plan_id).status) == (2, PlanStatus.DISPATCHING)
    assert [e.type for e in store.list_events("shop", plan.plan_id)] == [EV.PLAN_CREATED, EV.PLAN_DISPATCHED]
    assert [e.type for e in store.list_events("shop", plan.plan_id, types=[EV.PLAN_DISPATCHED])] == [
        EV.PLAN_DISPATCHED
    ]
    assert len(store.list_events("shop", plan.plan_id, limit=1)) == 1
    with pytest.raises(PlanConflictError, match="another writer"):
        store.save_plan("shop", change.plan, change.events)  # stale version: nothing written
    assert len(store.list_events("shop", plan.plan_id)) == 2
    with pytest.raises(PlanConflictError, match="already exists"):
        store.create_plan("shop", plan)


def test_list_plans_newest_first_per_project(store: PlanStore) -> None:
    ids = [store.create_plan("shop", _plan("shop")[0]).plan_id for _ in range(3)]
    store.create_plan("other", _plan("other")[0])
    assert [p.plan_id for p in store.list_plans("shop")] == ids[::-1]
    assert [p.plan_id for p in store.list_plans("shop", limit=2)] == ids[:0:-1]
    assert len(store.list_plans("other")) == 1
    assert store.list_plans("nobody") == []


def test_a_plan_of_project_a_is_never_read_or_written_through_project_b(store: PlanStore) -> None:
    plan, events = _plan("a")
    store.create_plan("a", plan, events)
    with pytest.raises(PlanNotFoundError):
        store.get_plan("b", plan.plan_id)
    assert store.list_events("b", plan.plan_id) == []
    # writing a's plan through b is refused before anything is written
    with pytest.raises(PlanValidationError, match="belongs to project 'a'"):
        store.save_plan("b", store.get_plan("a", plan.plan_id))
    with pytest.raises(PlanValidationError):
        store.create_plan("b", plan)
    # b's copy of the same id is another plan: a's is not touched
    forged = store.get_plan("a", plan.plan_id).model_copy(
        update={"project": "b", "status": PlanStatus.CANCELLED}
    )
    with pytest.raises(PlanNotFoundError):
        store.save_plan("b", forged)
    foreign = ActivityEvent(project="b", plan_id=plan.plan_id, type=EV.PLAN_CANCELLED)
    with pytest.raises(PlanNotFoundError):
        store.append_events("b", [foreign])
    with pytest.raises(PlanValidationError):
        store.append_events("a", [foreign])
    assert store.get_plan("a", plan.plan_id).status is PlanStatus.DRAFT
    assert [e.type for e in store.list_events("a", plan.plan_id)] == [EV.PLAN_CREATED]


def test_append_events_is_all_or_nothing(store: PlanStore) -> None:
    plan, _ = _plan("a")
    store.create_plan("a", plan)
    good = ActivityEvent(project="a", plan_id=plan.plan_id, type=EV.PLAN_CANCELLED)
    unknown = ActivityEvent(project="a", plan_id="plan_nope", type=EV.PLAN_CANCELLED)
    with pytest.raises(PlanNotFoundError):
        store.append_events("a", [good, unknown])
    assert store.list_events("a", plan.plan_id) == []
    store.append_events("a", [good])
    assert store.list_events("a", plan.plan_id) == [good]


def test_packets_are_per_project(store: PlanStore) -> None:
    state = LoopState(
        loop_id="loop_1",
        project="a",
        config=LoopConfig.model_validate(
            {"goal": "g", "project": "a", "exit_conditions": [{"type": "CUSTOM", "command": "true"}]}
        ),
        outcome=LoopOutcome.FAILED,
    )
    packet = store.save_packet("a", build_packet(state, [], []))
    assert store.get_packet("a", packet.packet_id) == packet
    with pytest.raises(PlanNotFoundError):
        store.get_packet("b", packet.packet_id)
    with pytest.raises(PlanValidationError):
        store.save_packet("b", packet)


def test_sqlite_plan_tables_share_the_loop_store_file(tmp_path: Path) -> None:
    db = tmp_path / "loopwright.db"
    with SqlitePlanStore(db) as plans, SqliteStore(db) as loops:
        plan, events = _plan("a")
        plans.create_plan("a", plan, events)
        assert loops.list_loops() == []
    with SqliteStore(db), SqlitePlanStore(db) as reopened:  # either order, the tables are kept
        assert reopened.get_plan("a", plan.plan_id).plan_id == plan.plan_id
