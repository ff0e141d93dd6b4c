"""Each loop function's own environment, as the synthesized template gives it, is enough for its
cold start: ``RuntimeSettings`` parse and the AWS ports build. (The local runs set one environment
for every handler, so a variable only some functions get can hide a cold-start failure there.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infrastructure.constants import POLICIES_DIR
from infrastructure.functions import LAYER_POLICIES_DIR, NEEDS, camel
from loopwright.cloud import runtime
from tests.infrastructure.conftest import Synthesized

#: Placeholder for a value CloudFormation resolves at deploy time (a Ref, a GetAtt, a Join).
RESOLVED = "resolved-at-deploy"


def _environment(synthesized: Synthesized, name: str) -> dict[str, str]:
    prefix = f"Functions{camel(name)}Function"
    (function,) = [
        r
        for logical_id, r in synthesized.resources("AWS::Lambda::Function").items()
        if logical_id.startswith(prefix)
    ]
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    env = {key: value if isinstance(value, str) else RESOLVED for key, value in variables.items()}
    if env.get("POLICY_MAP") == RESOLVED:
        env["POLICY_MAP"] = json.dumps({})  # a JSON object once deployed
    if env.get("LOOPWRIGHT_POLICIES_DIR") == LAYER_POLICIES_DIR:  # the layer's copy of policies/
        env["LOOPWRIGHT_POLICIES_DIR"] = str(POLICIES_DIR)
    return env


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_a_loop_function_builds_its_ports_from_its_own_environment(
    synthesized: Synthesized, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _environment(synthesized, name)
    assert env["LOOPWRIGHT_ADAPTERS"] == "aws"
    # a function that asks Cedar reads the policies' annotations from the layer's policy files
    assert ("policy" not in NEEDS[name]) or env["LOOPWRIGHT_POLICIES_DIR"] == str(POLICIES_DIR)
    # what the Lambda runtime adds to every function's environment
    env |= {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    for key in ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, env[key])
    built = runtime._aws_ports(runtime.RuntimeSettings.from_environ(env))
    # a function that asks Cedar has its policy engine; the others never build one
    assert (built.policy is not None) == ("policy" in NEEDS[name])
    # a function that completes loops signs their evidence bundles; the others never build a signer
    assert (built.evidence is not None) == ("evidence" in NEEDS[name])
    assert built.checkpoints is not None and built.store is not None
