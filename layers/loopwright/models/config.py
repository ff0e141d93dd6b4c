"""Loop configuration (seed 001 T012, T014): what the agent works on and the limits it works under.

A :class:`LoopConfig` is written as ``loopwright.toml`` / ``loopwright.yaml`` in the workspace
or passed in code, and every field can be overridden by a CLI flag. Unknown fields are
rejected (``extra="forbid"``) so a typo is an error naming the field, never a silent default.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from loopwright.models.agent_config import (
    AgentConfig,
)
from loopwright.models.enums import AgentKind, ExitConditionType
from loopwright.models.pins import AllowTestChanges, PathGlob
from loopwright.models.pricing import ModelName, ModelPrice
from loopwright.models.repository import RepositoryConfig as RepositoryConfig  # re-exported
from loopwright.models.repository import RepositoryCredentials as RepositoryCredentials  # re-exported
from loopwright.models.schedule_expression import check_schedule_expression
from loopwright.models.types import MAX_TOKENS, Command, ProjectId, Seconds

#: Default per-tool timeout for exit-condition evaluation, seconds: 10 minutes, so a real test
#: suite (minutes, not seconds) is not cut off and reported as TIMEOUT. Seed 000's SC-002 (an
#: evaluation within 30 s) is a flag, not a limit: a slower condition is marked ``slow``
#: (``loopwright.steps.evaluate.SLOW_CONDITION_SECONDS``). A Lambda's 15 minutes still bound the
#: evaluate step on AWS.
DEFAULT_CONDITION_TIMEOUT_SECONDS = 600.0
#: Share of any limit at which a warning is raised, as a percentage (seed 000, SC-008: 80%).
DEFAULT_WARNING_THRESHOLD_PERCENT = 80
#: Largest cost budget accepted, US dollars. In micro-dollars (the Cedar unit) times 100 (the
#: warning's percentage) it stays far inside Cedar's 64-bit Long.
MAX_COST_BUDGET_USD = 1_000_000_000.0
#: Prefix of the variables loopwright sets itself (policy folder, process marker, agent files).
RESERVED_ENV_PREFIX = "LOOPWRIGHT_"


#: A recurring EventBridge Scheduler expression (LoopConfig.schedule).
ScheduleExpression = Annotated[
    str, StringConstraints(max_length=256), AfterValidator(check_schedule_expression)
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _env_name(name: str) -> str:
    if _ENV_NAME.fullmatch(name) is None:
        raise ValueError(
            f"{name!r} is not a variable name: use letters, digits and '_', not starting with a digit"
        )
    if name.upper().startswith(RESERVED_ENV_PREFIX):
        raise ValueError(
            f"{name!r}: variables starting with {RESERVED_ENV_PREFIX} are loopwright's own; "
            "choose another name"
        )
    return name


def _env_value(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a variable's value cannot contain a NUL character")
    return value


#: An environment variable name: a letter or '_', then letters, digits or '_' (POSIX).
EnvName = Annotated[str, AfterValidator(_env_name)]
#: An environment variable value: text without NUL, at most 32 KiB.
EnvValue = Annotated[str, StringConstraints(max_length=32_768), AfterValidator(_env_value)]
#: Variables (name -> value) merged over the user's environment for the loop's commands.
EnvVars = Annotated[
    dict[EnvName, EnvValue],
    Field(max_length=256, description="environment variables (name -> value) over the user's environment"),
]


def _relative_folder(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\x00" in value:
        raise ValueError(
            f"{value!r} must be a folder relative to the worktree without '..' (for example \"backend\")"
        )
    return path.as_posix()


#: A folder relative to the worktree that cannot leave it by its name (symbolic links are
#: checked when the command runs).
RelativeFolder = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_relative_folder)
]


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
    # The project's environment (issue 9): see loopwright.adapters.local.environment.
    env: EnvVars = Field(default_factory=dict)
    cwd: RelativeFolder | None = Field(
        default=None,
        description="folder the command runs in, relative to the worktree (default: the worktree)",
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


#: The largest feature list a loop takes.
MAX_FEATURES = 100


class FeatureConfig(_Strict):
    """One feature of a loop's ordered feature list (seed 002: "Load or create feature list").

    The loop works on one feature at a time, in list order; a feature is done when each of its
    required ``acceptance_conditions`` holds and every earlier feature still holds. Its
    conditions are evaluated with the loop's exit conditions, under the names
    ``<feature name>:<condition key>`` (see :mod:`loopwright.steps.features`).
    """

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$",
        description="unique name: letters, digits, ' ', '.', '_', '-' (at most 64)",
    )
    description: str = Field(
        min_length=1, max_length=20_000, description="what the feature is, for the agent"
    )
    acceptance_conditions: list[ExitConditionConfig] = Field(
        min_length=1, max_length=32, description="the conditions that hold when the feature is done"
    )

    @model_validator(mode="after")
    def _unique_condition_names(self) -> FeatureConfig:
        seen: set[str] = set()
        for index, condition in enumerate(self.acceptance_conditions):
            if condition.key in seen:
                raise ValueError(
                    f"acceptance_conditions.{index}: name {condition.key!r} is used twice in "
                    f"feature {self.name!r}; give each a unique 'name'"
                )
            seen.add(condition.key)
        return self


class LoopConfig(_Strict):
    """Everything a loop needs to run, with the limits a human sets (seed 001 T014).

    Limits are enforced by the Cedar policies in ``policies/`` before every iteration:
    ``max_iterations`` (count), ``token_budget`` (tokens reported by the agent),
    ``cost_budget_usd`` (US dollars: the agent's own figure, else its tokens priced by ``prices``
    and :data:`~loopwright.models.pricing.DEFAULT_PRICES`), ``max_duration_seconds`` (seconds
    the loop's sessions ran; with ``count_paused_time`` wall clock from the loop's start) and
    ``max_sessions`` (agent sessions started, policy ``session-limit``). They are also hard limits
    while the agent runs (docs/hard-limits.md). ``features`` is an ordered feature list
    (:class:`FeatureConfig`), see :mod:`loopwright.steps.features`; ``handoff_context_percent``
    and ``session_max_iterations`` say when an agent session is handed off, see
    :mod:`loopwright.sessions`.
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
    cost_budget_usd: float | None = Field(
        default=None,
        gt=0,
        le=MAX_COST_BUDGET_USD,
        allow_inf_nan=False,
        strict=True,
        description="US dollars the agent may spend; None for no budget",
    )
    prices: dict[ModelName, ModelPrice] = Field(
        default_factory=dict,
        max_length=1_000,
        description="US dollars per million tokens by model, added to or replacing the built-in "
        'table (loopwright.models.pricing), e.g. {"my-model": {"input": 3.0, "cached_input": 0.3, '
        '"output": 15.0}}',
    )
    max_duration_seconds: int | None = Field(
        default=None,
        ge=1,
        le=30 * 86_400,
        strict=True,
        description="seconds the loop may run (a deadline: an agent still running then is ended); "
        "time paused or waiting for a human does not count unless count_paused_time; None for no limit",
    )
    count_paused_time: bool = Field(
        default=False,
        strict=True,
        description="count time paused or waiting for a human against max_duration_seconds "
        "(default: only the time a session runs counts)",
    )
    warning_threshold_percent: int = Field(
        default=DEFAULT_WARNING_THRESHOLD_PERCENT, ge=1, le=100, strict=True
    )
    checkpoint_interval: int = Field(default=1, ge=1, le=10_000, strict=True, description="iterations")
    # Continuation on AWS (issue 12.8): see loopwright.cloud.continuation. Accepted and ignored
    # by the local engine (`loopwright run` has no scheduler; run it from cron instead).
    schedule: ScheduleExpression | None = Field(
        default=None,
        description='AWS only: a recurring EventBridge Scheduler expression, "rate(1 day)" or '
        '"cron(0 6 ? * MON-FRI *)" (UTC), that continues the loop when it is paused or ended at a '
        "limit; deleted when the loop meets its conditions or is stopped",
    )
    schedule_mode: Literal["continue"] = Field(
        default="continue",
        description="what a firing of `schedule` does: continue the loop from its stored state and "
        "checkpoint (the only mode so far)",
    )
    checkpoint_retention: int = Field(
        default=5,
        ge=1,
        le=10_000,
        strict=True,
        description="checkpoints kept per loop; older ones are deleted",
    )
    parallel_conditions: bool = Field(default=True, description="evaluate exit conditions concurrently")
    evaluation_cache: bool = Field(
        default=True,
        strict=True,
        description="reuse an exit condition's result when the worktree is clean and its tree "
        "(git tree hash) was evaluated before with the same condition definition (docs/time-travel.md)",
    )
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
    max_consecutive_failures: int = Field(
        default=5,
        ge=1,
        le=10_000,
        strict=True,
        description="agent iterations in a row that may fail (crash, timeout, idle, rate limit, "
        "provider outage) before Cedar's 'consecutive-failures' policy stops the loop "
        "(outcome AGENT_FAILING)",
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
    # Where the loop's branch starts (issue 9, point 5); see docs/workspace.md.
    start_from: Literal["working-tree", "head"] = Field(
        default="working-tree",
        description="with git_isolation: 'working-tree' starts the loop's branch from a snapshot "
        "commit of your working tree (uncommitted and untracked, not ignored files; files that look "
        "like secrets left out), 'head' from your last commit (HEAD)",
    )

    # The project's environment (issue 9): see loopwright.adapters.local.project_env. Local only.
    python: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        pattern=r"^[^\x00]+$",
        description="the project's interpreter (a path, relative to the workspace); default: "
        "detected (.venv, uv, PDM, Poetry, Hatch, else the first python3 on PATH)",
    )
    env: EnvVars = Field(default_factory=dict)
    # What happens when the loop meets its conditions (issue 15, part 4). Local engine only.
    on_complete: Literal["none", "pr"] = Field(
        default="none",
        description="'pr': when the loop ends with CONDITIONS_MET, `loopwright run`/`resume` push "
        "its branch to the remote 'origin' and open a pull request into the branch checked out in "
        "the workspace, like `loopwright pr LOOP_ID` (docs/pull-requests.md); 'none': nothing",
    )

    # Pinned checks (issue 15.1): see loopwright.pinning and docs/pinned-checks.md.
    protected_paths: list[PathGlob] = Field(
        default_factory=list,
        max_length=256,
        description="paths or globs (relative to the repository) pinned besides the exit "
        "conditions' files: an iteration that changes one is reverted and waits for a human",
    )
    allow_test_changes: AllowTestChanges = Field(
        default=False,
        description="true: the agent may change the test files and the test runner's "
        "configuration (a goal about the tests); a list of paths or globs: it may change those "
        "pinned files only",
    )

    # Feature lists (issue 10.2): see loopwright.steps.features and docs/features-and-sessions.md.
    features: list[FeatureConfig] = Field(
        default_factory=list,
        max_length=MAX_FEATURES,
        description="ordered features, each with its own acceptance conditions; the loop works on "
        "one at a time and completes when all are done and gate:all passes (or give them in "
        "features.json / features.toml in the repository)",
    )
    # Agent sessions and handoff (issue 10.3): see loopwright.sessions.
    max_sessions: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        strict=True,
        description="agent sessions the loop may start (Cedar: policy 'session-limit'); None for no limit",
    )
    handoff_context_percent: int = Field(
        default=80,
        ge=1,
        le=100,
        strict=True,
        description="an agent session whose reported context use reaches this share of its window "
        "(percent) is handed off: the next iteration starts a fresh session with a summary",
    )
    session_max_iterations: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        strict=True,
        description="iterations one agent session may run before a handoff; None for no limit",
    )

    # Loop intelligence (issue 10, points 1, 4, 5): see docs/loop-intelligence.md.
    progress_history_iterations: int = Field(
        default=5,
        ge=0,
        le=20,
        strict=True,
        description="recent iterations summarised in each prompt (summary, files, failing trend)",
    )
    max_stuck_iterations: int | None = Field(
        default=3,
        ge=1,
        le=10_000,
        strict=True,
        description="iterations in a row without a change, or with the same failures, after which "
        "Cedar's 'stuck-no-progress' policy pauses the loop for a human ('stuck-oscillation' "
        "pauses it when an iteration brings back an earlier tree); false (TOML) or None turns "
        "both off",
    )
    on_regression: Literal["keep", "revert"] = Field(
        default="keep",
        description="'revert': an iteration that leaves more required conditions failing than the "
        "best evaluation so far is reverted to that evaluation's commit (kept on a ref) and the "
        "agent is told what it broke; 'keep': it stays",
    )

    @field_validator("max_stuck_iterations", mode="before")
    @classmethod
    def _stuck_detection_off(cls, value: object) -> object:
        """``false`` turns stuck detection off (TOML has no null); ``true`` is refused."""
        return None if value is False else value

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

    @model_validator(mode="after")
    def _unique_feature_names(self) -> LoopConfig:
        seen: set[str] = set()
        conditions = {c.key for c in self.exit_conditions}
        for index, feature in enumerate(self.features):
            if feature.name in seen:
                raise ValueError(
                    f"features.{index}.name: {feature.name!r} is used twice; give each feature a unique name"
                )
            seen.add(feature.name)
            clash = sorted(conditions & {f"{feature.name}:{c.key}" for c in feature.acceptance_conditions})
            if clash:
                raise ValueError(
                    f"features.{index}: its condition {clash[0]!r} has the name of an exit condition; "
                    "rename one of them"
                )
        return self
