"""What a loop Lambda needs at run time: its settings from the environment and its ports.

``LOOPWRIGHT_ADAPTERS`` chooses the adapters: ``aws`` (DynamoDB, AgentCore Memory, Code
Interpreter, Verified Permissions; what the CDK stack deploys) or ``local`` (SQLite, subprocess
sandbox, cedarpy, git worktree under ``LOOPWRIGHT_STATE_DIR``; what the local execution of the
synthesized state machine uses, so the same handler code runs both ways). Ports are built once per
Lambda container and reused across invocations.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright.cloud.observability import metrics
from loopwright.cloud.steps import CloudPorts
from loopwright.exceptions import ConfigError
from loopwright.models import StepInput, StepOutput


class RuntimeSettings(BaseModel):
    """The handlers' environment variables. A missing one fails at cold start, naming it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    adapters: Literal["aws", "local"] = Field(alias="LOOPWRIGHT_ADAPTERS")
    state_dir: Path = Field(default=Path("/tmp/loopwright"), alias="LOOPWRIGHT_STATE_DIR")
    loops_table: str | None = Field(default=None, alias="LOOPS_TABLE_NAME")
    events_table: str | None = Field(default=None, alias="EVENTS_TABLE_NAME")
    memory_id: str | None = Field(default=None, alias="MEMORY_ID")
    code_interpreter_id: str | None = Field(default=None, alias="CODE_INTERPRETER_ID")
    policy_store_id: str | None = Field(default=None, alias="POLICY_STORE_ID")
    region: str | None = Field(default=None, alias="AWS_REGION")
    policy_map: str | None = Field(
        default=None, alias="POLICY_MAP", description="JSON: store policy id -> annotations"
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        """Parse ``environ`` (default ``os.environ``). Raises :class:`ConfigError` naming the variable."""
        try:
            return cls.model_validate(dict(environ if environ is not None else os.environ))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"environment variable {name}: {first['msg']}") from exc

    def require(self, name: str) -> str:
        """The setting ``name``; raises :class:`ConfigError` naming its variable when unset."""
        value = getattr(self, name)
        if not value:
            alias = type(self).model_fields[name].alias
            raise ConfigError(
                f"environment variable {alias} is required with LOOPWRIGHT_ADAPTERS={self.adapters}"
            )
        return str(value)


def _local_ports(settings: RuntimeSettings) -> CloudPorts:
    # The local adapters, imported here: an AWS deployment's layer never needs git or cedarpy.
    from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
    from loopwright.adapters.local.sandbox import SubprocessSandbox
    from loopwright.adapters.local.sqlite_store import SqliteStore

    store = SqliteStore(settings.state_dir / "loopwright.db")
    return CloudPorts(
        store=store,
        checkpoints=store,
        policy=CedarPolicyEngine(),
        sandbox=SubprocessSandbox(),
        state_dir=settings.state_dir,
    )


def _aws_ports(settings: RuntimeSettings) -> CloudPorts:
    # The AWS adapters, imported here: the local execution of the state machine never needs them.
    from loopwright.adapters.aws.dynamodb_store import DynamoDbStore
    from loopwright.adapters.aws.memory_checkpoints import MemoryCheckpointStore
    from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine

    store = DynamoDbStore(
        settings.require("loops_table"), settings.require("events_table"), region_name=settings.region
    )
    return CloudPorts(
        store=store,
        checkpoints=MemoryCheckpointStore(settings.require("memory_id"), region_name=settings.region),
        policy=VerifiedPermissionsPolicyEngine.from_json(
            settings.require("policy_store_id"), settings.require("policy_map"), region_name=settings.region
        ),
        state_dir=settings.state_dir,
    )


@functools.cache
def ports(settings: RuntimeSettings) -> CloudPorts:
    """The ports for ``settings``, built once per container (clients are reused)."""
    if settings.adapters == "local":
        return _local_ports(settings)
    return _aws_ports(settings)


def with_loop_sandbox(base: CloudPorts, loop_id: str, settings: RuntimeSettings) -> CloudPorts:
    """``base`` with the loop's own Code Interpreter session (AWS), started on first use and
    kept on the loop (``sandbox_session_id``) so every iteration reuses it."""
    if settings.adapters == "local":
        return base
    from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox  # AWS only

    state = base.store.get_state(loop_id)
    sandbox = CodeInterpreterSandbox(
        settings.require("region"),
        identifier=settings.require("code_interpreter_id"),
        session_id=state.sandbox_session_id,
    )
    if state.sandbox_session_id is None:
        state.sandbox_session_id = sandbox.start()
        base.store.save_state(state)
    return CloudPorts(**{**base.__dict__, "sandbox": sandbox})


def with_loop_agent(base: CloudPorts, loop_id: str, settings: RuntimeSettings) -> CloudPorts:
    """``base`` plus the loop's own agent and workspace (they depend on the loop's config)."""
    if settings.adapters != "local":
        raise ConfigError("agents in AWS (AgentCore Runtime, Code Interpreter) are not wired yet")
    from loopwright.engine.local import build_agent, build_workspace  # local only (git, agents)

    state = base.store.get_state(loop_id)
    sandbox = base.sandbox
    assert sandbox is not None
    agent = build_agent(state.config, sandbox)
    if agent is None:
        raise ConfigError(f"loop {loop_id!r} has no agent in its config")
    workspace = build_workspace(state.config, Path(state.workspace), settings.state_dir)
    return CloudPorts(**{**base.__dict__, "agent": agent, "workspace": workspace})


Step = Callable[[StepInput, CloudPorts], StepOutput]


def run_step(
    step: Step, event: StepInput, *, needs_agent: bool = False, needs_sandbox: bool = False
) -> dict[str, Any]:
    """Run ``step`` for ``event`` with this container's ports; the JSON of its output."""
    settings = RuntimeSettings.from_environ()
    step_ports = ports(settings)
    if needs_sandbox:
        step_ports = with_loop_sandbox(step_ports, event.loop_id, settings)
    if needs_agent:
        step_ports = with_loop_agent(step_ports, event.loop_id, settings)
    output = step(event, step_ports)
    metrics.add_metric(name="StepsCompleted", unit=MetricUnit.Count, value=1)
    if output.outcome is not None:
        metrics.add_metric(
            name=f"Loops{output.outcome.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1
        )
    return output.model_dump(mode="json")
