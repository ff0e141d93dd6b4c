"""The shared base of the agent CLI backends: one non-interactive run of a CLI per iteration.

A backend (:mod:`.claude_code`, :mod:`.codex`, :mod:`.gemini`, :mod:`.aider`) says how its CLI is
invoked (:meth:`CliAgent.invocation`: argv, and the prompt on stdin where the CLI reads it, which
avoids argv length limits) and how its output is read (a :class:`OutputParser`). This base does
the rest, the same way for every CLI:

1. writes the command agent's files (``prompt.md``, ``failures.json``, a fresh ``report.json``
   slot: :func:`~loopwright.adapters.local.command_agent.write_agent_files`) and gives the CLI
   the same ``LOOPWRIGHT_*`` environment, plus the config's ``env``;
2. runs the CLI in the worktree through the :class:`~loopwright.ports.Sandbox`, feeding each
   complete output line to the parser as it comes (so nothing is lost to the sandbox's bounded
   output) and showing the parser's readable lines (assistant text, ``[tool] Edit src/x.py``)
   to ``on_output`` instead of raw JSON; the run is ended past ``timeout_seconds`` (failure
   cause ``TIMEOUT``) or after ``idle_timeout_seconds`` without output nor file change (``IDLE``);
3. builds the :class:`~loopwright.models.AgentResult` (:func:`build_result`): tokens and dollars
   as the CLI reported them, model, session, the final text as summary, the raw output's tail;
   a usage limit pauses the loop (``usage_limit_resets_at``, :data:`~.limits.DEFAULT_USAGE_LIMIT_WAIT`
   from now when the CLI gives no time); malformed output, a non-zero exit or an error the CLI
   reports is a failed iteration whose summary names the CLI and what went wrong. A
   ``report.json`` the agent wrote still counts: its ``needs_human`` asks a human, its
   ``summary`` wins over the final text, its ``tokens_used`` is used when the CLI reported none.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from loopwright.adapters.local.agents.limits import DEFAULT_USAGE_LIMIT_WAIT, error_cause, retry_after_seconds
from loopwright.adapters.local.command_agent import (
    AgentReport,
    agent_environment,
    idle_summary,
    read_notes,
    read_report,
    stopped_cause,
    timeout_summary,
    write_agent_files,
)
from loopwright.adapters.local.hard_limits import RunLimits, UsageSoFar, ended_result
from loopwright.models import (
    TRANSIENT_FAILURE_CAUSES,
    AgentFailureCause,
    AgentRequest,
    AgentResult,
    CliAgentConfig,
    CommandResult,
)
from loopwright.models.types import MAX_TOKENS
from loopwright.ports import Agent, OutputCallback, Sandbox, StopCheck

#: Characters of the raw output kept in :attr:`AgentResult.output` (its tail), like the command agent.
MAX_OUTPUT_CHARS = 4000
#: Characters of the agent's final text kept as the summary.
MAX_SUMMARY_CHARS = 1000
#: Longest output line handed to a parser, characters (a longer one is cut; JSON in it is lost).
MAX_LINE_CHARS = 4 * 1024 * 1024

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def shorten(text: str, limit: int = MAX_SUMMARY_CHARS) -> str:
    """``text`` stripped, cut to ``limit`` characters with an ellipsis when longer."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def first_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of ``text``, shortened to ``limit`` characters."""
    for line in text.splitlines():
        if line.strip():
            return shorten(line, limit)
    return ""


#: The keys of a tool's input that best name what it works on, in order of preference.
_TOOL_TARGET_KEYS = (
    "file_path",
    "absolute_path",
    "path",
    "notebook_path",
    "command",
    "pattern",
    "url",
    "description",
)


def tool_target(arguments: object) -> str:
    """A short text for what a tool call works on (its path, command or pattern), or ''."""
    if not isinstance(arguments, dict):
        return ""
    for key in _TOOL_TARGET_KEYS:
        value = arguments.get(key)
        if isinstance(value, str) and value.strip():
            return first_line(value, 120)
    return ""


class Invocation(BaseModel):
    """How a CLI is started: ``argv`` (never through a shell) and what is written to its stdin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: list[str] = Field(min_length=1)
    stdin: str | None = None


class CliReport(BaseModel):
    """What a parser read from one run of a CLI.

    Tokens: ``input_tokens`` counts all input, cached included; ``cached_input_tokens`` the part
    read from a cache; ``total_tokens`` the CLI's own total when it gives one (else input +
    output). ``finished``: the CLI's final record (result line, turn end, usage line) was seen.
    ``malformed``: what was missing or unreadable, for the summary. ``usage_limit``: the error
    is a usage or rate limit, lifting at ``resets_at`` (None: not said).
    """

    model_config = ConfigDict(extra="forbid")

    finished: bool = False
    input_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    total_tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    model: str | None = None
    session_id: str | None = None
    final_text: str = ""
    error: str | None = None
    usage_limit: bool = False
    resets_at: datetime | None = None
    malformed: str | None = None
    context_tokens: int | None = Field(
        default=None, ge=0, description="tokens in the session's context at its last turn (None: unknown)"
    )

    @property
    def tokens_used(self) -> int:
        """What counts against the token budget: the CLI's total, else input + output."""
        total = self.total_tokens if self.total_tokens is not None else self.input_tokens + self.output_tokens
        return min(total, MAX_TOKENS)


class OutputParser(ABC):
    """Reads one run's output line by line (both streams), as it is produced.

    :meth:`feed` must never raise: it is called on the sandbox's reader threads, one line at a
    time (the caller serializes the calls).
    """

    def __init__(self, now: Clock = utc_now) -> None:
        self.now = now

    @abstractmethod
    def feed(self, stream: str, line: str) -> list[str]:
        """Take one complete line (without its newline) of ``stream`` (``stdout``/``stderr``);
        returns the readable lines to show for it (none to hide it)."""

    @abstractmethod
    def finish(self, exit_code: int | None) -> CliReport:
        """What the whole run reported, once the CLI has exited (``exit_code`` None: it did not)."""

    def usage_so_far(self) -> UsageSoFar | None:
        """The usage the CLI has reported so far while it runs (checked against the budgets,
        :mod:`loopwright.adapters.local.hard_limits`); None: nothing yet, or a CLI that does not
        stream its usage (the default)."""
        return None


class JsonLinesParser(OutputParser):
    """An :class:`OutputParser` for a CLI that prints one JSON object per stdout line (JSONL):
    stderr and stdout lines that are not JSON are shown as they are, a JSON value that is not an
    object is hidden, and each object goes to :meth:`on_event` (``json_lines`` counts them)."""

    def __init__(self, now: Clock = utc_now) -> None:
        super().__init__(now)
        self.json_lines = 0

    def feed(self, stream: str, line: str) -> list[str]:
        if stream != "stdout":
            return [line] if line.strip() else []
        try:
            event = json.loads(line)
        except ValueError:
            return [line] if line.strip() else []
        if not isinstance(event, dict):
            return []
        self.json_lines += 1
        return self.on_event(event)

    @abstractmethod
    def on_event(self, event: dict[str, Any]) -> list[str]:
        """Take one JSON object of the output; returns the readable lines to show for it."""


class LineTap:
    """An :data:`OutputCallback` that splits each stream's chunks into lines, feeds them to a
    parser and passes the parser's readable lines on to ``on_output``."""

    def __init__(self, parser: OutputParser, on_output: OutputCallback | None) -> None:
        self._parser = parser
        self._on_output = on_output
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()
        self.saw_output = False

    def __call__(self, stream: str, text: str) -> None:
        with self._lock:
            self.saw_output = True
            buffered = self._partial.get(stream, "") + text
            *lines, rest = buffered.split("\n")
            self._partial[stream] = rest[-MAX_LINE_CHARS:]
            for line in lines:
                self._line(stream, line)

    def usage_so_far(self) -> UsageSoFar | None:
        """The parser's :meth:`OutputParser.usage_so_far`, read under the tap's lock."""
        with self._lock:
            return self._parser.usage_so_far()

    def close(self) -> None:
        """Feed what is left of each stream (a last line without a newline)."""
        with self._lock:
            for stream, rest in list(self._partial.items()):
                if rest:
                    self._line(stream, rest)
            self._partial.clear()

    def _line(self, stream: str, line: str) -> None:
        shown = self._parser.feed(stream, line.rstrip("\r")[:MAX_LINE_CHARS])
        if shown and self._on_output is not None:
            # The port ignores what a display raises; here it must not stop the parser either.
            with contextlib.suppress(Exception):
                self._on_output(stream, "".join(f"{text}\n" for text in shown))


ConfigT = TypeVar("ConfigT", bound=CliAgentConfig)


class CliAgent(Agent, Generic[ConfigT]):
    """An agent CLI run once per iteration via the :class:`Sandbox` (see the module docstring);
    ``ConfigT`` is the backend's config model."""

    #: The backend's name in summaries (the agent kind: ``claude-code``...).
    name: str = "cli"

    def __init__(self, config: ConfigT, sandbox: Sandbox, *, now: Clock = utc_now) -> None:
        self._config: ConfigT = config
        self._sandbox = sandbox
        self._now = now

    @property
    def config(self) -> ConfigT:
        """The backend's config."""
        return self._config

    def required_programs(self) -> list[str]:
        """The CLI's executable (``executable`` in the config), for preflight."""
        return [self._config.executable]

    @abstractmethod
    def invocation(self, request: AgentRequest, prompt: str, paths: dict[str, Path]) -> Invocation:
        """How to run the CLI for ``request``; ``prompt`` is the rendered prompt, ``paths`` the
        agent's files (``prompt_file``, ``failures_file``, ``report_file``)."""

    @abstractmethod
    def parser(self) -> OutputParser:
        """A fresh parser for one run's output."""

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        """One run of the CLI in ``request.worktree``; see the module docstring for the result."""
        paths = write_agent_files(request)
        prompt = paths["prompt_file"].read_text(encoding="utf-8")
        invocation = self.invocation(request, prompt, paths)
        parser = self.parser()
        tap = LineTap(parser, on_output)
        limits = RunLimits(
            request, self._config.timeout_seconds, should_stop, tap.usage_so_far, model=self._config.model
        )
        outcome = self._sandbox.run(
            invocation.argv,
            cwd=Path(request.worktree),
            timeout_seconds=limits.timeout_seconds,
            env={**agent_environment(request, paths), **self._config.env},
            stdin=invocation.stdin,
            on_output=tap,
            idle_timeout_seconds=self._config.idle_timeout_seconds or None,
            should_stop=limits.check if limits.watches else None,
        )
        tap.close()
        if not tap.saw_output:  # a sandbox that does not stream: read what it kept
            for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
                for line in text.splitlines():
                    parser.feed(stream, line)
        report, report_error = read_report(paths["report_file"])
        result = build_result(
            self.name,
            outcome,
            parser.finish(outcome.exit_code),
            report,
            report_error,
            timeout_seconds=self._config.timeout_seconds,
            idle_timeout_seconds=self._config.idle_timeout_seconds,
            model=self._config.model,
            now=self._now(),
            context_window_tokens=self.context_window_tokens(),
        )
        result.notes = read_notes(paths["notes_file"])
        ended_by = limits.ended_by(outcome)
        return (
            result
            if ended_by is None
            else ended_result(result, ended_by, request, outcome, parser.usage_so_far())
        )

    def context_window_tokens(self) -> int | None:
        """The model's context window in tokens, for the session's context use; None: unknown."""
        return None


def _raw_tail(outcome: CommandResult) -> str:
    output = (outcome.stdout + ("\n" + outcome.stderr if outcome.stderr else "")).strip()
    return output[-MAX_OUTPUT_CHARS:]


def build_result(
    name: str,
    outcome: CommandResult,
    parsed: CliReport,
    report: AgentReport | None,
    report_error: str | None,
    *,
    timeout_seconds: float,
    model: str | None,
    now: datetime,
    idle_timeout_seconds: float = 0.0,
    context_window_tokens: int | None = None,
) -> AgentResult:
    """The :class:`AgentResult` of one CLI run (rules in the module docstring).

    ``name`` is the backend's kind for summaries, ``model`` the configured model (used when the
    CLI did not name one), ``now`` the time a default usage-limit wait counts from;
    ``timeout_seconds`` and ``idle_timeout_seconds`` (seconds) are named in the summary of a
    run the sandbox stopped. The session's context use (``context_percent``) is the report's,
    else the parsed ``context_tokens`` over ``context_window_tokens``.
    """
    limits = (timeout_seconds, idle_timeout_seconds)
    summary, failed, resets_at = _verdict(name, outcome, parsed, report, report_error, limits, now)
    if resets_at is None and report is not None:
        resets_at = report.usage_limit_resets_at
    if outcome.left_running and not (outcome.timed_out or outcome.idle):
        summary += f" ({len(outcome.left_running)} of its processes could not be ended)"
    tokens_used = parsed.tokens_used
    if tokens_used == 0 and report is not None:
        tokens_used = report.tokens_used
    cause, retry_after = _cause(outcome, parsed, failed=failed, resets_at=resets_at, now=now)
    context_percent = report.context_percent if report is not None else None
    if context_percent is None and parsed.context_tokens is not None and context_window_tokens:
        context_percent = min(round(100 * parsed.context_tokens / context_window_tokens, 1), 1000.0)
    return AgentResult(
        tokens_used=tokens_used,
        input_tokens=min(parsed.input_tokens, MAX_TOKENS),
        cached_input_tokens=min(parsed.cached_input_tokens, MAX_TOKENS),
        output_tokens=min(parsed.output_tokens, MAX_TOKENS),
        cost_usd=parsed.cost_usd,
        model=parsed.model or model,
        session_id=parsed.session_id,
        summary=summary,
        exit_code=outcome.exit_code,
        failed=failed,
        failure_cause=cause,
        retry_after_seconds=retry_after,
        needs_human=report.needs_human if report else None,
        usage_limit_resets_at=resets_at,
        context_percent=context_percent,
        handoff_requested=report.handoff if report else None,
        output=_raw_tail(outcome),
    )


#: A usage limit or a quota named in a CLI's error: not a mere rate limit (see :func:`_cause`).
_QUOTA = re.compile(r"usage limit|hit your limit|limit reached|quota|out of (?:extra usage|credits)", re.I)


def _cause(
    outcome: CommandResult, parsed: CliReport, *, failed: bool, resets_at: datetime | None, now: datetime
) -> tuple[AgentFailureCause | None, float | None]:
    """(failure cause, seconds to wait before a retry) of one run: TIMEOUT for a run past its
    timeout, IDLE for one ended as idle (no output, no file change); with a reset time
    RATE_LIMIT when the CLI's error is a plain rate limit (HTTP 429, "Too Many Requests", no
    usage limit or quota named), else USAGE_LIMIT; else for a failed run the cause its error
    text names (:func:`~.limits.error_cause`: AUTHENTICATION, RATE_LIMIT,
    PROVIDER_OUTAGE) or CRASH."""
    stopped = stopped_cause(outcome.timed_out, outcome.idle)
    if stopped is not None:
        return stopped, None
    if resets_at is not None:
        said = parsed.error or ""
        if error_cause(said) == "RATE_LIMIT" and not _QUOTA.search(said):
            # A rate limit the CLI read as a usage limit: retried after a backoff, or when it said.
            wait = (parsed.resets_at - now).total_seconds() if parsed.resets_at is not None else None
            return AgentFailureCause.RATE_LIMIT, None if wait is None else min(max(wait, 0.0), 86_400.0)
        return AgentFailureCause.USAGE_LIMIT, None
    if not failed:
        return None, None
    text = "\n".join(part for part in (parsed.error, outcome.stderr, outcome.stdout[-4000:]) if part)
    named = error_cause(text)
    if named is None:
        return AgentFailureCause.CRASH, None
    cause = AgentFailureCause(named)
    return cause, retry_after_seconds(text) if cause in TRANSIENT_FAILURE_CAUSES else None


def _verdict(
    name: str,
    outcome: CommandResult,
    parsed: CliReport,
    report: AgentReport | None,
    report_error: str | None,
    limits: tuple[float, float],
    now: datetime,
) -> tuple[str, bool, datetime | None]:
    """(summary, failed, usage_limit_resets_at) of one run; ``limits`` are its
    (timeout_seconds, idle_timeout_seconds)."""
    if outcome.error:
        return f"{name}: {outcome.error}", True, None
    if outcome.timed_out:
        return f"{name}: {timeout_summary(limits[0], outcome.left_running)}", True, None
    if outcome.idle:
        return f"{name}: {idle_summary(limits[1], outcome.left_running)}", True, None
    if parsed.usage_limit:
        said = f": {first_line(parsed.error or '')}" if parsed.error else ""
        if parsed.resets_at is not None:
            return (
                f"{name} hit its usage limit{said}; the loop waits until "
                f"{parsed.resets_at.isoformat(timespec='minutes')}",
                False,
                parsed.resets_at,
            )
        resets_at = now + DEFAULT_USAGE_LIMIT_WAIT
        hours = DEFAULT_USAGE_LIMIT_WAIT.total_seconds() / 3600
        return (
            f"{name} hit its usage limit{said}; it gave no reset time, so the loop waits the "
            f"default {hours:g} h (until {resets_at.isoformat(timespec='minutes')})",
            False,
            resets_at,
        )
    if outcome.exit_code != 0:
        message = parsed.error or _last_lines(outcome.stderr) or parsed.malformed or "no error message"
        return f"{name} exited with code {outcome.exit_code}: {shorten(message, 500)}", True, None
    if parsed.malformed:
        return f"{name}: {parsed.malformed}", True, None
    if parsed.error:
        return f"{name} reported an error: {shorten(parsed.error, 500)}", True, None
    if report_error:
        return report_error, True, None
    if report is not None and report.summary:
        return report.summary, False, None
    return shorten(parsed.final_text) or f"{name} finished without a final message", False, None


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " ".join(lines[-count:])
