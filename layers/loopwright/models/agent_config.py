"""Agent configurations: how a loop runs its agent (``[agent]`` in ``loopwright.toml``).

One model per :class:`~loopwright.models.enums.AgentKind`, told apart by ``kind``
(:data:`AgentConfig`). Unknown fields are rejected, like the rest of the loop's config.

The CLI backends (``claude-code``, ``codex``, ``gemini``, ``aider``) share
:class:`CliAgentConfig`'s fields; each adds the one setting its CLI needs to edit files without
asking, with the safe default named in its docstring. How each CLI is run and read is in
:mod:`loopwright.adapters.local.agents`; recipes in ``examples/agents/README.md``.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from loopwright.models.enums import AgentKind
from loopwright.models.types import DEFAULT_IDLE_TIMEOUT_SECONDS, Command, IdleSeconds, Seconds

#: Longest an agent may work in one iteration on AWS, seconds: the iterate Lambda's 900 s (Lambda's
#: 15-minute maximum timeout, AWS Lambda quotas) minus 60 s for the workspace's commit and push and
#: the state write.
MAX_AWS_AGENT_TIMEOUT_SECONDS = 840.0
#: Longest a ``command`` agent may work in one iteration on AWS when it runs as a background task
#: of the loop's Code Interpreter session (loopwright.deferred; no Lambda waits for it), seconds:
#: the session's longest lifetime, 8 hours (AgentCore developer guide, "Session management").
MAX_AWS_BACKGROUND_AGENT_TIMEOUT_SECONDS = 28_800.0
#: An AgentCore Runtime ARN (the ``AgentRuntimeArn`` pattern of the ``bedrock-agentcore-control``
#: service model, botocore 1.44).
AGENT_RUNTIME_ARN_PATTERN = (
    r"arn:aws(-[^:]+)?:bedrock-agentcore:[a-z0-9-]+:[0-9]{12}:"
    r"runtime/[a-zA-Z][a-zA-Z0-9_]{0,47}-[a-zA-Z0-9]{10}"
)
_ARN_EXAMPLE = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/my_agent-a1b2c3d4e5"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandAgentConfig(_Strict):
    """An agent run as a command line in the worktree each iteration.

    ``{prompt}`` (the prompt's text), ``{prompt_file}``, ``{failures_file}``, ``{report_file}``,
    ``{iteration}`` and ``{loop_id}`` inside an argument are replaced by their values (plain text
    replacement, no shell; prefer ``{prompt_file}`` or stdin for long prompts: one argument is
    limited to 128 KiB on Linux, ``MAX_ARG_STRLEN``). The same values reach the agent as ``LOOPWRIGHT_*``
    environment variables; see :mod:`loopwright.adapters.local.command_agent`.

    ``timeout_seconds`` (wall clock) bounds one run; ``idle_timeout_seconds`` (default 900, 0:
    off) ends a run that printed nothing and changed no file in the worktree for that long
    (failure cause ``IDLE``; it matters only when less than ``timeout_seconds``). A negative
    value is refused, naming the field.
    """

    kind: Literal[AgentKind.COMMAND] = AgentKind.COMMAND
    command: Command
    timeout_seconds: Seconds = 1800.0
    idle_timeout_seconds: IdleSeconds = DEFAULT_IDLE_TIMEOUT_SECONDS


class PythonAgentConfig(_Strict):
    """An agent given as a Python callable ``package.module:function`` (the seed's work_function)."""

    kind: Literal[AgentKind.PYTHON] = AgentKind.PYTHON
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:function")


class RuntimeAgentConfig(_Strict):
    """An agent hosted in Amazon Bedrock AgentCore Runtime, invoked once per iteration (AWS only).

    Each iteration sends the :class:`~loopwright.models.AgentRequest` as JSON to
    ``InvokeAgentRuntime`` in the loop's own runtime session, and reads an
    :class:`~loopwright.models.AgentResult`-shaped JSON answer; the protocol is described in
    :mod:`loopwright.adapters.aws.runtime_agent`. ``qualifier`` is the runtime's endpoint name (or
    version); ``timeout_seconds`` bounds one invocation, at most
    :data:`MAX_AWS_AGENT_TIMEOUT_SECONDS`.
    """

    kind: Literal[AgentKind.AGENTCORE_RUNTIME] = AgentKind.AGENTCORE_RUNTIME
    agent_runtime_arn: str = Field(description=f"the AgentCore Runtime's ARN, for example {_ARN_EXAMPLE}")
    qualifier: str = Field(
        default="DEFAULT",
        pattern=r"^(?:[a-zA-Z][a-zA-Z0-9_]{0,47}|[0-9]{1,10})$",
        description="endpoint name or version of the runtime",
    )
    timeout_seconds: float = Field(
        default=MAX_AWS_AGENT_TIMEOUT_SECONDS,
        gt=0,
        le=MAX_AWS_AGENT_TIMEOUT_SECONDS,
        description="seconds one invocation may take (the iterate Lambda runs at most 15 minutes)",
    )

    @field_validator("agent_runtime_arn")
    @classmethod
    def _runtime_arn(cls, value: str) -> str:
        if re.fullmatch(AGENT_RUNTIME_ARN_PATTERN, value) is None:
            raise ValueError(f"must be an AgentCore Runtime ARN such as {_ARN_EXAMPLE}")
        return value


# ----------------------------------------------------------------------------- CLI backends
#: Environment variable names an agent's ``env`` may set (POSIX portable names).
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Prefix of the variables loopwright gives every agent (see the command agent); not settable.
RESERVED_ENV_PREFIX = "LOOPWRIGHT_"


def _split_args(value: object) -> object:
    """``extra_args`` as a list, or one string split like a POSIX shell would (never run by one)."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split {value!r}: {exc}") from exc
    return value


ExtraArgs = Annotated[
    list[Annotated[str, StringConstraints(min_length=1)]],
    BeforeValidator(_split_args),
    Field(description="arguments added to the CLI's command line (a list, or one string split with shlex)"),
]


class CliAgentConfig(_Strict):
    """Fields shared by the agent CLI backends: one non-interactive run of the CLI per iteration.

    * ``executable``: the CLI's program, looked up on the ``PATH`` of the user (default: the
      CLI's own name);
    * ``model``: passed with the CLI's model flag; None lets the CLI choose;
    * ``extra_args``: appended to the command line (after loopwright's own flags); a flag that
      loopwright sets itself (the output format...) is refused, naming it;
    * ``env``: extra environment variables for the CLI (an API key's variable, a proxy...);
      names starting with ``LOOPWRIGHT_`` are loopwright's and refused;
    * ``timeout_seconds``: wall-clock seconds one run may take; the CLI's process tree is killed
      after it;
    * ``idle_timeout_seconds``: seconds the CLI may go without printing anything and without
      changing any file in the worktree before its process tree is ended (failure cause
      ``IDLE``, counted towards ``max_consecutive_failures``); default 900, 0 turns it off, a
      value not below ``timeout_seconds`` has no effect; a negative value is refused.
    """

    #: Flags loopwright passes itself and parses the result of; set per backend.
    managed_flags: ClassVar[frozenset[str]] = frozenset()

    executable: str = Field(min_length=1, description="the CLI's program name or path")
    model: str | None = Field(default=None, min_length=1, description="the model, as the CLI names it")
    extra_args: ExtraArgs = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")
    timeout_seconds: Seconds = 1800.0
    idle_timeout_seconds: IdleSeconds = DEFAULT_IDLE_TIMEOUT_SECONDS

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if _ENV_NAME.fullmatch(name) is None:
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, '_')")
            if name.upper().startswith(RESERVED_ENV_PREFIX):
                raise ValueError(
                    f"{name!r}: variables starting with {RESERVED_ENV_PREFIX} are set by loopwright; "
                    "remove it"
                )
        return value

    @field_validator("extra_args")
    @classmethod
    def _not_managed(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in cls.managed_flags:
                raise ValueError(
                    f"{flag!r} is set by loopwright for this backend (it reads the CLI's output in "
                    "the format it asks for); remove it, or use the field that sets it"
                )
        return value


class ClaudeCodeAgentConfig(CliAgentConfig):
    """Anthropic's Claude Code, run as ``claude -p --output-format stream-json --verbose``.

    ``permission_mode`` is Claude Code's ``--permission-mode``: ``acceptEdits`` (default: file
    edits are approved, other tools such as Bash are refused unless listed in
    ``allowed_tools``), ``bypassPermissions`` (every tool runs without asking: only in a
    sandbox you trust), ``default`` or ``plan`` (read-only: the loop makes no progress).
    ``allowed_tools`` are passed as ``--allowedTools`` (e.g. ``"Bash(pytest:*)"``);
    ``max_turns`` as ``--max-turns``.
    """

    managed_flags: ClassVar[frozenset[str]] = frozenset(
        {
            "-p",
            "--print",
            "--output-format",
            "--input-format",
            "--verbose",
            "--permission-mode",
            "--dangerously-skip-permissions",
            "--model",
            "--allowedTools",
            "--allowed-tools",
            "--max-turns",
            "--resume",
            "-r",
            "--continue",
            "-c",
            "--session-id",
        }
    )

    kind: Literal[AgentKind.CLAUDE_CODE] = AgentKind.CLAUDE_CODE
    executable: str = Field(default="claude", min_length=1)
    permission_mode: Literal["acceptEdits", "bypassPermissions", "default", "plan"] = "acceptEdits"
    allowed_tools: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, ge=1, le=10_000, strict=True)
    context_window_tokens: int = Field(
        default=200_000,
        ge=1_000,
        le=10_000_000,
        strict=True,
        description="the model's context window, tokens: the session's context use (percent) is its "
        "last turn's input tokens over this (issue 10.3, handoff_context_percent)",
    )


class CodexAgentConfig(CliAgentConfig):
    """OpenAI's Codex CLI, run as ``codex exec --json --sandbox <sandbox> -`` (prompt on stdin).

    ``sandbox`` is Codex's ``--sandbox``: ``workspace-write`` (default: it edits the worktree and
    runs commands there, without network), ``read-only`` (no edits: the loop makes no progress)
    or ``danger-full-access`` (no sandbox: only where you trust the agent fully). ``codex exec``
    never asks for approval.
    """

    managed_flags: ClassVar[frozenset[str]] = frozenset(
        {
            "exec",
            "--json",
            "--experimental-json",
            "--sandbox",
            "-s",
            "--model",
            "-m",
            "--full-auto",
            "--dangerously-bypass-approvals-and-sandbox",
            "resume",
        }
    )

    kind: Literal[AgentKind.CODEX] = AgentKind.CODEX
    executable: str = Field(default="codex", min_length=1)
    sandbox: Literal["workspace-write", "read-only", "danger-full-access"] = "workspace-write"


class GeminiAgentConfig(CliAgentConfig):
    """Google's Gemini CLI, run headless with ``--output-format stream-json`` (prompt on stdin).

    ``approval_mode`` is Gemini CLI's ``--approval-mode``: ``auto_edit`` (default: edits are
    approved, shell commands are not run), ``yolo`` (every tool runs without asking) or
    ``default``. ``output_format`` ``json`` asks for one JSON object at the end instead of the
    event stream (no live display of tool calls).
    """

    managed_flags: ClassVar[frozenset[str]] = frozenset(
        {
            "--output-format",
            "-o",
            "--approval-mode",
            "--yolo",
            "-y",
            "--model",
            "-m",
            "--prompt",
            "-p",
            "--prompt-interactive",
            "-i",
        }
    )

    kind: Literal[AgentKind.GEMINI] = AgentKind.GEMINI
    executable: str = Field(default="gemini", min_length=1)
    approval_mode: Literal["auto_edit", "yolo", "default"] = "auto_edit"
    output_format: Literal["stream-json", "json"] = "stream-json"


class AiderAgentConfig(CliAgentConfig):
    """aider, run as ``aider --message-file <prompt.md> --yes-always --no-auto-commits ...``.

    ``yes_always`` (default true) answers aider's confirmations (adding files, creating them);
    ``auto_commits`` (default false) lets aider commit its own edits: loopwright commits each
    iteration itself, so leave it off. aider's chat history files are kept in the loop's state
    folder, not in the worktree.
    """

    managed_flags: ClassVar[frozenset[str]] = frozenset(
        {
            "--message",
            "--msg",
            "-m",
            "--message-file",
            "-f",
            "--yes-always",
            "--auto-commits",
            "--no-auto-commits",
            "--model",
            "--pretty",
            "--no-pretty",
            "--input-history-file",
            "--chat-history-file",
        }
    )

    kind: Literal[AgentKind.AIDER] = AgentKind.AIDER
    executable: str = Field(default="aider", min_length=1)
    yes_always: bool = True
    auto_commits: bool = False


#: The agent kinds run as a CLI by the backends in :mod:`loopwright.adapters.local.agents`.
CLI_AGENT_KINDS = frozenset({AgentKind.CLAUDE_CODE, AgentKind.CODEX, AgentKind.GEMINI, AgentKind.AIDER})

AgentConfig = Annotated[
    CommandAgentConfig
    | PythonAgentConfig
    | RuntimeAgentConfig
    | ClaudeCodeAgentConfig
    | CodexAgentConfig
    | GeminiAgentConfig
    | AiderAgentConfig,
    Field(discriminator="kind"),
]
