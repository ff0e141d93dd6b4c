"""A loop driven through the cloud steps with the AWS wiring of ``loopwright.cloud.runtime``, as
the Lambda handlers build their ports, against a locally played Code Interpreter
(:class:`~tests.unit.aws_session_fake.SessionService`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from loopwright.adapters.aws import code_interpreter_sandbox
from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox, CodeInterpreterSessions
from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.cloud import runtime
from loopwright.cloud.steps import (
    CloudPorts,
    authorize_step,
    checkpoint_step,
    decide_step,
    evaluate_step,
    evaluation_step,
    iterate_step,
    start_step,
    verify_step,
)
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import NextAction, StepInput, StepOutput
from tests.fakes import MemoryStore
from tests.unit.aws_session_fake import SessionService

AWS = runtime.RuntimeSettings.from_environ(
    {"LOOPWRIGHT_ADAPTERS": "aws", "AWS_REGION": "us-east-1", "CODE_INTERPRETER_ID": "ci-1"}
)
#: Attempts of a task, as the state machine's Retry gives them (the first plus 2 retries).
ATTEMPTS = 3


def play_code_interpreter(monkeypatch: pytest.MonkeyPatch, service: SessionService) -> None:
    """Every sandbox and session client the runtime builds talks to ``service``."""

    class Played(CodeInterpreterSandbox):
        def __init__(self, region_name: str, **kwargs: Any) -> None:
            super().__init__(region_name, interpreter=service, command_client=service, **kwargs)

    class PlayedSessions(CodeInterpreterSessions):
        def __init__(self, region_name: str | None, **kwargs: Any) -> None:
            super().__init__(region_name, client=service, **kwargs)

    monkeypatch.setattr(code_interpreter_sandbox, "CodeInterpreterSandbox", Played)
    monkeypatch.setattr(code_interpreter_sandbox, "CodeInterpreterSessions", PlayedSessions)


class Driver:
    """Chains the steps as ``infrastructure/state_machine.py`` does; each task gets the ports its
    Lambda builds, and a task that raises is attempted again (the state machine's Retry)."""

    def __init__(self, store: MemoryStore, service: SessionService) -> None:
        self.store = store
        self.base = CloudPorts(
            store=store,
            checkpoints=store,
            policy=CedarPolicyEngine(),
            sessions=CodeInterpreterSessions("us-east-1", identifier="ci-1", client=service),
        )
        self.failures: list[str] = []  # the errors the retries rode out

    def task(
        self, step: Callable[[StepInput, CloudPorts], StepOutput], event: StepInput, build: str = ""
    ) -> StepOutput:
        for _ in range(ATTEMPTS):
            try:
                ports = self.base
                if build == "agent":
                    ports = runtime.with_loop_agent(self.base, event.loop_id, AWS)
                elif build == "workspace":
                    ports = runtime.with_loop_workspace(self.base, event.loop_id, AWS)
                return step(event, ports)
            except LoopFrameworkError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
        raise AssertionError(f"{step.__name__} failed {ATTEMPTS} times: {self.failures[-ATTEMPTS:]}")

    def run(self, loop_id: str) -> StepOutput:
        event = StepInput(loop_id=loop_id, baseline=True)
        event = StepInput.model_validate({**self.task(start_step, event).model_dump(), "baseline": True})
        out = self.task(evaluation_step, event, "workspace")
        if out.action is not NextAction.CONTINUE:
            return out
        event = StepInput.model_validate(out.model_dump())
        for _ in range(20):
            out = self.task(authorize_step, event)
            if out.allowed:
                out = self.task(iterate_step, out, "agent")
                out = self.task(checkpoint_step, out)
                out = self.task(evaluate_step, out, "workspace")
                out = self.task(verify_step, out)
            out = self.task(decide_step, out)
            if out.action is not NextAction.CONTINUE:
                return out
            event = StepInput.model_validate(out.model_dump())
        raise AssertionError("the loop did not end")
