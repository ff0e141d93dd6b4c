"""Loop configuration (seed 001 T012, T014): what the agent works on and the limits it works under.

A :class:`LoopConfig` is written as ``loopwright.toml`` / ``loopwright.yaml`` in the workspace
or passed in code, and every field can be overridden by a CLI flag. Unknown fields are
rejected (``extra="forbid"``) so a typo is an error naming the field, never a silent default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loopwright.models.enums import AgentKind, ExitConditionType
from loopwright.models.types import Command, ProjectId, Seconds

#: Default per-tool timeout for exit-condition evaluation, seconds (seed 000, SC-002).
DEFAULT_CONDITION_TIMEOUT_SECONDS = 30.0
#: Share of any limit at which a warning is raised, as a percentage (seed 000, SC-008: 80%).
DEFAULT_WARNING_THRESHOLD_PERCENT = 80


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


AgentConfig = Annotated[CommandAgentConfig | PythonAgentConfig, Field(discriminator="kind")]


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
    max_iterations: int = Field(default=20, ge=1, le=100_000)
    token_budget: int | None = Field(default=None, ge=1, description="tokens; None for no budget")
    max_duration_seconds: int | None = Field(
        default=None, ge=1, le=30 * 86_400, description="wall-clock seconds; None for no limit"
    )
    warning_threshold_percent: int = Field(default=DEFAULT_WARNING_THRESHOLD_PERCENT, ge=1, le=100)
    checkpoint_interval: int = Field(default=1, ge=1, le=10_000, description="iterations")
    checkpoint_retention: int = Field(
        default=5, ge=1, le=10_000, description="checkpoints kept per loop; older ones are deleted"
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
        description="failures of the last evaluation handed to the agent",
    )

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
