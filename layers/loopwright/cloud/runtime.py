"""What a loop Lambda needs at run time: its settings from the environment and its ports.

``LOOPWRIGHT_ADAPTERS`` chooses the adapters: ``aws`` (DynamoDB, AgentCore Memory, Code
Interpreter, Verified Permissions, and SNS notifications when ``NOTIFICATIONS_TOPIC_ARN`` is set;
what the CDK stack deploys) or ``local`` (SQLite, subprocess
sandbox, cedarpy, git worktree under ``LOOPWRIGHT_STATE_DIR``; what the local execution of the
synthesized state machine uses, so the same handler code runs both ways). Ports are built once per
Lambda container and reused across invocations.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loopwright.cloud.deferral import PendingStep, run_deferred
from loopwright.cloud.evidence_record import EvidenceKeeper
from loopwright.cloud.observability import metrics, tracer
from loopwright.cloud.steps import CloudPorts
from loopwright.exceptions import ConfigError
from loopwright.models import (
    CLI_AGENT_KINDS,
    MAX_AWS_AGENT_TIMEOUT_SECONDS,
    MAX_AWS_BACKGROUND_AGENT_TIMEOUT_SECONDS,
    AgentKind,
    LoopConfig,
    RepositoryConfig,
    StepInput,
    StepOutput,
)

if TYPE_CHECKING:  # the AWS adapters are imported where they are built (local runs never need them)
    pass


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
        default=None, alias="POLICY_MAP", description="JSON: store policy id -> the policy's @id"
    )
    policies_dir: Path | None = Field(
        default=None,
        alias="LOOPWRIGHT_POLICIES_DIR",
        description="the policy files the store was made from (the layer's copy): the annotations "
        "of the policies POLICY_MAP names; unset: the default policy folder",
    )
    idempotency_table: str | None = Field(
        default=None,
        alias="IDEMPOTENCY_TABLE_NAME",
        description="DynamoDB table of the steps' idempotency records (loopwright.cloud.idempotency); "
        "unset: idempotency off with LOOPWRIGHT_ADAPTERS=local, an error with aws",
    )
    notifications_topic_arn: str | None = Field(
        default=None,
        alias="NOTIFICATIONS_TOPIC_ARN",
        description="SNS topic the steps publish notifications to (loopwright.notifications); unset: none",
    )
    dashboard_url: str | None = Field(
        default=None,
        alias="DASHBOARD_URL",
        description="the dashboard's base URL: an AWAITING_RESPONSE notification links the loop's page",
    )
    evidence_key_arn: str | None = Field(
        default=None,
        alias="EVIDENCE_KEY_ARN",
        description="KMS key (ECC_NIST_P256, SIGN_VERIFY) that signs a completed loop's evidence "
        "bundle (loopwright.cloud.evidence_record); unset: no bundle, a warning is logged",
    )
    background_commands: bool = Field(
        default=True,
        alias="LOOPWRIGHT_BACKGROUND_COMMANDS",
        description="AWS: the agent and the checks run as background tasks of the Code Interpreter "
        "session and the state machine polls them (loopwright.cloud.deferral); false: the step waits",
    )
    poll_min_seconds: int = Field(
        default=10,
        ge=0,
        le=3600,
        alias="LOOPWRIGHT_POLL_MIN_SECONDS",
        description="shortest wait between polls",
    )
    poll_max_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        alias="LOOPWRIGHT_POLL_MAX_SECONDS",
        description="longest wait between polls",
    )
    inline_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        alias="LOOPWRIGHT_INLINE_SECONDS",
        description="seconds a started command is awaited in the step before the step returns pending",
    )

    @model_validator(mode="after")
    def _poll_bounds(self) -> RuntimeSettings:
        if self.poll_max_seconds < self.poll_min_seconds:
            raise ValueError(
                f"LOOPWRIGHT_POLL_MAX_SECONDS ({self.poll_max_seconds}) is below LOOPWRIGHT_POLL_MIN_SECONDS "
                f"({self.poll_min_seconds}): set it to at least that"
            )
        return self

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        """Parse ``environ`` (default ``os.environ``). Raises :class:`ConfigError` naming the variable."""
        try:
            return cls.model_validate(dict(environ if environ is not None else os.environ))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"environment variable {name}: {message}" if name else message) from exc

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
    from loopwright.adapters.local.notifier import NoopNotifier
    from loopwright.adapters.local.sandbox import SubprocessSandbox
    from loopwright.adapters.local.sqlite_store import SqliteStore

    store = SqliteStore(settings.state_dir / "loopwright.db")
    return CloudPorts(
        store=store,
        checkpoints=store,
        policy=CedarPolicyEngine(),
        sandbox=SubprocessSandbox(),
        state_dir=settings.state_dir,
        notifier=NoopNotifier(),
        dashboard_url=settings.dashboard_url,
        evidence=_local_evidence_keeper(settings),
    )


def _local_evidence_keeper(settings: RuntimeSettings) -> EvidenceKeeper | None:
    """Locally, the state machine signs with the user's Ed25519 key and keeps the files where the
    in-process engine does (``<state_dir>/evidence/``); None (a warning when a loop completes)
    when the key cannot be read or made."""
    from loopwright.adapters.local.evidence_bundle import EvidenceFiles
    from loopwright.adapters.local.evidence_key import LocalEd25519Signer
    from loopwright.evidence import EvidenceError

    try:
        signer = LocalEd25519Signer.load_or_create()
    except EvidenceError:
        return None
    return EvidenceKeeper(signer=signer, bundles=EvidenceFiles(settings.state_dir))


def _aws_ports(settings: RuntimeSettings) -> CloudPorts:
    # The AWS adapters, imported here: the local execution of the state machine never needs them.
    from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSessions
    from loopwright.adapters.aws.dynamodb_store import DynamoDbStore
    from loopwright.adapters.aws.memory_checkpoints import MemoryCheckpointStore
    from loopwright.adapters.aws.sns_notifier import SnsNotifier
    from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine
    from loopwright.adapters.local.cedar_policy import policy_annotations
    from loopwright.cloud.runtime_aws import evidence_keeper

    store = DynamoDbStore(
        settings.require("loops_table"), settings.require("events_table"), region_name=settings.region
    )
    return CloudPorts(
        store=store,
        checkpoints=MemoryCheckpointStore(settings.require("memory_id"), region_name=settings.region),
        policy=(  # only the functions that ask Cedar get the policy map (infrastructure/functions.py)
            VerifiedPermissionsPolicyEngine.from_json(
                settings.require("policy_store_id"),
                settings.policy_map,
                annotations=policy_annotations(settings.policies_dir),
                region_name=settings.region,
            )
            if settings.policy_map
            else None
        ),
        state_dir=settings.state_dir,
        sessions=(  # the steps that end or park a loop stop its session
            CodeInterpreterSessions(settings.region, identifier=settings.code_interpreter_id)
            if settings.code_interpreter_id
            else None
        ),
        notifier=(  # the steps that record a question, a warning or the loop's end publish
            SnsNotifier(settings.notifications_topic_arn, region_name=settings.region)
            if settings.notifications_topic_arn
            else None
        ),
        dashboard_url=settings.dashboard_url,
        evidence=evidence_keeper(settings),  # the steps that complete a loop sign its bundle
    )


@functools.cache
def ports(settings: RuntimeSettings) -> CloudPorts:
    """The ports for ``settings``, built once per container (clients are reused)."""
    if settings.adapters == "local":
        return _local_ports(settings)
    return _aws_ports(settings)


def with_loop_sandbox(base: CloudPorts, loop_id: str, settings: RuntimeSettings) -> CloudPorts:
    """``base`` with the loop's own Code Interpreter session (AWS), kept on the loop
    (``sandbox_session_id``) so every iteration reuses it, asked for the Code Interpreter's longest
    lifetime (8 hours): the loop's clone lives in it.

    A session ends at its timeout or when a step stopped it (:mod:`loopwright.cloud.steps`); a
    stored session that is no longer READY (``GetCodeInterpreterSession``: TERMINATED, or not
    found) is replaced by a new one, its id stored with a SESSION_REPLACED event; the loop's clone
    is restored in it by :func:`with_loop_workspace`."""
    if settings.adapters == "local":
        return base
    from loopwright.cloud.runtime_aws import loop_sandbox  # AWS only

    return loop_sandbox(base, loop_id, settings)


def check_agent_for_adapters(
    config: LoopConfig, adapters: str, *, repository: str | None = None, background: bool = True
) -> None:
    """Raise :class:`ConfigError`, naming the field and the fix, when ``config``'s agent cannot run
    with ``adapters`` (``local`` or ``aws``); ``repository`` is the URL a loop was started with
    (:class:`~loopwright.models.StartLoopRequest`), used when the config has none.

    On AWS the agent works in the loop's Code Interpreter session or in AgentCore Runtime, on a
    clone of the loop's repository; a ``python`` agent (a function of this process) cannot reach
    that clone. A ``command`` agent run as a background task of the session (``background``:
    ``LOOPWRIGHT_BACKGROUND_COMMANDS``, on by default) may work up to
    :data:`~loopwright.models.MAX_AWS_BACKGROUND_AGENT_TIMEOUT_SECONDS` (the session's lifetime)
    per iteration; one the iterate Lambda waits for, at most
    :data:`~loopwright.models.MAX_AWS_AGENT_TIMEOUT_SECONDS`.
    """
    agent = config.agent
    if agent is None:
        raise ConfigError("agent: a loop run by the state machine needs an agent in its config")
    if adapters != "aws":
        if agent.kind is AgentKind.AGENTCORE_RUNTIME:
            raise ConfigError(
                "agent.kind: 'agentcore_runtime' runs only with LOOPWRIGHT_ADAPTERS=aws (the agent is "
                "in AWS); locally use kind 'command' or 'python'"
            )
        return
    if config.isolation != "none":
        raise ConfigError(
            f"isolation: {config.isolation!r} is local (bubblewrap on this machine); on AWS the agent "
            "and the checks already run in the loop's own Code Interpreter session: remove "
            "'isolation' from the config"
        )
    if agent.kind in CLI_AGENT_KINDS:
        raise ConfigError(
            f"agent.kind: {agent.kind.value!r} runs only locally for now (its CLI, login and API key "
            "are not in the loop's Code Interpreter session); on AWS use kind 'command' with a "
            "script that installs and runs the CLI, or 'agentcore_runtime'"
        )
    if agent.kind is AgentKind.PYTHON:
        raise ConfigError(
            "agent.kind: 'python' agents run only locally (the function would not see the loop's "
            "clone, which is in its Code Interpreter session); on AWS use kind 'command' or "
            "'agentcore_runtime'"
        )
    limit = MAX_AWS_BACKGROUND_AGENT_TIMEOUT_SECONDS if background else MAX_AWS_AGENT_TIMEOUT_SECONDS
    if agent.kind is AgentKind.COMMAND and agent.timeout_seconds > limit:
        why = (
            "the loop's Code Interpreter session lives at most 8 hours"
            if background
            else "the iterate Lambda waits for it and runs at most 15 minutes"
        )
        raise ConfigError(
            f"agent.timeout_seconds: {agent.timeout_seconds:g} s is above the {limit:g} s an agent "
            f"may work per iteration on AWS ({why}); set agent.timeout_seconds to at most {limit:g}"
        )
    found = loop_repository(config, repository)
    if agent.kind is AgentKind.AGENTCORE_RUNTIME and not found.push:
        raise ConfigError(
            "repository.push: must be true with an 'agentcore_runtime' agent: it works on its own "
            "clone and hands its commits to the loop through the remote branch loopwright/<loop_id>"
        )


def loop_repository(config: LoopConfig, repository: str | None = None) -> RepositoryConfig:
    """``config.repository``, else ``repository`` (the URL the loop was started with) with the
    defaults. Raises :class:`ConfigError` when there is none or the URL is not a git URL."""
    if config.repository is not None:
        return config.repository
    if repository:
        try:
            return RepositoryConfig(url=repository)
        except ValidationError as exc:
            raise ConfigError(
                f"repository: {exc.errors(include_url=False)[0]['msg']} (got {repository!r})"
            ) from exc
    raise ConfigError(
        "repository: required with LOOPWRIGHT_ADAPTERS=aws (the loop's Code Interpreter session "
        'clones it); add for example [repository] url = "https://github.com/owner/repo.git", push = true'
    )


def with_loop_agent(
    base: CloudPorts, loop_id: str, settings: RuntimeSettings, *, event: StepInput | None = None
) -> CloudPorts:
    """``base`` plus the loop's own agent and workspace (they depend on the loop's config).

    Local adapters: the local agents and git worktree. AWS: the loop's clone in its Code
    Interpreter session (:class:`~loopwright.adapters.aws.session_workspace.SessionWorkspace`,
    prepared here, its folder and branch saved on the loop the first time) and a ``command``
    agent run in that session or an ``agentcore_runtime`` agent. Raises :class:`ConfigError`
    when the loop's agent cannot run with these adapters (:func:`check_agent_for_adapters`).
    """
    state = base.store.get_state(loop_id)
    check_agent_for_adapters(
        state.config, settings.adapters, repository=state.workspace, background=settings.background_commands
    )
    if settings.adapters == "aws":
        from loopwright.cloud.runtime_aws import aws_agent_ports  # AWS only

        return aws_agent_ports(base, loop_id, settings, event=event)
    from loopwright.engine.local import build_agent, build_workspace  # local only (git, agents)

    sandbox = base.sandbox
    assert sandbox is not None
    agent = build_agent(state.config, sandbox)
    if agent is None:
        raise ConfigError(f"loop {loop_id!r} has no agent in its config")
    workspace = build_workspace(state.config, Path(state.workspace), settings.state_dir)
    return CloudPorts(**{**base.__dict__, "agent": agent, "workspace": workspace})


def with_loop_workspace(
    base: CloudPorts, loop_id: str, settings: RuntimeSettings, *, event: StepInput | None = None
) -> CloudPorts:
    """``base`` plus the loop's sandbox and workspace, without its agent: what the baseline
    evaluation needs (its conditions run in the loop's worktree before any iteration made it),
    and the evaluation of an iteration held for changing pinned files (its answer may move the
    branch: ``loopwright.pinning.settle_hold``).

    AWS: the loop's clone in its Code Interpreter session, prepared (or reopened) as
    :func:`with_loop_agent` does, its folder and branch saved on the loop. Local adapters: the
    worktree exists since the loop was created; ``base`` plus its git workspace (nothing is run
    to build it).
    """
    if settings.adapters != "aws":
        from loopwright.engine.local import build_workspace  # local only (git)

        state = base.store.get_state(loop_id)
        workspace = build_workspace(state.config, Path(state.workspace), settings.state_dir)
        return CloudPorts(**{**base.__dict__, "workspace": workspace})
    from loopwright.cloud.runtime_aws import aws_workspace_ports  # AWS only

    return aws_workspace_ports(base, loop_id, settings, event=event)


Step = Callable[[StepInput, CloudPorts], StepOutput]


def run_step(
    step: Step,
    event: StepInput,
    *,
    needs_agent: bool = False,
    needs_sandbox: bool = False,
    needs_workspace: bool = False,
    pending_step: PendingStep | None = None,
) -> dict[str, Any]:
    """Run ``step`` for ``event`` with this container's ports (``needs_workspace``, and
    ``needs_sandbox`` alike: the loop's sandbox and its workspace prepared, so a replaced session
    gets the loop's clone back, :func:`with_loop_workspace`); the JSON of its output.

    ``pending_step`` names a step whose commands may run in the background (AWS with
    ``LOOPWRIGHT_BACKGROUND_COMMANDS``): its output is then pending while they run
    (:func:`loopwright.cloud.deferral.run_deferred`)."""
    settings = RuntimeSettings.from_environ()
    tracer.put_annotation(key="loop_id", value=event.loop_id)  # the dashboard's X-Ray filter
    step_ports = ports(settings)
    if (needs_workspace or needs_sandbox) and not needs_agent:  # the agent's ports include both
        # The workspace for a sandbox too: a replaced session gets the loop's clone back.
        step_ports = with_loop_workspace(step_ports, event.loop_id, settings, event=event)
    if needs_agent:
        step_ports = with_loop_agent(step_ports, event.loop_id, settings, event=event)
    output = run_deferred(step, event, step_ports, pending_step) if pending_step else step(event, step_ports)
    if output.pending:
        metrics.add_metric(name="StepsPending", unit=MetricUnit.Count, value=1)
        return output.model_dump(mode="json")
    metrics.add_metric(name="StepsCompleted", unit=MetricUnit.Count, value=1)
    if output.outcome is not None:
        metrics.add_metric(
            name=f"Loops{output.outcome.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1
        )
    return output.model_dump(mode="json")
