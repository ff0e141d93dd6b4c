"""The AWS adapters in the local execution of the state machine:
``LocalStepFunctions(..., adapters="aws")`` (:mod:`loopwright.engine.stepfunctions`).

The handlers then run with ``LOOPWRIGHT_ADAPTERS=aws``, as deployed: the loop store in moto's
DynamoDB (the tables created here with the adapter's key schema), the checkpoints in moto's
AgentCore Memory (the template's ``AWS::BedrockAgentCore::Memory`` created through the control
plane, its id in ``MEMORY_ID``). moto has neither Code Interpreter sessions nor Verified
Permissions: the caller gives ``CODE_INTERPRETER_ID``, ``POLICY_STORE_ID`` and ``POLICY_MAP`` in
``environment`` and plays those services itself (the tests' ``tests/aws_fakes.py``: a session is
a folder, the policy store is the template's policies evaluated with cedarpy). So this is for
tests; ``loopwright run --engine stepfunctions`` keeps the local adapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

from loopwright.adapters.aws.dynamodb_store import create_table_requests
from loopwright.engine.stepfunctions_template import REGION, STACK_NAME
from loopwright.exceptions import ConfigError

#: The loop store's tables on moto (``LOOPS_TABLE_NAME``, ``EVENTS_TABLE_NAME``).
LOOPS_TABLE = "loopwright-loops"
EVENTS_TABLE = "loopwright-events"
#: What the caller must give in ``environment``: the services moto does not have.
CALLER_SETTINGS = ("CODE_INTERPRETER_ID", "POLICY_STORE_ID", "POLICY_MAP")


def check_caller_environment(environment: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` naming the :data:`CALLER_SETTINGS` missing from ``environment``."""
    missing = [name for name in CALLER_SETTINGS if name not in environment]
    if missing:
        raise ConfigError(
            f"adapters='aws' needs {', '.join(missing)} in environment: moto has no such service, "
            "the caller plays it (tests/aws_fakes.py)"
        )


def aws_environment() -> dict[str, str]:
    """The handlers' environment for ``LOOPWRIGHT_ADAPTERS=aws`` known before moto starts."""
    return {
        "LOOPWRIGHT_ADAPTERS": "aws",
        "AWS_REGION": REGION,
        "LOOPS_TABLE_NAME": LOOPS_TABLE,
        "EVENTS_TABLE_NAME": EVENTS_TABLE,
    }


def create_aws_stores(template: Mapping[str, Any]) -> dict[str, str]:
    """Inside the mock: the loop store's tables and the template's checkpoint Memory; the
    environment naming them (``MEMORY_ID``)."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for request in create_table_requests(LOOPS_TABLE, EVENTS_TABLE):
        dynamodb.create_table(**request)
    resources: Mapping[str, Any] = template["Resources"]
    memories = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::BedrockAgentCore::Memory"]
    props = memories[0] if memories else {"Name": f"{STACK_NAME}_checkpoints", "EventExpiryDuration": 30}
    control = boto3.client("bedrock-agentcore-control", region_name=REGION)
    created = control.create_memory(
        name=props["Name"], eventExpiryDuration=int(str(props["EventExpiryDuration"]))
    )
    return {"MEMORY_ID": str(created["memory"]["id"])}
