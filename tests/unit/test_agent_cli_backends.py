"""The agent CLI backends read each CLI's real output (issue 9, point 1), their configs refuse bad
input naming the field, and the prompt says what an agent can report (point 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.agents import build_cli_agent
from loopwright.adapters.local.agents.aider import AiderOutputParser, parse_count
from loopwright.adapters.local.agents.base import LineTap, OutputParser, build_result
from loopwright.adapters.local.agents.claude_code import ClaudeStreamParser
from loopwright.adapters.local.agents.codex import CodexJsonParser
from loopwright.adapters.local.agents.gemini import GeminiParser
from loopwright.adapters.local.agents.limits import (
    DEFAULT_USAGE_LIMIT_WAIT,
    claude_resets_at,
    codex_resets_at,
    local_zone,
    retry_delay_resets_at,
)
from loopwright.adapters.local.command_agent import AgentReport, CommandAgent
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.engine.local import build_agent
from loopwright.models import AgentRequest, CommandAgentConfig, CommandResult, LoopConfig
from loopwright.steps.prompt import render_prompt, report_file
from tests.agent_cli_fakes import CLAUDE_OK, SCENARIOS, SESSION

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def _parse(parser: OutputParser, cli: str, scenario: str) -> tuple[Any, list[str]]:
    stdout, stderr, code = SCENARIOS[cli][scenario]
    shown: list[str] = []
    for line in stdout:
        shown += parser.feed("stdout", line)
    for line in stderr:
        shown += parser.feed("stderr", line)
    return parser.finish(code), shown


def _config(agent: dict[str, Any]) -> LoopConfig:
    return LoopConfig.model_validate(
        {
            "goal": "g",
            "exit_conditions": [{"type": "CUSTOM", "name": "c", "command": ["true"]}],
            "agent": agent,
        }
    )


# ----------------------------------------------------------------------------- parsers
def test_claude_code_result_line_gives_tokens_cost_model_and_session() -> None:
    report, shown = _parse(ClaudeStreamParser(now=lambda: NOW), "claude", "ok")
    assert report.finished and report.error is None and report.malformed is None
    # Anthropic's input_tokens exclude both cache figures: input = 12 + 1500 + 18000
    assert (report.input_tokens, report.cached_input_tokens, report.output_tokens) == (19512, 18000, 210)
    assert report.tokens_used == 19722
    assert report.cost_usd == pytest.approx(0.0123)
    assert (report.model, report.session_id) == ("claude-sonnet-4-5-20250929", SESSION)
    assert report.final_text == "Fixed add() in src/calc.py: it subtracted."
    assert "[tool] Edit /w/src/calc.py" in shown and "I'll fix the failing check." in shown
    assert not any(line.startswith("{") for line in shown)


def test_claude_code_usage_limit_reads_the_unix_reset_time() -> None:
    report, _ = _parse(ClaudeStreamParser(now=lambda: NOW), "claude", "usage-limit")
    assert report.usage_limit and report.resets_at == datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cli", "parser", "missing"),
    [
        ("claude", lambda: ClaudeStreamParser(), "no final 'result' line"),
        ("codex", lambda: CodexJsonParser(), "no 'turn.completed' event"),
        ("gemini", lambda: GeminiParser("stream-json"), "no final 'result' event"),
        ("aider", lambda: AiderOutputParser(), "no 'Tokens: ... sent, ... received.' report"),
    ],
)
@pytest.mark.parametrize("scenario", ["malformed", "not-json"])
def test_output_without_the_final_record_is_malformed(
    cli: str, parser: Any, missing: str, scenario: str
) -> None:
    report, _ = _parse(parser(), cli, scenario)
    assert report.malformed is not None and missing in report.malformed
    assert not report.finished and not report.usage_limit


def test_codex_turn_completed_usage_and_thread_id() -> None:
    report, shown = _parse(CodexJsonParser(), "codex", "ok")
    assert (report.input_tokens, report.cached_input_tokens, report.output_tokens) == (24763, 24448, 122)
    assert report.tokens_used == 24885 and report.cost_usd is None
    assert report.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53" and report.final_text == "Fixed add()."
    assert "[tool] $ bash -lc 'pytest -q'" in shown and "[tool] update src/calc.py" in shown


def test_codex_keeps_the_last_running_total_not_the_sum() -> None:
    parser = CodexJsonParser()
    for total in (100, 250):
        parser.feed(
            "stdout",
            json.dumps(
                {
                    "type": "turn.completed",
                    "usage": {"input_tokens": total, "cached_input_tokens": 0, "output_tokens": 10},
                }
            ),
        )
    assert parser.finish(0).input_tokens == 250


def test_codex_usage_limit_without_a_time_has_no_reset() -> None:
    report, _ = _parse(CodexJsonParser(now=lambda: NOW), "codex", "usage-limit")
    assert report.usage_limit and report.resets_at is None
    assert report.error == "You've hit your usage limit. Try again later."


def test_gemini_stream_json_result_stats_and_assistant_text() -> None:
    report, shown = _parse(GeminiParser("stream-json"), "gemini", "ok")
    assert (report.input_tokens, report.cached_input_tokens, report.output_tokens) == (24401, 10656, 318)
    assert report.tokens_used == 24719 and report.model == "gemini-2.5-pro" and report.session_id == "c4f1"
    assert report.final_text == "Fixed add() in src/calc.py."
    assert "[tool] replace /w/src/calc.py" in shown


def test_gemini_quota_429_is_a_usage_limit_with_its_retry_delay() -> None:
    report, _ = _parse(GeminiParser("stream-json", now=lambda: NOW), "gemini", "usage-limit")
    assert report.usage_limit and report.resets_at == NOW + timedelta(seconds=30)


def test_gemini_json_output_sums_the_models_tokens() -> None:
    # Given the stats of Gemini CLI's json-formatter test (two models), pretty-printed
    payload = {
        "session_id": "s-1",
        "response": "Done.",
        "stats": {
            "models": {
                "gemini-2.5-pro": {
                    "tokens": {
                        "input": 13745,
                        "prompt": 24401,
                        "candidates": 215,
                        "total": 24719,
                        "cached": 10656,
                        "thoughts": 103,
                        "tool": 0,
                    }
                },
                "gemini-2.5-flash": {
                    "tokens": {
                        "input": 20803,
                        "prompt": 20803,
                        "candidates": 716,
                        "total": 21657,
                        "cached": 0,
                        "thoughts": 138,
                        "tool": 0,
                    }
                },
            }
        },
    }
    parser = GeminiParser("json")
    for line in json.dumps(payload, indent=2).splitlines():
        assert parser.feed("stdout", line) == []
    report = parser.finish(0)
    assert report.tokens_used == 24719 + 21657
    assert (report.input_tokens, report.cached_input_tokens) == (24401 + 20803, 10656)
    assert report.output_tokens == 215 + 103 + 716 + 138
    assert (report.model, report.session_id, report.final_text) == ("gemini-2.5-pro", "s-1", "Done.")


def test_gemini_json_error_object_is_the_error() -> None:
    parser = GeminiParser("json")
    parser.feed(
        "stdout", json.dumps({"error": {"type": "Error", "message": "Invalid input provided", "code": 42}})
    )
    report = parser.finish(42)
    assert report.error == "Invalid input provided (code 42)" and not report.usage_limit


def test_aider_usage_report_lines() -> None:
    report, shown = _parse(AiderOutputParser(), "aider", "ok")
    assert (report.input_tokens, report.cached_input_tokens, report.output_tokens) == (2500 + 3400, 3400, 120)
    assert report.cost_usd == pytest.approx(0.0091)
    assert report.model == "anthropic/claude-sonnet-4-20250514"
    assert "Applied edit to src/calc.py" in report.final_text and "Applied edit to src/calc.py" in shown


def test_aider_rate_limit_is_a_usage_limit_without_a_time() -> None:
    report, _ = _parse(AiderOutputParser(), "aider", "usage-limit")
    assert report.usage_limit and report.resets_at is None and "RateLimitError" in (report.error or "")


@pytest.mark.parametrize(("text", "count"), [("850", 850), ("2.5k", 2500), ("12k", 12000), ("1.0k", 1000)])
def test_aider_token_counts(text: str, count: int) -> None:
    assert parse_count(text) == count


# ----------------------------------------------------------------------------- reset times
def test_claude_clock_reset_in_a_named_zone_is_the_next_such_time() -> None:
    # 10:00 UTC is 11:00 in Berlin: "resets 6:20pm (Europe/Berlin)" is 17:20 UTC the same day
    found = claude_resets_at("You've hit your limit · resets 6:20pm (Europe/Berlin)", NOW)
    assert found == datetime(2026, 12, 7, 17, 20, tzinfo=UTC)
    # a time already past today is tomorrow's
    assert claude_resets_at("5-hour limit reached ∙ resets 2am (UTC)", NOW) == datetime(
        2026, 12, 8, 2, tzinfo=UTC
    )
    assert claude_resets_at("Claude usage limit reached.", NOW) is None


def test_codex_reset_forms() -> None:
    dated = codex_resets_at("You've hit your usage limit. Try again at Aug 8th, 2027 12:30 PM.", NOW)
    assert dated == datetime(2027, 8, 8, 12, 30, tzinfo=local_zone()).astimezone(UTC)
    later = codex_resets_at("... or try again in 3 days 6 hours 57 minutes.", NOW)
    assert later == NOW + timedelta(days=3, hours=6, minutes=57)
    today = codex_resets_at("... or try again at 3:28 PM.", NOW)
    assert today is not None and NOW < today <= NOW + timedelta(days=1)
    assert codex_resets_at("You've hit your usage limit. Try again later.", NOW) is None


def test_retry_delay_forms() -> None:
    assert retry_delay_resets_at('"retryDelay": "34s"', NOW) == NOW + timedelta(seconds=34)
    assert retry_delay_resets_at("Please retry in 900ms", NOW) == NOW + timedelta(milliseconds=900)
    assert retry_delay_resets_at("quota exceeded", NOW) is None


# ----------------------------------------------------------------------------- results
def _outcome(code: int | None, stdout: str = "", stderr: str = "", **extra: Any) -> CommandResult:
    return CommandResult(command=["x"], exit_code=code, stdout=stdout, stderr=stderr, **extra)


def test_a_usage_limit_without_a_time_waits_the_documented_default_and_says_so() -> None:
    report, _ = _parse(CodexJsonParser(), "codex", "usage-limit")
    result = build_result(
        "codex", _outcome(1), report, None, None, timeout_seconds=60, model="gpt-5", now=NOW
    )
    assert result.usage_limit_resets_at == NOW + DEFAULT_USAGE_LIMIT_WAIT and not result.failed
    assert "gave no reset time" in result.summary and "1 h" in result.summary
    assert result.model == "gpt-5"  # codex names no model: the configured one


def test_a_non_zero_exit_is_a_failure_with_the_clis_message() -> None:
    report, _ = _parse(ClaudeStreamParser(), "claude", "error-exit")
    stderr = SCENARIOS["claude"]["error-exit"][1][0]
    result = build_result(
        "claude-code", _outcome(1, stderr=stderr), report, None, None, timeout_seconds=60, model=None, now=NOW
    )
    assert result.failed and result.exit_code == 1
    assert "claude-code" in result.summary and "unknown option '--bogus'" in result.summary


def test_malformed_output_is_a_failure_naming_the_cli_and_what_was_missing() -> None:
    report, _ = _parse(ClaudeStreamParser(), "claude", "malformed")
    result = build_result(
        "claude-code", _outcome(0), report, None, None, timeout_seconds=60, model=None, now=NOW
    )
    assert result.failed and result.summary.startswith("claude-code: no final 'result' line")


def test_a_cli_that_could_not_start_or_timed_out_is_a_failure() -> None:
    parsed = ClaudeStreamParser().finish(None)
    missing = build_result(
        "claude-code",
        _outcome(None, error="command not found: claude (not on PATH)"),
        parsed,
        None,
        None,
        timeout_seconds=60,
        model=None,
        now=NOW,
    )
    assert missing.failed and missing.summary == "claude-code: command not found: claude (not on PATH)"
    slow = build_result(
        "codex", _outcome(None, timed_out=True), parsed, None, None, timeout_seconds=60, model=None, now=NOW
    )
    assert slow.failed and "timed out after 60 s" in slow.summary


def test_the_live_display_shows_readable_lines_split_across_chunks() -> None:
    shown: list[tuple[str, str]] = []
    tap = LineTap(ClaudeStreamParser(), lambda stream, text: shown.append((stream, text)))
    text = "\n".join(SCENARIOS["claude"]["ok"][0]) + "\n"
    for start in range(0, len(text), 37):  # chunks that cut lines anywhere
        tap("stdout", text[start : start + 37])
    tap("stderr", "a warning\n")
    tap.close()
    joined = "".join(chunk for _, chunk in shown)
    assert "[tool] Edit /w/src/calc.py\n" in joined and "[result] success, 3 turns, $0.0123\n" in joined
    assert '"type"' not in joined and ("stderr", "a warning\n") in shown


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("agent", "field", "fix"),
    [
        (
            {"kind": "claude-code", "extra_args": ["--output-format", "json"]},
            "extra_args",
            "set by loopwright",
        ),
        ({"kind": "codex", "extra_args": "--json"}, "extra_args", "set by loopwright"),
        ({"kind": "gemini", "env": {"LOOPWRIGHT_LOOP_ID": "x"}}, "env", "set by loopwright"),
        ({"kind": "aider", "env": {"BAD NAME": "x"}}, "env", "not an environment variable name"),
        ({"kind": "claude-code", "permission_mode": "yes"}, "permission_mode", "acceptEdits"),
        ({"kind": "codex", "sandbox": "none"}, "sandbox", "workspace-write"),
        ({"kind": "gemini", "timeout_seconds": 0}, "timeout_seconds", "greater than 0"),
        ({"kind": "aider", "model": ""}, "model", "at least 1"),
    ],
)
def test_bad_backend_config_is_refused_naming_the_field(agent: dict[str, Any], field: str, fix: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _config(agent)
    errors = caught.value.errors()
    assert any(field in [str(part) for part in error["loc"]] for error in errors), errors
    assert fix in str(caught.value)


def test_each_kind_builds_its_backend_with_safe_defaults(tmp_path: Path) -> None:
    sandbox = SubprocessSandbox()
    request = _request(tmp_path)
    paths = {
        "prompt_file": tmp_path / "prompt.md",
        "failures_file": tmp_path / "f",
        "report_file": tmp_path / "r",
    }
    argvs = {}
    for kind in ("claude-code", "codex", "gemini", "aider"):
        agent = build_agent(_config({"kind": kind, "model": "m1", "extra_args": "--extra 1"}), sandbox)
        assert agent is not None
        invocation = agent.invocation(request, "PROMPT", paths)  # type: ignore[attr-defined]
        argvs[kind] = invocation.argv
        assert agent.required_programs() == [invocation.argv[0]]
        assert invocation.argv[-2:] in (["--extra", "1"], ["1", "-"]) or "--extra" in invocation.argv
    assert argvs["claude-code"][:7] == [
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
    ]
    assert argvs["codex"][:5] == ["codex", "exec", "--json", "--sandbox", "workspace-write"]
    assert argvs["codex"][-1] == "-"
    assert "auto_edit" in argvs["gemini"] and "--yes-always" in argvs["aider"]
    assert "--no-auto-commits" in argvs["aider"] and str(tmp_path / "prompt.md") in argvs["aider"]


def test_claude_and_codex_continue_a_session_the_others_have_none(tmp_path: Path) -> None:
    sandbox = SubprocessSandbox()
    request = _request(tmp_path).model_copy(update={"session_id": "sess-1"})
    paths = {"prompt_file": tmp_path / "p", "failures_file": tmp_path / "f", "report_file": tmp_path / "r"}
    agents = {
        kind: build_agent(_config({"kind": kind}), sandbox)
        for kind in ("claude-code", "codex", "gemini", "aider")
    }
    assert {kind: agent.supports_sessions for kind, agent in agents.items() if agent} == {
        "claude-code": True,
        "codex": True,
        "gemini": False,
        "aider": False,
    }
    claude = agents["claude-code"].invocation(request, "PROMPT", paths)  # type: ignore[union-attr]
    assert claude.argv[5:7] == ["--resume", "sess-1"] and claude.stdin == "PROMPT"
    codex = agents["codex"].invocation(request, "PROMPT", paths)  # type: ignore[union-attr]
    assert codex.argv[-3:] == ["resume", "sess-1", "-"] and codex.stdin == "PROMPT"
    fresh = agents["claude-code"].invocation(_request(tmp_path), "PROMPT", paths)  # type: ignore[union-attr]
    assert "--resume" not in fresh.argv
    with pytest.raises(ValidationError, match="set by loopwright"):
        _config({"kind": "claude-code", "extra_args": ["--resume", "x"]})


def test_claude_reports_its_context_use_from_the_last_turn(tmp_path: Path) -> None:
    # CLAUDE_OK's assistant turn read 4 + 1200 tokens (input + cache writes): 1204 of a 2000 window
    parser = ClaudeStreamParser()
    for record in CLAUDE_OK:
        parser.feed("stdout", json.dumps(record))
    parsed = parser.finish(0)
    assert parsed.context_tokens == 1204
    outcome = CommandResult(command=["claude"], exit_code=0)
    result = build_result(
        "claude-code",
        outcome,
        parsed,
        None,
        None,
        timeout_seconds=60,
        model=None,
        now=NOW,
        context_window_tokens=2000,
    )
    assert result.context_percent == 60.2 and result.session_id == SESSION
    report = AgentReport(context_percent=91, handoff="muddled")
    reported = build_result(
        "claude-code",
        outcome,
        parsed,
        report,
        None,
        timeout_seconds=60,
        model=None,
        now=NOW,
        context_window_tokens=2000,
    )
    assert reported.context_percent == 91 and reported.handoff_requested == "muddled"


def test_build_cli_agent_refuses_other_configs() -> None:
    with pytest.raises(TypeError):
        build_cli_agent(CommandAgentConfig(command=["x"]), SubprocessSandbox())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- prompt
def _request(tmp_path: Path) -> AgentRequest:
    return AgentRequest(
        loop_id="loop-a",
        iteration=1,
        goal="fix {loop_id} literally",
        worktree=str(tmp_path),
        state_dir=str(tmp_path / ".loopwright"),
        max_iterations=3,
        tokens_used=0,
    )


def test_the_prompt_says_where_and_what_the_agent_can_report(tmp_path: Path) -> None:
    text = render_prompt(_request(tmp_path))
    assert str(report_file(_request(tmp_path))) in text and "$LOOPWRIGHT_REPORT_FILE" in text
    for field in ('"summary"', '"needs_human"', '"usage_limit_resets_at"'):
        assert field in text
    assert report_file(_request(tmp_path)) == tmp_path / ".loopwright" / "loops" / "loop-a" / "report.json"


def test_the_command_agent_offers_the_prompt_text_as_a_placeholder(tmp_path: Path) -> None:
    # Given a command agent that echoes {prompt}; the goal itself holds a placeholder's name
    out = tmp_path / "seen.txt"
    agent = CommandAgent(
        CommandAgentConfig(
            command=["python", "-c", f"import sys; open({str(out)!r}, 'w').write(sys.argv[1])", "{prompt}"]
        ),
        SubprocessSandbox(),
    )
    result = agent.run(_request(tmp_path))
    assert not result.failed, result.summary
    seen = out.read_text()
    assert seen == render_prompt(_request(tmp_path))
    assert "fix {loop_id} literally" in seen  # a value is never searched for placeholders


def test_cli_backends_are_refused_on_aws_naming_the_kind() -> None:
    from loopwright.cloud.runtime import check_agent_for_adapters
    from loopwright.exceptions import ConfigError

    config = _config({"kind": "codex"})
    with pytest.raises(ConfigError, match=r"agent\.kind: 'codex' runs only locally"):
        check_agent_for_adapters(config, "aws", repository="https://github.com/o/r.git")
    check_agent_for_adapters(config, "local")  # the local adapters run it
