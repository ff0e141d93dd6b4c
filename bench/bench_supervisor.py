"""What the supervisor costs per command: ``SubprocessSandbox.run`` against a bare ``Popen``.

Every command a loop starts runs under :mod:`loopwright.adapters.local.supervisor` (issue 11:
no orphans). This measures the wall time of one command, median of ``--runs`` runs after 5
warm-up runs, for:

* ``bare Popen``: ``subprocess.run(argv, start_new_session=True, capture_output=True)``, what a
  sandbox without a supervisor does at least;
* ``sandbox``: ``SubprocessSandbox().run(argv)``, unbound;
* ``sandbox + ledger``: bound to a loop (``attach``): the ledger record written and removed;
* ``sandbox + bubblewrap``: bound, with ``BubblewrapIsolation`` (skipped without a usable bwrap).

for two commands: ``true`` (the cost itself) and ``python -c pass`` (a typical tool start).
The supervisor's share is ``sandbox - bare Popen``. Run with
``python bench/bench_supervisor.py [--runs N]``; it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loopwright.adapters.local.isolation import BubblewrapIsolation, check_bubblewrap
from loopwright.adapters.local.processes import ProcessLedger
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.exceptions import ConfigError

WARM_UP = 5


def median_ms(action: Callable[[], object], runs: int) -> float:
    for _ in range(WARM_UP):
        action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="measured runs per figure (default 50)")
    args = parser.parse_args()
    commands = {
        "true": [shutil.which("true") or "/bin/true"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-") as folder:
        root = Path(folder)
        worktree = root / "ws" / ".loopwright" / "worktrees" / "bench"
        worktree.mkdir(parents=True)
        state_dir = root / "ws" / ".loopwright"
        plain = SubprocessSandbox()
        bound = SubprocessSandbox()
        bound.attach(ProcessLedger(state_dir, "bench"))
        variants: dict[str, Callable[[list[str]], object]] = {
            "bare Popen": lambda argv: subprocess.run(
                argv, cwd=worktree, start_new_session=True, capture_output=True, check=False
            ),
            "sandbox": lambda argv: plain.run(argv, cwd=worktree, timeout_seconds=30),
            "sandbox + ledger": lambda argv: bound.run(argv, cwd=worktree, timeout_seconds=30),
        }
        try:
            boxed = SubprocessSandbox()
            boxed.attach(
                ProcessLedger(state_dir, "bench"),
                isolation=BubblewrapIsolation(
                    workspace=root / "ws",
                    state_dir=state_dir,
                    loop_id="bench",
                    worktree=worktree,
                    bwrap=check_bubblewrap(),
                ),
            )
            variants["sandbox + bubblewrap"] = lambda argv: boxed.run(argv, cwd=worktree, timeout_seconds=30)
        except ConfigError as exc:
            print(f"(bubblewrap skipped: {exc})")
        print(f"median wall time per command, ms ({args.runs} runs, {sys.version.split()[0]})")
        print(f"{'variant':<22}" + "".join(f"{name:>16}" for name in commands))
        baseline: dict[str, float] = {}
        for variant, run in variants.items():
            row = []
            for name, argv in commands.items():
                value = median_ms(lambda run=run, argv=argv: run(list(argv)), args.runs)
                baseline.setdefault(name, value)
                extra = "" if variant == "bare Popen" else f" (+{value - baseline[name]:.1f})"
                row.append(f"{value:.1f}{extra}")
            print(f"{variant:<22}" + "".join(f"{cell:>16}" for cell in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
