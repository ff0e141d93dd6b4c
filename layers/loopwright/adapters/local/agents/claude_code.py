"""Claude Code (``claude``) as a loop's agent: ``claude -p --output-format stream-json --verbose``.

Invocation: ``claude -p --output-format stream-json --verbose [--resume <session_id>]
--permission-mode <mode> [--model M] [--max-turns N] [--allowedTools T ...] <extra_args>``, the
prompt on stdin (``-p`` reads it there when no prompt argument is given). ``--resume`` (CLI
reference: ``claude -r "<session-id>" "query"``, "resume a session by ID") continues the loop's
agent session while it fits (:mod:`loopwright.sessions`); the session's context use is the last
assistant turn's input tokens (uncached, cache writes and cache reads) over
``context_window_tokens``. Claude Code's CLI reference
(docs.anthropic.com/en/docs/claude-code/cli-reference) documents ``--output-format
stream-json`` (which needs ``--verbose`` with ``-p``) and the permission modes.

Output (one JSON object per line; the Agent SDK's message types, Claude Code's headless docs):

* ``{"type": "system", "subtype": "init", "session_id", "model", "tools", ...}``: the model;
* ``{"type": "assistant", "message": {"content": [{"type": "text", "text"},
  {"type": "tool_use", "name", "input"}], "model", "usage"}}``: shown as text and
  ``[tool] Edit src/x.py``;
* ``{"type": "user", "message": {"content": [{"type": "tool_result", "is_error", ...}]}}``;
* the last line, ``{"type": "result", "subtype": "success" | "error_max_turns" |
  "error_during_execution", "is_error", "result", "session_id", "total_cost_usd", "num_turns",
  "usage": {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
  "output_tokens"}}``. Anthropic's ``input_tokens`` excludes both cache figures, so the
  :class:`~.base.CliReport`'s input is their sum, its cached part ``cache_read_input_tokens``;
  ``total_cost_usd`` is Claude Code's own dollar figure.

A ``result`` with ``is_error`` true is an error; its text ``Claude AI usage limit reached|<unix
time>``, ``5-hour limit reached ∙ resets 2am`` or ``You've hit your limit · resets 6:20pm
(Europe/Berlin)`` is a usage limit (:func:`~.limits.claude_resets_at`). No ``result`` line is
malformed output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from loopwright.adapters.local.agents.base import (
    CliAgent,
    CliReport,
    Invocation,
    JsonLinesParser,
    first_line,
    shorten,
    tool_target,
)
from loopwright.adapters.local.agents.limits import claude_resets_at
from loopwright.adapters.local.hard_limits import UsageSoFar
from loopwright.models import AgentRequest, ClaudeCodeAgentConfig

_USAGE_LIMIT = re.compile(
    r"usage limit|limit reached|hit your limit|out of extra usage|rate_limit_error|rate limit",
    re.IGNORECASE,
)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class ClaudeStreamParser(JsonLinesParser):
    """Reads ``claude -p --output-format stream-json --verbose`` (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model: str | None = None
        self._session: str | None = None
        self._last_text = ""
        self._result: dict[str, Any] | None = None
        self._context: int | None = None
        self._message_usage: dict[str, dict[str, Any]] = {}  # message id -> its usage, as streamed

    def on_event(self, event: dict[str, Any]) -> list[str]:
        kind = event.get("type")
        if isinstance(event.get("session_id"), str):
            self._session = event["session_id"]
        if kind == "system" and event.get("subtype") == "init":
            if isinstance(event.get("model"), str):
                self._model = event["model"]
            return [f"[claude] session started, model {self._model or 'unknown'}"]
        if kind == "assistant":
            return self._assistant(event.get("message"))
        if kind == "user":
            return self._tool_results(event.get("message"))
        if kind == "result":
            self._result = event
            cost = event.get("total_cost_usd")
            spent = f", ${cost:.4f}" if isinstance(cost, int | float) else ""
            return [f"[result] {event.get('subtype', '?')}, {event.get('num_turns', '?')} turns{spent}"]
        return []

    def _assistant(self, message: object) -> list[str]:
        if not isinstance(message, dict):
            return []
        if self._model is None and isinstance(message.get("model"), str):
            self._model = message["model"]
        usage = message.get("usage")
        if isinstance(usage, dict):  # the context this turn read: its input, cached or not
            self._context = sum(
                _int(usage.get(key))
                for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            )
        if isinstance(message.get("usage"), dict):
            # One event per content block repeats its message's usage: count each message once.
            key = str(message.get("id") or f"message-{len(self._message_usage)}")
            self._message_usage[key] = message["usage"]
        shown: list[str] = []
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                self._last_text = block["text"]
                shown += [line for line in block["text"].splitlines() if line.strip()]
            elif block.get("type") == "tool_use":
                shown.append(f"[tool] {block.get('name', '?')} {tool_target(block.get('input'))}".rstrip())
        return shown

    def _tool_results(self, message: object) -> list[str]:
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            return []
        shown = []
        for block in message["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_result" and block.get("is_error"):
                content = block.get("content")
                text = content if isinstance(content, str) else json.dumps(content)[:200]
                shown.append(f"[tool error] {first_line(text)}")
        return shown

    def usage_so_far(self) -> UsageSoFar | None:
        """The usage streamed so far: the final ``result`` line's once seen (with its dollar
        figure), else the sum of the assistant messages' ``usage``; None before any."""
        result = self._result
        usages = [result["usage"]] if result is not None and isinstance(result.get("usage"), dict) else []
        usages = usages or list(self._message_usage.values())
        if not usages:
            return None
        cache_read = sum(_int(u.get("cache_read_input_tokens")) for u in usages)
        created = sum(_int(u.get("cache_creation_input_tokens")) for u in usages)
        given = sum(_int(u.get("input_tokens")) for u in usages)
        output = sum(_int(u.get("output_tokens")) for u in usages)
        cost = result.get("total_cost_usd") if result is not None else None
        return UsageSoFar(
            tokens=given + created + cache_read + output,
            input_tokens=given + created + cache_read,
            cached_input_tokens=cache_read,
            output_tokens=output,
            cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            model=self._model,
        )

    def finish(self, exit_code: int | None) -> CliReport:
        report = CliReport(
            model=self._model,
            session_id=self._session,
            final_text=self._last_text,
            context_tokens=self._context,
        )
        result = self._result
        if result is None:
            what = "its output was not JSON" if self.json_lines == 0 else "the output was cut short"
            report.malformed = (
                f"no final 'result' line in the stream-json output of claude -p ({what}); "
                "the run's tokens and cost are unknown"
            )
            return report
        report.finished = True
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        cache_read = _int(usage.get("cache_read_input_tokens"))
        report.input_tokens = (
            _int(usage.get("input_tokens")) + _int(usage.get("cache_creation_input_tokens")) + cache_read
        )
        report.cached_input_tokens = cache_read
        report.output_tokens = _int(usage.get("output_tokens"))
        cost = result.get("total_cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            report.cost_usd = float(cost)
        text = result.get("result")
        if isinstance(text, str) and text.strip():
            report.final_text = text
        if result.get("is_error") or result.get("subtype") != "success":
            message = text.strip() if isinstance(text, str) else ""
            report.error = shorten(message or f"Claude Code stopped: {result.get('subtype')}", 500)
            if _USAGE_LIMIT.search(message):
                report.usage_limit = True
                report.resets_at = claude_resets_at(message, self.now())
        return report


class ClaudeCodeAgent(CliAgent[ClaudeCodeAgentConfig]):
    """Runs :class:`~loopwright.models.ClaudeCodeAgentConfig` (see the module docstring)."""

    name = "claude-code"
    supports_sessions = True

    def context_window_tokens(self) -> int | None:
        return self._config.context_window_tokens

    def invocation(self, request: AgentRequest, prompt: str, paths: dict[str, Path]) -> Invocation:
        config = self._config
        argv = [config.executable, "-p", "--output-format", "stream-json", "--verbose"]
        if request.session_id:  # continue the loop's agent session (loopwright.sessions)
            argv += ["--resume", request.session_id]
        argv += ["--permission-mode", config.permission_mode]
        if config.model:
            argv += ["--model", config.model]
        if config.max_turns is not None:
            argv += ["--max-turns", str(config.max_turns)]
        for tool in config.allowed_tools:
            argv += ["--allowedTools", tool]
        return Invocation(argv=[*argv, *config.extra_args], stdin=prompt)

    def parser(self) -> JsonLinesParser:
        return ClaudeStreamParser(now=self._now)
