"""The evidence key (issue 15, part 2; :mod:`infrastructure.evidence`): an ECC_NIST_P256 signing
key, its alias and output, ``kms:Sign`` for the functions that complete loops only, and their
``EVIDENCE_KEY_ARN``."""

from __future__ import annotations

from typing import Any

import pytest

from infrastructure import constants
from infrastructure.evidence import ENV_EVIDENCE_KEY_ARN, evidence_alias
from infrastructure.functions import NEEDS
from tests.infrastructure.conftest import Synthesized

#: The functions whose steps can complete a loop with CONDITIONS_MET (decide; the baseline in
#: evaluate; both in the compact variant's run_iteration).
SIGNERS = ("decide", "evaluate", "run_iteration")


def _key_ref(synthesized: Synthesized) -> str:
    return synthesized.stack.get_logical_id(synthesized.stack.evidence.key.node.default_child)


def _kms_statements(synthesized: Synthesized, role: Any) -> list[dict[str, Any]]:
    role_id = synthesized.stack.get_logical_id(role.node.default_child)
    found = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            if any(a.startswith("kms:") for a in ([actions] if isinstance(actions, str) else actions)):
                found.append(statement)
    return found


def test_the_key_signs_with_ecc_p256_under_its_alias(synthesized: Synthesized) -> None:
    key = synthesized.raw["Resources"][_key_ref(synthesized)]
    assert key["Type"] == "AWS::KMS::Key"
    properties = key["Properties"]
    assert (properties["KeySpec"], properties["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert "EnableKeyRotation" not in properties or properties["EnableKeyRotation"] is False
    assert key["DeletionPolicy"] == "Delete"  # the default removal policy (destroy), as the tables
    (alias,) = [
        a
        for a in synthesized.resources("AWS::KMS::Alias").values()
        if a["Properties"]["TargetKeyId"] == {"Fn::GetAtt": [_key_ref(synthesized), "Arn"]}
    ]
    assert alias["Properties"]["AliasName"] == evidence_alias(constants.STACK_NAME)


def test_the_key_arn_is_an_output(synthesized: Synthesized) -> None:
    output = synthesized.raw["Outputs"]["EvidenceKeyArn"]
    assert output["Value"] == {"Fn::GetAtt": [_key_ref(synthesized), "Arn"]}


def test_the_functions_that_complete_loops_need_the_key() -> None:
    assert sorted(n for n, needs in NEEDS.items() if "evidence" in needs) == sorted(SIGNERS)


@pytest.mark.parametrize("name", list(constants.FUNCTIONS))
def test_only_the_completing_functions_may_sign(synthesized: Synthesized, name: str) -> None:
    function = synthesized.stack.functions.functions[name]
    statements = [
        s
        for s in _kms_statements(synthesized, function.role)
        if s["Resource"] == {"Fn::GetAtt": [_key_ref(synthesized), "Arn"]}
    ]
    variables = synthesized.raw["Resources"][synthesized.stack.get_logical_id(function.node.default_child)][
        "Properties"
    ]["Environment"]["Variables"]
    if name in SIGNERS:
        assert [s["Action"] for s in statements] == ["kms:Sign"]  # not Verify, GetPublicKey, Decrypt...
        assert variables[ENV_EVIDENCE_KEY_ARN] == {"Fn::GetAtt": [_key_ref(synthesized), "Arn"]}
    else:
        assert statements == [] and ENV_EVIDENCE_KEY_ARN not in variables


def _role_id(synthesized: Synthesized, function: Any) -> str:
    return synthesized.stack.get_logical_id(function.role.node.default_child)


def test_no_other_role_may_use_the_key(synthesized: Synthesized) -> None:
    key_arn = {"Fn::GetAtt": [_key_ref(synthesized), "Arn"]}
    signer_roles = {_role_id(synthesized, synthesized.stack.functions.functions[n]) for n in SIGNERS}
    reader_role = _role_id(synthesized, synthesized.stack.dashboard.functions["read"])
    seen: dict[str, set[str]] = {}
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            resources = statement["Resource"]
            if key_arn in (resources if isinstance(resources, list) else [resources]):
                for role in policy["Properties"]["Roles"]:
                    seen.setdefault(role["Ref"], set()).add(statement["Action"])
    assert seen == {role: {"kms:Sign"} for role in signer_roles} | {reader_role: {"kms:GetPublicKey"}}


def test_the_dashboards_read_function_knows_the_key(synthesized: Synthesized) -> None:
    function = synthesized.stack.dashboard.functions["read"]
    variables = synthesized.raw["Resources"][synthesized.stack.get_logical_id(function.node.default_child)][
        "Properties"
    ]["Environment"]["Variables"]
    assert variables[ENV_EVIDENCE_KEY_ARN] == {"Fn::GetAtt": [_key_ref(synthesized), "Arn"]}
    for mode in ("controls", "plans"):
        other = synthesized.stack.dashboard.functions[mode]
        assert ENV_EVIDENCE_KEY_ARN not in str(
            synthesized.raw["Resources"][synthesized.stack.get_logical_id(other.node.default_child)]
        )


def test_cdk_nag_accepts_the_key(synthesized: Synthesized) -> None:
    assert synthesized.error is None, synthesized.error
