"""One synth of the CDK app per test session (about 15 s), with the stub layer and cdk-nag."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from aws_cdk.assertions import Template

from app import build_app
from infrastructure.constants import ENV_LAYER, STACK_NAME
from infrastructure.stack import LoopwrightStack


@dataclass
class Synthesized:
    """The synthesized app: its stack, template, output folder and synth error (cdk-nag)."""

    stack: LoopwrightStack
    template: Template
    raw: dict[str, Any]
    outdir: Path
    error: str | None

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        """Logical id -> resource of CloudFormation type ``kind``."""
        return {k: r for k, r in self.raw["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    os.environ[ENV_LAYER] = "stub"
    try:
        app = build_app(str(outdir))
        error = None
        try:
            app.synth()
        except RuntimeError as exc:  # cdk-nag v3 fails synth on unacknowledged findings
            error = str(exc)
    finally:
        del os.environ[ENV_LAYER]
    stack = app.node.find_child(STACK_NAME)
    assert isinstance(stack, LoopwrightStack)
    raw = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    return Synthesized(stack=stack, template=Template.from_json(raw), raw=raw, outdir=outdir, error=error)


def assert_polled(states: dict[str, Any], task: str, then: str) -> None:
    """``task`` -> ``<task>Pending?`` -pending-> ``<task>Wait`` ($.wait_seconds) -> ``task``;
    otherwise -> ``then``."""
    choice = states[task + "Pending?"]
    assert states[task]["Next"] == task + "Pending?"
    (pending,) = choice["Choices"]
    assert pending["And"] == [
        {"Variable": "$.pending", "IsPresent": True},
        {"Variable": "$.pending", "BooleanEquals": True},
    ]
    assert pending["Next"] == task + "Wait" and choice["Default"] == then
    wait = states[task + "Wait"]
    assert wait["Type"] == "Wait" and wait["SecondsPath"] == "$.wait_seconds" and wait["Next"] == task
