"""A stand-in for an agent stuck in a rut: it reads its prompt, takes notes and fixes nothing.

Used by the ``never-converges`` example to show a Cedar policy stopping a loop that cannot
converge. Each run (one loop iteration, in the worktree) appends one line to ``NOTES.md``
naming the iteration and the failing exit conditions it was shown, so every iteration commits
a change, yet the failing test never changes. It writes ``LOOPWRIGHT_REPORT_FILE``:
``{"tokens_used": 250, "summary": ..., "needs_human": null}``; the 250 tokens are a stand-in
for a model's token use (no model is called). Standard library only; exit code 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: Pseudo-tokens reported per iteration (a stand-in for a model's token use).
TOKENS_PER_ITERATION = 250
NOTES_FILE = "NOTES.md"


def read_failures(path: str | None) -> dict[str, Any]:
    """The failures file as a dict; empty when there is none (run by hand)."""
    if not path or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    return data if isinstance(data, dict) else {}


def main() -> int:
    """Append a note to ``NOTES.md`` in the working directory and write the report."""
    iteration = os.environ.get("LOOPWRIGHT_ITERATION", "?")
    limit = os.environ.get("LOOPWRIGHT_MAX_ITERATIONS", "?")
    failures = read_failures(os.environ.get("LOOPWRIGHT_FAILURES_FILE"))
    evaluated = [
        c for c in failures.get("conditions") or [] if isinstance(c, dict) and c.get("status") != "PENDING"
    ]
    failing = ", ".join(str(c.get("name")) for c in evaluated) or "not evaluated yet"
    warnings = [str(w) for w in failures.get("warnings") or []]
    note = f"- iteration {iteration} of {limit}: failing: {failing}; changed no code"
    if warnings:
        note += f"; policy warning: {' '.join(warnings)}"
    notes = Path(NOTES_FILE)
    if not notes.exists():
        notes.write_text("# Notes of the idle agent\n\n", encoding="utf-8")
    with notes.open("a", encoding="utf-8") as handle:
        handle.write(note + "\n")
    summary = f"took notes (failing: {failing}); changed no code"
    report = os.environ.get("LOOPWRIGHT_REPORT_FILE")
    if report:
        payload = {"tokens_used": TOKENS_PER_ITERATION, "summary": summary, "needs_human": None}
        Path(report).write_text(json.dumps(payload), encoding="utf-8")
    print(f"idle_agent: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
