"""aider as a loop's agent: ``aider --message-file <prompt.md>``, one message, then it exits.

Invocation: ``aider --message-file <prompt.md> --no-pretty --no-stream --no-check-update
--input-history-file <state>/aider.input.history --chat-history-file
<state>/aider.chat.history.md [--yes-always] --no-auto-commits [--model M] <extra_args>``
(options in ``aider/args.py``, Aider-AI/aider): the prompt is read from its file, so no argv or
stdin limit applies; ``--no-stream`` makes aider read the provider's exact usage (streamed
answers are estimated); its history files go to the loop's state folder, not the worktree.

Output: plain text. After each model call aider prints its usage report
(``calculate_and_show_tokens_and_cost`` in ``aider/coders/base_coder.py``)::

    Tokens: 2.5k sent, 1.2k cache write, 3.4k cache hit, 120 received. Cost: $0.01 message, $0.05 session.

Counts use ``format_tokens`` (``aider/utils.py``): ``850``, ``2.5k`` (one decimal under 10k),
``12k`` (rounded thousands), so they are approximate. The cache parts appear only when the
provider reports them (for Anthropic models ``sent`` excludes cache hits, so input = sent +
cache hit here, which overcounts DeepSeek's, already included); the ``Cost:`` part only when
the model's price is known. Tokens are summed over the run's reports; the dollars are the last
``session`` figure (the whole run's). ``Model: <name> with <format> edit format`` (or ``Main
model:``) names the model.

litellm's ``RateLimitError`` ("The API provider has rate limited you. Try again later or check
your quotas.", ``aider/exceptions.py``) is a usage limit with no reset time. A run without any
``Tokens:`` report and without a rate limit is malformed output (the model never answered).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loopwright.adapters.local.agents.base import CliAgent, CliReport, Invocation, OutputParser
from loopwright.adapters.local.agents.limits import retry_delay_resets_at
from loopwright.models import AgentRequest, AiderAgentConfig
from loopwright.steps.prompt import agent_files_folder

_COUNT = r"(\d+(?:\.\d+)?k?)"
_TOKENS = re.compile(
    rf"Tokens: {_COUNT} sent(?:, {_COUNT} cache write)?(?:, {_COUNT} cache hit)?, {_COUNT} received\."
)
_COST = re.compile(r"Cost: \$(\d+(?:\.\d+)?) message, \$(\d+(?:\.\d+)?) session\.")
_MODEL = re.compile(r"^(?:Main model|Model): (\S+)")
_RATE_LIMIT = re.compile(r"RateLimitError|rate limited you", re.IGNORECASE)
_ERROR = re.compile(r"litellm\.\w+Error|Error:", re.IGNORECASE)
_NOISE = re.compile(
    r"^(Tokens:|Cost:|Aider v|Model:|Main model:|Weak model:|Git repo:|Repo-map:|"
    r"Retrying in|Added .* to the chat|Use /help)"
)


def parse_count(text: str) -> int:
    """An aider token count (``850``, ``2.5k``, ``12k``) as an integer."""
    if text.endswith("k"):
        return round(float(text[:-1]) * 1000)
    return round(float(text))


class AiderOutputParser(OutputParser):
    """Reads aider's plain-text output (see the module docstring); lines are shown as they are."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reports = 0
        self._sent = self._hit = self._received = 0
        self._session_cost: float | None = None
        self._model: str | None = None
        self._text: list[str] = []
        self._rate_limit: str | None = None
        self._errors: list[str] = []

    def feed(self, stream: str, line: str) -> list[str]:
        if (tokens := _TOKENS.search(line)) is not None:
            self._reports += 1
            sent, _write, hit, received = tokens.groups()
            self._sent += parse_count(sent)
            self._hit += parse_count(hit) if hit else 0
            self._received += parse_count(received)
        if (cost := _COST.search(line)) is not None:
            self._session_cost = float(cost.group(2))
        if self._model is None and (model := _MODEL.match(line)) is not None:
            self._model = model.group(1)
        if _RATE_LIMIT.search(line):
            self._rate_limit = self._rate_limit or line.strip()
        elif _ERROR.search(line):
            self._errors.append(line.strip())
        if line.strip() and not _NOISE.match(line.strip()):
            self._text = [*self._text[-19:], line.strip()]
        return [line] if line.strip() else []

    def finish(self, exit_code: int | None) -> CliReport:
        report = CliReport(
            finished=self._reports > 0,
            input_tokens=self._sent + self._hit,
            cached_input_tokens=self._hit,
            output_tokens=self._received,
            cost_usd=self._session_cost,
            model=self._model,
            final_text="\n".join(self._text[-5:]),
        )
        if self._rate_limit is not None:
            report.error = self._rate_limit
            report.usage_limit = True
            report.resets_at = retry_delay_resets_at(self._rate_limit, self.now())
        elif self._errors:
            report.error = self._errors[-1]
        elif self._reports == 0:
            report.malformed = (
                "no 'Tokens: ... sent, ... received.' report in aider's output: the model never "
                "answered, or the output is not aider's"
            )
        return report


class AiderAgent(CliAgent[AiderAgentConfig]):
    """Runs :class:`~loopwright.models.AiderAgentConfig` (see the module docstring)."""

    name = "aider"

    def invocation(self, request: AgentRequest, prompt: str, paths: dict[str, Path]) -> Invocation:
        config = self._config
        state = agent_files_folder(request)
        argv = [
            config.executable,
            "--message-file",
            str(paths["prompt_file"]),
            "--no-pretty",
            "--no-stream",
            "--no-check-update",
            "--input-history-file",
            str(state / "aider.input.history"),
            "--chat-history-file",
            str(state / "aider.chat.history.md"),
        ]
        if config.yes_always:
            argv.append("--yes-always")
        argv.append("--auto-commits" if config.auto_commits else "--no-auto-commits")
        if config.model:
            argv += ["--model", config.model]
        return Invocation(argv=[*argv, *config.extra_args])

    def parser(self) -> OutputParser:
        return AiderOutputParser(now=self._now)
