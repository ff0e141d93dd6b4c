"""The command agent: any command line, run in the worktree once per iteration.

Any CLI coding agent plugs in this way. What the agent needs reaches it two ways:

Files (in ``<state_dir>/loops/<loop_id>/``, outside the worktree, so they are never committed):
  * ``prompt.md``: the goal, iteration and limits, policy warnings and the failures of the last
    evaluation, as a prompt for a model.
  * ``failures.json``: ``{"failing_conditions": [name], "failures": [line],
    "conditions": [ExitConditionStatus without stdout/stderr], "warnings": [text]}``.
  * ``report.json``: the agent may write ``{"tokens_used": int, "summary": str,
    "needs_human": str | null, "usage_limit_resets_at": ISO 8601 | null, "cost_usd": float |
    null, "model": str | null, "failure_cause": "RATE_LIMIT" | "PROVIDER_OUTAGE" |
    "AUTHENTICATION" | "CRASH" | "IDLE" | ... | null, "retry_after_seconds": float | null,
    "context_percent": float | null, "handoff": str | null}``
    here (``failure_cause``: why it did no work, see ``docs/failure-causes.md``;
    ``context_percent`` and ``handoff``: an agent with sessions says how full its context is, or
    asks for a fresh session, see ``docs/features-and-sessions.md``);
    ``tokens_used`` is accounted against the token budget,
    ``cost_usd`` (US dollars) against the cost budget (without it, the tokens are priced by
    ``model``: :mod:`loopwright.models.pricing`), ``needs_human`` asks a human (the loop waits for
    ``loopwright approve``), ``usage_limit_resets_at`` says the model provider's usage limit was
    hit (the loop pauses until then instead of failing). It must be a regular file of at most
    1 MiB (a symbolic link there is refused, never followed).

Environment variables: ``LOOPWRIGHT_LOOP_ID``, ``LOOPWRIGHT_ITERATION``,
``LOOPWRIGHT_MAX_ITERATIONS``, ``LOOPWRIGHT_GOAL``, ``LOOPWRIGHT_WORKSPACE`` (the worktree),
``LOOPWRIGHT_PROMPT_FILE``, ``LOOPWRIGHT_FAILURES_FILE``, ``LOOPWRIGHT_REPORT_FILE``,
``LOOPWRIGHT_NOTES_FILE`` (``progress.md``: notes the agent may append to, kept across
iterations and resumes, see docs/loop-intelligence.md), ``LOOPWRIGHT_TOKENS_USED``,
``LOOPWRIGHT_TOKEN_BUDGET`` (empty when there is none).

In the command, ``{prompt}`` (the prompt's text), ``{prompt_file}``, ``{failures_file}``,
``{report_file}``, ``{iteration}`` and ``{loop_id}`` are replaced inside each argument (plain text
replacement; no shell ever runs). One argument is limited to 128 KiB on Linux
(``MAX_ARG_STRLEN``): for long prompts prefer ``{prompt_file}``.
A non-zero exit code marks the iteration's agent as failed; the loop goes on. A run past
``timeout_seconds`` is ended (failure cause ``TIMEOUT``), and so is a run that printed nothing and
changed no file in the worktree for ``idle_timeout_seconds`` (``IDLE``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright.adapters.local.hard_limits import RunLimits, ended_summary
from loopwright.adapters.local.safe_files import (
    UnsafeFileError,
    open_folder,
    read_file_at,
    remove_at,
    write_file_at,
)
from loopwright.models import AgentFailureCause, AgentRequest, AgentResult, CommandAgentConfig
from loopwright.models.types import TokenCount
from loopwright.ports import Agent, OutputCallback, Sandbox, StopCheck
from loopwright.steps.progress import bounded_notes
from loopwright.steps.prompt import (
    AGENT_FILES_FOLDER,
    NOTES_FILE_ENV,
    NOTES_FILE_NAME,
    REPORT_FILE_ENV,
    REPORT_FILE_NAME,
    render_prompt,
)

#: Names of the agent's files in ``<state_dir>/loops/<loop_id>/``.
PROMPT_FILE = "prompt.md"
FAILURES_FILE = "failures.json"
REPORT_FILE = REPORT_FILE_NAME
NOTES_FILE = NOTES_FILE_NAME
#: Largest report.json read, bytes.
MAX_REPORT_BYTES = 1024 * 1024


#: The agent's loop id in its environment; a ``loopwright`` command that carries it acts as that
#: loop's agent (:func:`loopwright.engine.local_controls.local_caller`).
LOOP_ID_ENV = "LOOPWRIGHT_LOOP_ID"


class AgentReport(BaseModel):
    """The optional ``report.json`` a command agent writes."""

    model_config = ConfigDict(extra="ignore")

    tokens_used: TokenCount = 0
    summary: str = ""
    needs_human: str | None = None
    usage_limit_resets_at: datetime | None = None
    cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="US dollars")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    failure_cause: AgentFailureCause | None = Field(
        default=None, description="why the agent did no work (AgentFailureCause value), issue 15.3"
    )
    retry_after_seconds: float | None = Field(default=None, ge=0, le=86_400, allow_inf_nan=False)
    context_percent: float | None = Field(
        default=None, ge=0, le=1000, allow_inf_nan=False, description="context window use, percent"
    )
    handoff: str | None = Field(default=None, max_length=2000, description="why a fresh session is wanted")


def write_agent_files(request: AgentRequest) -> dict[str, Path]:
    """Write prompt.md and failures.json for ``request``; remove a stale report.json.

    The folder is writable by the agent, so nothing it planted there is followed: each file is
    written as a new file renamed over the name (a symbolic link in its place is replaced, never
    written through), and the folder itself is opened without following a link
    (:mod:`loopwright.adapters.local.safe_files`).

    ``progress.md`` is written with the notes the loop kept (``request.notes``), so the agent
    finds them even on another machine or after a resume; :func:`read_notes` reads it back.

    Returns the paths by key: ``prompt_file``, ``failures_file``, ``report_file``, ``notes_file``.
    """
    loops = Path(request.state_dir) / AGENT_FILES_FOLDER
    folder = loops / request.loop_id
    paths = {
        "prompt_file": folder / PROMPT_FILE,
        "failures_file": folder / FAILURES_FILE,
        "report_file": folder / REPORT_FILE,
        "notes_file": folder / NOTES_FILE,
    }
    failures = {
        "failing_conditions": request.failing_conditions,
        "failures": request.failures,
        "conditions": request.conditions,
        "warnings": request.warnings,
    }
    with open_folder(folder, trusted=loops) as fd:
        write_file_at(fd, PROMPT_FILE, render_prompt(request).encode("utf-8"))
        write_file_at(fd, FAILURES_FILE, json.dumps(failures, indent=2).encode("utf-8"))
        remove_at(fd, REPORT_FILE)
        write_file_at(fd, NOTES_FILE, request.notes.encode("utf-8"))
    return paths


def agent_environment(request: AgentRequest, paths: dict[str, Path]) -> dict[str, str]:
    """The ``LOOPWRIGHT_*`` variables every agent run as a process gets (see the module
    docstring); ``paths`` as returned by :func:`write_agent_files`."""
    return {
        LOOP_ID_ENV: request.loop_id,
        "LOOPWRIGHT_ITERATION": str(request.iteration),
        "LOOPWRIGHT_MAX_ITERATIONS": str(request.max_iterations),
        "LOOPWRIGHT_GOAL": request.goal,
        "LOOPWRIGHT_WORKSPACE": request.worktree,
        "LOOPWRIGHT_PROMPT_FILE": str(paths["prompt_file"]),
        "LOOPWRIGHT_FAILURES_FILE": str(paths["failures_file"]),
        REPORT_FILE_ENV: str(paths["report_file"]),
        NOTES_FILE_ENV: str(paths["notes_file"]),
        "LOOPWRIGHT_TOKENS_USED": str(request.tokens_used),
        "LOOPWRIGHT_TOKEN_BUDGET": str(request.token_budget or ""),
    }


def read_report(path: Path) -> tuple[AgentReport | None, str | None]:
    """Parse the agent's report file: (report, None), (None, None) if absent, (None, error).

    Only a regular file of at most :data:`MAX_REPORT_BYTES` is read: a symbolic link, FIFO or
    device planted in its place is an invalid report, never followed or opened for reading.
    """
    try:
        with open_folder(path.parent, trusted=path.parent.parent, create=False) as fd:
            data = read_file_at(fd, path.name, MAX_REPORT_BYTES)
    except FileNotFoundError:
        return None, None
    except UnsafeFileError as exc:
        return None, f"invalid agent report {path.name}: {exc}"
    except OSError as exc:
        return None, f"invalid agent report {path.name}: cannot read it ({exc.strerror or exc})"
    try:
        return AgentReport.model_validate_json(data), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "report"
        return None, f"invalid agent report {path.name}: {where}: {first['msg']}"


def read_notes(path: Path) -> str | None:
    """The agent's progress notes after its run: the text of ``path`` (its newest
    :data:`~loopwright.models.progress.MAX_NOTES_BYTES` when longer, undecodable bytes replaced);
    None when it cannot be read (gone, or not a regular file: a link planted there is not
    followed), and the loop keeps the notes it had."""
    try:
        with open_folder(path.parent, trusted=path.parent.parent, create=False) as fd:
            data = read_file_at(fd, path.name, MAX_REPORT_BYTES)
    except (OSError, UnsafeFileError):
        return None
    return bounded_notes(data.decode("utf-8", errors="replace"))


def _substitute(arg: str, values: dict[str, str]) -> str:
    """``arg`` with each placeholder replaced, in one pass: a value (the prompt's text may hold
    ``{loop_id}``) is never itself searched for placeholders."""
    pattern = re.compile("|".join(re.escape(key) for key in values))
    return pattern.sub(lambda match: values[match.group(0)], arg)


def timeout_summary(timeout_seconds: float, left_running: list[str]) -> str:
    """What an agent's timeout did to its processes, as they are now."""
    if not left_running:
        return f"agent timed out after {timeout_seconds:g} s; its process tree was killed"
    return (
        f"agent timed out after {timeout_seconds:g} s; {len(left_running)} of its processes "
        f"could not be ended: {'; '.join(left_running[:5])}"
    )


def idle_summary(idle_seconds: float, left_running: list[str]) -> str:
    """What ending an idle agent (no output, no file change for ``idle_seconds``) did to its
    processes, as they are now."""
    said = f"agent idle for {idle_seconds:g} s (no output, no file change in the worktree)"
    if not left_running:
        return f"{said}; its process tree was ended"
    return f"{said}; {len(left_running)} of its processes could not be ended: {'; '.join(left_running[:5])}"


def stopped_cause(timed_out: bool, idle: bool) -> AgentFailureCause | None:
    """The failure cause of a run the sandbox stopped: TIMEOUT, IDLE, or None (not stopped)."""
    if timed_out:
        return AgentFailureCause.TIMEOUT
    return AgentFailureCause.IDLE if idle else None


class CommandAgent(Agent):
    """Runs :class:`CommandAgentConfig` ``command`` in the worktree through a :class:`Sandbox`."""

    def __init__(self, config: CommandAgentConfig, sandbox: Sandbox) -> None:
        self._config = config
        self._sandbox = sandbox

    def required_programs(self) -> list[str]:
        """The command's executable (``command[0]``)."""
        return [self._config.command[0]]

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        paths = write_agent_files(request)
        values = {
            "{prompt}": render_prompt(request),
            "{prompt_file}": str(paths["prompt_file"]),
            "{failures_file}": str(paths["failures_file"]),
            "{report_file}": str(paths["report_file"]),
            "{iteration}": str(request.iteration),
            "{loop_id}": request.loop_id,
        }
        argv = [_substitute(arg, values) for arg in self._config.command]
        env = agent_environment(request, paths)
        limits = RunLimits(request, self._config.timeout_seconds, should_stop)
        outcome = self._sandbox.run(
            argv,
            cwd=Path(request.worktree),
            timeout_seconds=limits.timeout_seconds,
            env=env,
            on_output=on_output,
            idle_timeout_seconds=self._config.idle_timeout_seconds or None,
            should_stop=limits.check if limits.watches else None,
        )
        ended_by = limits.ended_by(outcome)
        report, report_error = read_report(paths["report_file"])
        notes = read_notes(paths["notes_file"])
        output = (outcome.stdout + ("\n" + outcome.stderr if outcome.stderr else "")).strip()
        if ended_by is not None:
            summary = ended_summary(ended_by, request, outcome.left_running)
        elif outcome.error:
            summary = outcome.error
        elif outcome.timed_out:
            summary = timeout_summary(self._config.timeout_seconds, outcome.left_running)
        elif outcome.idle:
            summary = idle_summary(self._config.idle_timeout_seconds, outcome.left_running)
        elif report_error:
            summary = report_error
        elif report and report.summary:
            summary = report.summary
        else:
            summary = output.splitlines()[-1] if output else ""
        stopped = outcome.timed_out or outcome.idle or outcome.stopped
        failed = ended_by is None and bool(outcome.error or stopped or report_error or outcome.exit_code != 0)
        if failed and outcome.exit_code not in (None, 0):
            summary = f"agent exited with code {outcome.exit_code}: {summary}"
        if outcome.left_running and not stopped:
            summary += f" ({len(outcome.left_running)} of its processes could not be ended)"
        return AgentResult(
            tokens_used=report.tokens_used if report else 0,
            summary=summary,
            exit_code=outcome.exit_code,
            failed=failed,
            needs_human=report.needs_human if report else None,
            usage_limit_resets_at=report.usage_limit_resets_at if report else None,
            failure_cause=None
            if ended_by is not None
            else stopped_cause(outcome.timed_out, outcome.idle) or (report.failure_cause if report else None),
            retry_after_seconds=report.retry_after_seconds if report else None,
            cost_usd=report.cost_usd if report else None,
            model=report.model if report else None,
            context_percent=report.context_percent if report else None,
            handoff_requested=report.handoff if report else None,
            notes=notes,
            output=output[-4000:],
            ended_by=ended_by,
        )
