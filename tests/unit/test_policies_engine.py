"""The local Cedar policy engine (cedarpy): loading a policy folder and deciding requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.cedar_policy import (
    POLICY_DIR_ENV,
    CedarPolicyEngine,
    default_policy_dir,
    parse_entity_uid,
)
from loopwright.exceptions import ConfigError
from loopwright.models import AuthorizationRequest

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
LIMITS = {"project": "demo", "max_iterations": 10, "warning_threshold_percent": 80}
COUNTERS = {"iteration": 3, "tokens_used": 0, "cost_micro_usd": 0, "elapsed_seconds": 0}


@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine(POLICY_DIR)


def request(**changes: Any) -> AuthorizationRequest:
    fields: dict[str, Any] = {
        "principal": 'Agent::"loop-1"',
        "action": 'Action::"ContinueIteration"',
        "resource": 'Loop::"loop-1"',
        "resource_attributes": dict(LIMITS),
        "context": dict(COUNTERS),
    }
    return AuthorizationRequest(**(fields | changes))


def test_decision_names_policies_by_id_with_their_annotations(engine: CedarPolicyEngine) -> None:
    decision = engine.is_authorized(request(context=COUNTERS | {"iteration": 11}))

    assert not decision.allowed
    assert decision.errors == []
    assert decision.policy_ids == ["iteration-limit"]
    assert decision.annotations["iteration-limit"]["outcome"] == "ITERATION_LIMIT"
    assert decision.annotations["iteration-limit"]["id"] == "iteration-limit"


def test_allowed_decision_names_the_permit(engine: CedarPolicyEngine) -> None:
    decision = engine.is_authorized(request())

    assert decision.allowed
    assert decision.policy_ids == ["continue-iteration"]


def test_none_attributes_are_left_out(engine: CedarPolicyEngine) -> None:
    attributes = LIMITS | {"token_budget": None, "max_duration_seconds": None}

    assert engine.is_authorized(request(resource_attributes=attributes)).allowed


def test_loads_every_policy_in_file_order(engine: CedarPolicyEngine) -> None:
    assert engine.policy_dir == POLICY_DIR
    assert engine.policy_ids[:4] == [
        "services-continue-loop",  # continuation.cedar sorts before controls.cedar
        "operators-control-loop",
        "agent-cannot-raise-limit",
        "agent-cannot-approve-gate",
    ]
    assert {"iteration-limit", "token-budget", "time-limit", "iteration-warning"} <= set(engine.policy_ids)
    assert engine.annotations("token-budget")["outcome"] == "TOKEN_BUDGET_EXHAUSTED"
    with pytest.raises(KeyError):
        engine.annotations("no-such-policy")


@pytest.mark.parametrize(
    "changes",
    [
        {"resource": "Loop:loop-1"},
        {"resource_attributes": LIMITS | {"max_iterations": "ten"}},
        {"context": {"iteration": 1}},
        {"context": COUNTERS | {"unexpected": 1}},
        {"principal": 'User::"alice"'},  # the schema gives ContinueIteration Agent principals only
        {"resource_attributes": LIMITS | {"project": object()}},
        {"context": COUNTERS | {"iteration": object()}},
    ],
    ids=[
        "bad-uid",
        "bad-attribute",
        "missing-counter",
        "extra-counter",
        "wrong-principal-type",
        "attribute-not-json",
        "counter-not-json",
    ],
)
def test_bad_requests_are_denied_with_errors(engine: CedarPolicyEngine, changes: dict[str, Any]) -> None:
    decision = engine.is_authorized(request(**changes))

    assert not decision.allowed
    assert decision.errors


def test_evaluation_errors_name_the_policy_id(engine: CedarPolicyEngine) -> None:
    # 2**62 * 80 overflows Cedar's 64-bit Long in the iteration-warning policy.
    attributes = LIMITS | {"max_iterations": 2**62}

    decision = engine.is_authorized(
        request(action='Action::"EvaluateWarnings"', resource_attributes=attributes)
    )

    assert len(decision.errors) == 1
    assert "`iteration-warning`" in decision.errors[0]
    assert "policy0" not in decision.errors[0]


def test_control_actions_with_base_entities() -> None:
    users = json.loads((POLICY_DIR / "tests" / "entities.json").read_text(encoding="utf-8"))
    engine = CedarPolicyEngine(POLICY_DIR, entities=users)
    attributes = LIMITS | {"operators": {"type": "Group", "id": "demo-operators"}}

    def decide(principal: str, action: str) -> bool:
        return engine.is_authorized(
            request(principal=principal, action=action, resource_attributes=attributes, context={})
        ).allowed

    assert decide('User::"alice"', 'Action::"RaiseLimit"')
    assert decide('User::"alice"', 'Action::"ApproveGate"')
    assert not decide('User::"mallory"', 'Action::"StopLoop"')
    assert not decide('Agent::"loop-1"', 'Action::"RaiseLimit"')


def test_base_entities_must_conform_to_the_schema() -> None:
    bad = [{"uid": {"type": "Nope", "id": "x"}, "attrs": {}, "parents": []}]

    with pytest.raises(ConfigError, match="entities do not conform"):
        CedarPolicyEngine(POLICY_DIR, entities=bad)


def test_parse_entity_uid() -> None:
    assert parse_entity_uid('Loop::"loop-1"') == {"type": "Loop", "id": "loop-1"}
    assert parse_entity_uid('NS::Loop::"a\\"b"') == {"type": "NS::Loop", "id": 'a"b'}
    with pytest.raises(ValueError, match="not a Cedar entity uid"):
        parse_entity_uid("loop-1")


def test_default_policy_dir_is_the_checkout_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_DIR_ENV, raising=False)

    assert default_policy_dir() == POLICY_DIR
    assert CedarPolicyEngine().policy_dir == POLICY_DIR


def test_policy_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mine"
    shutil.copytree(POLICY_DIR, folder, ignore=shutil.ignore_patterns("tests", "controls.cedar"))
    monkeypatch.setenv(POLICY_DIR_ENV, str(folder))

    engine = CedarPolicyEngine()

    assert engine.policy_dir == folder
    assert "operators-control-loop" not in engine.policy_ids


def test_missing_policy_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path / "missing"))

    with pytest.raises(ConfigError, match=POLICY_DIR_ENV):
        default_policy_dir()


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


SCHEMA = (POLICY_DIR / "loopwright.cedarschema").read_text(encoding="utf-8")
PERMIT = '@id("p") permit (principal, action, resource);'


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.cedar": PERMIT}, "exactly one .cedarschema file (found: none)"),
        (
            {"a.cedarschema": SCHEMA, "b.cedarschema": SCHEMA, "a.cedar": PERMIT},
            "found: a.cedarschema, b.cedarschema",
        ),
        (
            {"a.cedarschema": "entity Loop {", "a.cedar": PERMIT},
            "a.cedarschema: invalid Cedar schema",
        ),
        ({"a.cedarschema": SCHEMA}, "has no .cedar policy file"),
        (
            {
                "a.cedarschema": SCHEMA,
                "t.cedar": '@id("t") permit (principal == ?principal, action, resource);',
            },
            "t.cedar: Cedar templates are not supported",
        ),
    ],
    ids=["no-schema", "two-schemas", "bad-schema", "no-policies", "template"],
)
def test_malformed_folder(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CedarPolicyEngine(_folder(tmp_path, files))

    assert expected in str(caught.value)


def test_unreadable_policy_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"a.cedarschema": SCHEMA})
    (folder / "latin1.cedar").write_bytes(b"// caf\xe9\n" + PERMIT.encode())

    with pytest.raises(ConfigError, match=r"latin1\.cedar: cannot read"):
        CedarPolicyEngine(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        CedarPolicyEngine(tmp_path / "missing")
