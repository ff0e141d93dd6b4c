"""OpenAI's Codex CLI (``codex``) as a loop's agent: ``codex exec --json``.

Invocation: ``codex exec --json --sandbox <sandbox> [--model M] <extra_args> -``: ``-`` makes
``codex exec`` read its instructions from stdin (``codex-rs/exec/src/cli.rs``: "If not provided
as an argument (or if `-` is used), instructions are read from stdin"); ``--sandbox
workspace-write`` replaces the deprecated ``--full-auto``. To continue the loop's agent session
(:mod:`loopwright.sessions`) the command ends ``resume <thread_id> -`` (``codex exec resume
[SESSION_ID] [PROMPT]``, openai/codex ``docs/exec.md``; ``-`` reads the prompt from stdin).
Codex reports no context use per turn (its ``turn.completed`` usage is the thread's running
total), so a Codex session is handed off on ``session_max_iterations`` or the agent's
``report.json`` (``context_percent``, ``handoff``).

Output: JSONL events (``ThreadEvent`` in ``codex-rs/exec/src/exec_events.rs``, openai/codex):

* ``{"type": "thread.started", "thread_id"}``: the session;
* ``{"type": "item.started" | "item.completed", "item": {"id", "type": "agent_message" |
  "reasoning" | "command_execution" | "file_change" | "mcp_tool_call" | "web_search" |
  "todo_list" | "error", ...}}``: shown as text, ``[tool] $ pytest -q``, ``[tool] update
  src/x.py``...; the last ``agent_message``'s ``text`` is the final text;
* ``{"type": "turn.completed", "usage": {"input_tokens", "cached_input_tokens",
  "output_tokens"}}``: the thread's running total (``usage_from_last_total`` in
  ``event_processor_with_jsonl_output.rs``), so the last one counts. OpenAI's ``input_tokens``
  include the cached ones. Codex prints no dollar figure: ``cost_usd`` stays None;
* ``{"type": "turn.failed", "error": {"message"}}`` and ``{"type": "error", "message"}``: errors.
  ``You've hit your usage limit ... try again at 3:28 PM.`` (or a 429 "exceeded retry limit")
  is a usage limit (:func:`~.limits.codex_resets_at`).

No ``turn.completed`` and no error event is malformed output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loopwright.adapters.local.agents.base import (
    CliAgent,
    CliReport,
    Invocation,
    JsonLinesParser,
    first_line,
)
from loopwright.adapters.local.agents.limits import codex_resets_at
from loopwright.adapters.local.hard_limits import UsageSoFar
from loopwright.models import AgentRequest, CodexAgentConfig

_USAGE_LIMIT = re.compile(r"usage limit|rate limit|\b429\b|too many requests|out of credits", re.IGNORECASE)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _describe(item: dict[str, Any], completed: bool) -> list[str]:
    """Readable lines for one thread item."""
    kind = item.get("type")
    if kind == "agent_message" and completed:
        return [line for line in str(item.get("text", "")).splitlines() if line.strip()]
    if kind == "reasoning" and completed:
        return [f"[thinking] {first_line(str(item.get('text', '')), 160)}"]
    if kind == "command_execution":
        if not completed:
            return [f"[tool] $ {first_line(str(item.get('command', '')), 160)}"]
        code = item.get("exit_code")
        return [f"[tool] exit {code}"] if code not in (0, None) else []
    if kind == "file_change" and completed:
        changes = item.get("changes") if isinstance(item.get("changes"), list) else []
        assert isinstance(changes, list)
        return [
            f"[tool] {change.get('kind', 'edit')} {change.get('path', '?')}"
            for change in changes
            if isinstance(change, dict)
        ]
    if kind == "mcp_tool_call" and not completed:
        return [f"[tool] {item.get('server', '?')}.{item.get('tool', '?')}"]
    if kind == "web_search" and not completed:
        return [f"[tool] search {first_line(str(item.get('query', '')), 120)}"]
    if kind == "error":
        return [f"[warning] {first_line(str(item.get('message', '')))}"]
    return []


class CodexJsonParser(JsonLinesParser):
    """Reads ``codex exec --json`` (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._thread: str | None = None
        self._usage: dict[str, Any] | None = None
        self._last_text = ""
        self._errors: list[str] = []

    def on_event(self, event: dict[str, Any]) -> list[str]:
        kind = event.get("type")
        if kind == "thread.started" and isinstance(event.get("thread_id"), str):
            self._thread = event["thread_id"]
            return [f"[codex] thread {self._thread}"]
        if kind in ("item.started", "item.completed") and isinstance(event.get("item"), dict):
            item = event["item"]
            if kind == "item.completed" and item.get("type") == "agent_message":
                self._last_text = str(item.get("text", ""))
            return _describe(item, kind == "item.completed")
        if kind == "turn.completed":
            usage = event.get("usage")
            self._usage = usage if isinstance(usage, dict) else {}
            return [
                f"[usage] {_int(self._usage.get('input_tokens'))} in, "
                f"{_int(self._usage.get('output_tokens'))} out"
            ]
        if kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self._errors.append(str(message or "turn failed (no message)"))
            return [f"[error] {first_line(self._errors[-1])}"]
        if kind == "error":
            self._errors.append(str(event.get("message") or "error (no message)"))
            return [f"[error] {first_line(self._errors[-1])}"]
        return []

    def usage_so_far(self) -> UsageSoFar | None:
        """The thread's running total of the last ``turn.completed`` (codex streams usage once
        per turn, not while a turn runs); None before the first."""
        if self._usage is None:
            return None
        given = _int(self._usage.get("input_tokens"))
        output = _int(self._usage.get("output_tokens"))
        return UsageSoFar(
            tokens=given + output,
            input_tokens=given,
            cached_input_tokens=min(_int(self._usage.get("cached_input_tokens")), given),
            output_tokens=output,
        )

    def finish(self, exit_code: int | None) -> CliReport:
        report = CliReport(session_id=self._thread, final_text=self._last_text)
        if self._usage is not None:
            report.finished = True
            report.input_tokens = _int(self._usage.get("input_tokens"))
            report.cached_input_tokens = min(
                _int(self._usage.get("cached_input_tokens")), report.input_tokens
            )
            report.output_tokens = _int(self._usage.get("output_tokens"))
        if self._errors:
            report.error = self._errors[-1]
            limited = next((e for e in reversed(self._errors) if _USAGE_LIMIT.search(e)), None)
            if limited is not None:
                report.error = limited
                report.usage_limit = True
                report.resets_at = codex_resets_at(limited, self.now())
        elif self._usage is None:
            what = "its output was not JSON" if self.json_lines == 0 else "the output was cut short"
            report.malformed = (
                f"no 'turn.completed' event in the output of codex exec --json ({what}); "
                "the run's tokens are unknown"
            )
        return report


class CodexAgent(CliAgent[CodexAgentConfig]):
    """Runs :class:`~loopwright.models.CodexAgentConfig` (see the module docstring)."""

    name = "codex"
    supports_sessions = True

    def invocation(self, request: AgentRequest, prompt: str, paths: dict[str, Path]) -> Invocation:
        config = self._config
        argv = [config.executable, "exec", "--json", "--sandbox", config.sandbox]
        if config.model:
            argv += ["--model", config.model]
        resume = ["resume", request.session_id] if request.session_id else []
        return Invocation(argv=[*argv, *config.extra_args, *resume, "-"], stdin=prompt)

    def parser(self) -> JsonLinesParser:
        return CodexJsonParser(now=self._now)
