"""The pytest parser on the summaries pytest really prints: one row per output format.

The outputs were recorded from pytest 9 on tiny projects (pytest -rfE); the reruns row follows
pytest-rerunfailures' documented format (its ``rerun`` outcome counts in the summary line).
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from loopwright.conditions import parse_pytest
from loopwright.models import CommandResult, ExitConditionStatusValue

S = ExitConditionStatusValue
ZERO = dict.fromkeys(
    ("passed", "failed", "errors", "skipped", "xfailed", "xpassed", "deselected", "warnings", "rerun"), 0
)


class Row(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str
    status: ExitConditionStatusValue
    summary: str
    counts: dict[str, int]
    failures: list[str]


HEADER = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.2.0, pluggy-1.7.0
rootdir: /tmp/p
collected 7 items
"""

ROWS: dict[str, Row] = {
    "reruns (pytest-rerunfailures)": Row(
        1,
        HEADER
        + "test_a.py RRF.\n"
        + "=========================== short test summary info ============================\n"
        + "FAILED test_a.py::test_flaky - assert 1 == 2\n"
        + "==================== 1 failed, 1 passed, 2 rerun in 0.50s =====================\n",
        "",
        S.NOT_MET,
        "1 failed, 1 passed, 2 rerun",
        {"failed": 1, "passed": 1, "rerun": 2},
        ["FAILED test_a.py::test_flaky - assert 1 == 2"],
    ),
    "passed after reruns": Row(
        0,
        HEADER
        + "test_a.py R.\n"
        + "========================= 1 passed, 1 rerun in 0.20s ==========================\n",
        "",
        S.MET,
        "1 passed, 1 rerun",
        {"passed": 1, "rerun": 1},
        [],
    ),
    "every outcome": Row(
        1,
        HEADER
        + "test_a.py .FxX.sE                                                        [100%]\n"
        + "=========================== short test summary info ============================\n"
        + "FAILED test_a.py::test_fail - assert 1 == 2\n"
        + "ERROR test_a.py::test_err - RuntimeError: boom\n"
        + "= 1 failed, 2 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 warning, 1 error in 0.12s =\n",
        "",
        S.NOT_MET,
        "1 failed, 2 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 warning, 1 error",
        {"failed": 1, "passed": 2, "skipped": 1, "xfailed": 1, "xpassed": 1, "warnings": 1, "errors": 1},
        ["FAILED test_a.py::test_fail - assert 1 == 2", "ERROR test_a.py::test_err - RuntimeError: boom"],
    ),
    "passed with warnings and deselected": Row(
        0,
        HEADER
        + "-- Docs: https://docs.pytest.org/en/stable/how-to/capture-warnings.html\n"
        + "================== 2 passed, 5 deselected, 3 warnings in 0.01s ==================\n",
        "",
        S.MET,
        "2 passed, 5 deselected, 3 warnings",
        {"passed": 2, "deselected": 5, "warnings": 3},
        [],
    ),
    "xfailed only, quiet, a long run": Row(
        0,
        "xx\n2 xfailed in 65.12s (0:01:05)\n",
        "",
        S.MET,
        "2 xfailed",
        {"xfailed": 2},
        [],
    ),
    "coloured (--color=yes)": Row(
        1,
        "\x1b[31mF\x1b[0m\x1b[32m.\x1b[0m\n"
        "\x1b[31mFAILED\x1b[0m test_a.py::test_fail - assert 1 == 2\n"
        "\x1b[31m\x1b[31m\x1b[1m1 failed\x1b[0m, \x1b[32m1 passed\x1b[0m, \x1b[33m3 deselected\x1b[0m"
        "\x1b[31m in 0.16s\x1b[0m\x1b[0m\n",
        "",
        S.NOT_MET,
        "1 failed, 1 passed, 3 deselected",
        {"failed": 1, "passed": 1, "deselected": 3},
        ["FAILED test_a.py::test_fail - assert 1 == 2"],
    ),
    "all deselected (exit 5)": Row(
        5,
        "collected 7 items / 7 deselected / 0 selected\n\n"
        "============================ 7 deselected in 0.01s =============================\n",
        "",
        S.NOT_MET,
        "no tests ran (pytest exit code 5): all 7 collected tests were deselected",
        {"deselected": 7},
        [
            "collected 7 items / 7 deselected / 0 selected",
            "============================ 7 deselected in 0.01s =============================",
        ],
    ),
    "one deselected (exit 5)": Row(
        5,
        "1 deselected in 0.01s\n",
        "",
        S.NOT_MET,
        "no tests ran (pytest exit code 5): all 1 collected test was deselected",
        {"deselected": 1},
        ["1 deselected in 0.01s"],
    ),
    "nothing collected (exit 5)": Row(
        5,
        "\nno tests ran in 0.00s\n",
        "",
        S.NOT_MET,
        "no tests ran (pytest exit code 5): no test was collected",
        {},
        ["no tests ran in 0.00s"],
    ),
    "collection error (exit 2)": Row(
        2,
        "==================================== ERRORS ====================================\n"
        "_______________________ ERROR collecting e/test_e.py ________________________\n"
        "E   ModuleNotFoundError: No module named 'nosuchmod'\n"
        "=========================== short test summary info ============================\n"
        "ERROR e/test_e.py\n"
        "!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!\n"
        "=============================== 1 error in 0.45s ===============================\n",
        "",
        S.NOT_MET,
        "interrupted: 1 error",
        {"errors": 1},
        ["ERROR e/test_e.py - ModuleNotFoundError: No module named 'nosuchmod'"],
    ),
    "keyboard interrupt (exit 2)": Row(
        2,
        "..\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!! KeyboardInterrupt !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        "/tmp/p/test_a.py:5: KeyboardInterrupt\n"
        "(to show a full traceback on KeyboardInterrupt use --full-trace)\n"
        "============================== 2 passed in 1.02s ===============================\n",
        "",
        S.NOT_MET,
        "interrupted: 2 passed",
        {"passed": 2},
        [
            "..",
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!! KeyboardInterrupt !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "/tmp/p/test_a.py:5: KeyboardInterrupt",
            "(to show a full traceback on KeyboardInterrupt use --full-trace)",
            "============================== 2 passed in 1.02s ===============================",
        ],
    ),
    "internal error in a hook (exit 3, summary says no tests ran)": Row(
        3,
        HEADER
        + "INTERNALERROR> Traceback (most recent call last):\n"
        + 'INTERNALERROR>   File "/tmp/p/conftest.py", line 1, in pytest_collection_modifyitems\n'
        + "INTERNALERROR> \n"
        + "INTERNALERROR> RuntimeError: hook boom\n"
        + "\n============================ no tests ran in 0.01s =============================\n",
        "",
        S.ERROR,
        "pytest internal error (exit code 3): RuntimeError: hook boom",
        {},
        [
            "Traceback (most recent call last):",
            'File "/tmp/p/conftest.py", line 1, in pytest_collection_modifyitems',
            "RuntimeError: hook boom",
        ],
    ),
    "file not found (exit 4, summary says no tests ran)": Row(
        4,
        HEADER.replace("7 items", "0 items")
        + "\n============================ no tests ran in 0.01s =============================\n",
        "ERROR: file or directory not found: nonexist.py\n\n",
        S.ERROR,
        "pytest usage error (exit code 4): ERROR: file or directory not found: nonexist.py",
        {},
        ["ERROR: file or directory not found: nonexist.py"],
    ),
    "unknown option (exit 4)": Row(
        4,
        "",
        "ERROR: usage: python -m pytest [options] [file_or_dir] [file_or_dir] [...]\n"
        "python -m pytest: error: unrecognized arguments: --nosuchopt\n"
        "  inifile: None\n  rootdir: /tmp/p\n\n",
        S.ERROR,
        "pytest usage error (exit code 4): python -m pytest: error: unrecognized arguments: --nosuchopt",
        {},
        [
            "ERROR: usage: python -m pytest [options] [file_or_dir] [file_or_dir] [...]",
            "python -m pytest: error: unrecognized arguments: --nosuchopt",
        ],
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_pytest_summary_table(row: Row) -> None:
    parsed = parse_pytest(
        CommandResult(command=["pytest"], exit_code=row.exit_code, stdout=row.stdout, stderr=row.stderr)
    )
    assert parsed.status is row.status
    assert parsed.summary == row.summary
    assert parsed.details == {**ZERO, **row.counts, "exit_code": row.exit_code}
    assert parsed.failures == row.failures


def test_internal_and_usage_errors_without_their_report_name_the_exit_code() -> None:
    internal = parse_pytest(CommandResult(command=["pytest"], exit_code=3, stdout="", stderr="crashed\n"))
    assert (internal.status, internal.summary, internal.failures) == (
        S.ERROR,
        "pytest internal error (exit code 3)",
        ["crashed"],
    )
    usage = parse_pytest(CommandResult(command=["pytest"], exit_code=4, stdout="", stderr="bad flag\n"))
    assert (usage.status, usage.summary, usage.failures) == (
        S.ERROR,
        "pytest usage error (exit code 4)",
        ["bad flag"],
    )
