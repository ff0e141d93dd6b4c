"""The AWS side of a loop Lambda's ports (``LOOPWRIGHT_ADAPTERS=aws``): the loop's Code
Interpreter session (replaced when it ended), its clone in that session (a
:class:`~loopwright.adapters.aws.session_workspace.SessionWorkspace`, rewound to the stored state),
its agent, and the background commands of the steps that run the agent and the checks
(:mod:`loopwright.cloud.deferral`). Imported only where AWS adapters are used; the local execution
of the state machine never needs it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from loopwright.cloud.evidence_record import EvidenceKeeper
from loopwright.cloud.runtime import RuntimeSettings, loop_repository
from loopwright.cloud.steps import CloudPorts, EventCollector
from loopwright.deferred import DeferringSandbox
from loopwright.models import IterationEventType, LoopState, RepositoryConfig, StepInput
from loopwright.steps.restore import keep_work

if TYPE_CHECKING:
    from loopwright.adapters.aws.session_workspace import SessionWorkspace


def evidence_keeper(settings: RuntimeSettings) -> EvidenceKeeper | None:
    """The KMS signer (``EVIDENCE_KEY_ARN``) and the loops table's evidence items, or None when
    the function has no evidence key (then a completed loop gets no bundle, with a warning)."""
    if not settings.evidence_key_arn:
        return None
    from loopwright.adapters.aws.dynamodb_evidence import DynamoDbEvidenceStore
    from loopwright.adapters.aws.kms_evidence_signer import KmsEvidenceSigner

    return EvidenceKeeper(
        signer=KmsEvidenceSigner(settings.evidence_key_arn, region_name=settings.region),
        bundles=DynamoDbEvidenceStore(settings.require("loops_table"), region_name=settings.region),
    )


def loop_sandbox(base: CloudPorts, loop_id: str, settings: RuntimeSettings) -> CloudPorts:
    """:func:`loopwright.cloud.runtime.with_loop_sandbox` with the AWS adapters."""
    from loopwright.adapters.aws.code_interpreter_sandbox import (  # AWS only
        MAX_SESSION_TIMEOUT_SECONDS,
        CodeInterpreterSandbox,
        CodeInterpreterSessions,
    )

    state = base.store.get_state(loop_id)
    identifier = settings.require("code_interpreter_id")
    sessions = CodeInterpreterSessions(settings.require("region"), identifier=identifier)
    session_id, ended = state.sandbox_session_id, None
    if session_id is not None and not sessions.is_ready(session_id):
        session_id, ended = None, session_id
    sandbox = CodeInterpreterSandbox(
        settings.require("region"),
        identifier=identifier,
        session_id=session_id,
        session_timeout_seconds=MAX_SESSION_TIMEOUT_SECONDS,
        sessions=sessions,
    )
    if session_id is None:
        state.sandbox_session_id = sandbox.start()
        record = EventCollector(state)
        if ended is not None:
            record(
                IterationEventType.SESSION_REPLACED,
                f"Code Interpreter session {ended!r} had ended (timed out or stopped; its files are "
                f"gone): started session {state.sandbox_session_id!r}, where the loop's clone is restored",
                ended_session=ended,
                session=state.sandbox_session_id,
            )
        base.store.save_state(state, record.events)
    return CloudPorts(**{**base.__dict__, "sandbox": sandbox})


def aws_workspace_ports(
    base: CloudPorts, loop_id: str, settings: RuntimeSettings, *, event: StepInput | None = None
) -> CloudPorts:
    """``base`` with the loop's Code Interpreter sandbox and its prepared SessionWorkspace, and
    for a step ``event`` (with ``LOOPWRIGHT_BACKGROUND_COMMANDS``) a
    :class:`~loopwright.deferred.DeferringSandbox` over the session's background tasks, holding
    the tasks the event's earlier invocations started. A replayed step (``event.commands``) does
    not rewind the clone: its agent may be committing in it right now."""
    from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox
    from loopwright.adapters.aws.session_workspace import SESSION_WORKTREES_FOLDER, SessionWorkspace
    from loopwright.models import RuntimeAgentConfig

    sandboxed = loop_sandbox(base, loop_id, settings)
    sandbox = sandboxed.sandbox
    assert isinstance(sandbox, CodeInterpreterSandbox)
    state = base.store.get_state(loop_id)  # again: starting the session saved it
    repository = loop_repository(state.config, state.workspace)
    remote = isinstance(state.config.agent, RuntimeAgentConfig)
    root = sandbox.working_directory() / SESSION_WORKTREES_FOLDER
    credentials = None
    if repository.credentials is not None:
        from loopwright.adapters.aws.git_credentials import SessionGitCredentials

        credentials = SessionGitCredentials(sandbox, repository.credentials, secret_tokens(settings.region))
    workspace = SessionWorkspace(
        sandbox, repository, root=root, fetch_agent_commits=remote, credentials=credentials
    )
    path, branch, base_commit = workspace.prepare(loop_id)
    record = EventCollector(state)
    replay = event is not None and bool(event.commands)
    if not replay and not rewind_workspace(state, workspace, record) and loop_id in workspace.cloned:
        check_restored(state, workspace.known_head(loop_id), repository, record)
    # A new loop's head is where its branch starts: the first iteration's pinned-file guard and
    # hard-limit set-aside compare the agent's commit with it (as the local engine's loops do).
    head = state.head_commit or workspace.known_head(loop_id)
    if (
        (state.worktree, state.branch) != (str(path), branch)
        or (state.base_commit is None and base_commit)
        or head != state.head_commit
        or record.events
    ):
        state.worktree, state.branch = str(path), branch
        state.base_commit = state.base_commit or base_commit
        state.head_commit = head
        base.store.save_state(state, record.events)
    deferring = None
    if event is not None and settings.background_commands:
        from loopwright.adapters.aws.code_interpreter_tasks import CodeInterpreterTasks

        deferring = DeferringSandbox(
            CodeInterpreterTasks(sandbox),
            event.commands,
            token=event.deferral_token,
            inline_seconds=settings.inline_seconds,
            min_wait_seconds=settings.poll_min_seconds,
            max_wait_seconds=settings.poll_max_seconds,
        )
    return CloudPorts(**{**sandboxed.__dict__, "workspace": workspace, "deferring": deferring})


@functools.cache
def secret_tokens(region: str | None) -> Any:
    """The container's reader of repository tokens (each secret read once per container)."""
    from loopwright.adapters.aws.git_credentials import SecretTokens

    return SecretTokens(region)


def rewind_workspace(state: LoopState, workspace: SessionWorkspace, record: EventCollector) -> bool:
    """The stored state is the truth: when the loop's clone is ahead of ``state.head_commit``
    (a resume restored a checkpoint, or a step died between its commit and its state write) and
    holds that commit, keep the later commits on a set-aside ref (COMMITS_SET_ASIDE, pushed with
    ``repository.push``) and reset the clone to it. True when the clone is at
    ``state.head_commit`` afterwards; False when it cannot be (no head commit, or the clone lacks
    it: :func:`check_restored` tells what was lost)."""
    head, target = workspace.known_head(state.loop_id), state.head_commit
    if target is None or head is None:
        return False
    if head == target:
        return True
    if not workspace.has_commit(state.loop_id, target):
        return False
    # keep_work names the ref after the session about to start; the resume has started it already
    keep_work(state.model_copy(update={"sessions_used": state.sessions_used - 1}), workspace, record, target)
    workspace.reset(state.loop_id, target)
    return True


def check_restored(
    state: LoopState, head: str | None, repository: RepositoryConfig, record: EventCollector
) -> None:
    """After a fresh clone of a loop that had committed (``state.head_commit``): when the clone's
    head is another commit, the work since the last push is lost: record an ERROR saying what was
    lost and why, and move ``state.head_commit`` to the commit the loop continues from."""
    if state.head_commit is None or head is None or head == state.head_commit:
        return
    where = (
        f"the pushed branch {state.branch or 'loopwright/' + state.loop_id} at {head[:12]}"
        if repository.push
        else f"repository.ref ({repository.ref or 'the default branch'}) at {head[:12]}"
    )
    why = (
        "its last push did not reach the remote"
        if repository.push
        else "repository.push is off, so the loop's commits lived only in the ended session"
    )
    record(
        IterationEventType.ERROR,
        f"the loop's sandbox session ended and its clone was made again from {where}: commit "
        f"{state.head_commit[:12]} and everything after the last push is lost ({why}); the agent "
        "continues from there. Set repository.push = true so a loop's work outlives its session",
        lost_commit=state.head_commit,
        restored_commit=head,
    )
    state.head_commit = head


def aws_agent_ports(
    base: CloudPorts, loop_id: str, settings: RuntimeSettings, *, event: StepInput | None = None
) -> CloudPorts:
    # The AWS agents, imported here: the local execution of the state machine never needs them.
    from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox
    from loopwright.adapters.aws.interpreter_agent import CodeInterpreterCommandAgent
    from loopwright.adapters.aws.runtime_agent import AgentCoreRuntimeAgent, AgentRepository
    from loopwright.adapters.aws.session_workspace import SessionWorkspace
    from loopwright.models import CommandAgentConfig, RuntimeAgentConfig
    from loopwright.ports import Agent

    ports = aws_workspace_ports(base, loop_id, settings, event=event)
    sandbox, workspace = ports.sandbox, ports.workspace
    assert isinstance(sandbox, CodeInterpreterSandbox) and isinstance(workspace, SessionWorkspace)
    state = base.store.get_state(loop_id)
    branch = state.branch
    assert branch is not None  # saved by _aws_workspace_ports
    config = state.config.agent
    repository = loop_repository(state.config, state.workspace)
    agent: Agent
    if isinstance(config, RuntimeAgentConfig):
        agent = AgentCoreRuntimeAgent(
            config,
            region_name=settings.require("region"),
            repository=AgentRepository(
                url=repository.url,
                ref=repository.ref,
                branch=branch,
                base_commit=state.base_commit,
                head_commit=workspace.known_head(loop_id),
            ),
        )
    else:
        assert isinstance(config, CommandAgentConfig)  # check_agent_for_adapters refused the others
        agent = CodeInterpreterCommandAgent(config, sandbox, runner=ports.deferring)
    return CloudPorts(**{**ports.__dict__, "agent": agent})
