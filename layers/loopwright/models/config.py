"""Loop configuration (seed 001 T012, T014): what the agent works on and the limits it works under.

A :class:`LoopConfig` is written as ``loopwright.toml`` / ``loopwright.yaml`` in the workspace
or passed in code, and every field can be overridden by a CLI flag. Unknown fields are
rejected (``extra="forbid"``) so a typo is an error naming the field, never a silent default.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal
from urllib.parse import urlsplit

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
#: A git URL: ``https://``, ``ssh://``, ``git://``, ``file://`` or scp-like ``user@host:path``.
_GIT_URL = re.compile(r"(?:(?:https?|ssh|git|file)://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)\S+")
#: A Secrets Manager secret's ARN (full, with the 6 random characters, or partial).
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}")
#: A user name git may send with a token (no ':' or newline: it is written into a credential answer).
_GIT_USERNAME = re.compile(r"[A-Za-z0-9._@+-]{1,256}")
#: A branch, tag or commit name that git cannot mistake for an option (no leading '-').
_GIT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,254}")
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


class RepositoryCredentials(_Strict):
    """The git credentials of a private repository: an HTTPS token stored in AWS Secrets Manager.

    Only the secret's ARN is part of the loop's config (and so of its state and status); the
    token is read by the Lambda that clones or pushes and handed to git in the loop's Code
    Interpreter session through a credential helper reading a file that exists only for the git
    call (:mod:`loopwright.adapters.aws.git_credentials`). The secret's value is the token itself,
    or JSON with a ``token`` key. The functions may read only the secrets the stack allows (CDK
    context ``loopwright:repositorySecretArns``).

    AWS CodeConnections connections are not accepted: CodeConnections has no API that returns git
    credentials to a caller (a connection is used by AWS services such as CodePipeline).
    """

    secret_arn: str = Field(description="ARN of the Secrets Manager secret holding the HTTPS token")
    username: str = Field(
        default="x-access-token",
        description="the user name git sends with the token (GitHub: x-access-token; GitLab: oauth2)",
    )

    @field_validator("secret_arn")
    @classmethod
    def _secret_arn(cls, value: str) -> str:
        if _SECRET_ARN.fullmatch(value) is None:
            raise ValueError(
                "must be the ARN of a Secrets Manager secret "
                "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            )
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if _GIT_USERNAME.fullmatch(value) is None:
            raise ValueError("must be 1 to 256 letters, digits or '.', '_', '@', '+', '-'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_connection(cls, data: object) -> object:
        if isinstance(data, dict) and "connection_arn" in data:
            raise ValueError(
                "connection_arn: AWS CodeConnections gives no API that returns git credentials to "
                "a caller outside AWS services; store an HTTPS token in AWS Secrets Manager and set "
                "secret_arn instead"
            )
        return data


class RepositoryConfig(_Strict):
    """The git repository a loop works on when it runs in AWS (``LOOPWRIGHT_ADAPTERS=aws``).

    The loop's Code Interpreter session clones ``url`` and starts the branch
    ``loopwright/<loop_id>`` from ``ref`` (a branch, tag or commit of the remote; default its
    default branch). With ``push``, that branch is pushed to ``url`` after every iteration's
    commit, so the work outlives the session (a Code Interpreter session lasts at most 8 hours);
    an agent in AgentCore Runtime needs it, since it works on its own clone. Locally the
    workspace folder is the repository and this is not used.

    ``url`` must not hold credentials (they would be stored with the loop's config and shown in
    its status): a private repository names its HTTPS token in AWS Secrets Manager under
    ``credentials`` (:class:`RepositoryCredentials`); only the secret's ARN is stored.
    """

    url: str = Field(
        max_length=2048, description="git URL: https://, ssh://, git://, file:// or user@host:path"
    )
    ref: str | None = Field(default=None, description="branch, tag or commit to start from")
    push: bool = Field(default=False, description="push the loop's branch to url after every commit")
    credentials: RepositoryCredentials | None = Field(
        default=None, description="where the HTTPS token of a private repository is (AWS Secrets Manager)"
    )

    @model_validator(mode="after")
    def _credentials_need_https(self) -> RepositoryConfig:
        if self.credentials is not None and not self.url.startswith("https://"):
            raise ValueError(
                f"credentials: an HTTPS token works only with an https:// URL; url is {self.url!r}"
            )
        return self

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
    ``max_iterations`` (count), ``token_budget`` (tokens reported by the agent),
    ``cost_budget_usd`` (US dollars: the agent's own figure, else its tokens priced by ``prices``
    and :data:`~loopwright.models.pricing.DEFAULT_PRICES`) and ``max_duration_seconds`` (seconds
    the loop's sessions ran; with ``count_paused_time`` wall clock from the loop's start). They
    are also hard limits while the agent runs (docs/hard-limits.md).
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
