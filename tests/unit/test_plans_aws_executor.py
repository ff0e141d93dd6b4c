"""StepFunctionsPlanExecutor.dispatch and .verify with botocore's Stubber: the plan's conditional
write, then StartExecution of PlanDispatch named after the plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from loopwright.adapters.aws.step_functions_plans import StepFunctionsPlanExecutor
from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.cloud.plan_steps import dispatch_execution_name
from loopwright.cloud.plan_verify_steps import verify_execution_name
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig
from loopwright.models.plans import Plan, PlanStatus
from loopwright.plans import transitions
from loopwright.plans.errors import PlanConflictError
from loopwright.plans.service import create_plan
from loopwright.plans.validation import parse_draft

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Loopwright-plan-dispatch"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlitePlanStore]:
    with SqlitePlanStore(tmp_path / "plans.db") as opened:
        yield opened


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto3.client("stepfunctions", region_name="us-east-1")


def _plan(store: SqlitePlanStore) -> Plan:
    draft = {
        "defaults": {"exit_conditions": [{"type": "CUSTOM", "command": "true"}]},
        "tasks": [
            {"task_id": "a", "description": "a"},
            {"task_id": "b", "description": "b", "depends_on": ["a"]},
        ],
    }
    return create_plan(store, "shop", parse_draft(draft))


def test_dispatch_begins_the_plan_and_starts_the_execution_named_after_it(
    store: SqlitePlanStore, client: Any
) -> None:
    plan = _plan(store)
    name = dispatch_execution_name("shop", plan.plan_id)
    expected_input = {"project": "shop", "plan_id": plan.plan_id, "concurrency": 3, "poll_seconds": 20}
    with Stubber(client) as stub:
        stub.add_response(
            "start_execution",
            {"executionArn": f"{ARN}:{name}", "startDate": "2026-01-01T00:00:00Z"},
            {
                "stateMachineArn": ARN,
                "name": name,
                "input": json.dumps(expected_input, separators=(",", ":")),
            },
        )
        dispatched = StepFunctionsPlanExecutor(store, ARN, client=client, poll_seconds=20).dispatch(
            "shop", plan.plan_id, concurrency=3
        )
        stub.assert_no_pending_responses()
    assert dispatched.status is PlanStatus.DISPATCHING
    assert [t.loop_id for t in dispatched.tasks] == [f"{plan.plan_id}.a", f"{plan.plan_id}.b"]


def test_a_retry_of_a_dispatching_plan_starts_it_again_and_an_existing_execution_is_a_conflict(
    store: SqlitePlanStore, client: Any
) -> None:
    plan = _plan(store)
    executor = StepFunctionsPlanExecutor(store, ARN, client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "start_execution", service_error_code="ServiceUnavailable", http_status_code=503
        )
        stub.add_response(
            "start_execution", {"executionArn": f"{ARN}:x", "startDate": "2026-01-01T00:00:00Z"}
        )
        stub.add_client_error("start_execution", service_error_code="ExecutionAlreadyExists")
        with pytest.raises(Exception, match="ServiceUnavailable"):
            executor.dispatch("shop", plan.plan_id, concurrency=2)
        assert store.get_plan("shop", plan.plan_id).status is PlanStatus.DISPATCHING
        assert executor.dispatch("shop", plan.plan_id, concurrency=2).status is PlanStatus.DISPATCHING
        with pytest.raises(PlanConflictError, match="dispatched already"):
            executor.dispatch("shop", plan.plan_id, concurrency=2)
    events = store.list_events("shop", plan.plan_id)
    assert [e.type.value for e in events] == ["plan_created", "plan_dispatched"]  # begun once


def test_a_task_that_cannot_run_here_is_refused_before_anything_is_written(
    store: SqlitePlanStore, client: Any
) -> None:
    plan = _plan(store)

    def check(config: LoopConfig, repository: str | None) -> None:
        raise ConfigError("agent: a loop run by the state machine needs an agent in its config")

    with Stubber(client) as stub, pytest.raises(ConfigError, match="needs an agent"):
        StepFunctionsPlanExecutor(store, ARN, client=client, check_loop=check).dispatch("shop", plan.plan_id)
        stub.assert_no_pending_responses()
    assert store.get_plan("shop", plan.plan_id).status is PlanStatus.DRAFT


def test_only_a_draft_plan_is_dispatched(store: SqlitePlanStore, client: Any) -> None:
    plan = _plan(store)
    store.save_plan("shop", plan.model_copy(update={"status": PlanStatus.VERIFIED}))
    with pytest.raises(PlanConflictError, match="VERIFIED"):
        StepFunctionsPlanExecutor(store, ARN, client=client).dispatch("shop", plan.plan_id)


def _ended(store: SqlitePlanStore) -> Plan:
    """A dispatched plan whose tasks all ended (a ERROR, b SKIPPED): ready to verify."""
    plan = _plan(store)
    change = transitions.begin_dispatch(plan)
    plan = store.save_plan("shop", change.plan, change.events)
    plan = store.save_plan("shop", transitions.mark_running(plan).plan)
    plan = store.save_plan("shop", *transitions.start_task(plan, "a"))
    return store.save_plan("shop", *transitions.finish_task(plan, "a", error="stopped"))


def test_verify_begins_the_plan_and_starts_its_verify_execution_without_running_a_gate(
    store: SqlitePlanStore, client: Any
) -> None:
    # Issue 12 point 9: gate:all runs in PlanDispatch (a verify execution), not in the API call
    plan = _ended(store)
    name = verify_execution_name("shop", plan.plan_id)
    assert name == dispatch_execution_name("shop", plan.plan_id) + "-verify"
    expected_input = {"verify": True, "project": "shop", "plan_id": plan.plan_id, "repository": "git://r"}
    with Stubber(client) as stub:
        stub.add_response(
            "start_execution",
            {"executionArn": f"{ARN}:{name}", "startDate": "2026-01-01T00:00:00Z"},
            {
                "stateMachineArn": ARN,
                "name": name,
                "input": json.dumps(expected_input, separators=(",", ":")),
            },
        )
        stub.add_client_error("start_execution", service_error_code="ExecutionAlreadyExists")
        executor = StepFunctionsPlanExecutor(store, ARN, client=client, repository="git://r")
        verifying = executor.verify("shop", plan.plan_id)
        assert verifying.status is PlanStatus.VERIFYING and verifying.gate_result is None
        assert verifying.verify_run_id == f"verify_{plan.plan_id}"
        with pytest.raises(PlanConflictError, match="verified already"):  # its execution ended
            executor.verify("shop", plan.plan_id)
        stub.assert_no_pending_responses()
    assert store.get_plan("shop", plan.plan_id).status is PlanStatus.VERIFYING


def test_a_plan_still_running_tasks_is_not_verified_and_nothing_starts(
    store: SqlitePlanStore, client: Any
) -> None:
    plan = _plan(store)
    change = transitions.begin_dispatch(plan)
    plan = store.save_plan("shop", change.plan, change.events)
    plan = store.save_plan("shop", transitions.mark_running(plan).plan)
    with Stubber(client) as stub, pytest.raises(PlanConflictError, match="still runs tasks"):
        StepFunctionsPlanExecutor(store, ARN, client=client).verify("shop", plan.plan_id)
    stub.assert_no_pending_responses()  # no StartExecution was made
    assert store.get_plan("shop", plan.plan_id).status is PlanStatus.RUNNING
