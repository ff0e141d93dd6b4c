"""Wiring of the local adapters: the embedded default that needs no AWS account."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopwright.adapters.local.agents import build_cli_agent
from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.command_agent import CommandAgent
from loopwright.adapters.local.git_workspace import GitWorktreeWorkspace, NoIsolationWorkspace
from loopwright.adapters.local.python_agent import PythonAgent, load_function
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.exceptions import ConfigError
from loopwright.models import AgentKind, CliAgentConfig, LoopConfig
from loopwright.ports import Agent, CheckpointStore, LoopStore, Sandbox, Workspace

#: Folder, inside the workspace, that holds the local store, worktrees, locks and agent files.
STATE_DIR_NAME = ".loopwright"
DB_FILE_NAME = "loopwright.db"


def state_dir_for(workspace: Path) -> Path:
    """``<workspace>/.loopwright``."""
    return workspace / STATE_DIR_NAME


def open_store(state_dir: Path) -> SqliteStore:
    """The SQLite store in ``state_dir`` (created on first use)."""
    return SqliteStore(state_dir / DB_FILE_NAME)


def build_agent(config: LoopConfig, sandbox: Sandbox) -> Agent | None:
    """The agent the config names, or None when it names none.

    ``command`` and the CLI backends (``claude-code``, ``codex``, ``gemini``, ``aider``) run
    through ``sandbox``; ``python`` is loaded here (a bad ``module:function`` raises
    :class:`ConfigError`); ``agentcore_runtime`` is refused (AWS only).
    """
    agent = config.agent
    if agent is None:
        return None
    if agent.kind is AgentKind.COMMAND:
        return CommandAgent(agent, sandbox)
    if isinstance(agent, CliAgentConfig):
        return build_cli_agent(agent, sandbox)
    if agent.kind is AgentKind.AGENTCORE_RUNTIME:
        raise ConfigError(
            "agent.kind: 'agentcore_runtime' runs only on AWS (LOOPWRIGHT_ADAPTERS=aws); "
            "locally use kind 'command', 'python', 'claude-code', 'codex', 'gemini' or 'aider'"
        )
    return PythonAgent(load_function(agent.function))


def build_workspace(config: LoopConfig, workspace: Path, state_dir: Path) -> Workspace:
    """A git worktree workspace starting from ``config.start_from``, or the workspace itself
    when ``git_isolation`` is off."""
    if config.git_isolation:
        return GitWorktreeWorkspace(workspace, state_dir, start_from=config.start_from)
    return NoIsolationWorkspace(workspace)


@dataclass
class LocalPorts:
    """Every port of the embedded mode."""

    store: SqliteStore
    sandbox: SubprocessSandbox
    policy: CedarPolicyEngine


def local_ports(state_dir: Path) -> LocalPorts:
    """The local store, sandbox and policy engine for ``state_dir``."""
    return LocalPorts(store=open_store(state_dir), sandbox=SubprocessSandbox(), policy=CedarPolicyEngine())


def missing_port(port: str) -> Any:
    """Raise :class:`ConfigError`: the engine was given no ``port`` and has no default for it."""
    raise ConfigError(f"no {port} port given")


def as_checkpoints(store: LoopStore) -> CheckpointStore:
    """``store`` as the checkpoint store, when it keeps checkpoints; else ConfigError."""
    if isinstance(store, CheckpointStore):
        return store
    raise ConfigError("the store does not keep checkpoints: pass a CheckpointStore as 'checkpoints'")
