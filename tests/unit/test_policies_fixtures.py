"""The Cedar policies in ``policies/`` against their schema and their request fixtures.

Each ``policies/tests/ALLOW/*.json`` and ``policies/tests/DENY/*.json`` file is one request
(principal, action, resource, context, entities, and the ``@id`` of the policies expected to
determine the decision); adding a file adds a test. ``policies/tests/entities.json`` holds the
users and groups every fixture shares. The policies are evaluated with cedarpy directly, not
through loopwright's engine, so these tests check the policies themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from loopwright.models import LoopOutcome

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
FIXTURE_DIR = POLICY_DIR / "tests"
SCHEMA_JSON = POLICY_DIR.parent / "infrastructure" / "cedar" / "loopwright.cedarschema.json"
POLICY_FILES = sorted(POLICY_DIR.glob("*.cedar"))
FIXTURE_FILES = sorted(FIXTURE_DIR.glob("ALLOW/*.json")) + sorted(FIXTURE_DIR.glob("DENY/*.json"))


def _static_policies(text: str) -> dict[str, dict[str, Any]]:
    policies: dict[str, dict[str, Any]] = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
    return policies


def _fixture(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def schema() -> cedarpy.Schema:
    (schema_file,) = POLICY_DIR.glob("*.cedarschema")
    return cedarpy.Schema.from_str(schema_file.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def policy_set() -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_str("\n".join(p.read_text(encoding="utf-8") for p in POLICY_FILES))


@pytest.fixture(scope="module")
def shared_entities() -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = json.loads((FIXTURE_DIR / "entities.json").read_text(encoding="utf-8"))
    return entities


def test_policy_folder_has_the_expected_files() -> None:
    assert {p.name for p in POLICY_FILES} >= {
        "iteration_limit.cedar",
        "token_budget.cedar",
        "cost_budget.cedar",
        "time_limit.cedar",
        "warnings.cedar",
        "controls.cedar",
        "plans.cedar",
        "pinned_checks.cedar",
        "failures.cedar",
        "session_limit.cedar",
        "stuck.cedar",
    }
    assert len(FIXTURE_FILES) >= 10


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_policy_file_validates_against_schema(path: Path, schema: cedarpy.Schema) -> None:
    result = cedarpy.validate_policies(path.read_text(encoding="utf-8"), schema)
    assert result.validation_passed, [str(error) for error in result.errors]


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_policy_has_an_id_and_every_limit_denial_an_outcome(path: Path) -> None:
    policies = _static_policies(path.read_text(encoding="utf-8"))
    assert policies, f"{path.name} holds no policy"
    for position, policy in policies.items():
        annotations = policy.get("annotations") or {}
        assert annotations.get("id"), f"{path.name}: {position} has no @id"
        action = policy["action"].get("entity", {}).get("id")
        if policy["effect"] == "forbid" and action == "ContinueIteration":
            assert annotations.get("outcome") in LoopOutcome.__members__, annotations
        if action == "EvaluateWarnings":
            assert annotations.get("warns") in LoopOutcome.__members__, annotations


def test_policy_ids_are_unique_across_files() -> None:
    ids = [
        policy["annotations"]["id"]
        for path in POLICY_FILES
        for policy in _static_policies(path.read_text(encoding="utf-8")).values()
    ]
    assert len(ids) == len(set(ids)), ids


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_gets_its_folders_decision(
    path: Path,
    schema: cedarpy.Schema,
    policy_set: cedarpy.PolicySet,
    shared_entities: list[dict[str, Any]],
) -> None:
    fixture = _fixture(path)
    result = cedarpy.is_authorized(
        {
            "principal": fixture["principal"],
            "action": fixture["action"],
            "resource": fixture["resource"],
            "context": fixture.get("context", {}),
        },
        policy_set,
        shared_entities + fixture.get("entities", []),
        schema=schema,
    )
    # A Deny caused by an error would pass for the wrong reason: fixtures must evaluate cleanly.
    assert result.diagnostics.errors == []
    expected = cedarpy.Decision.Allow if path.parent.name == "ALLOW" else cedarpy.Decision.Deny
    assert result.decision == expected, fixture["description"]
    determining = sorted(result.diagnostics.id_annotations_by_reason.values())
    assert determining == sorted(fixture["determining_policies"]), fixture["description"]


def test_every_action_has_allow_and_deny_fixtures_per_principal_kind(schema: cedarpy.Schema) -> None:
    # The actions a person takes (controls, plans) need an ALLOW by a User (an operator), a DENY
    # by a User (not an operator) and a DENY by an Agent; the loop's own actions an ALLOW and a
    # DENY by its Agent. The actions come from the JSON form of the schema (same actions).
    actions = json.loads(SCHEMA_JSON.read_text(encoding="utf-8"))[""]["actions"]
    covered = {
        (_fixture(path)["action"], path.parent.name, _fixture(path)["principal"].split("::")[0])
        for path in FIXTURE_FILES
    }
    missing = []
    for action, spec in sorted(actions.items()):
        kinds = (
            {("ALLOW", "User"), ("DENY", "User"), ("DENY", "Agent")}
            if "User" in spec["appliesTo"]["principalTypes"]
            else {("ALLOW", "Agent"), ("DENY", "Agent")}
        )
        uid = f'Action::"{action}"'
        missing += [
            f"{folder} {principal} {action}"
            for folder, principal in sorted(kinds)
            if (uid, folder, principal) not in covered
        ]
    assert missing == [], "add request fixtures to policies/tests for these"


def test_every_policy_determines_some_fixture() -> None:
    covered = {pid for path in FIXTURE_FILES for pid in _fixture(path)["determining_policies"]}
    ids = {
        policy["annotations"]["id"]
        for path in POLICY_FILES
        for policy in _static_policies(path.read_text(encoding="utf-8")).values()
    }
    assert ids - covered == set(), "add an ALLOW or DENY fixture for these policies"
