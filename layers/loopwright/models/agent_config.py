"""Agent configurations: how a loop runs its agent (``[agent]`` in ``loopwright.toml``).

One model per :class:`~loopwright.models.enums.AgentKind`, told apart by ``kind``
(:data:`AgentConfig`). Unknown fields are rejected, like the rest of the loop's config.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loopwright.models.enums import AgentKind
from loopwright.models.types import Command, Seconds

#: Longest an agent may work in one iteration on AWS, seconds: the iterate Lambda's 900 s (Lambda's
#: 15-minute maximum timeout, AWS Lambda quotas) minus 60 s for the workspace's commit and push and
#: the state write.
MAX_AWS_AGENT_TIMEOUT_SECONDS = 840.0
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

    ``{prompt_file}``, ``{iteration}`` and ``{loop_id}`` inside an argument are replaced by their
    values (plain text replacement, no shell). The same values reach the agent as ``LOOPWRIGHT_*``
    environment variables; see :mod:`loopwright.adapters.local.command_agent`.
    """

    kind: Literal[AgentKind.COMMAND] = AgentKind.COMMAND
    command: Command
    timeout_seconds: Seconds = 1800.0


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


AgentConfig = Annotated[
    CommandAgentConfig | PythonAgentConfig | RuntimeAgentConfig, Field(discriminator="kind")
]
