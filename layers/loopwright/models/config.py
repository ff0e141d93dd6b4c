"""Loop configuration (seed 001 T012, T014): what the agent works on and the limits it works under.

A :class:`LoopConfig` is written as ``loopwright.toml`` / ``loopwright.yaml`` in the workspace
or passed in code, and every field can be overridden by a CLI flag. Unknown fields are
rejected (``extra="forbid"``) so a typo is an error naming the field, never a silent default.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loopwright.models.agent_config import (
    AgentConfig,
)
from loopwright.models.enums import AgentKind, ExitConditionType
from loopwright.models.types import MAX_TOKENS, Command, ProjectId, Seconds

#: Default per-tool timeout for exit-condition evaluation, seconds: 10 minutes, so a real test
#: suite (minutes, not seconds) is not cut off and reported as TIMEOUT. Seed 000's SC-002 (an
#: evaluation within 30 s) is a flag, not a limit: a slower condition is marked ``slow``
#: (``loopwright.steps.evaluate.SLOW_CONDITION_SECONDS``). A Lambda's 15 minutes still bound the
#: evaluate step on AWS.
DEFAULT_CONDITION_TIMEOUT_SECONDS = 600.0
#: Share of any limit at which a warning is raised, as a percentage (seed 000, SC-008: 80%).
DEFAULT_WARNING_THRESHOLD_PERCENT = 80
#: A git URL: ``https://``, ``ssh://``, ``git://``, ``file://`` or scp-like ``user@host:path``.
_GIT_URL = re.compile(r"(?:(?:https?|ssh|git|file)://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)\S+")
#: A branch, tag or commit name that git cannot mistake for an option (no leading '-').
_GIT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,254}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExitConditionConfig(_Strict):
    """One objective exit condition and how it is checked.

    ``command`` defaults by ``type`` (see :mod:`loopwright.conditions.defaults`); CUSTOM needs one.
    ``parser`` selects how output becomes a structured result; ``auto`` picks it by type.
    """

    type: ExitConditionType
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,63}$",
        description="unique name; defaults to the type in lower case",
    )
    command: Command | None = None
    timeout_seconds: Seconds = DEFAULT_CONDITION_TIMEOUT_SECONDS
    required: bool = Field(default=True, description="must hold for the loop to complete")
    parser: Literal["auto", "pytest", "ruff", "bandit", "compileall", "exit_code"] = "auto"
    max_output_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="bytes of stdout and of stderr kept",
    )

    @model_validator(mode="after")
    def _custom_needs_command(self) -> ExitConditionConfig:
        if self.type is ExitConditionType.CUSTOM and self.command is None:
            raise ValueError("a CUSTOM exit condition needs a 'command' (for example \"make check\")")
        return self

    @property
    def key(self) -> str:
        """The condition's name, or its type in lower case."""
        return self.name or self.type.value.lower()


class RepositoryConfig(_Strict):
    """The git repository a loop works on when it runs in AWS (``LOOPWRIGHT_ADAPTERS=aws``).

    The loop's Code Interpreter session clones ``url`` and starts the branch
    ``loopwright/<loop_id>`` from ``ref`` (a branch, tag or commit of the remote; default its
    default branch). With ``push``, that branch is pushed to ``url`` after every iteration's
    commit, so the work outlives the session (a Code Interpreter session lasts at most 8 hours);
    an agent in AgentCore Runtime needs it, since it works on its own clone. Locally the
    workspace folder is the repository and this is not used.

    ``url`` must not hold credentials (they would be stored with the loop's config and shown in
    its status): give the session access another way.
    """

    url: str = Field(
        max_length=2048, description="git URL: https://, ssh://, git://, file:// or user@host:path"
    )
    ref: str | None = Field(default=None, description="branch, tag or commit to start from")
    push: bool = Field(default=False, description="push the loop's branch to url after every commit")

    @field_validator("url")
    @classmethod
    def _git_url(cls, value: str) -> str:
        if _GIT_URL.fullmatch(value) is None:
            raise ValueError(
                "must be a git URL such as https://github.com/owner/repo.git or git@github.com:owner/repo.git"
            )
        if "://" in value:
            parts = urlsplit(value)
            if parts.password is not None or (parts.username is not None and parts.scheme.startswith("http")):
                raise ValueError(
                    "must not contain credentials (they would be stored with the loop's config); "
                    "remove the 'user:token@' part"
                )
        return value

    @field_validator("ref")
    @classmethod
    def _git_ref(cls, value: str | None) -> str | None:
        if value is not None and (_GIT_REF.fullmatch(value) is None or ".." in value):
            raise ValueError(
                "must be a branch, tag or commit name (letters, digits, '.', '_', '/', '+', '-'; "
                "not starting with '-', no '..')"
            )
        return value


class LoopConfig(_Strict):
    """Everything a loop needs to run, with the limits a human sets (seed 001 T014).

    Limits are enforced by the Cedar policies in ``policies/`` before every iteration:
    ``max_iterations`` (count), ``token_budget`` (tokens reported by the agent) and
    ``max_duration_seconds`` (wall clock from the loop's start, seconds).
    """

    goal: str = Field(min_length=1, max_length=20_000, description="what the agent must achieve")
    project: ProjectId = "default"
    exit_conditions: list[ExitConditionConfig] = Field(min_length=1, max_length=32)
    agent: AgentConfig | None = Field(
        default=None,
        description="the agent; may be omitted when a work_function is passed to run()",
    )
    max_iterations: int = Field(default=20, ge=1, le=100_000, strict=True)
    token_budget: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS, strict=True, description="tokens; None for no budget"
    )
    max_duration_seconds: int | None = Field(
        default=None, ge=1, le=30 * 86_400, strict=True, description="wall-clock seconds; None for no limit"
    )
    warning_threshold_percent: int = Field(
        default=DEFAULT_WARNING_THRESHOLD_PERCENT, ge=1, le=100, strict=True
    )
    checkpoint_interval: int = Field(default=1, ge=1, le=10_000, strict=True, description="iterations")
    checkpoint_retention: int = Field(
        default=5,
        ge=1,
        le=10_000,
        strict=True,
        description="checkpoints kept per loop; older ones are deleted",
    )
    parallel_conditions: bool = Field(default=True, description="evaluate exit conditions concurrently")
    git_isolation: bool = Field(
        default=True,
        description="work in a git worktree on branch loopwright/<loop_id> and commit each iteration",
    )
    max_failures_for_agent: int = Field(
        default=50,
        ge=1,
        le=10_000,
        strict=True,
        description="failures of the last evaluation handed to the agent",
    )
    repository: RepositoryConfig | None = Field(
        default=None,
        description="the git repository the loop clones and works on in AWS; not used locally",
    )
    isolation: Literal["none", "bubblewrap"] = Field(
        default="none",
        description="run the agent and the exit-condition commands under bubblewrap (bwrap): "
        "read-only filesystem, loopwright's state hidden, only the worktree and the loop's files "
        "writable, private /tmp and HOME; see loopwright.adapters.local.isolation",
    )
    isolation_network: bool = Field(
        default=True,
        description="with isolation 'bubblewrap': false runs the commands without network",
    )

    @model_validator(mode="after")
    def _isolation_applies(self) -> LoopConfig:
        if not self.isolation_network and self.isolation == "none":
            raise ValueError(
                'isolation_network: false needs isolation = "bubblewrap" (only a sandbox can run '
                "without network); set both, or remove isolation_network"
            )
        if self.isolation == "bubblewrap" and self.agent is not None and self.agent.kind is AgentKind.PYTHON:
            raise ValueError(
                "isolation: a python agent runs inside loopwright's process and cannot be isolated; "
                "give the agent as a command (agent.kind = 'command') or set isolation = \"none\""
            )
        return self

    @model_validator(mode="after")
    def _unique_condition_names(self) -> LoopConfig:
        seen: set[str] = set()
        for index, condition in enumerate(self.exit_conditions):
            if condition.key in seen:
                raise ValueError(
                    f"exit_conditions.{index}: name {condition.key!r} is used twice; "
                    "give each a unique 'name'"
                )
            seen.add(condition.key)
        return self
