"""The agent CLI backends: Claude Code, Codex, Gemini CLI and aider as loop agents.

Each backend runs its CLI once per iteration, non-interactively, in the worktree through the
:class:`~loopwright.ports.Sandbox` (:mod:`.base`), and reads the CLI's own machine-readable
output for tokens, dollars, model, session and errors (:mod:`.claude_code`, :mod:`.codex`,
:mod:`.gemini`, :mod:`.aider`; each module cites the format's source). Usage limits pause the
loop until they lift (:mod:`.limits`).
"""

from __future__ import annotations

from typing import Any

from loopwright.adapters.local.agents.aider import AiderAgent
from loopwright.adapters.local.agents.base import CliAgent, Clock, utc_now
from loopwright.adapters.local.agents.claude_code import ClaudeCodeAgent
from loopwright.adapters.local.agents.codex import CodexAgent
from loopwright.adapters.local.agents.gemini import GeminiAgent
from loopwright.models import (
    AiderAgentConfig,
    ClaudeCodeAgentConfig,
    CliAgentConfig,
    CodexAgentConfig,
    GeminiAgentConfig,
)
from loopwright.ports import Sandbox

__all__ = ["AiderAgent", "ClaudeCodeAgent", "CliAgent", "CodexAgent", "GeminiAgent", "build_cli_agent"]


def build_cli_agent(config: CliAgentConfig, sandbox: Sandbox, *, now: Clock = utc_now) -> CliAgent[Any]:
    """The backend for ``config``'s kind, running its CLI through ``sandbox``.

    Raises :class:`TypeError` for a config that is not one of the four CLI backends'.
    """
    if isinstance(config, ClaudeCodeAgentConfig):
        return ClaudeCodeAgent(config, sandbox, now=now)
    if isinstance(config, CodexAgentConfig):
        return CodexAgent(config, sandbox, now=now)
    if isinstance(config, GeminiAgentConfig):
        return GeminiAgent(config, sandbox, now=now)
    if isinstance(config, AiderAgentConfig):
        return AiderAgent(config, sandbox, now=now)
    raise TypeError(f"no CLI backend for {type(config).__name__}")
