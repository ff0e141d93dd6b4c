"""Parsers: a :class:`CommandResult` of a checking tool becomes a structured result.

Each parser is a pure function ``(result, cwd) -> ParsedOutput`` where ``cwd`` (the folder the
tool ran in, or None) is used to show file paths relative to it. Common rules:

* a command that timed out is ``TIMEOUT``; one that could not start is ``ERROR`` with the
  reason (:func:`check_ran`);
* output a structured parser cannot understand (for example ruff output that is not JSON) is
  ``ERROR`` with a summary saying so, never an exception;
* ``failures`` hold one line per problem, each at most :data:`MAX_FAILURE_CHARS` characters,
  at most :data:`MAX_FAILURES` lines (the last one then says how many were left out).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

from loopwright.models import CommandResult, ExitConditionStatusValue

#: Most failure lines kept per condition (the agent sees at most this many per condition).
MAX_FAILURES: Final = 200
#: Longest failure line, characters; longer ones are cut with an ellipsis.
MAX_FAILURE_CHARS: Final = 500
#: Non-empty output lines shown as failures by parsers that find no structured problems.
TAIL_LINES: Final = 20

MET = ExitConditionStatusValue.MET
NOT_MET = ExitConditionStatusValue.NOT_MET
ERROR = ExitConditionStatusValue.ERROR
TIMEOUT = ExitConditionStatusValue.TIMEOUT


class ParsedOutput(NamedTuple):
    """What a parser makes of a command's result."""

    status: ExitConditionStatusValue
    summary: str
    details: dict[str, Any]
    failures: list[str]


Parser = Callable[[CommandResult, Path | None], ParsedOutput]


def bound_failures(lines: Iterable[str]) -> list[str]:
    """At most :data:`MAX_FAILURES` lines, each cut to :data:`MAX_FAILURE_CHARS` characters;
    when lines are left out the last line says how many."""
    kept: list[str] = []
    left_out = 0
    for line in lines:
        if len(kept) < MAX_FAILURES:
            kept.append(line if len(line) <= MAX_FAILURE_CHARS else line[: MAX_FAILURE_CHARS - 1] + "…")
        else:
            left_out += 1
    if left_out:
        left_out += 1
        kept[-1] = f"... and {left_out} more"
    return kept


def tail_lines(result: CommandResult, count: int = TAIL_LINES) -> list[str]:
    """The last ``count`` non-empty lines of stderr followed by stdout, stripped on the right."""
    lines = [
        line.rstrip() for text in (result.stderr, result.stdout) for line in text.splitlines() if line.strip()
    ]
    return lines[-count:]


def relative_path(filename: str, cwd: Path | None) -> str:
    """``filename`` relative to ``cwd`` when it lies inside it, without a leading ``./``."""
    if cwd is not None and Path(filename).is_absolute():
        try:
            return Path(filename).relative_to(cwd).as_posix()
        except ValueError:
            try:
                return Path(filename).relative_to(cwd.resolve()).as_posix()
            except ValueError:
                return filename
    return filename.removeprefix("./")


#: What Python prints when ``python -m MODULE`` finds no MODULE: ``<interpreter>: No module named X``,
#: or, for a dotted name, ``<interpreter>: Error while finding module specification for 'X.y'
#: (ModuleNotFoundError: No module named 'X')``.
_NO_MODULE = re.compile(
    r"^(?P<python>\S.*?): (?:No module named (?P<module>[\w.]+)"
    r"|Error while finding module specification for '(?P<dotted>[\w.]+)' "
    r"\(ModuleNotFoundError: No module named '(?P<missing>[\w.]+)'\))$",
    re.MULTILINE,
)


def _run_module(command: list[str]) -> str | None:
    """The module of a ``python ... -m MODULE ...`` command, if it is one."""
    for flag, value in itertools.pairwise(command):
        if flag == "-m":
            return value
    return None


def missing_module(result: CommandResult) -> ParsedOutput | None:
    """``ERROR`` when ``python -m MODULE`` exited 1 because MODULE is not installed in the
    interpreter that ran it (a tool missing from the project's environment, not a failing
    check), naming the interpreter and the fix; else None."""
    module = _run_module(result.command)
    if module is None or result.exit_code != 1:
        return None
    for match in _NO_MODULE.finditer(result.stderr):
        missing = match.group("module") or match.group("missing")
        named = match.group("module") or match.group("dotted")
        # Only the module itself (or its package) missing: a dependency it fails to import is a failure.
        if named == module and (module == missing or module.startswith(f"{missing}.")):
            python = match.group("python")
            tool = missing.split(".")[0]
            summary = (
                f"{tool} is not installed in the project's environment ({python}): install it "
                f'there ({python} -m pip install {tool}) or set python = "..." in the config'
            )
            return ParsedOutput(ERROR, summary, {"error": summary, "missing_module": tool}, [summary])
    return None


def check_ran(result: CommandResult) -> ParsedOutput | int:
    """``TIMEOUT`` or ``ERROR`` when the command timed out or could not start, ``ERROR`` when
    it is ``python -m TOOL`` and TOOL is not installed (:func:`missing_module`), else its exit
    code (negative: killed by that signal)."""
    if result.timed_out:
        return ParsedOutput(
            TIMEOUT,
            f"timed out after {result.duration_seconds:.1f} s; its process tree was killed",
            {"timed_out": True},
            bound_failures(tail_lines(result)),
        )
    if result.error is not None or result.exit_code is None:
        reason = result.error or "the command did not report an exit code"
        return ParsedOutput(ERROR, f"could not run: {reason}", {"error": reason}, [reason])
    missing = missing_module(result)
    if missing is not None:
        return missing
    return result.exit_code


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


# --- generic -----------------------------------------------------------------------------


def parse_exit_code(result: CommandResult, cwd: Path | None = None) -> ParsedOutput:
    """Generic: MET iff exit code 0; failures are the last :data:`TAIL_LINES` output lines."""
    code = check_ran(result)
    if isinstance(code, ParsedOutput):
        return code
    details: dict[str, Any] = {"exit_code": code}
    if code == 0:
        return ParsedOutput(MET, "exit code 0", details, [])
    return ParsedOutput(NOT_MET, f"failed: {_exit_text(code)}", details, bound_failures(tail_lines(result)))


# --- pytest ------------------------------------------------------------------------------

#: Outcome words of pytest's summary line, and the details key each counts into ("rerun" is
#: pytest-rerunfailures': ``1 failed, 1 passed, 2 rerun in 0.50s``).
_PYTEST_WORDS: Final[Mapping[str, str]] = {
    "passed": "passed",
    "failed": "failed",
    "error": "errors",
    "errors": "errors",
    "skipped": "skipped",
    "xfailed": "xfailed",
    "xpassed": "xpassed",
    "deselected": "deselected",
    "warning": "warnings",
    "warnings": "warnings",
    "rerun": "rerun",
}
#: The details keys counted from the summary line, in the order they are reported.
_PYTEST_COUNTS: Final = tuple(dict.fromkeys(_PYTEST_WORDS.values()))
_PYTEST_SUMMARY = re.compile(r"^=*\s*(?P<body>(?:no tests ran|\d+ \w+(?:, \d+ \w+)*))\s+in\s+[\d.]+\s*s\b.*$")
_PYTEST_COUNT = re.compile(r"(\d+) (\w+)")
_PYTEST_PROBLEM = re.compile(r"^(FAILED|ERROR) \S")
_PYTEST_SECTION = re.compile(r"^_{3,} (?P<title>.+?) _{3,}$")
_PYTEST_ERROR_LINE = re.compile(r"^E\s+(?P<message>\S.*)$")
#: A line of pytest's usage error report: ``ERROR: file or directory not found: x`` or
#: ``python -m pytest: error: unrecognized arguments: --x``.
_PYTEST_USAGE_LINE = re.compile(r"^(?:.*?: )?(?:ERROR|error): \S")
_PYTEST_INTERNAL_PREFIX = "INTERNALERROR>"
#: Terminal colour codes (pytest --color=yes, or PY_COLORS=1 as CI services set).
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
#: pytest exit codes (pytest.ExitCode): 2 interrupted, 3 internal error, 4 usage, 5 no tests.
_PYTEST_INTERRUPTED, _PYTEST_INTERNAL, _PYTEST_USAGE, _PYTEST_NO_TESTS = 2, 3, 4, 5


def _collection_messages(lines: list[str]) -> dict[str, str]:
    """For each ``ERROR collecting X`` section of the report, its last ``E   ...`` line."""
    messages: dict[str, str] = {}
    current: str | None = None
    for line in lines:
        section = _PYTEST_SECTION.match(line)
        if section:
            title = section.group("title")
            current = (
                title.removeprefix("ERROR collecting ") if title.startswith("ERROR collecting ") else None
            )
            continue
        if line.startswith("=") and line.endswith("="):
            current = None
            continue
        error = _PYTEST_ERROR_LINE.match(line)
        if current and error:
            messages[current] = error.group("message").strip()
    return messages


def _pytest_own_error(result: CommandResult, code: int, details: dict[str, Any]) -> ParsedOutput:
    """``ERROR`` for pytest's internal (3) or usage (4) error, whatever the summary line says
    (pytest still prints ``no tests ran`` after either); the summary ends with the cause, the
    last ``INTERNALERROR>`` line or the last ``error:`` line."""
    output = [
        _ANSI_ESCAPE.sub("", line).rstrip() for line in (result.stdout + "\n" + result.stderr).splitlines()
    ]
    if code == _PYTEST_INTERNAL:
        text = "internal error"
        lines = [
            line.removeprefix(_PYTEST_INTERNAL_PREFIX).strip()
            for line in output
            if line.startswith(_PYTEST_INTERNAL_PREFIX) and line.removeprefix(_PYTEST_INTERNAL_PREFIX).strip()
        ]
    else:
        text = "usage error"
        lines = [line for line in output if _PYTEST_USAGE_LINE.match(line)]
    failures = bound_failures(lines[-TAIL_LINES:] or tail_lines(result))
    summary = f"pytest {text} (exit code {code})"
    if lines:
        summary += f": {lines[-1]}"
    return ParsedOutput(ERROR, summary, details, failures)


def parse_pytest(result: CommandResult, cwd: Path | None = None) -> ParsedOutput:
    """pytest (run with ``-rfE``): counts from the final summary line and one failure per
    ``FAILED``/``ERROR`` line of the short test summary.

    details: ``passed``, ``failed``, ``errors``, ``skipped``, ``xfailed``, ``xpassed``,
    ``deselected``, ``warnings``, ``rerun`` (counts) and ``exit_code``. Status: MET on exit code
    0; NOT_MET for failures, an interrupted session (2, collection errors among others) and no
    tests run (5); ERROR for an internal (3) or usage (4) error. Colour codes are ignored.
    Output without a pytest summary falls back to the exit code.
    """
    code = check_ran(result)
    if isinstance(code, ParsedOutput):
        return code
    lines = [_ANSI_ESCAPE.sub("", line).rstrip() for line in result.stdout.splitlines()]
    counts = dict.fromkeys(_PYTEST_COUNTS, 0)
    summary_body: str | None = None
    for line in reversed(lines):
        match = _PYTEST_SUMMARY.match(line)
        if match:
            summary_body = match.group("body")
            for number, word in _PYTEST_COUNT.findall(summary_body):
                key = _PYTEST_WORDS.get(word)
                if key is not None:
                    counts[key] += int(number)
            break
    details: dict[str, Any] = {**counts, "exit_code": code}
    if code in (_PYTEST_INTERNAL, _PYTEST_USAGE):
        return _pytest_own_error(result, code, details)
    messages = _collection_messages(lines)
    problems = []
    for line in lines:
        if _PYTEST_PROBLEM.match(line):
            kind, _, rest = line.partition(" ")
            if kind == "ERROR" and " - " not in rest and rest in messages:
                line = f"{line} - {messages[rest]}"
            problems.append(line)
    failures = bound_failures(problems or ([] if code == 0 else tail_lines(result)))
    if code == 0:
        return ParsedOutput(MET, summary_body or "exit code 0 (no pytest summary found)", details, [])
    if code == _PYTEST_NO_TESTS:
        deselected = counts["deselected"]
        why = (
            f"all {deselected} collected test{'s were' if deselected != 1 else ' was'} deselected"
            if deselected
            else "no test was collected"
        )
        return ParsedOutput(NOT_MET, f"no tests ran (pytest exit code 5): {why}", details, failures)
    if summary_body is None:
        return ParsedOutput(
            NOT_MET, f"failed: {_exit_text(code)} (no pytest summary found)", details, failures
        )
    if code == _PYTEST_INTERRUPTED:
        summary_body = f"interrupted: {summary_body}"
    return ParsedOutput(NOT_MET, summary_body, details, failures)


# --- ruff --------------------------------------------------------------------------------


def _load_json(text: str) -> Any:
    """The JSON value in ``text``; tools may log lines before it, so failing that, the first
    value that starts a line. Raises ValueError when there is none."""
    try:
        return json.loads(text)
    except ValueError:
        decoder = json.JSONDecoder()
        for match in re.finditer(r"^[ \t]*[\[{]", text, re.MULTILINE):
            try:
                value, _ = decoder.raw_decode(text, match.end() - 1)
            except ValueError:
                continue
            return value
        raise


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return "(no output)"


def parse_ruff(result: CommandResult, cwd: Path | None = None) -> ParsedOutput:
    """ruff ``check --output-format json``: one failure ``path:row:col CODE message`` per finding.

    details: ``findings``, ``by_rule`` ({code: count}, syntax errors under ``syntax-error``),
    ``fixable`` (findings with a safe fix, applied by ``ruff check --fix``), ``exit_code``.
    MET iff there is no finding. Exit code 2 or more (ruff's own error) or output that is not
    a JSON list is ERROR.
    """
    code = check_ran(result)
    if isinstance(code, ParsedOutput):
        return code
    if code >= 2 or code < 0:
        reason = _first_line(result.stderr or result.stdout)
        return ParsedOutput(
            ERROR,
            f"ruff failed ({_exit_text(code)}): {reason}",
            {"exit_code": code},
            tail_lines(result),
        )
    try:
        findings = _load_json(result.stdout)
        if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
            raise ValueError("not a list of findings")
    except ValueError:
        return ParsedOutput(
            ERROR,
            "ruff output is not JSON (run ruff with --output-format json): " + _first_line(result.stdout),
            {"exit_code": code},
            tail_lines(result),
        )
    by_rule: Counter[str] = Counter()
    fixable = 0
    lines = []
    for finding in findings:
        rule = str(finding.get("code") or "syntax-error")
        by_rule[rule] += 1
        fix = finding.get("fix")
        if isinstance(fix, dict) and fix.get("applicability") == "safe":
            fixable += 1
        location = finding.get("location") or {}
        path = relative_path(str(finding.get("filename", "?")), cwd)
        row, column = location.get("row", 0), location.get("column", 0)
        lines.append(f"{path}:{row}:{column} {rule} {finding.get('message', '')}".rstrip())
    details: dict[str, Any] = {
        "findings": len(findings),
        "by_rule": dict(sorted(by_rule.items())),
        "fixable": fixable,
        "exit_code": code,
    }
    if not findings:
        if code != 0:
            return ParsedOutput(
                ERROR, f"ruff exited {code} but reported no finding", details, tail_lines(result)
            )
        return ParsedOutput(MET, "no lint findings", details, [])
    summary = f"{len(findings)} lint finding{'s' if len(findings) != 1 else ''}"
    if fixable:
        summary += f" ({fixable} fixable with `ruff check --fix`)"
    return ParsedOutput(NOT_MET, summary, details, bound_failures(lines))


# --- bandit ------------------------------------------------------------------------------


def parse_bandit(result: CommandResult, cwd: Path | None = None) -> ParsedOutput:
    """bandit ``-f json``: one failure ``path:line TEST [SEVERITY/CONFIDENCE] text`` per issue.

    Any reported issue counts (the default command already limits severity, see
    :mod:`loopwright.conditions.defaults`). Files bandit could not scan (``errors``, usually a
    syntax error) also make the condition NOT_MET: unscanned code is not a clean scan.
    details: ``issues``, ``by_severity``, ``by_confidence``, ``by_test``, ``scan_errors``,
    ``loc`` and ``nosec`` (from bandit's metrics), ``exit_code``. Output that is not bandit's
    JSON report is ERROR.
    """
    code = check_ran(result)
    if isinstance(code, ParsedOutput):
        return code
    try:
        report = _load_json(result.stdout)
        if not isinstance(report, dict) or not isinstance(report.get("results"), list):
            raise ValueError("not a bandit report")
    except ValueError:
        return ParsedOutput(
            ERROR,
            f"bandit output is not a JSON report (run bandit with -f json; {_exit_text(code)}): "
            + _first_line(result.stdout or result.stderr),
            {"exit_code": code},
            tail_lines(result),
        )
    issues = [r for r in report["results"] if isinstance(r, dict)]
    errors = [e for e in report.get("errors") or [] if isinstance(e, dict)]
    totals = (report.get("metrics") or {}).get("_totals") or {}
    lines = []
    for issue in issues:
        path = relative_path(str(issue.get("filename", "?")), cwd)
        lines.append(
            f"{path}:{issue.get('line_number', 0)} {issue.get('test_id', '?')} "
            f"[{issue.get('issue_severity', '?')}/{issue.get('issue_confidence', '?')}] "
            f"{issue.get('issue_text', '')}".rstrip()
        )
    for error in errors:
        path = relative_path(str(error.get("filename", "?")), cwd)
        lines.append(f"{path}: bandit could not scan this file: {error.get('reason', 'unknown')}")
    details: dict[str, Any] = {
        "issues": len(issues),
        "by_severity": dict(Counter(str(i.get("issue_severity")) for i in issues)),
        "by_confidence": dict(Counter(str(i.get("issue_confidence")) for i in issues)),
        "by_test": dict(sorted(Counter(str(i.get("test_id")) for i in issues).items())),
        "scan_errors": len(errors),
        "loc": totals.get("loc"),
        "nosec": totals.get("nosec"),
        "exit_code": code,
    }
    if not issues and not errors:
        return ParsedOutput(MET, "no security issues", details, [])
    parts = []
    if issues:
        severities = ", ".join(f"{n} {s}" for s, n in sorted(details["by_severity"].items()))
        parts.append(f"{len(issues)} security issue{'s' if len(issues) != 1 else ''} ({severities})")
    if errors:
        parts.append(f"{len(errors)} file{'s' if len(errors) != 1 else ''} not scanned")
    return ParsedOutput(NOT_MET, "; ".join(parts), details, bound_failures(lines))


# --- compileall / builds -----------------------------------------------------------------

_COMPILE_ERROR = re.compile(r"^\*\*\* Error compiling '(?P<path>.+?)'")
_COMPILE_LOCATION = re.compile(r'^\s*File "(?P<path>.+?)", line (?P<line>\d+)')
_COMPILE_INLINE_LINE = re.compile(r", line (?P<line>\d+)\)$")
_COMPILE_MESSAGE = re.compile(r"^(?P<kind>\w*(?:Error|Exception|Warning)\b.*)$")


def parse_compileall(result: CommandResult, cwd: Path | None = None) -> ParsedOutput:
    """``python -m compileall -q`` (or any build command): MET iff exit code 0.

    failures: one ``path:line Kind: message`` per file compileall could not compile; for
    other output, lines mentioning an error, else the last output lines.
    details: ``errors`` (files that failed to compile), ``exit_code``.
    """
    code = check_ran(result)
    if isinstance(code, ParsedOutput):
        return code
    lines = [line.rstrip() for line in (result.stdout + "\n" + result.stderr).splitlines()]
    errors: list[str] = []
    current: dict[str, str] | None = None
    for line in lines:
        start = _COMPILE_ERROR.match(line)
        if start:
            current = {"path": relative_path(start.group("path"), cwd)}
            errors.append(current["path"])
            continue
        if current is None:
            continue
        location = _COMPILE_LOCATION.match(line)
        if location:
            current["line"] = location.group("line")
            continue
        message = _COMPILE_MESSAGE.match(line.strip().removeprefix("Sorry: "))
        if message:
            inline = _COMPILE_INLINE_LINE.search(line)
            if "line" not in current and inline:
                current["line"] = inline.group("line")
            where = current["path"] + (f":{current['line']}" if "line" in current else "")
            errors[-1] = f"{where} {message.group('kind')}"
            current = None
    details: dict[str, Any] = {"errors": len(errors), "exit_code": code}
    if code == 0 and not errors:
        return ParsedOutput(MET, "build succeeded", details, [])
    if not errors:
        errors = [line for line in lines if re.search(r"error", line, re.IGNORECASE)]
    failures = bound_failures(errors or tail_lines(result))
    if details["errors"]:
        count = details["errors"]
        summary = f"{count} file{'s' if count != 1 else ''} failed to compile"
    else:
        summary = f"build failed: {_exit_text(code)}"
    return ParsedOutput(NOT_MET, summary, details, failures)


#: Parsers by the name used in :attr:`ExitConditionConfig.parser`.
PARSERS: Final[Mapping[str, Parser]] = {
    "pytest": parse_pytest,
    "ruff": parse_ruff,
    "bandit": parse_bandit,
    "compileall": parse_compileall,
    "exit_code": parse_exit_code,
}


def parse(parser: str, result: CommandResult, cwd: Path | None = None) -> ParsedOutput:
    """Apply the parser named ``parser`` (a key of :data:`PARSERS`); KeyError if unknown."""
    return PARSERS[parser](result, cwd)
