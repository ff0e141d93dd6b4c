"""The iterate role (and run_iteration's, the compact variant's) may invoke the loops' AgentCore
Runtime agents; no other role may."""

from __future__ import annotations

from typing import Any

import pytest

from infrastructure.functions import CTX_AGENT_RUNTIME_ARNS, NEEDS, agent_runtime_arns
from tests.infrastructure.conftest import Synthesized

ARN = "arn:aws:bedrock-agentcore:eu-west-1:123456789012:runtime/fixer_agent-a1B2c3D4e5"


def _statements(synthesized: Synthesized, name: str) -> list[dict[str, Any]]:
    prefix = "Functions" + "".join(p.capitalize() for p in name.split("_")) + "Function"
    (function,) = [
        r for k, r in synthesized.resources("AWS::Lambda::Function").items() if k.startswith(prefix)
    ]
    role_ref = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_ref} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _invokes(statement: dict[str, Any]) -> bool:
    actions = statement["Action"]
    return "bedrock-agentcore:InvokeAgentRuntime" in ([actions] if isinstance(actions, str) else actions)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_only_the_agents_functions_invoke_agent_runtimes_scoped_to_the_accounts_runtimes(
    synthesized: Synthesized, name: str
) -> None:
    invoking = [s for s in _statements(synthesized, name) if _invokes(s)]
    if name not in {"iterate", "run_iteration"}:  # run_iteration: the compact variant's iterate
        assert invoking == []
        return
    (statement,) = invoking
    assert statement["Effect"] == "Allow"
    joined = statement["Resource"]["Fn::Join"]
    assert joined[1][-1] == ":runtime/*"
    assert {"Ref": "AWS::AccountId"} in joined[1] and {"Ref": "AWS::Region"} in joined[1]


def test_context_arns_are_parsed_and_checked() -> None:
    assert agent_runtime_arns(None) == []
    assert agent_runtime_arns(f" {ARN} ,{ARN.replace('fixer', 'other')}") == [
        ARN,
        ARN.replace("fixer", "other"),
    ]
    assert agent_runtime_arns([ARN]) == [ARN]
    with pytest.raises(ValueError, match=f"context {CTX_AGENT_RUNTIME_ARNS}: 'arn:aws:s3:::b' is not"):
        agent_runtime_arns("arn:aws:s3:::b")
