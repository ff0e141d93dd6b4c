"""The agent's record of an iteration: the model's bounds, the engine's recorder over the fake
store (never breaking a loop), the CLI's live tail and ``logs --follow``'s reading of a record."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.console import Console

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.cli.agent_tail import PIPE_PREFIX, AgentTail, clean_line
from loopwright.cli.records import follow_output
from loopwright.engine import LoopFramework
from loopwright.engine.iteration_record import IterationRecorder
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import (
    AgentRequest,
    AgentResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationResult,
    LoopConfig,
    LoopState,
)
from loopwright.models.records import (
    CONDITION_TAIL_CHARS,
    MAX_PROMPT_CHARS,
    OUTPUT_HEAD_CHARS,
    OUTPUT_TAIL_CHARS,
    AgentOutput,
    ConditionRecord,
    IterationRecord,
    OutputBuffer,
)
from loopwright.ports import OutputCallback, StopCheck
from tests.fakes import FakeWorkspace, MemoryStore, ScriptedSandbox


def _config() -> LoopConfig:
    return LoopConfig.model_validate(
        {
            "goal": "make the check pass",
            "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
            "max_iterations": 5,
            "git_isolation": False,
        }
    )


def _state(loop_id: str = "rec-1", iteration: int = 0) -> LoopState:
    return LoopState(loop_id=loop_id, config=_config(), iteration=iteration, worktree="/tmp/wt")


# --------------------------------------------------------------------------------- the model's bounds
def test_output_keeps_its_head_and_tail_and_counts_what_it_left_out() -> None:
    buffer = OutputBuffer()
    total = OUTPUT_HEAD_CHARS + 3 * OUTPUT_TAIL_CHARS + 17
    for start in range(0, total, 1000):
        buffer.add("".join(chr(65 + (i % 26)) for i in range(start, min(total, start + 1000))))
    output = buffer.snapshot()

    assert len(output.head) == OUTPUT_HEAD_CHARS and len(output.tail) == OUTPUT_TAIL_CHARS
    assert output.total_chars == total
    assert output.omitted_chars == total - OUTPUT_HEAD_CHARS - OUTPUT_TAIL_CHARS
    assert output.tail.endswith(chr(65 + (total - 1) % 26))
    assert f"[... {output.omitted_chars} characters not kept ...]" in output.text()


def test_output_given_too_long_is_cut_to_its_bounds_by_the_model() -> None:
    output = AgentOutput(head="h" * (OUTPUT_HEAD_CHARS + 5), tail="t" * (OUTPUT_TAIL_CHARS + 9))
    assert len(output.head) == OUTPUT_HEAD_CHARS and len(output.tail) == OUTPUT_TAIL_CHARS
    assert output.total_chars == OUTPUT_HEAD_CHARS + OUTPUT_TAIL_CHARS


def test_since_returns_what_follows_and_says_what_was_not_kept() -> None:
    small = AgentOutput(head="abcdef", total_chars=6)
    assert small.since(0) == "abcdef" and small.since(4) == "ef" and small.since(6) == ""
    big = AgentOutput(head="H" * OUTPUT_HEAD_CHARS, tail="end", total_chars=OUTPUT_HEAD_CHARS + 100)
    assert big.since(OUTPUT_HEAD_CHARS + 98) == "nd"
    assert big.since(OUTPUT_HEAD_CHARS - 1) == "H\n[... 97 characters not kept ...]\nend"


def test_prompt_and_condition_tails_are_bounded_and_stay_so_when_read_back() -> None:
    record = IterationRecord(loop_id="rec-1", iteration=1, prompt="p" * (MAX_PROMPT_CHARS + 1000))
    assert len(record.prompt) == MAX_PROMPT_CHARS and "characters in all, cut by loopwright" in record.prompt
    assert IterationRecord.model_validate_json(record.model_dump_json()) == record  # cutting is stable

    status = ExitConditionStatus(
        name="tests", type=ExitConditionType.ALL_TESTS_PASS, stdout="x" * 50_000 + "LAST", stderr="err"
    )
    condition = ConditionRecord.from_status(status)
    assert len(condition.stdout_tail) == CONDITION_TAIL_CHARS and condition.stdout_tail.endswith("LAST")
    assert condition.stderr_tail == "err" and condition.output_truncated


def test_a_record_refuses_iteration_zero_and_a_bad_loop_id() -> None:
    with pytest.raises(ValueError, match="iteration"):
        IterationRecord(loop_id="rec-1", iteration=0)
    with pytest.raises(ValueError, match="loop_id"):
        IterationRecord(loop_id="../x", iteration=1)


# --------------------------------------------------------------------------------- the recorder
def _result(iteration: int = 1, **agent: object) -> IterationResult:
    return IterationResult(
        iteration=iteration,
        agent=AgentResult.model_validate(agent),
        commit="c1",
        changed_files=["a.py"],
        duration_seconds=1.5,
    )


def test_the_recorder_keeps_prompt_output_usage_and_conditions(tmp_path: Path) -> None:
    store = MemoryStore()
    state = store.create_loop(_state())
    recorder = IterationRecorder(store)

    recorder.begin(state, tmp_path, live=True)
    observe = recorder.observer(None)
    observe("stdout", "working\n")
    observe("stderr", "warning: x\n")
    recorder.agent_done(
        state,
        _result(tokens_used=30, input_tokens=20, cached_input_tokens=5, output_tokens=10, cost_usd=0.25),
        FakeWorkspace(tmp_path),
    )
    state.iteration = state.evaluated_iteration = 1
    state.exit_conditions = [
        ExitConditionStatus(
            name="a", type=ExitConditionType.CUSTOM, status=ExitConditionStatusValue.NOT_MET, stdout="boom"
        )
    ]
    recorder.evaluated(state)

    record = store.get_iteration_record("rec-1", 1)
    assert record is not None and not record.agent_running
    assert "# loopwright: iteration 1 of 5" in record.prompt and "make the check pass" in record.prompt
    assert record.output.text() == "working\nwarning: x\n"
    assert record.usage is not None and (record.usage.tokens_used, record.usage.cost_usd) == (30, 0.25)
    assert (record.commit, record.duration_seconds, record.changed_files) == ("c1", 1.5, ["a.py"])
    assert [(c.name, c.status, c.stdout_tail) for c in record.conditions] == [
        ("a", ExitConditionStatusValue.NOT_MET, "boom")
    ]
    assert [s.iteration for s in store.list_iteration_records("rec-1")] == [1]


def test_a_working_agents_output_is_written_every_flush_interval_and_never_after_its_end(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    state = store.create_loop(_state())
    now = [0.0]
    recorder = IterationRecorder(store, flush_seconds=2.0, clock=lambda: now[0])
    recorder.begin(state, tmp_path, live=True)
    observe = recorder.observer(None)

    observe("stdout", "one\n")  # within the interval: not written
    assert store.record_writes == 1  # the start
    now[0] = 2.5
    observe("stdout", "two\n")
    stored = store.get_iteration_record("rec-1", 1)
    assert store.record_writes == 2 and stored is not None and stored.agent_running
    assert stored.output.text() == "one\ntwo\n"

    recorder.agent_done(state, _result(), FakeWorkspace(tmp_path))
    now[0] = 10.0
    observe("stdout", "late\n")  # a reader thread's last chunk after the end: no stale rewrite
    final = store.get_iteration_record("rec-1", 1)
    assert final is not None and not final.agent_running


def test_an_in_process_agent_is_written_only_when_done(tmp_path: Path) -> None:
    store = MemoryStore()
    state = store.create_loop(_state())
    recorder = IterationRecorder(store, flush_seconds=0.0)
    recorder.begin(state, tmp_path, live=False)
    recorder.observer(None)("stdout", "x")
    assert store.record_writes == 0
    recorder.agent_done(state, _result(), FakeWorkspace(tmp_path))
    assert store.record_writes == 1


class _FailingStore(MemoryStore):
    def save_iteration_record(self, record: IterationRecord) -> None:
        raise LoopFrameworkError("disk full")


class _NoRecords(MemoryStore):
    def save_iteration_record(self, record: IterationRecord) -> None:
        raise NotImplementedError

    def get_iteration_record(self, loop_id: str, iteration: int) -> IterationRecord | None:
        raise NotImplementedError


@pytest.mark.parametrize("store_type", [_FailingStore, _NoRecords])
def test_a_store_that_cannot_keep_records_never_breaks_the_loop(
    tmp_path: Path, store_type: type[MemoryStore], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a store whose record writes fail (or that keeps none)
    store = store_type()
    calls = {"n": 0}

    def agent(request: AgentRequest) -> AgentResult:
        calls["n"] += 1
        return AgentResult(summary="did it")

    sandbox = ScriptedSandbox(lambda command, call: (0 if calls["n"] >= 2 else 1, "out"))
    loop = LoopFramework(
        _config(),
        workspace=tmp_path,
        store=store,
        sandbox=sandbox,
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
    )

    # When the loop runs, Then it converges as without records
    result = loop.run(work_function=agent)
    assert result.success and result.iterations == 2
    if store_type is _FailingStore:
        assert "was not stored: disk full" in caplog.text


def test_the_engine_records_each_iteration_and_passes_output_on(tmp_path: Path) -> None:
    # Given an agent that prints through its output callback, and a caller's observer
    store = MemoryStore()
    seen: list[tuple[str, str]] = []

    class PrintingAgent:
        in_process = False

        def required_programs(self) -> list[str]:
            return []

        def run(
            self,
            request: AgentRequest,
            *,
            should_stop: StopCheck | None = None,
            on_output: OutputCallback | None = None,
        ) -> AgentResult:
            assert on_output is not None
            on_output("stdout", f"iteration {request.iteration} says hi\n")
            return AgentResult(summary="ok", exit_code=0, tokens_used=7)

    # the condition fails at the baseline (call 1) and after iteration 1, and holds after iteration 2
    sandbox = ScriptedSandbox(lambda command, call: (0 if call >= 3 else 1, f"check run {call}"))
    loop = LoopFramework(
        _config(),
        workspace=tmp_path,
        store=store,
        sandbox=sandbox,
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
        agent=PrintingAgent(),  # type: ignore[arg-type]
        output_observer=lambda stream, text: seen.append((stream, text)),
    )

    # When it runs two iterations
    assert loop.run().iterations == 2

    # Then each has its record, evaluated, and the caller saw the output too
    summaries = store.list_iteration_records(loop.loop_id)
    assert [(s.iteration, s.conditions["a"]) for s in summaries] == [
        (1, ExitConditionStatusValue.NOT_MET),
        (2, ExitConditionStatusValue.MET),
    ]
    second = store.get_iteration_record(loop.loop_id, 2)
    assert second is not None and second.output.text() == "iteration 2 says hi\n"
    assert (
        second.conditions[0].stdout_tail == "check run 3" and second.usage and second.usage.tokens_used == 7
    )
    assert seen == [("stdout", "iteration 1 says hi\n"), ("stdout", "iteration 2 says hi\n")]


# --------------------------------------------------------------------------------- the CLI's tail
def test_clean_line_removes_escapes_and_controls_and_keeps_a_progress_bars_last_state() -> None:
    assert clean_line("\x1b[31mred\x1b[0m text") == "red text"
    assert clean_line("\x1b]0;title\x07after") == "after"
    assert clean_line("10%\r50%\r100%") == "100%"
    assert clean_line("bell\x07 and\x00 nul\ttab") == "bell and nul\ttab"


def test_the_tail_keeps_the_last_lines_on_a_terminal() -> None:
    tail = AgentTail(Console(file=io.StringIO()), live=True, lines=3)
    tail("stdout", "1\n2\n3\n")
    tail("stderr", "4\n5")
    assert tail.lines() == ["3", "4", "5"]
    tail.reset()
    assert tail.renderable() is None


def test_piped_agent_lines_are_printed_prefixed_as_they_complete() -> None:
    out = io.StringIO()
    tail = AgentTail(Console(file=out, width=200), live=False)
    tail("stdout", "first\nsec")
    tail("stdout", "ond\npartial")
    assert out.getvalue() == f"{PIPE_PREFIX}first\n{PIPE_PREFIX}second\n"
    tail.finish()
    assert out.getvalue().endswith(f"{PIPE_PREFIX}partial\n")


# --------------------------------------------------------------------------------- logs --follow
def _record(iteration: int, text: str, *, running: bool) -> IterationRecord:
    return IterationRecord(
        loop_id="rec-1",
        iteration=iteration,
        agent_running=running,
        output=AgentOutput(head=text, total_chars=len(text)),
    )


def test_follow_prints_new_output_moves_to_newer_iterations_and_ends_with_the_loop() -> None:
    # Given a loop whose record grows while the follower polls
    store = MemoryStore()
    store.create_loop(_state())
    store.save_iteration_record(_record(1, "a\n", running=True))
    steps: Sequence[IterationRecord] = [
        _record(1, "a\nb\n", running=False),
        _record(2, "c\n", running=True),
        _record(2, "c\nd\n", running=False),
    ]
    polls = iter(range(10))
    written: list[str] = []

    def sleep(_seconds: float) -> None:
        step = next(polls)
        if step < len(steps):
            store.save_iteration_record(steps[step])

    # When it follows until the loop is no longer running (after four polls)
    follow_output(
        store,
        "rec-1",
        None,
        running=lambda: len(written) < 8,
        write=written.append,
        sleep=sleep,
    )

    # Then every line was printed once, in order, with a header per iteration, and it ended
    text = "".join(written)
    assert text == "--- iteration 1 ---\na\nb\n--- iteration 2 ---\nc\nd\n"


def test_follow_of_one_iteration_ends_when_its_agent_is_done() -> None:
    store = MemoryStore()
    store.create_loop(_state())
    store.save_iteration_record(_record(1, "x\n", running=False))
    written: list[str] = []
    follow_output(store, "rec-1", 1, running=lambda: True, write=written.append, sleep=lambda s: None)
    assert written == ["x\n"]
