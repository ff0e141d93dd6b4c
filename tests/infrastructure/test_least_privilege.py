"""The loop functions' DynamoDB permissions: item actions on exactly the tables they use, no index,
no Scan, no DeleteItem (issue 12 point 10; what each step calls: ``infrastructure.functions``)."""

from __future__ import annotations

from typing import Any

import pytest

from infrastructure import constants
from infrastructure.functions import NEEDS
from tests.infrastructure.conftest import Synthesized


def _logical_id(synthesized: Synthesized, construct: Any) -> str:
    return synthesized.stack.get_logical_id(construct.node.default_child)


def _dynamodb_grants(synthesized: Synthesized, name: str) -> dict[str, set[str]]:
    """Table logical id (or the resource as text) -> DynamoDB actions of ``name``'s role."""
    role = synthesized.stack.functions.functions[name].role
    assert role is not None
    role_id = _logical_id(synthesized, role)
    grants: dict[str, set[str]] = {}
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            actions = {actions} if isinstance(actions, str) else set(actions)
            dynamodb = {a for a in actions if a.startswith("dynamodb:")}
            if not dynamodb:
                continue
            resources = statement["Resource"]
            for resource in resources if isinstance(resources, list) else [resources]:
                getatt = resource.get("Fn::GetAtt") if isinstance(resource, dict) else None
                key = getatt[0] if getatt and getatt[1] == "Arn" else str(resource)
                grants.setdefault(key, set()).update(dynamodb)
    return grants


@pytest.mark.parametrize("name", list(constants.FUNCTIONS))
def test_loop_functions_get_item_actions_on_their_tables_only(synthesized: Synthesized, name: str) -> None:
    storage = synthesized.stack.storage
    loops = _logical_id(synthesized, storage.loops_table)
    events = _logical_id(synthesized, storage.events_table)
    idempotency = _logical_id(synthesized, storage.idempotency_table)
    needs = NEEDS[name]
    expected: dict[str, set[str]] = {}
    if "loops" in needs:  # get_state, save_state, pending/clear controls
        expected[loops] = {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    if needs & {"loop_create", "records", "evidence"}:  # create_loop; save_iteration_record; the bundle
        expected[loops] = expected.get(loops, set()) | {"dynamodb:PutItem"}
    if "events" in needs:  # event Puts in the loop's transaction
        expected[events] = {"dynamodb:PutItem"}
    if "idempotency" in needs:  # Powertools Idempotency's records
        expected[idempotency] = {
            "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        }  # fmt: skip
    assert _dynamodb_grants(synthesized, name) == expected


def test_only_start_loop_creates_loops_and_only_await_human_writes_no_events() -> None:
    assert {n for n, needs in NEEDS.items() if "loop_create" in needs} == {"start_loop"}
    # the steps that write the agent's iteration records (loopwright.cloud.steps)
    assert {n for n, needs in NEEDS.items() if "records" in needs} == {"iterate", "evaluate", "run_iteration"}
    assert {n for n, needs in NEEDS.items() if "loops" in needs and "events" not in needs} == {"await_human"}


def test_no_loop_function_may_scan_query_or_delete_loops(synthesized: Synthesized) -> None:
    for name in constants.FUNCTIONS:
        for resource, actions in _dynamodb_grants(synthesized, name).items():
            assert "/index/" not in resource, (name, resource)
            assert not actions & {"dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem"}, name
            if "Idempotency" not in resource:  # expired records: Powertools deletes its own
                assert "dynamodb:DeleteItem" not in actions, (name, resource)
