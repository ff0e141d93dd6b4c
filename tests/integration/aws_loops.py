"""The deployed services played locally, for loops run through the synthesized state machine with
EVERY AWS adapter: the store in moto's DynamoDB, checkpoints in moto's AgentCore Memory, each
loop's clone, agent and checks in a Code Interpreter session played by a folder
(tests/unit/aws_session_fake.py), Cedar decided by a fake Verified Permissions policy store holding
the template's policies (tests/aws_fakes.py). The repository is a local bare git repository the
loops clone and push through a ``file://`` URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loopwright.cloud import runtime
from loopwright.cloud.start import execution_name, start_loop
from loopwright.cloud.steps import CloudPorts
from loopwright.engine.stepfunctions import LocalStepFunctions
from loopwright.models import StartLoopRequest
from tests.aws_fakes import PolicyStoreFake, SessionService, play_code_interpreter, play_verified_permissions
from tests.integration.aws_moto import fake_credentials
from tests.unit.aws_session_fake import make_remote

#: The Code Interpreter the functions name (played by SessionService).
CODE_INTERPRETER_ID = "Loopwright_conditions-fake"
#: Steps wait 0.1 s for a command, then 1 s between polls: background commands are polled soon.
QUICK_POLLS = {
    "LOOPWRIGHT_INLINE_SECONDS": "0.1",
    "LOOPWRIGHT_POLL_MIN_SECONDS": "1",
    "LOOPWRIGHT_POLL_MAX_SECONDS": "1",
}


@dataclass
class AwsLoops:
    """The played services and the state machine, with the ports a function would build."""

    local: LocalStepFunctions
    ports: CloudPorts
    remote: Path
    sessions: SessionService
    policy_store: PolicyStoreFake

    def start_execution(self, name: str, payload: str) -> str:
        """StartExecution on the local state machine (what start_loop is given)."""
        arn: str = self.local.client.start_execution(
            stateMachineArn=self.local.state_machine_arn, name=name, input=payload
        )["executionArn"]
        return arn

    def start(self, loop_id: str, config: dict[str, Any]) -> None:
        """Start ``loop_id`` as ``POST /loops`` does."""
        start_loop(StartLoopRequest(loop_id=loop_id, config=config), self.ports, self.start_execution)

    def wait(self, loop_id: str, generation: int = 0, timeout_seconds: float = 120) -> Any:
        """The finished execution ``<loop_id>-g<generation>``."""
        return self.local.wait(execution_name(loop_id, generation), timeout_seconds=timeout_seconds)


@contextmanager
def aws_loops(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    template: dict[str, Any],
    *,
    environment: Mapping[str, str] | None = None,
    handlers: Mapping[str, Callable[[Any, Any], Any]] | None = None,
) -> Iterator[AwsLoops]:
    """The services played locally around ``template``'s state machine (see the module
    docstring); ``environment`` adds to the functions' settings, ``handlers`` replaces some."""
    fake_credentials(monkeypatch)
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    sessions = SessionService(tmp_path / "sessions")
    play_code_interpreter(monkeypatch, sessions)
    policy_store = PolicyStoreFake.from_template(template)
    play_verified_permissions(monkeypatch, policy_store)
    settings = {
        "CODE_INTERPRETER_ID": CODE_INTERPRETER_ID,
        **policy_store.environment(),
        **(environment or {}),
    }
    with LocalStepFunctions(
        template, tmp_path / "state", handlers=dict(handlers or {}), adapters="aws", environment=settings
    ) as local:
        ports = runtime.ports(runtime.RuntimeSettings.from_environ())
        yield AwsLoops(local, ports, remote, sessions, policy_store)
