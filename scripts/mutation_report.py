"""Mutation testing of loopwright's core (``./dev mutate``, docs/mutation.md).

Runs mutmut 3 (configured in pyproject.toml ``[tool.mutmut]``) in ``build/mutate/``, where
``src -> ../../layers`` and ``tests -> ../../tests`` are symlinks (mutmut names a mutant after
its file's path without a leading ``src.``, which must match the module ``loopwright...``), then
prints a table: per module of the core, the mutants, how many were killed, the score, and the
score with message-text mutants left out (see :func:`is_message_text`); then the core as a
whole. Mutants listed in ``mutation-equivalents.toml`` (equivalent to the original code) are
left out of every count. Writes the surviving mutants, with their diffs, per module to
``build/mutation-survivors.txt``. Exits 1 when the core's score without message-text mutants
is below ``--fail-under`` or a module's is below ``--module-fail-under``.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutate"
#: Symlinks that make mutmut see layers/loopwright as src/loopwright.
LINKS = {
    "src": "../../layers",
    "tests": "../../tests",
    "pyproject.toml": "../../pyproject.toml",
    "policies": "../../policies",
    "schemas": "../../schemas",
}
EQUIVALENTS = ROOT / "mutation-equivalents.toml"

#: mutmut's exit codes (mutmut.stats.status_by_exit_code) that mean a test detected the mutant:
#: a failing test (1, or 3 for a pytest internal error), a timeout, mypy (37), a crash.
DETECTED = {1, 3, 36, 24, -24, 152, 255, -11, -9, 37}
#: survived (0) and no test reached the mutant (5, 33).
UNDETECTED = {0, 5, 33}

#: Keyword arguments and variables whose string value is a message for people.
MESSAGE_NAMES = frozenset({"message", "summary", "reason", "detail", "hint", "text", "error"})
#: Calls whose positional argument at this index is a message: the workflow's event recorder
#: ``record(kind, message, ...)`` and a parser's ``ParsedOutput(status, summary, ...)``.
MESSAGE_POSITIONS = {"record": 1, "ParsedOutput": 1}
#: Logging calls: ``log.info(...)``, ``logger.warning(...)``, ``logging.error(...)``.
LOGGERS = frozenset({"log", "logger", "logging", "_log", "_logger", "LOG", "LOGGER"})
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})


@dataclass
class Mutant:
    """One mutant: its name, mutmut's exit code, and whether it only changes message text."""

    name: str
    exit_code: int | None
    message_text: bool
    diff: str


@dataclass
class ModuleScore:
    """Counts for one module (or the whole core)."""

    module: str
    mutants: list[Mutant] = field(default_factory=list)

    def score(self, *, without_messages: bool) -> tuple[int, int]:
        """(detected, total) over checked mutants, message-text ones left out if asked."""
        counted = [
            m
            for m in self.mutants
            if m.exit_code in DETECTED | UNDETECTED and not (without_messages and m.message_text)
        ]
        return sum(m.exit_code in DETECTED for m in counted), len(counted)

    def survivors(self) -> list[Mutant]:
        return [m for m in self.mutants if m.exit_code in UNDETECTED]


# --- message-text mutants ---------------------------------------------------------------------


def _changes(a: ast.AST, b: ast.AST) -> Iterator[tuple[ast.AST, ast.AST]]:
    """The smallest pairs of nodes where ``a`` and ``b`` differ (the same tree shape above them)."""
    if type(a) is not type(b):
        yield a, b
        return
    for name in a._fields:
        if isinstance(a, ast.FunctionDef | ast.AsyncFunctionDef) and name == "name":
            continue
        x, y = getattr(a, name, None), getattr(b, name, None)
        if isinstance(x, ast.AST) and isinstance(y, ast.AST):
            yield from _changes(x, y)
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                yield a, b
                return
            for i, j in zip(x, y, strict=True):
                if isinstance(i, ast.AST) and isinstance(j, ast.AST):
                    yield from _changes(i, j)
                elif i != j:
                    yield a, b
                    return
        elif x != y or type(x) is not type(y):
            yield a, b
            return


def _in_message_position(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` lies in a raise statement, a logging call, a message keyword or
    variable (:data:`MESSAGE_NAMES`), or a message argument (:data:`MESSAGE_POSITIONS`)."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Raise):
            return True
        if isinstance(parent, ast.keyword) and parent.arg in MESSAGE_NAMES:
            return True
        if isinstance(parent, ast.Assign | ast.AnnAssign):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            if any(isinstance(t, ast.Name) and t.id in MESSAGE_NAMES for t in targets):
                return True
        if isinstance(parent, ast.Call):
            func = parent.func
            callee = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            index = MESSAGE_POSITIONS.get(callee)
            if index is not None and index < len(parent.args) and parent.args[index] is child:
                return True
            if (
                isinstance(func, ast.Attribute)
                and func.attr in LOG_METHODS
                and isinstance(func.value, ast.Name)
                and func.value.id in LOGGERS
            ):
                return True
        if isinstance(parent, ast.stmt):
            return False
        child, parent = parent, parents.get(parent)
    return False


def is_message_text(original: ast.FunctionDef | ast.AsyncFunctionDef, mutated: ast.AST) -> bool:
    """A message-text mutant changes nothing but the text of string literals (plain, or the
    literal parts of f-strings) that sit in a message position: inside a ``raise``, a logging
    call, the value of a ``message=``/``summary=``/``reason=``/... keyword or variable, or the
    message argument of ``record(kind, message, ...)`` / ``ParsedOutput(status, summary, ...)``."""
    changes = list(_changes(original, mutated))
    if not changes:
        return False
    parents = {child: parent for parent in ast.walk(original) for child in ast.iter_child_nodes(parent)}
    return all(
        isinstance(a, ast.Constant)
        and isinstance(b, ast.Constant)
        and isinstance(a.value, str)
        and isinstance(b.value, str)
        and _in_message_position(a, parents)
        for a, b in changes
    )


# --- reading mutmut's results -----------------------------------------------------------------


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _body(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> list[str]:
    """The function's lines after its ``def`` line (which names the mutant)."""
    return lines[node.lineno : node.end_lineno]


def load_equivalents() -> list[tuple[str, str]]:
    """(mutant name pattern, reason) pairs from mutation-equivalents.toml."""
    if not EQUIVALENTS.exists():
        return []
    data = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return [(str(e["pattern"]), str(e["reason"])) for e in data.get("equivalent", [])]


def read_results(equivalents: list[tuple[str, str]]) -> tuple[list[ModuleScore], int, set[str]]:
    """Per-module scores from the ``*.py.meta`` files mutmut wrote next to the mutated files,
    how many mutants the equivalents list left out, and its patterns that matched none."""
    modules: list[ModuleScore] = []
    left_out = 0
    unused = {pattern for pattern, _ in equivalents}
    for meta in sorted((WORK / "mutants" / "src").rglob("*.py.meta")):
        exit_codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        if not exit_codes:
            continue
        mutated = meta.with_suffix("")
        text = mutated.read_text(encoding="utf-8")
        lines = text.splitlines()
        functions = _functions(ast.parse(text))
        module = ".".join(mutated.relative_to(WORK / "mutants" / "src").with_suffix("").parts)
        score = ModuleScore(module)
        for name, code in exit_codes.items():
            matched = {pattern for pattern, _ in equivalents if fnmatch.fnmatchcase(name, pattern)}
            if matched:
                unused -= matched
                left_out += 1
                continue
            local = name.rpartition(".")[2]
            original = functions.get(local.partition("__mutmut_")[0] + "__mutmut_orig")
            mutant = functions.get(local)
            message, diff = False, ""
            if original is not None and mutant is not None:
                message = is_message_text(original, mutant)
                diff = "\n".join(
                    line
                    for line in difflib.unified_diff(
                        _body(original, lines), _body(mutant, lines), n=0, lineterm=""
                    )
                    if not line.startswith(("---", "+++", "@@"))
                )
            score.mutants.append(Mutant(name, code, message, diff))
        modules.append(score)
    return modules, left_out, unused


# --- running and printing ---------------------------------------------------------------------


def prepare(fresh: bool) -> None:
    """The build/mutate folder with its symlinks; without its old mutants when ``fresh``."""
    WORK.mkdir(parents=True, exist_ok=True)
    for name, target in LINKS.items():
        link = WORK / name
        if not link.is_symlink():
            link.symlink_to(target)
    if fresh:
        shutil.rmtree(WORK / "mutants", ignore_errors=True)


def run_mutmut(max_children: int) -> int:
    """mutmut run in build/mutate; its progress goes to build/mutate/mutmut.log."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LOOPWRIGHT_POLICY_DIR"] = str(ROOT / "policies")
    mutmut = Path(sys.executable).with_name("mutmut")
    with (WORK / "mutmut.log").open("w", encoding="utf-8") as log:
        done = subprocess.run(
            [str(mutmut), "run", "--max-children", str(max_children)],
            cwd=WORK,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return done.returncode


def _percent(detected: int, total: int) -> str:
    return f"{100 * detected / total:.1f}%" if total else "-"


def table(modules: list[ModuleScore]) -> tuple[str, ModuleScore]:
    """The printed table and the core's totals."""
    core = ModuleScore("core", [m for module in modules for m in module.mutants])
    header = (
        f"{'module':<34} {'mutants':>7} {'killed':>7} {'survived':>8} {'score':>7} {'msg-text':>8} "
        f"{'score excl. msg-text':>21}"
    )
    rows = [header, "-" * len(header)]
    for module in [*modules, core]:
        if module is core:
            rows.append("-" * len(header))
        detected, total = module.score(without_messages=False)
        kept_detected, kept_total = module.score(without_messages=True)
        rows.append(
            f"{module.module.removeprefix('loopwright.'):<34} {total:>7} {detected:>7} {total - detected:>8} "
            f"{_percent(detected, total):>7} {total - kept_total:>8} "
            f"{_percent(kept_detected, kept_total) + f' ({kept_detected}/{kept_total})':>21}"
        )
    return "\n".join(rows), core


def write_survivors(modules: list[ModuleScore], path: Path) -> None:
    """Each module's surviving mutants with their diffs (message-text ones marked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for module in modules:
        survivors = module.survivors()
        out.append(f"## {module.module}: {len(survivors)} surviving\n")
        for mutant in survivors:
            tags = []
            if mutant.exit_code in (5, 33):
                tags.append("no tests")
            if mutant.message_text:
                tags.append("message-text")
            out.append(f"{mutant.name}{' [' + ', '.join(tags) + ']' if tags else ''}")
            out.extend(f"    {line}" for line in mutant.diff.splitlines())
        out.append("")
    path.write_text("\n".join(out), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fail-under", type=float, default=90.0, help="core score (excl. message text), %%")
    parser.add_argument("--module-fail-under", type=float, default=85.0, help="each module's, %%")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="parallel workers")
    parser.add_argument("--report-only", action="store_true", help="print the last run's results")
    parser.add_argument("--keep", action="store_true", help="reuse the last run's mutants (mutmut's cache)")
    parser.add_argument("--survivors", type=Path, default=ROOT / "build" / "mutation-survivors.txt")
    args = parser.parse_args(argv)

    started = time.monotonic()
    if not args.report_only:
        prepare(fresh=not args.keep)
        code = run_mutmut(args.max_children)
        if code != 0:
            print(f"mutmut run failed (exit code {code}); see {WORK / 'mutmut.log'}", file=sys.stderr)
            return code
    took = time.monotonic() - started
    modules, left_out, unused = read_results(load_equivalents())
    if not modules:
        print("no mutmut results in build/mutate/mutants; run without --report-only", file=sys.stderr)
        return 2
    text, core = table(modules)
    print(text)
    print(f"equivalent mutants left out: {left_out} ({EQUIVALENTS.name})")
    if unused:
        print(f"patterns in {EQUIVALENTS.name} that matched no mutant: {', '.join(sorted(unused))}")
    if not args.report_only:
        print(f"mutmut run: {took / 60:.1f} min")
    write_survivors(modules, args.survivors)
    print(f"survivors: {args.survivors}")

    failed = []
    kept_detected, kept_total = core.score(without_messages=True)
    if kept_total and 100 * kept_detected / kept_total < args.fail_under:
        failed.append(f"core {_percent(kept_detected, kept_total)} < {args.fail_under:g}%")
    for module in modules:
        detected, total = module.score(without_messages=True)
        if total and 100 * detected / total < args.module_fail_under:
            failed.append(f"{module.module} {_percent(detected, total)} < {args.module_fail_under:g}%")
    if failed:
        print("below the threshold (scores excl. message text): " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
