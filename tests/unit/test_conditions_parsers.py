"""Parsers, default commands and failure summaries, on canned tool output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopwright.conditions import (
    MAX_FAILURE_CHARS,
    MAX_FAILURES,
    default_command,
    needs_scratch_dir,
    parse,
    parse_bandit,
    parse_compileall,
    parse_exit_code,
    parse_pytest,
    parse_ruff,
    resolve_command,
    resolve_parser,
)
from loopwright.exceptions import ConfigError
from loopwright.models import (
    CommandResult,
    ExitConditionConfig,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
)
from loopwright.steps.evaluate import failures_for_agent

S = ExitConditionStatusValue
T = ExitConditionType
CWD = Path("/work/repo")


def result(exit_code: int | None = 0, stdout: str = "", stderr: str = "", **kw: object) -> CommandResult:
    return CommandResult(command=["tool"], exit_code=exit_code, stdout=stdout, stderr=stderr, **kw)  # type: ignore[arg-type]


# --- common ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pytest", "ruff", "bandit", "compileall", "exit_code"])
def test_every_parser_reports_timeout_and_start_failure(name: str) -> None:
    timed_out = parse(name, result(None, stdout="partial", timed_out=True, duration_seconds=30.2))
    assert timed_out.status is S.TIMEOUT
    assert "30.2 s" in timed_out.summary
    assert timed_out.details == {"timed_out": True}
    assert timed_out.failures == ["partial"]
    missing = parse(name, result(None, error="command not found: ruff (not on PATH)"))
    assert missing.status is S.ERROR
    assert "command not found: ruff" in missing.summary
    assert missing.failures == ["command not found: ruff (not on PATH)"]
    assert missing.details == {"error": "command not found: ruff (not on PATH)"}
    no_code = parse(name, result(None))
    assert (no_code.status, no_code.details) == (
        S.ERROR,
        {"error": "the command did not report an exit code"},
    )
    # an error is never MET, even when an exit code 0 came with it
    unread = parse(name, result(0, stdout="[]", error="output could not be decoded"))
    assert unread.status is S.ERROR
    assert unread.summary == "could not run: output could not be decoded"


def test_exit_code_parser() -> None:
    assert parse_exit_code(result(0, "ok")).status is S.MET
    lines = "\n".join(f"line {i}" for i in range(30))
    failed = parse_exit_code(result(3, stdout=lines, stderr="boom\n\n"))
    assert failed.status is S.NOT_MET
    assert failed.summary == "failed: exit code 3"
    assert failed.details == {"exit_code": 3}
    assert len(failed.failures) == 20
    assert failed.failures[-1] == "line 29"
    assert "killed by signal 9" in parse_exit_code(result(-9)).summary


def test_failures_are_bounded_in_count_and_length() -> None:
    many = "\n".join(f"FAILED t.py::test_{i} - " + "x" * 1000 for i in range(500))
    parsed = parse_pytest(result(1, stdout=many + "\n500 failed in 1.00s\n"))
    assert len(parsed.failures) == MAX_FAILURES
    assert parsed.failures[-1] == f"... and {500 - MAX_FAILURES + 1} more"
    assert all(len(line) <= MAX_FAILURE_CHARS for line in parsed.failures)
    assert parsed.details["failed"] == 500


def test_a_failure_line_of_exactly_the_limit_is_kept_whole() -> None:
    at_limit = "FAILED t.py::a - " + "x" * (MAX_FAILURE_CHARS - 17)
    over = "FAILED t.py::b - " + "y" * (MAX_FAILURE_CHARS - 16)
    assert len(at_limit) == MAX_FAILURE_CHARS
    parsed = parse_pytest(result(1, stdout=f"{at_limit}\n{over}\n2 failed in 0.10s\n"))
    assert parsed.failures == [at_limit, over[: MAX_FAILURE_CHARS - 1] + "…"]
    assert len(parsed.failures[1]) == MAX_FAILURE_CHARS


# --- pytest -----------------------------------------------------------------------------------

PYTEST_FAILED = """\
F.                                                                       [100%]
=================================== FAILURES ===================================
____________________________________ test_a ____________________________________

    def test_a():
>       assert 1 == 2
E       assert 1 == 2

tests/test_a.py:2: AssertionError
=========================== short test summary info ============================
FAILED tests/test_a.py::test_a - assert 1 == 2
ERROR tests/test_b.py::test_fx - RuntimeError: boom
3 failed, 10 passed, 1 skipped, 2 deselected, 1 xfailed, 1 xpassed, 2 warnings, 1 error in 0.50s
"""

PYTEST_COLLECTION = """\

==================================== ERRORS ====================================
__________________________ ERROR collecting test_e.py __________________________
ImportError while importing test module '/tmp/e/test_e.py'.
Traceback:
test_e.py:1: in <module>
    import nosuchmod
E   ModuleNotFoundError: No module named 'nosuchmod'
=========================== short test summary info ============================
ERROR test_e.py
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
1 error in 0.12s
"""


def test_pytest_failures_and_counts() -> None:
    parsed = parse_pytest(result(1, PYTEST_FAILED))
    assert parsed.status is S.NOT_MET
    assert parsed.details == {
        "passed": 10,
        "failed": 3,
        "errors": 1,
        "skipped": 1,
        "xfailed": 1,
        "xpassed": 1,
        "deselected": 2,
        "warnings": 2,
        "rerun": 0,
        "exit_code": 1,
    }
    assert parsed.failures == [
        "FAILED tests/test_a.py::test_a - assert 1 == 2",
        "ERROR tests/test_b.py::test_fx - RuntimeError: boom",
    ]
    assert parsed.summary.startswith("3 failed, 10 passed")


def test_pytest_all_passed_with_decorated_summary() -> None:
    out = "..\n============================== 2 passed in 0.01s ===============================\n"
    parsed = parse_pytest(result(0, out))
    assert parsed.status is S.MET
    assert parsed.details["passed"] == 2
    assert parsed.details["failed"] == 0
    assert parsed.summary == "2 passed"
    assert parsed.failures == []


def test_pytest_collection_error_names_the_cause() -> None:
    parsed = parse_pytest(result(2, PYTEST_COLLECTION))
    assert parsed.status is S.NOT_MET
    assert parsed.summary == "interrupted: 1 error"
    assert parsed.details["errors"] == 1
    assert parsed.failures == ["ERROR test_e.py - ModuleNotFoundError: No module named 'nosuchmod'"]


def test_pytest_no_tests_ran() -> None:
    parsed = parse_pytest(result(5, "\nno tests ran in 0.00s\n"))
    assert parsed.status is S.NOT_MET
    assert "no tests ran" in parsed.summary
    assert parsed.details["passed"] == 0


def test_pytest_usage_error_and_unparsable_output() -> None:
    usage = parse_pytest(result(4, stderr="ERROR: file or directory not found: nope\n"))
    assert usage.status is S.ERROR
    assert usage.failures == ["ERROR: file or directory not found: nope"]
    other = parse_pytest(result(1, "make: *** [test] Error 1\n"))
    assert other.status is S.NOT_MET
    assert "no pytest summary" in other.summary
    assert other.failures == ["make: *** [test] Error 1"]
    assert parse_pytest(result(0, "")).status is S.MET


# --- ruff -------------------------------------------------------------------------------------


def ruff_finding(
    code: str | None, path: str, row: int, col: int, msg: str, fix: str | None
) -> dict[str, object]:
    return {
        "code": code,
        "filename": path,
        "location": {"row": row, "column": col},
        "end_location": {"row": row, "column": col + 1},
        "message": msg,
        "fix": None if fix is None else {"applicability": fix, "edits": [], "message": "fix"},
        "noqa_row": row,
        "url": None,
    }


def test_ruff_findings() -> None:
    findings = [
        ruff_finding("F401", "/work/repo/pkg/a.py", 1, 8, "`os` imported but unused", "safe"),
        ruff_finding("F401", "/work/repo/pkg/b.py", 2, 8, "`sys` imported but unused", "safe"),
        ruff_finding("E711", "/work/repo/pkg/b.py", 5, 9, "Comparison to `None`", "unsafe"),
        ruff_finding(None, "/elsewhere/c.py", 3, 1, "SyntaxError: Expected ')'", None),
    ]
    parsed = parse_ruff(result(1, json.dumps(findings)), CWD)
    assert parsed.status is S.NOT_MET
    assert parsed.details == {
        "findings": 4,
        "by_rule": {"E711": 1, "F401": 2, "syntax-error": 1},
        "fixable": 2,
        "exit_code": 1,
    }
    assert parsed.failures == [
        "pkg/a.py:1:8 F401 `os` imported but unused",
        "pkg/b.py:2:8 F401 `sys` imported but unused",
        "pkg/b.py:5:9 E711 Comparison to `None`",
        "/elsewhere/c.py:3:1 syntax-error SyntaxError: Expected ')'",
    ]
    assert parsed.summary == "4 lint findings (2 fixable with `ruff check --fix`)"


def test_ruff_finding_without_its_fields() -> None:
    parsed = parse_ruff(result(1, '[{"code": "E999"}]'), CWD)
    assert parsed.failures == ["?:0:0 E999"]
    assert parsed.details == {"findings": 1, "by_rule": {"E999": 1}, "fixable": 0, "exit_code": 1}
    assert parsed.summary == "1 lint finding"


def test_parse_shows_paths_relative_to_the_folder_it_is_given() -> None:
    finding = ruff_finding("F401", "/work/repo/pkg/a.py", 1, 8, "unused", None)
    assert parse("ruff", result(1, json.dumps([finding])), CWD).failures == ["pkg/a.py:1:8 F401 unused"]


def test_ruff_clean() -> None:
    parsed = parse_ruff(result(0, "[]\n"), CWD)
    assert parsed.status is S.MET
    assert parsed.details["findings"] == 0
    assert parsed.details["by_rule"] == {}


@pytest.mark.parametrize(
    "stdout",
    [
        "pkg/a.py:1:8: F401 `os` imported but unused\nFound 1 error.\n",
        '[{"code": ',
        '{"a": 1}',
        "",
        "[1, 2]",
        '[{"code": "F401"}, "F401"]',
    ],
)
def test_ruff_output_that_is_not_json_is_an_error(stdout: str) -> None:
    parsed = parse_ruff(result(1, stdout), CWD)
    assert parsed.status is S.ERROR
    assert "not JSON" in parsed.summary


def test_ruff_own_failure_is_an_error() -> None:
    parsed = parse_ruff(result(2, "[]", "ruff failed\n  Cause: unknown rule selector: `XYZ`\n"), CWD)
    assert (parsed.status, parsed.summary, parsed.details) == (
        S.ERROR,
        "ruff failed (exit code 2): ruff failed",
        {"exit_code": 2},
    )
    assert parsed.failures == ["ruff failed", "  Cause: unknown rule selector: `XYZ`", "[]"]
    long = parse_ruff(result(2, "", "e" * 300), CWD)
    assert long.summary == "ruff failed (exit code 2): " + "e" * 200
    no_stderr = parse_ruff(result(2, "error: bad config\n"), CWD)
    assert no_stderr.summary == "ruff failed (exit code 2): error: bad config"
    killed = parse_ruff(result(-9), CWD)
    assert (killed.status, killed.summary) == (S.ERROR, "ruff failed (killed by signal 9): (no output)")
    assert parse_ruff(result(1, "[]"), CWD).status is S.ERROR


# --- bandit -----------------------------------------------------------------------------------


def bandit_issue(path: str, line: int, test_id: str, severity: str, text: str) -> dict[str, object]:
    return {
        "filename": path,
        "line_number": line,
        "test_id": test_id,
        "test_name": "x",
        "issue_severity": severity,
        "issue_confidence": "HIGH",
        "issue_text": text,
        "code": "...",
    }


def test_bandit_issues_and_scan_errors() -> None:
    report = {
        "errors": [{"filename": "./pkg/broken.py", "reason": "syntax error while parsing AST from file"}],
        "metrics": {"_totals": {"loc": 42, "nosec": 1}},
        "results": [
            bandit_issue("./pkg/a.py", 4, "B602", "HIGH", "subprocess call with shell=True identified."),
            bandit_issue("./pkg/a.py", 5, "B307", "MEDIUM", "Use of possibly insecure function."),
            bandit_issue("/work/repo/pkg/b.py", 9, "B307", "MEDIUM", "Use of possibly insecure function."),
        ],
    }
    parsed = parse_bandit(result(1, "[main] INFO profile include tests: None\n" + json.dumps(report)), CWD)
    assert parsed.status is S.NOT_MET
    assert parsed.details == {
        "issues": 3,
        "by_severity": {"HIGH": 1, "MEDIUM": 2},
        "by_confidence": {"HIGH": 3},
        "by_test": {"B307": 2, "B602": 1},
        "scan_errors": 1,
        "loc": 42,
        "nosec": 1,
        "exit_code": 1,
    }
    assert parsed.failures == [
        "pkg/a.py:4 B602 [HIGH/HIGH] subprocess call with shell=True identified.",
        "pkg/a.py:5 B307 [MEDIUM/HIGH] Use of possibly insecure function.",
        "pkg/b.py:9 B307 [MEDIUM/HIGH] Use of possibly insecure function.",
        "pkg/broken.py: bandit could not scan this file: syntax error while parsing AST from file",
    ]
    assert parsed.summary == "3 security issues (1 HIGH, 2 MEDIUM); 1 file not scanned"


def test_bandit_clean_and_unscannable_only() -> None:
    clean = {"errors": [], "metrics": {"_totals": {"loc": 3}}, "results": []}
    met = parse_bandit(result(0, json.dumps(clean)))
    assert (met.status, met.summary, met.failures) == (S.MET, "no security issues", [])
    assert met.details == {
        "issues": 0,
        "by_severity": {},
        "by_confidence": {},
        "by_test": {},
        "scan_errors": 0,
        "loc": 3,
        "nosec": None,
        "exit_code": 0,
    }
    broken = {"errors": [{"filename": "./x.py", "reason": "syntax error"}], "results": []}
    parsed = parse_bandit(result(0, json.dumps(broken)))
    assert parsed.status is S.NOT_MET
    assert parsed.summary == "1 file not scanned"
    two = {"errors": [{"filename": "./x.py"}, {"reason": "r"}, "not an error"], "results": []}
    assert parse_bandit(result(0, json.dumps(two))).failures == [
        "x.py: bandit could not scan this file: unknown",
        "?: bandit could not scan this file: r",
    ]
    assert parse_bandit(result(0, json.dumps(two))).summary == "2 files not scanned"


def test_bandit_issue_without_its_fields() -> None:
    report = {"results": [{}, "not an issue"], "metrics": None}
    parsed = parse_bandit(result(1, json.dumps(report)), CWD)
    assert parsed.failures == ["?:0 ? [?/?]"]
    assert parsed.summary == "1 security issue (1 None)"
    assert parsed.details["by_test"] == {"None": 1}
    assert (parsed.details["loc"], parsed.details["nosec"]) == (None, None)


@pytest.mark.parametrize("stdout", ["Run started:2024\n>> Issue: [B602]", "[]", "{}", "{nope"])
def test_bandit_output_that_is_not_a_report_is_an_error(stdout: str) -> None:
    parsed = parse_bandit(result(1, stdout))
    assert parsed.status is S.ERROR
    assert "not a JSON report" in parsed.summary


def test_bandit_not_a_report_names_the_exit_code_and_the_output() -> None:
    exited_0 = parse_bandit(result(0, "{nope"))
    assert (
        exited_0.summary == "bandit output is not a JSON report (run bandit with -f json; exit code 0): {nope"
    )
    assert exited_0.details == {"exit_code": 0}
    assert exited_0.failures == ["{nope"]
    only_stderr = parse_bandit(result(2, "", "usage: bandit [-h]\n"))
    assert only_stderr.summary.endswith("exit code 2): usage: bandit [-h]")


# --- compileall -------------------------------------------------------------------------------

COMPILEALL_OUT = """\
*** Error compiling './ind.py'...
Sorry: IndentationError: unexpected indent (ind.py, line 1)
*** Error compiling './pkg/bad.py'...
  File "./pkg/bad.py", line 1
    def f(:
          ^
SyntaxError: invalid syntax

"""


def test_compileall_errors() -> None:
    parsed = parse_compileall(result(1, COMPILEALL_OUT), CWD)
    assert parsed.status is S.NOT_MET
    assert parsed.details == {"errors": 2, "exit_code": 1}
    assert parsed.failures == [
        "ind.py:1 IndentationError: unexpected indent (ind.py, line 1)",
        "pkg/bad.py:1 SyntaxError: invalid syntax",
    ]
    assert parsed.summary == "2 files failed to compile"


#: python -m compileall -q ., recorded with three bad files among good ones (Python 3.11); the
#: progress lines before the first error are what compileall prints without -q.
COMPILEALL_SEVERAL = """\
Listing '/work/repo'...
Compiling '/work/repo/good.py'...
*** Error compiling '/work/repo/ind.py'...
Sorry: IndentationError: unexpected indent (ind.py, line 2)
*** Error compiling '/work/repo/pkg/bad.py'...
  File "/work/repo/pkg/bad.py", line 1
    def f(:
          ^
SyntaxError: invalid syntax (bad.py, line 7)

*** Error compiling '/work/repo/pkg/tab.py'...
Sorry: TabError: inconsistent use of tabs and spaces in indentation (tab.py, line 3)
"""


def test_compileall_several_errors_keep_their_own_lines() -> None:
    parsed = parse_compileall(result(1, COMPILEALL_SEVERAL), CWD)
    assert parsed.details == {"errors": 3, "exit_code": 1}
    assert parsed.failures == [
        "ind.py:2 IndentationError: unexpected indent (ind.py, line 2)",
        # the File line's number wins over a number at the end of the message
        "pkg/bad.py:1 SyntaxError: invalid syntax (bad.py, line 7)",
        "pkg/tab.py:3 TabError: inconsistent use of tabs and spaces in indentation (tab.py, line 3)",
    ]
    assert parsed.summary == "3 files failed to compile"
    one = parse_compileall(result(1, "*** Error compiling 'a.py'...\nSyntaxError: bad\n"), CWD)
    assert (one.summary, one.failures) == ("1 file failed to compile", ["a.py SyntaxError: bad"])
    unfinished = parse_compileall(result(1, "*** Error compiling 'a.py'...\n"), CWD)
    assert unfinished.failures == ["a.py"]


def test_compileall_success_and_generic_build_failure() -> None:
    succeeded = parse_compileall(result(0, ""))
    assert (succeeded.status, succeeded.summary, succeeded.details, succeeded.failures) == (
        S.MET,
        "build succeeded",
        {"errors": 0, "exit_code": 0},
        [],
    )
    mixed_case = parse_compileall(result(1, "", "ld: Error: undefined symbol\n  warning: unused\n"))
    assert mixed_case.failures == ["ld: Error: undefined symbol"]
    quiet = parse_compileall(result(1, "", "  step 1\n  step 2\n"))
    assert quiet.failures == ["  step 1", "  step 2"]
    generic = parse_compileall(result(2, "building...\n", "error: linker failed\nmake: stop\n"))
    assert generic.status is S.NOT_MET
    assert generic.failures == ["error: linker failed"]
    assert generic.summary == "build failed: exit code 2"


# --- defaults -----------------------------------------------------------------------------------


def test_default_commands_and_parsers() -> None:
    tests = ExitConditionConfig(type=T.ALL_TESTS_PASS)
    assert resolve_command(tests) == [
        "python",
        "-m",
        "pytest",
        "-q",
        "-rfE",
        "-p",
        "no:cacheprovider",
    ]
    assert resolve_parser(tests) == "pytest"
    lint = ExitConditionConfig(type=T.LINTING_CLEAN)
    assert resolve_command(lint) == ["ruff", "check", "--no-cache", "--output-format", "json", "."]
    assert resolve_parser(lint) == "ruff"
    build_cfg = ExitConditionConfig(type=T.BUILD_SUCCEEDS)
    assert needs_scratch_dir(build_cfg)
    build = resolve_command(build_cfg, Path("/scratch"))
    assert build[:3] == ["python", "-X", "pycache_prefix=/scratch"]
    assert build[3:6] == ["-m", "compileall", "-q"]
    assert build[-1] == "."
    assert not any("pycache_prefix" in arg for arg in resolve_command(build_cfg))
    assert not needs_scratch_dir(ExitConditionConfig(type=T.BUILD_SUCCEEDS, command="make"))
    scan = resolve_command(ExitConditionConfig(type=T.SECURITY_SCAN_CLEAN))
    assert scan[:5] == ["bandit", "-r", ".", "-f", "json"]
    assert "./.venv" in scan[scan.index("-x") + 1].split(",")
    assert resolve_parser(ExitConditionConfig(type=T.SECURITY_SCAN_CLEAN)) == "bandit"
    custom = ExitConditionConfig(type=T.CUSTOM, command="make check")
    assert resolve_command(custom) == ["make", "check"]
    assert resolve_parser(custom) == "exit_code"
    with pytest.raises(ConfigError):
        default_command(T.CUSTOM)


def test_compileall_exclusion_regex() -> None:
    import re

    build = resolve_command(ExitConditionConfig(type=T.BUILD_SUCCEEDS))
    exclude = re.compile(build[build.index("-x") + 1])
    assert exclude.search("./.venv/lib/site.py")
    assert exclude.search("./.git/hooks/x.py")
    assert not exclude.search("./pkg/venvtools.py")
    assert not exclude.search("./pkg/mod.py")


@pytest.mark.parametrize(
    ("type_", "command", "parser", "expected"),
    [
        (T.LINTING_CLEAN, "ruff check src", "auto", "exit_code"),
        (T.LINTING_CLEAN, "ruff check --output-format=json src", "auto", "ruff"),
        (T.LINTING_CLEAN, "python -m ruff check --output-format json", "auto", "ruff"),
        (T.LINTING_CLEAN, "flake8", "auto", "exit_code"),
        (T.SECURITY_SCAN_CLEAN, "bandit -r src -f json", "auto", "bandit"),
        (T.SECURITY_SCAN_CLEAN, "bandit -r src", "auto", "exit_code"),
        (T.ALL_TESTS_PASS, "make test", "auto", "pytest"),
        (T.BUILD_SUCCEEDS, "make", "auto", "compileall"),
        (T.CUSTOM, "ruff check --output-format json", "ruff", "ruff"),
        (T.ALL_TESTS_PASS, "make test", "exit_code", "exit_code"),
    ],
)
def test_parser_resolution_for_given_commands(
    type_: ExitConditionType, command: str, parser: str, expected: str
) -> None:
    cfg = ExitConditionConfig(type=type_, command=command, parser=parser)  # type: ignore[arg-type]
    assert resolve_parser(cfg) == expected


# --- failures for the agent -------------------------------------------------------------------


def status(
    name: str, type_: ExitConditionType, value: S, failures: list[str], summary: str = ""
) -> ExitConditionStatus:
    return ExitConditionStatus(name=name, type=type_, status=value, failures=failures, summary=summary)


def test_failures_for_agent_spreads_the_limit_fairly() -> None:
    statuses = [
        status("tests", T.ALL_TESTS_PASS, S.NOT_MET, [f"FAILED t::{i}" for i in range(10)]),
        status("lint", T.LINTING_CLEAN, S.NOT_MET, ["a.py:1:1 UP025 Remove unicode prefix"]),
        status("build", T.BUILD_SUCCEEDS, S.MET, []),
        status("scan", T.SECURITY_SCAN_CLEAN, S.TIMEOUT, [], "timed out after 30.0 s"),
        status("check", T.CUSTOM, S.NOT_MET, [f"c{i}" for i in range(10)]),
    ]
    lines = failures_for_agent(statuses, 8)
    assert len(lines) == 8
    assert lines[:3] == [
        "ALL_TESTS_PASS (tests): FAILED t::0",
        "ALL_TESTS_PASS (tests): FAILED t::1",
        "ALL_TESTS_PASS (tests): FAILED t::2",
    ]
    assert "LINTING_CLEAN (lint): a.py:1:1 UP025 Remove unicode prefix" in lines
    assert "SECURITY_SCAN_CLEAN (scan): TIMEOUT: timed out after 30.0 s" in lines
    assert sum(line.startswith("CUSTOM (check): ") for line in lines) == 3
    assert not any("BUILD_SUCCEEDS" in line for line in lines)
    assert len(failures_for_agent(statuses, 100)) == 10 + 1 + 1 + 10
    assert failures_for_agent(statuses, 0) == []
    assert failures_for_agent([statuses[2]], 5) == []
