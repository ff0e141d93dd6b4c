"""The agent's record of one iteration (issue 9, point 3): what it was told, what it printed, what
it used and changed, and what the evaluation that followed found.

Every text is bounded here, by the model, so a record can always be stored (a DynamoDB item holds
at most 400 KB) and printed:

- ``prompt``: the first :data:`MAX_PROMPT_CHARS` characters (64 Ki);
- the agent's output (stdout and stderr interleaved as they arrived, one combined stream): the
  first :data:`OUTPUT_HEAD_CHARS` characters (16 Ki) and the last :data:`OUTPUT_TAIL_CHARS`
  (256 Ki); what lies between is counted in ``total_chars`` but not kept (:class:`AgentOutput`);
- each condition's stdout and stderr: the last :data:`CONDITION_TAIL_CHARS` characters (8 Ki);
- the agent's summary: :data:`MAX_SUMMARY_CHARS`; changed paths: :data:`MAX_CHANGED_FILES`.

Bounds count characters, not bytes: a character is 1 to 4 bytes of UTF-8, so the output part of
a record is at most about 1.1 MiB of UTF-8 and typically (ASCII) 272 KiB. Stores compress it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loopwright.models.enums import ExitConditionStatusValue, ExitConditionType
from loopwright.models.state import ExitConditionStatus, utcnow
from loopwright.models.steps import AgentResult, IterationResult
from loopwright.models.types import LoopId, TokenCount

#: Characters of the prompt kept (the rest is cut, with a note saying how much).
MAX_PROMPT_CHARS = 64 * 1024
#: Characters kept from the start of the agent's output.
OUTPUT_HEAD_CHARS = 16 * 1024
#: Characters kept from the end of the agent's output.
OUTPUT_TAIL_CHARS = 256 * 1024
#: Characters kept from the end of each condition's stdout and of its stderr.
CONDITION_TAIL_CHARS = 8 * 1024
#: Characters of the agent's summary kept.
MAX_SUMMARY_CHARS = 2_000
#: Changed paths listed (``diff_stat.files_changed`` counts all of them).
MAX_CHANGED_FILES = 200


def _cut_end(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters; else its start and a note of how much
    was cut, ``limit`` characters in all (so cutting again changes nothing)."""
    if len(text) <= limit:
        return text
    note = f"\n[... {len(text)} characters in all, cut by loopwright ...]\n"
    return text[: max(0, limit - len(note))] + note


def _tail(text: str, limit: int) -> str:
    return text[-limit:] if len(text) > limit else text


class AgentOutput(BaseModel):
    """The agent's combined stdout and stderr, bounded: ``head`` is the first
    :data:`OUTPUT_HEAD_CHARS` characters, ``tail`` the last :data:`OUTPUT_TAIL_CHARS` after
    them (the two never overlap), ``total_chars`` how many the agent wrote in all."""

    model_config = ConfigDict(extra="forbid")

    head: str = ""
    tail: str = ""
    total_chars: int = Field(default=0, ge=0, description="characters the agent wrote (kept or not)")

    @model_validator(mode="after")
    def _bounded(self) -> AgentOutput:
        if len(self.head) > OUTPUT_HEAD_CHARS:
            self.tail = self.head[OUTPUT_HEAD_CHARS:] + self.tail
            self.head = self.head[:OUTPUT_HEAD_CHARS]
        self.tail = _tail(self.tail, OUTPUT_TAIL_CHARS)
        self.total_chars = max(self.total_chars, len(self.head) + len(self.tail))
        return self

    @property
    def omitted_chars(self) -> int:
        """Characters between ``head`` and ``tail`` that were not kept."""
        return self.total_chars - len(self.head) - len(self.tail)

    def text(self) -> str:
        """The kept output, with a line saying how much was left out between head and tail."""
        if not self.omitted_chars:
            return self.head + self.tail
        return f"{self.head}\n[... {self.omitted_chars} characters not kept ...]\n{self.tail}"

    def since(self, seen: int) -> str:
        """What follows the first ``seen`` characters, for ``logs --follow``; a line says how
        many characters in between were not kept."""
        if seen >= self.total_chars:
            return ""
        tail_start = self.total_chars - len(self.tail)
        if seen >= tail_start:
            return self.tail[seen - tail_start :]
        head = self.head[seen:]
        skipped = tail_start - max(seen, len(self.head))
        marker = f"\n[... {skipped} characters not kept ...]\n" if skipped else ""
        return head + marker + self.tail


class OutputBuffer:
    """Collects output chunks into an :class:`AgentOutput` in constant memory (head kept, tail
    trimmed as it grows). Not thread-safe: the caller holds a lock."""

    def __init__(self) -> None:
        self.head = ""
        self._tail: list[str] = []
        self._tail_chars = 0
        self.total_chars = 0

    def add(self, text: str) -> None:
        """Append ``text``."""
        self.total_chars += len(text)
        room = OUTPUT_HEAD_CHARS - len(self.head)
        if room > 0:
            self.head += text[:room]
            text = text[room:]
        if not text:
            return
        self._tail.append(text)
        self._tail_chars += len(text)
        if self._tail_chars > 2 * OUTPUT_TAIL_CHARS:  # trim now and then, not on every chunk
            joined = "".join(self._tail)[-OUTPUT_TAIL_CHARS:]
            self._tail, self._tail_chars = [joined], len(joined)

    def snapshot(self) -> AgentOutput:
        """The output so far."""
        tail = "".join(self._tail)[-OUTPUT_TAIL_CHARS:]
        return AgentOutput(head=self.head, tail=tail, total_chars=self.total_chars)


class AgentUsage(BaseModel):
    """What the agent used, as it reported it (:class:`~loopwright.models.AgentResult`): tokens
    (``tokens_used`` counts against the budget), US dollars (None: not reported), model, session."""

    model_config = ConfigDict(extra="forbid")

    tokens_used: TokenCount = 0
    input_tokens: TokenCount = 0
    cached_input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cost_usd: float | None = Field(default=None, ge=0)
    model: str | None = None
    session_id: str | None = None

    @classmethod
    def from_result(cls, result: AgentResult) -> AgentUsage:
        """The usage part of ``result``."""
        return cls.model_validate(result.model_dump(include=set(cls.model_fields)))


class DiffStat(BaseModel):
    """What a commit changed against its parent (``git diff --numstat``): files, and lines
    inserted and deleted (a binary file counts as a file, with no lines)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files_changed: int = Field(ge=0)
    insertions: int = Field(ge=0)
    deletions: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.files_changed} file(s) changed, +{self.insertions} -{self.deletions}"


class ConditionRecord(BaseModel):
    """One condition's result in the evaluation after the iteration, with its output's tails
    (:data:`CONDITION_TAIL_CHARS` characters each)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ExitConditionType
    status: ExitConditionStatusValue
    required: bool = True
    command: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    duration_seconds: float = Field(default=0.0, ge=0)
    summary: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    output_truncated: bool = False

    @field_validator("stdout_tail", "stderr_tail")
    @classmethod
    def _bounded(cls, value: str) -> str:
        return _tail(value, CONDITION_TAIL_CHARS)

    @classmethod
    def from_status(cls, status: ExitConditionStatus) -> ConditionRecord:
        """The record of ``status`` (its output cut to its tails)."""
        cut = len(status.stdout) > CONDITION_TAIL_CHARS or len(status.stderr) > CONDITION_TAIL_CHARS
        return cls(
            name=status.name,
            type=status.type,
            status=status.status,
            required=status.required,
            command=status.command,
            exit_code=status.exit_code,
            duration_seconds=status.duration_seconds,
            summary=status.summary,
            stdout_tail=status.stdout,
            stderr_tail=status.stderr,
            output_truncated=status.output_truncated or cut,
        )


class IterationSummary(BaseModel):
    """An iteration's record without its texts (lists, the dashboard's iteration list)."""

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId
    iteration: int = Field(ge=1)
    started_at: datetime
    updated_at: datetime
    agent_running: bool
    failed: bool = False
    exit_code: int | None = None
    duration_seconds: float | None = Field(default=None, description="the agent's wall clock, seconds")
    tokens_used: int = 0
    cost_usd: float | None = Field(default=None, description="US dollars, as the agent reported")
    commit: str | None = None
    diff_stat: DiffStat | None = None
    output_chars: int = Field(default=0, description="characters the agent wrote")
    conditions: dict[str, ExitConditionStatusValue] = Field(
        default_factory=dict, description="condition name -> status of the evaluation after it"
    )


class IterationRecord(BaseModel):
    """The agent's record of iteration ``iteration`` of ``loop_id`` (bounds in the module
    docstring). ``agent_running`` is True while the agent works (the record is then rewritten
    every few seconds with the output so far); ``evaluated_at`` is set once the evaluation that
    followed is in ``conditions``. Times are UTC; ``duration_seconds`` is the agent's wall clock.
    """

    model_config = ConfigDict(extra="forbid")

    loop_id: LoopId
    iteration: int = Field(ge=1)
    started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    agent_running: bool = True
    prompt: str = ""
    output: AgentOutput = Field(default_factory=AgentOutput)
    usage: AgentUsage | None = None
    exit_code: int | None = None
    failed: bool = False
    summary: str = ""
    duration_seconds: float | None = Field(default=None, ge=0)
    commit: str | None = None
    changed_files: list[str] = Field(default_factory=list)
    diff_stat: DiffStat | None = None
    conditions: list[ConditionRecord] = Field(default_factory=list)
    evaluated_at: datetime | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_bounded(cls, value: str) -> str:
        return _cut_end(value, MAX_PROMPT_CHARS)

    @field_validator("summary")
    @classmethod
    def _summary_bounded(cls, value: str) -> str:
        return _cut_end(value, MAX_SUMMARY_CHARS)

    @field_validator("changed_files")
    @classmethod
    def _files_bounded(cls, value: list[str]) -> list[str]:
        return value[:MAX_CHANGED_FILES]

    def finish_agent(
        self, result: IterationResult, output: AgentOutput, diff_stat: DiffStat | None
    ) -> IterationRecord:
        """A copy with the agent's result: usage, exit code, summary, duration, commit and
        ``output`` (or, when nothing was streamed, the output the agent returned)."""
        agent = result.agent
        if output.total_chars == 0 and agent.output:
            output = AgentOutput(head=agent.output, total_chars=len(agent.output))
        return self.model_copy(
            update={
                "agent_running": False,
                "updated_at": utcnow(),
                "output": output,
                "usage": AgentUsage.from_result(agent),
                "exit_code": agent.exit_code,
                "failed": agent.failed,
                "summary": _cut_end(agent.summary, MAX_SUMMARY_CHARS),
                "duration_seconds": result.duration_seconds,
                "commit": result.commit,
                "changed_files": result.changed_files[:MAX_CHANGED_FILES],
                "diff_stat": diff_stat,
            }
        )

    def with_conditions(self, statuses: list[ExitConditionStatus]) -> IterationRecord:
        """A copy with the evaluation's results."""
        now = utcnow()
        conditions = [ConditionRecord.from_status(s) for s in statuses]
        return self.model_copy(update={"conditions": conditions, "evaluated_at": now, "updated_at": now})

    def summarize(self) -> IterationSummary:
        """The record without its texts."""
        return IterationSummary(
            loop_id=self.loop_id,
            iteration=self.iteration,
            started_at=self.started_at,
            updated_at=self.updated_at,
            agent_running=self.agent_running,
            failed=self.failed,
            exit_code=self.exit_code,
            duration_seconds=self.duration_seconds,
            tokens_used=self.usage.tokens_used if self.usage else 0,
            cost_usd=self.usage.cost_usd if self.usage else None,
            commit=self.commit,
            diff_stat=self.diff_stat,
            output_chars=self.output.total_chars,
            conditions={c.name: c.status for c in self.conditions},
        )

    def shrunk(self, tail_chars: int) -> IterationRecord:
        """A copy whose output tail keeps only its last ``tail_chars`` characters (a store with
        a size limit makes room this way; ``total_chars`` still counts everything)."""
        output = self.output.model_copy(update={"tail": self.output.tail[-tail_chars:] if tail_chars else ""})
        return self.model_copy(update={"output": output})
