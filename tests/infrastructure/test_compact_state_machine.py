"""The state machine variants (CDK context loopwright:stateMachine): the compact one's template and
cdk-nag, and the steps one's continue-as-new folded into Action?."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from infrastructure.compact_state_machine import (
    COMPACT,
    CTX_STATE_MACHINE,
    RUN_ITERATION,
    CompactLoopStateMachine,
    state_machine_variant,
)
from infrastructure.constants import ENV_LAYER, STACK_NAME
from infrastructure.stack import LoopwrightStack
from infrastructure.state_machine import state_machine_name
from loopwright.engine import stepfunctions_template
from loopwright.exceptions import ConfigError
from tests.infrastructure.conftest import Synthesized, assert_polled


@pytest.fixture(scope="module")
def compact(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with ``loopwright:stateMachine=compact`` (about 15 s). Built like ``app.build_app``,
    with the context given to the App (the jsii process is already running, so CDK_CONTEXT_JSON
    would not reach it)."""
    outdir = tmp_path_factory.mktemp("cdk.out.compact")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_LAYER, "stub")
        app = cdk.App(outdir=str(outdir), context={CTX_STATE_MACHINE: COMPACT})
        stack = LoopwrightStack(app, STACK_NAME)
        cdk.Validations.of(app).add_plugins(
            AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
        )
        error = None
        try:
            app.synth()
        except RuntimeError as exc:  # cdk-nag fails synth on unacknowledged findings
            error = str(exc)
    raw = json.loads((Path(outdir) / f"{STACK_NAME}.template.json").read_text())
    return Synthesized(
        stack=stack, template=Template.from_json(raw), raw=raw, outdir=Path(outdir), error=error
    )


def _flatten(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_flatten(part) for part in parts)
    return "TOKEN"


def _loop_machine(synthesized: Synthesized) -> dict[str, Any]:
    """The loop's state machine (named ``<stack>-loop``; the stack holds others)."""
    (machine,) = [
        m
        for m in synthesized.resources("AWS::StepFunctions::StateMachine").values()
        if m["Properties"].get("StateMachineName") == state_machine_name(STACK_NAME)
    ]
    return machine


def _definition(synthesized: Synthesized) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(
        _flatten(_loop_machine(synthesized)["Properties"]["DefinitionString"])
    )
    return definition


def _choices(state: dict[str, Any]) -> list[tuple[Any, str]]:
    """A Choice state's rules as (condition, next): ``StringEquals`` value, or the ``And`` list."""
    return [(c.get("StringEquals", c.get("And")), c["Next"]) for c in state["Choices"]]


_HANDOVER = [
    {"Variable": "$.action", "StringEquals": "CONTINUE"},
    {"Variable": "$.handover", "BooleanEquals": True},
]


def test_the_compact_variant_is_cdk_nag_clean(compact: Synthesized) -> None:
    assert compact.error is None, compact.error
    assert isinstance(compact.stack.loop, CompactLoopStateMachine)


def test_one_task_per_iteration_then_the_same_action_choice(compact: Synthesized) -> None:
    states = _definition(compact)["States"]
    assert _definition(compact)["StartAt"] == "RunIteration"
    assert not {"Authorize", "Allowed?", "Iterate", "Evaluate", "Decide", "Handover?"} & set(states)
    # RunIteration evaluates the baseline itself when its input asks for it: no state for it
    assert not {"Baseline?", "Baseline"} & set(states)
    assert_polled(states, "RunIteration", "Action?")  # its agent or checks in the background
    assert _choices(states["Action?"]) == [
        (_HANDOVER, "StartNextExecution"),
        ("CONTINUE", "RunIteration"),
        ("AWAIT_HUMAN", "AwaitHuman"),
        ("PAUSE", "ResumeAt?"),
    ]
    assert states["Action?"]["Default"] == "Done"
    assert states["AwaitHuman"]["Next"] == "RunIteration"
    assert states["StartNextExecution"]["Next"] == "HandedOver"
    assert states["RecordFailure"]["Next"] == "Failed"


def test_run_iteration_is_caught_and_retried_only_on_lambda_service_errors(compact: Synthesized) -> None:
    task = _definition(compact)["States"]["RunIteration"]
    assert task["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
    ]
    retried = [error for retrier in task["Retry"] for error in retrier["ErrorEquals"]]
    assert "States.TaskFailed" not in retried and "States.ALL" not in retried
    assert task["Retry"][0]["ErrorEquals"] == ["IdempotencyAlreadyInProgressError"]
    assert "Lambda.TooManyRequestsException" in task["Retry"][-1]["ErrorEquals"]
    assert task["Retry"][-1]["JitterStrategy"] == "FULL"


def test_run_iteration_may_run_15_minutes_with_every_ports_grant(compact: Synthesized) -> None:
    compact.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Description": Match.string_like_regexp(f"functions/{RUN_ITERATION}/handler.py"),
            "Handler": "handler.handler",
            "Timeout": 900,  # Lambda's maximum: the agent and the checks share it
            "MemorySize": 1024,
            "Architectures": ["arm64"],
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "LOOPWRIGHT_ADAPTERS": "aws",
                        "POLICY_MAP": Match.any_value(),
                        "IDEMPOTENCY_TABLE_NAME": Match.any_value(),
                        "MEMORY_ID": Match.any_value(),
                        "CODE_INTERPRETER_ID": Match.any_value(),
                    }
                )
            },
        },
    )
    statements = json.dumps(compact.resources("AWS::IAM::Policy"))
    assert "verifiedpermissions:IsAuthorized" in statements


def test_the_state_machine_invokes_run_iteration(compact: Synthesized) -> None:
    text = json.dumps(_loop_machine(compact)["Properties"]["DefinitionString"])
    (run_iteration,) = [
        logical_id
        for logical_id, resource in compact.resources("AWS::Lambda::Function").items()
        if f"functions/{RUN_ITERATION}/" in str(resource["Properties"].get("Description", ""))
    ]
    assert f'"Fn::GetAtt": ["{run_iteration}", "Arn"]' in text


def test_the_steps_variant_decides_continue_as_new_in_action(synthesized: Synthesized) -> None:
    states = _definition(synthesized)["States"]
    assert "Handover?" not in states
    assert _choices(states["Action?"])[:2] == [(_HANDOVER, "StartNextExecution"), ("CONTINUE", "Authorize")]


def test_a_variant_outside_steps_and_compact_is_refused_naming_the_key() -> None:
    assert state_machine_variant(None) == "steps"
    assert state_machine_variant("Compact") == COMPACT
    with pytest.raises(ValueError, match="loopwright:stateMachine: 'fast' is not one of steps, compact"):
        state_machine_variant("fast")
    # The local runner passes the same context key, and refuses the same values
    assert stepfunctions_template.STATE_MACHINE_CONTEXT == CTX_STATE_MACHINE
    with pytest.raises(ConfigError, match="state_machine: 'fast' is not one of steps, compact"):
        stepfunctions_template.state_machine_variant("fast")
