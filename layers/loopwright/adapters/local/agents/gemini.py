"""Google's Gemini CLI (``gemini``) as a loop's agent, headless with ``--output-format``.

Invocation: ``gemini --output-format stream-json --approval-mode <mode> [--model M]
<extra_args> --prompt "<pointer>"``, the prompt on stdin: ``--prompt`` "Run in non-interactive
(headless) mode with the given prompt. Appended to input on stdin (if any)" (``gemini --help``;
geminicli.com/docs/cli/headless). The pointer (:data:`PROMPT_POINTER`) only says to do the task
above.

Output, per ``packages/core/src/output/types.ts`` (google-gemini/gemini-cli):

* ``stream-json`` (default): JSONL events ``init`` (``session_id``, ``model``), ``message``
  (``role``, ``content``, ``delta``: assistant text comes in chunks), ``tool_use``
  (``tool_name``, ``parameters``), ``tool_result`` (``status``, ``error``), ``error``
  (``severity``, ``message``: non-fatal), and the last, ``result`` (``status``, ``error``,
  ``stats``: ``total_tokens``, ``input_tokens`` (cached included), ``output_tokens``, ``cached``,
  ``input``, ``duration_ms``, ``tool_calls``).
* ``json``: one object at the end, ``{"session_id", "response", "stats": {"models": {name:
  {"tokens": {"input", "prompt", "candidates", "total", "cached", "thoughts", "tool"}}}},
  "error": {"type", "message", "code"}}``; per model ``prompt`` includes ``cached`` and
  ``total`` = prompt + candidates + thoughts (+ tool) (``json-formatter.test.ts``). Tokens are
  summed over the models; the model is the one with the largest total.

Gemini prints no dollar figure: ``cost_usd`` stays None. An error with Google's 429
``RESOURCE_EXHAUSTED`` or a quota message is a usage limit (its ``retry in 27s`` /
``retryDelay`` read by :func:`~.limits.retry_delay_resets_at`). No ``result`` event (stream-json)
or no JSON object (json) is malformed output.
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
    tool_target,
)
from loopwright.adapters.local.agents.limits import retry_delay_resets_at
from loopwright.models import AgentRequest, GeminiAgentConfig

#: The ``--prompt`` text appended to the prompt given on stdin.
PROMPT_POINTER = "Carry out the task described above in the current directory."
#: Largest ``json`` output read, characters.
MAX_JSON_CHARS = 8 * 1024 * 1024

_USAGE_LIMIT = re.compile(r"RESOURCE_EXHAUSTED|\b429\b|quota|rate limit|too many requests", re.IGNORECASE)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _error_message(error: object) -> str | None:
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        text = str(message) if message else json.dumps(error)[:300]
        return f"{text} (code {code})" if code is not None and str(code) not in text else text
    return str(error) if error else None


class GeminiParser(JsonLinesParser):
    """Reads Gemini CLI's ``stream-json`` or ``json`` output (see the module docstring)."""

    def __init__(self, output_format: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._format = output_format
        self._text: list[str] = []
        self._line = ""
        self._model: str | None = None
        self._session: str | None = None
        self._result: dict[str, Any] | None = None
        self._errors: list[str] = []
        self._whole: list[str] = []
        self._whole_chars = 0

    def feed(self, stream: str, line: str) -> list[str]:
        if stream == "stdout" and self._format == "json":  # one document, read when it ends
            if self._whole_chars < MAX_JSON_CHARS:
                self._whole.append(line)
                self._whole_chars += len(line) + 1
            return []
        return super().feed(stream, line)

    def on_event(self, event: dict[str, Any]) -> list[str]:
        kind = event.get("type")
        if kind == "message" and event.get("role") == "assistant":
            return self._assistant(str(event.get("content", "")))
        shown = self._flush()
        if kind == "init":
            self._model = event.get("model") if isinstance(event.get("model"), str) else None
            self._session = event.get("session_id") if isinstance(event.get("session_id"), str) else None
            shown.append(f"[gemini] session started, model {self._model or 'unknown'}")
        elif kind == "tool_use":
            self._text = []  # the final answer is what follows the last tool call
            target = tool_target(event.get("parameters"))
            shown.append(f"[tool] {event.get('tool_name', '?')} {target}".rstrip())
        elif kind == "tool_result" and event.get("status") == "error":
            shown.append(f"[tool error] {first_line(_error_message(event.get('error')) or '')}")
        elif kind == "error":
            message = str(event.get("message") or "")
            if event.get("severity") == "error":
                self._errors.append(message)
            shown.append(f"[{event.get('severity', 'error')}] {first_line(message)}")
        elif kind == "result":
            self._result = event
            shown.append(f"[result] {event.get('status', '?')}")
        return shown

    def _assistant(self, content: str) -> list[str]:
        self._text.append(content)
        self._line += content
        *complete, self._line = self._line.split("\n")
        return [line for line in complete if line.strip()]

    def _flush(self) -> list[str]:
        line, self._line = self._line, ""
        return [line] if line.strip() else []

    def finish(self, exit_code: int | None) -> CliReport:
        if self._format == "json":
            return self._finish_json()
        report = CliReport(model=self._model, session_id=self._session, final_text="".join(self._text))
        result = self._result
        if result is None:
            what = "its output was not JSON" if self.json_lines == 0 else "the output was cut short"
            report.malformed = (
                f"no final 'result' event in the stream-json output of gemini ({what}); "
                "the run's tokens are unknown"
            )
            report.error = self._errors[-1] if self._errors else None
            self._limit(report)
            return report
        report.finished = True
        stats = result.get("stats") if isinstance(result.get("stats"), dict) else {}
        assert isinstance(stats, dict)
        report.input_tokens = _int(stats.get("input_tokens"))
        report.cached_input_tokens = min(_int(stats.get("cached")), report.input_tokens)
        report.output_tokens = _int(stats.get("output_tokens"))
        if "total_tokens" in stats:
            report.total_tokens = _int(stats.get("total_tokens"))
        if result.get("status") != "success":
            report.error = _error_message(result.get("error")) or f"status {result.get('status')!r}"
        self._limit(report)
        return report

    def _finish_json(self) -> CliReport:
        text = "\n".join(self._whole).strip()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return CliReport(
                malformed="no JSON object in the output of gemini --output-format json "
                + ("(it printed nothing)" if not text else "(the output is not JSON or was cut short)")
            )
        report = CliReport(
            finished=True,
            session_id=payload.get("session_id") if isinstance(payload.get("session_id"), str) else None,
            final_text=str(payload.get("response") or ""),
        )
        stats = payload.get("stats") if isinstance(payload.get("stats"), dict) else {}
        assert isinstance(stats, dict)
        models = stats.get("models") if isinstance(stats.get("models"), dict) else {}
        assert isinstance(models, dict)
        largest = -1
        total = 0
        for name, figures in models.items():
            tokens = figures.get("tokens") if isinstance(figures, dict) else None
            if not isinstance(tokens, dict):
                continue
            prompt = _int(tokens.get("prompt"))
            out = _int(tokens.get("candidates")) + _int(tokens.get("thoughts"))
            model_total = _int(tokens.get("total")) or prompt + out + _int(tokens.get("tool"))
            report.input_tokens += prompt
            report.cached_input_tokens += min(_int(tokens.get("cached")), prompt)
            report.output_tokens += out
            total += model_total
            if model_total > largest:
                largest, report.model = model_total, str(name)
        report.total_tokens = total if models else None
        report.error = _error_message(payload.get("error"))
        self._limit(report)
        return report

    def _limit(self, report: CliReport) -> None:
        if report.error and _USAGE_LIMIT.search(report.error):
            report.usage_limit = True
            report.resets_at = retry_delay_resets_at(report.error, self.now())


class GeminiAgent(CliAgent[GeminiAgentConfig]):
    """Runs :class:`~loopwright.models.GeminiAgentConfig` (see the module docstring)."""

    name = "gemini"

    def invocation(self, request: AgentRequest, prompt: str, paths: dict[str, Path]) -> Invocation:
        config = self._config
        argv = [config.executable, "--output-format", config.output_format]
        argv += ["--approval-mode", config.approval_mode]
        if config.model:
            argv += ["--model", config.model]
        return Invocation(argv=[*argv, *config.extra_args, "--prompt", PROMPT_POINTER], stdin=prompt)

    def parser(self) -> JsonLinesParser:
        return GeminiParser(self._config.output_format, now=self._now)
