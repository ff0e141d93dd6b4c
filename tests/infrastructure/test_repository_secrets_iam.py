"""IAM for issue 12 points 3 and 4: the functions that clone and push read exactly the repository
secrets named in the context (never ``*``, nothing without the context), and the steps that end or
park a loop may stop its Code Interpreter session and nothing more."""

from __future__ import annotations

import os
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infrastructure.constants import ENV_LAYER
from infrastructure.functions import NEEDS
from infrastructure.repository_secrets import CTX_REPOSITORY_SECRET_ARNS, repository_secret_arns
from infrastructure.stack import LoopwrightStack
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_aws_agents_iam import _statements

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:loopwright/github-AbC123"
CLONING = {"iterate", "evaluate", "run_iteration"}
STOPPING = {"authorize", "decide", "record_failure"}


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_without_the_context_no_function_reads_any_secret(synthesized: Synthesized, name: str) -> None:
    assert not [s for s in _statements(synthesized, name) if "secretsmanager:GetSecretValue" in _actions(s)]


@pytest.mark.parametrize("name", sorted(STOPPING))
def test_the_ending_steps_may_only_stop_the_stacks_code_interpreter_sessions(
    synthesized: Synthesized, name: str
) -> None:
    agentcore = [
        s for s in _statements(synthesized, name) if any("CodeInterpreter" in a for a in _actions(s))
    ]
    (statement,) = agentcore
    assert _actions(statement) == ["bedrock-agentcore:StopCodeInterpreterSession"]
    assert statement["Resource"]["Fn::GetAtt"][1] == "CodeInterpreterArn"  # the stack's own, not *


@pytest.fixture(scope="module")
def with_secrets(tmp_path_factory: pytest.TempPathFactory) -> Template:
    os.environ[ENV_LAYER] = "stub"
    try:
        app = cdk.App(
            outdir=str(tmp_path_factory.mktemp("cdk.out")), context={CTX_REPOSITORY_SECRET_ARNS: SECRET}
        )
        stack = LoopwrightStack(app, "SecretsStack")
        return Template.from_stack(stack)
    finally:
        del os.environ[ENV_LAYER]


def test_the_cloning_functions_read_exactly_the_context_secrets(with_secrets: Template) -> None:
    policies = with_secrets.find_resources("AWS::IAM::Policy")
    reading = {
        logical: statement
        for logical, policy in policies.items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in _actions(statement)
    }
    owners = {logical.removeprefix("Functions").split("RoleDefaultPolicy")[0] for logical in reading}
    assert owners == {"Iterate", "Evaluate", "RunIteration"}
    for statement in reading.values():
        assert statement == {"Action": "secretsmanager:GetSecretValue", "Effect": "Allow", "Resource": SECRET}


def test_context_secret_arns_are_parsed_and_checked() -> None:
    assert repository_secret_arns(None) == []
    assert repository_secret_arns(f" {SECRET} ,") == [SECRET]
    partial = SECRET.removesuffix("-AbC123")
    with pytest.raises(ValueError, match=f"context {CTX_REPOSITORY_SECRET_ARNS}: .* is not the full ARN"):
        repository_secret_arns([partial + "*"])
    with pytest.raises(ValueError, match="is not the full ARN"):
        repository_secret_arns("*")
