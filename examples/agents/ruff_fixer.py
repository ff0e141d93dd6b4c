"""A deterministic stand-in for a coding agent: fixes one ruff rule family per iteration.

Plugged into loopwright as a command agent (``agent = {kind = "command", command = ["python",
"/abs/path/ruff_fixer.py", ...]}``), it shows that any command line can be the agent of a loop.
Standard library only; ``ruff`` is the one next to the running interpreter (``python -m ruff``
when there is none).

Usage::

    python ruff_fixer.py [RUFF_CHECK_ARG ...]

Each run (one loop iteration, in the worktree):

1. Reads ``LOOPWRIGHT_FAILURES_FILE`` (see ``loopwright.adapters.local.command_agent``). The
   failing ``LINTING_CLEAN`` condition gives the findings per rule (``details.by_rule``) and
   the scope: its ``ruff check`` command without the output, selection and fix options (for
   example ``--isolated inflection test_inflection.py``).
2. Before the first evaluation (no evaluated lint condition in the file) it runs ``ruff check``
   itself with ``RUFF_CHECK_ARG ...`` as the scope (default ``.``) to count the findings.
3. Groups the findings by rule family (the letters of the code: ``UP025`` -> ``UP``) and fixes
   the family with the most findings (ties: alphabetical) with ``ruff check --fix
   --unsafe-fixes --select <the family's codes found>``. When that fixes nothing (rules without
   an automatic fix), it tries the next family, so each run makes progress while it can.
4. Writes ``LOOPWRIGHT_REPORT_FILE``: ``{"tokens_used": 100 * fixed findings, "summary": ...,
   "needs_human": null}``. The token count is a stand-in for a model's token use, so the
   loop's token budget has something to account; no model is called.

It cannot fix failing tests: when other conditions fail it says so in the summary. Exit code:
0 when it ran (even if nothing was left to fix), 1 when ruff could not run or its output was
not understood (the loop records a failed agent and goes on).
"""

from __future__ import annotations

import json
import os
import re
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Pseudo-tokens reported per fixed finding (a stand-in for a model's token use).
TOKENS_PER_FIX = 100
#: Seconds one ruff run may take.
RUFF_TIMEOUT_SECONDS = 120.0
#: Rule family of a ruff code: its leading capital letters (``SIM300`` -> ``SIM``).
_FAMILY = re.compile(r"^([A-Z]+)\d")
#: ``ruff check`` options the fixer sets itself: dropped from the arguments it is given.
_OWN_OPTIONS_WITH_VALUE = frozenset({"--output-format", "--fixable", "--unfixable", "--extend-fixable"})
_OWN_FLAGS = frozenset(
    {
        "--fix",
        "--no-fix",
        "--unsafe-fixes",
        "--no-unsafe-fixes",
        "--fix-only",
        "--exit-zero",
        "-e",
        "--exit-non-zero-on-fix",
        "--statistics",
        "--show-fixes",
        "--no-show-fixes",
        "--diff",
        "--watch",
        "-w",
        "--no-cache",
        "-q",
        "--quiet",
        "-s",
        "--silent",
    }
)
#: Rule selection options: kept to count findings, replaced when fixing one family.
_SELECTION_OPTIONS = frozenset({"--select", "--extend-select"})


class RuffError(RuntimeError):
    """ruff could not run, or its output was not a JSON list of findings."""


@dataclass(frozen=True)
class Plan:
    """What the fixer works from: ``ruff check`` arguments without rule selection (``scope``:
    options such as ``--isolated`` and the paths) and the findings per rule code."""

    scope: list[str]
    by_rule: dict[str, int]
    source: str  # "evaluation" or "own ruff run"


def ruff_command() -> list[str]:
    """argv prefix that runs ruff: the ``ruff`` next to ``sys.executable``, else ``-m ruff``."""
    candidate = Path(sys.executable).parent / "ruff"
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "ruff"]


def _drop(args: Sequence[str], with_value: frozenset[str], flags: frozenset[str]) -> list[str]:
    """``args`` without the options in ``with_value`` (and their value, given as the next
    argument or after ``=``) and without the ``flags``."""
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
        elif arg.split("=", 1)[0] in with_value:
            skip_value = "=" not in arg
        elif arg not in flags:
            kept.append(arg)
    return kept


def check_args(args: Sequence[str]) -> list[str]:
    """``ruff check`` arguments without the output, fix and cache options the fixer sets.

    ``["--no-cache", "--isolated", "--output-format", "json", "--select", "F,UP", "pkg"]``
    -> ``["--isolated", "--select", "F,UP", "pkg"]``.
    """
    return _drop(args, _OWN_OPTIONS_WITH_VALUE, _OWN_FLAGS)


def without_selection(args: Sequence[str]) -> list[str]:
    """``args`` without ``--select``/``--extend-select`` (the scope a family is fixed in)."""
    return _drop(args, _SELECTION_OPTIONS, frozenset())


def args_of_command(command: Sequence[str]) -> list[str]:
    """The arguments after ``ruff check`` in a condition's command (``ruff``, a path ending in
    ``ruff`` or ``python -m ruff``), through :func:`check_args`; empty when it runs no ruff."""
    args = list(command)
    start = next((i for i, arg in enumerate(args) if Path(arg).name in ("ruff", "ruff.exe")), None)
    if start is None:
        return []
    rest = args[start + 1 :]
    if rest and rest[0] == "check":
        rest = rest[1:]
    return check_args(rest)


def family_of(code: str) -> str | None:
    """The rule family of a ruff code (``UP025`` -> ``UP``); None for codes without one."""
    match = _FAMILY.match(code)
    return match.group(1) if match else None


def families(by_rule: dict[str, int]) -> list[tuple[str, int, list[str]]]:
    """(family, findings, codes) for each family in ``by_rule``, most findings first, ties
    alphabetical. Codes without a family (``syntax-error``) are left out: ruff cannot fix them."""
    counts: Counter[str] = Counter()
    codes: dict[str, list[str]] = {}
    for code, count in by_rule.items():
        family = family_of(code)
        if family is None or count <= 0:
            continue
        counts[family] += count
        codes.setdefault(family, []).append(code)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(family, count, sorted(codes[family])) for family, count in ordered]


def run_ruff(args: Sequence[str], cwd: Path) -> list[dict[str, Any]]:
    """Run ``ruff check --no-cache --output-format json <args>`` in ``cwd``; the findings it
    reports (after fixing, when ``args`` hold ``--fix``). Raises :class:`RuffError`."""
    argv = [*ruff_command(), "check", "--no-cache", "--output-format", "json", *args]
    try:
        done = subprocess.run(  # nosec B603 - argv list, never a shell
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=RUFF_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuffError(f"cannot run {' '.join(argv)}: {exc}") from exc
    if done.returncode not in (0, 1):
        raise RuffError(f"ruff exited {done.returncode}: {done.stderr.strip()[:500]}")
    try:
        findings = json.loads(done.stdout or "[]")
    except ValueError as exc:
        raise RuffError(f"ruff output is not JSON: {done.stdout[:200]!r}") from exc
    if not isinstance(findings, list):
        raise RuffError("ruff output is not a list of findings")
    return [f for f in findings if isinstance(f, dict)]


def count_by_rule(findings: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Findings per rule code (findings without a code count as ``syntax-error``)."""
    return dict(Counter(str(f.get("code") or "syntax-error") for f in findings))


def read_failures(path: str | None) -> dict[str, Any]:
    """The failures file as a dict; empty when there is none (run by hand) or it is empty."""
    if not path or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    return data if isinstance(data, dict) else {}


def lint_conditions(failures: dict[str, Any]) -> list[dict[str, Any]]:
    """The LINTING_CLEAN entries of the failures file (only failing conditions are listed)."""
    return [
        c
        for c in failures.get("conditions") or []
        if isinstance(c, dict) and c.get("type") == "LINTING_CLEAN"
    ]


def other_failing(failures: dict[str, Any]) -> list[str]:
    """``NAME (summary)`` of each evaluated failing condition that is not lint (this fixer
    cannot help with them); conditions not evaluated yet (PENDING) are left out."""
    return [
        f"{c.get('name')} ({c.get('summary') or c.get('status')})"
        for c in failures.get("conditions") or []
        if isinstance(c, dict)
        and c.get("type") != "LINTING_CLEAN"
        and c.get("status") not in (None, "PENDING", "MET")
    ]


def make_plan(failures: dict[str, Any], default_args: Sequence[str], cwd: Path) -> Plan | None:
    """What to fix. None when the last evaluation found the lint condition(s) clean.

    An evaluated lint condition with ``details.by_rule`` is used as is; otherwise (first
    iteration, or an evaluation without rule counts) ruff runs here with the condition's
    arguments, else ``default_args`` (default ``.``). Raises :class:`RuffError`.
    """
    lint = lint_conditions(failures)
    if failures.get("failing_conditions") and not lint:
        return None
    args = check_args(default_args) or ["."]
    for condition in lint:
        args = args_of_command(condition.get("command") or []) or args
        by_rule = (condition.get("details") or {}).get("by_rule")
        if condition.get("status") == "NOT_MET" and isinstance(by_rule, dict) and by_rule:
            counts = {str(code): int(n) for code, n in by_rule.items()}
            return Plan(without_selection(args), counts, "evaluation")
    return Plan(without_selection(args), count_by_rule(run_ruff(args, cwd)), "own ruff run")


def fix(plan: Plan, cwd: Path) -> tuple[str | None, int, list[str]]:
    """Fix the biggest family that ruff can fix: (family, findings fixed, notes).

    Tries families in :func:`families` order and stops at the first that loses findings; only
    the codes found of that family are selected. Raises :class:`RuffError`.
    """
    notes: list[str] = []
    for family, before, codes in families(plan.by_rule):
        select = ",".join(codes)
        remaining = run_ruff([*plan.scope, "--fix", "--unsafe-fixes", "--select", select], cwd)
        fixed = before - len(remaining)
        if fixed > 0:
            return family, fixed, notes
        notes.append(f"{family} ({before} finding(s) of {select}) has no automatic fix")
    return None, 0, notes


def write_report(tokens_used: int, summary: str) -> None:
    """Write ``LOOPWRIGHT_REPORT_FILE`` (when set) for loopwright to read."""
    path = os.environ.get("LOOPWRIGHT_REPORT_FILE")
    if path:
        report = {"tokens_used": tokens_used, "summary": summary, "needs_human": None}
        Path(path).write_text(json.dumps(report), encoding="utf-8")


def run_once(failures: dict[str, Any], default_args: Sequence[str], cwd: Path) -> tuple[int, str]:
    """One iteration's work: (findings fixed, summary). Raises :class:`RuffError`."""
    plan = make_plan(failures, default_args, cwd)
    if plan is None:
        return 0, "nothing to fix: lint is clean"
    total = sum(plan.by_rule.values())
    counts = ", ".join(f"{family} {n}" for family, n, _ in families(plan.by_rule))
    print(f"ruff_fixer: {total} lint finding(s) ({plan.source}): {counts or 'none'}")
    family, fixed, notes = fix(plan, cwd)
    if family is not None:
        summary = f"fixed {fixed} finding(s) of family {family} ({total} before)"
    else:
        summary = f"no automatic fix for the remaining {total} lint finding(s)"
    return fixed, "; ".join([summary, *notes])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one iteration of the fixer; returns the process exit code (0 ran, 1 ruff failed)."""
    default_args = list(sys.argv[1:] if argv is None else argv)
    failures = read_failures(os.environ.get("LOOPWRIGHT_FAILURES_FILE"))
    try:
        fixed, summary = run_once(failures, default_args, Path.cwd())
    except RuffError as exc:
        summary = f"could not run ruff: {exc}"
        print(f"ruff_fixer: {summary}", file=sys.stderr)
        write_report(0, summary)
        return 1
    blocked = other_failing(failures)
    if blocked:
        summary += f"; still failing, beyond a lint fixer: {'; '.join(blocked)}"
    print(f"ruff_fixer: {summary}")
    write_report(fixed * TOKENS_PER_FIX, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
