"""VerifiedPermissionsPolicyEngine with botocore's Stubber (moto has no Verified Permissions).

The Stubber checks every request against the service model, so these tests also prove the
requests are well-formed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from loopwright.adapters.aws._errors import retry_config
from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine
from loopwright.adapters.local.cedar_policy import policy_annotations
from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import AuthorizationRequest, LoopOutcome
from loopwright.steps.authorize import authorize
from tests.integration.aws_moto import REGION, fake_credentials
from tests.integration.test_sqlite_store import make_state

STORE = "PSEXAMPLEabcdefg111111"
POLICIES = {
    "SPEXAMPLEpermit0001": {"id": "continue-iteration", "message": "may run"},
    "SPEXAMPLEforbid0002": {
        "id": "iteration-limit",
        "outcome": "ITERATION_LIMIT",
        "message": "the loop has run its maximum number of iterations",
    },
}
REQUEST = AuthorizationRequest(
    principal='Agent::"loop_a"',
    action='Action::"ContinueIteration"',
    resource='Loop::"loop_a"',
    resource_attributes={"project": "p", "max_iterations": 10, "token_budget": None},
    context={"iteration": 11, "tokens_used": 0, "elapsed_seconds": 3},
)
WIRE_REQUEST = {
    "principal": {"entityType": "Agent", "entityId": "loop_a"},
    "action": {"actionType": "Action", "actionId": "ContinueIteration"},
    "resource": {"entityType": "Loop", "entityId": "loop_a"},
    "context": {
        "contextMap": {"iteration": {"long": 11}, "tokens_used": {"long": 0}, "elapsed_seconds": {"long": 3}}
    },
}
WIRE_ENTITIES = {
    "entityList": [
        {
            "identifier": {"entityType": "Loop", "entityId": "loop_a"},
            "attributes": {"project": {"string": "p"}, "max_iterations": {"long": 10}},
            "parents": [],
        }
    ]
}


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[VerifiedPermissionsPolicyEngine, Stubber]]:
    fake_credentials(monkeypatch)
    client = boto3.client("verifiedpermissions", region_name=REGION, config=retry_config(1))
    engine = VerifiedPermissionsPolicyEngine(STORE, POLICIES, client=client)
    with Stubber(client) as stubber:
        yield engine, stubber
        stubber.assert_no_pending_responses()


def answer(decision: str, *policy_ids: str, errors: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "decision": decision,
        "determiningPolicies": [{"policyId": p} for p in policy_ids],
        "errors": [{"errorDescription": e} for e in errors],
    }


def test_allow_names_the_permitting_policy(stubbed: tuple[VerifiedPermissionsPolicyEngine, Stubber]) -> None:
    engine, stubber = stubbed
    stubber.add_response(
        "is_authorized",
        answer("ALLOW", "SPEXAMPLEpermit0001"),
        {"policyStoreId": STORE, **WIRE_REQUEST, "entities": WIRE_ENTITIES},
    )
    decision = engine.is_authorized(REQUEST)
    assert decision.allowed
    assert decision.policy_ids == ["continue-iteration"]
    assert decision.annotations["continue-iteration"]["message"] == "may run"
    assert decision.errors == []


def test_deny_maps_the_store_policy_to_its_id_and_outcome(
    stubbed: tuple[VerifiedPermissionsPolicyEngine, Stubber],
) -> None:
    engine, stubber = stubbed
    stubber.add_response("is_authorized", answer("DENY", "SPEXAMPLEforbid0002", "SPunknown"))
    decision = engine.is_authorized(REQUEST)
    assert not decision.allowed
    assert decision.policy_ids == ["iteration-limit", "SPunknown"]
    assert decision.annotations["iteration-limit"]["outcome"] == "ITERATION_LIMIT"


def test_the_authorize_step_asks_both_questions_one_by_one_and_reports_the_limit(
    stubbed: tuple[VerifiedPermissionsPolicyEngine, Stubber],
) -> None:
    # Given a loop whose next iteration is past its limit
    engine, stubber = stubbed
    state = make_state()
    state.iteration = state.config.max_iterations
    stubber.add_response("is_authorized", answer("DENY", "SPEXAMPLEforbid0002"))
    stubber.add_response("is_authorized", answer("DENY"))
    # When the core's authorize step asks Verified Permissions
    result = authorize(state, engine)
    # Then two single calls (30x cheaper than a batch each) answered, and the denial names the
    # policy and its outcome
    stubber.assert_no_pending_responses()
    assert not result.allowed
    assert result.denied_by == ["iteration-limit"]
    assert result.outcome is LoopOutcome.ITERATION_LIMIT


def test_evaluation_and_validation_errors_are_returned_so_the_core_fails_closed(
    stubbed: tuple[VerifiedPermissionsPolicyEngine, Stubber],
) -> None:
    engine, stubber = stubbed
    stubber.add_response(
        "is_authorized",
        answer("DENY", errors=("while evaluating policy `SPEXAMPLEforbid0002`: attribute missing",)),
    )
    stubber.add_client_error("is_authorized", "ValidationException", "context does not match the schema")
    evaluated = engine.is_authorized(REQUEST)
    assert not evaluated.allowed
    assert evaluated.errors == [
        "while evaluating policy `SPEXAMPLEforbid0002 (iteration-limit)`: attribute missing"
    ]
    rejected = engine.is_authorized(REQUEST)
    assert not rejected.allowed and "does not match the schema" in rejected.errors[0]

    bad_uid = REQUEST.model_copy(update={"principal": "not a uid"})
    decisions = engine.is_authorized_batch([bad_uid])  # not sent: the Stubber has no response
    assert not decisions[0].allowed and "not a uid" in decisions[0].errors[0]

    state = make_state()
    stubber.add_response("is_authorized", answer("DENY", errors=("boom",)))
    stubber.add_response("is_authorized", answer("DENY", errors=("boom",)))
    result = authorize(state, engine)
    assert not result.allowed and result.outcome is LoopOutcome.POLICY_DENIED
    assert "fail closed" in (result.reason or "")


def test_typed_attribute_values(stubbed: tuple[VerifiedPermissionsPolicyEngine, Stubber]) -> None:
    engine, stubber = stubbed
    request = REQUEST.model_copy(
        update={
            "resource_attributes": {
                "operators": {"__entity": {"type": "Group", "id": "ops"}},
                "flags": [True, "x"],
                "ratio": 0.5,
                "meta": {"k": 1},
            },
            "context": {},
        }
    )
    attributes = {
        "operators": {"entityIdentifier": {"entityType": "Group", "entityId": "ops"}},
        "flags": {"set": [{"boolean": True}, {"string": "x"}]},
        "ratio": {"decimal": "0.5000"},
        "meta": {"record": {"k": {"long": 1}}},
    }
    expected = {
        "policyStoreId": STORE,
        **WIRE_REQUEST,
        "context": {"contextMap": {}},
        "entities": {"entityList": [{**WIRE_ENTITIES["entityList"][0], "attributes": attributes}]},
    }
    stubber.add_response("is_authorized", answer("ALLOW", "SPEXAMPLEpermit0001"), expected)
    assert engine.is_authorized(request).allowed


def test_throttling_raises_a_domain_error(stubbed: tuple[VerifiedPermissionsPolicyEngine, Stubber]) -> None:
    engine, stubber = stubbed
    stubber.add_client_error("is_authorized", "ThrottlingException", "Rate exceeded", http_status_code=429)
    with pytest.raises(LoopFrameworkError, match=r"ThrottlingException.*throttled") as info:
        engine.is_authorized(REQUEST)
    assert info.value.__cause__ is not None


def test_full_batches_of_30_go_in_one_call_the_rest_one_by_one(
    stubbed: tuple[VerifiedPermissionsPolicyEngine, Stubber],
) -> None:
    engine, stubber = stubbed
    stubber.add_response("batch_is_authorized", {"results": [{"request": {}, **answer("ALLOW")}] * 30})
    for _ in range(5):
        stubber.add_response("is_authorized", answer("DENY"))
    decisions = engine.is_authorized_batch([REQUEST] * 35)
    assert [d.allowed for d in decisions] == [True] * 30 + [False] * 5
    stubber.assert_no_pending_responses()


def test_the_mapping_must_have_the_documented_shape() -> None:
    with pytest.raises(ConfigError, match="not JSON"):
        VerifiedPermissionsPolicyEngine.from_json(STORE, "{", client=object())
    with pytest.raises(ConfigError, match=r'"id"'):
        VerifiedPermissionsPolicyEngine.from_json(STORE, '{"SP1": {"outcome": "X"}}', client=object())
    engine = VerifiedPermissionsPolicyEngine.from_json(STORE, '{"SP1": {"id": "a"}}', client=object())
    assert engine.policy_store_id == STORE


def test_the_stacks_map_of_ids_gets_each_policys_annotations_from_the_policy_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the map the stack writes (store id -> @id) and the annotations of the shipped policies
    fake_credentials(monkeypatch)
    client = boto3.client("verifiedpermissions", region_name=REGION, config=retry_config(1))
    engine = VerifiedPermissionsPolicyEngine.from_json(
        STORE,
        '{"SPlimit": "iteration-limit", "SPnew": "not-in-the-files"}',
        annotations=policy_annotations(),
        client=client,
    )
    with Stubber(client) as stubber:
        stubber.add_response("is_authorized", answer("DENY", "SPlimit", "SPnew"))
        decision = engine.is_authorized(REQUEST)
    # Then a determining policy carries its outcome and message as if the map held them
    assert decision.policy_ids == ["iteration-limit", "not-in-the-files"]
    assert decision.annotations["iteration-limit"]["outcome"] == "ITERATION_LIMIT"
    assert decision.annotations["iteration-limit"]["message"]
    assert decision.annotations["not-in-the-files"] == {"id": "not-in-the-files"}


def test_every_shipped_policy_has_annotations_to_look_up() -> None:
    annotations = policy_annotations()
    assert {"iteration-limit", "pinned-checks", "consecutive-failures"} <= set(annotations)
    assert all(entry["id"] == policy_id for policy_id, entry in annotations.items())
