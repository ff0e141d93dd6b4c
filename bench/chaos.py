"""Chaos run: kill loopwright at random moments, resume it, and check that nothing was lost or
done twice (issue 11).

Each trial runs a loop of ``--iterations`` iterations through the CLI, in a fresh git repository.
Its agent appends ``iteration <n>`` to ``progress.txt`` in the worktree (an observable side effect
that loopwright commits), then works for a random 0.5-1.5 s while a ``setsid`` grandchild of it
(a process that escaped the agent's process group, as real agent CLIs' helpers do) also runs;
both write heartbeats to a ledger outside the worktree. The exit condition holds once
``progress.txt`` has ``--iterations`` lines.

loopwright is killed ``--kills`` times per trial at a random moment (SIGKILL mostly, SIGTERM
sometimes; only loopwright's own process, never its children), during the agent step, the
checkpoint, the commit or the evaluation alike, and resumed after each kill; then it runs to the
end. A trial passes when:

1. the loop ends CONDITIONS_MET after exactly ``--iterations`` iterations;
2. ``progress.txt`` on the loop's branch holds ``iteration 1`` .. ``iteration N`` once each, in
   order (every iteration's work exactly once, nothing lost, nothing doubled);
3. AGENT_COMPLETED, CHECKPOINT_SAVED and ITERATION_COMPLETED events name iterations 1..N once
   each (contiguous: nothing lost, nothing recorded twice);
4. no agent process (nor its escaped grandchild) of a run was alive after a later run's agent
   started (no two agents of the loop overlap; the ledger's heartbeats tell);
5. every agent run that was interrupted after writing its line has that work on a salvage ref
   (``refs/loopwright/<loop>/salvage/...``);
6. no process of the trial is left when it ends.

Run it with ``./dev chaos [--trials N]``; it prints one line per trial and a summary, and exits 1
when a trial fails. ``tests/integration/test_chaos_smoke.py`` runs two short trials.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess  # nosec B404 - argv lists only
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Marker every chaos process carries in its environment, to find leftovers.
MARKER_ENV = "LOOPWRIGHT_CHAOS_TRIAL"

AGENT = textwrap.dedent(
    """
    import os, pathlib, random, sys, time
    ledger = pathlib.Path(sys.argv[1])
    n = int(os.environ["LOOPWRIGHT_ITERATION"])

    def note(kind):
        with ledger.open("a") as f:
            f.write(f"{kind} {n} {os.getpid()} {time.time():.6f}\\n")

    with open("progress.txt", "a") as f:
        f.write(f"iteration {n}\\n")
    note("start")
    seconds = random.uniform(0.5, 1.5)
    child = os.fork()
    if child == 0:  # a helper that leaves the agent's process group, as real CLIs' helpers do
        os.setsid()
        end = time.time() + seconds
        while time.time() < end:
            note("beat")
            time.sleep(0.02)
        os._exit(0)
    end = time.time() + seconds
    while time.time() < end:
        note("beat")
        time.sleep(0.02)
    os.waitpid(child, 0)
    with open("finished.txt", "a") as f:  # written last: an orphan would write it after a reset
        f.write(f"finished {n}\\n")
    note("end")
    """
)

CONDITION = (
    "import pathlib, sys; p = pathlib.Path('progress.txt'); "
    "sys.exit(0 if p.exists() and len(p.read_text().splitlines()) >= {n} else 1)"
)


@dataclass
class Trial:
    """What one trial saw."""

    number: int
    kills: list[str] = field(default_factory=list)
    interrupted_agents: int = 0  # agent runs a kill ended mid-work (the rest fell elsewhere)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=chaos", "-c", "user.email=chaos@localhost", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loopwright", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _leftovers(tag: str) -> list[int]:
    """Pids of live processes whose environment carries the trial's marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{MARKER_ENV}={tag}".encode() in environ.split(b"\0"):
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                found.append(int(entry.name))
    return found


def run_trial(number: int, *, iterations: int, kills: int, root: Path, seed: int) -> Trial:
    """One trial in ``root`` (see the module docstring)."""
    rng = random.Random(seed)
    trial = Trial(number)
    started = time.monotonic()
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("chaos\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "initial")
    ledger, agent = root / "ledger.txt", root / "agent.py"
    agent.write_text(AGENT)
    config = root / "loop.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            goal = "append {iterations} lines"
            max_iterations = {iterations + 5}
            [[exit_conditions]]
            type = "CUSTOM"
            name = "lines"
            command = ["python", "-c", {json.dumps(CONDITION.format(n=iterations))}]
            [agent]
            kind = "command"
            command = [{json.dumps(sys.executable)}, {json.dumps(str(agent))}, {json.dumps(str(ledger))}]
            timeout_seconds = 60
            """
        )
    )
    tag = f"{os.getpid()}-{number}"
    env = {**os.environ, MARKER_ENV: tag}
    loop = "chaos"
    start = ["run", "-w", str(repo), "-c", str(config), "--loop-id", loop, "--quiet"]
    resume = ["resume", loop, "-w", str(repo), "--quiet"]
    for _ in range(kills):
        if _outcome(repo, loop) == "CONDITIONS_MET":
            break  # it finished before this kill
        process = _cli(resume if _exists(repo, loop) else start, env)
        time.sleep(rng.uniform(0.2, 3.0))
        sig = signal.SIGTERM if rng.random() < 0.2 else signal.SIGKILL
        if process.poll() is None:
            process.send_signal(sig)
            trial.kills.append(sig.name)
        process.communicate(timeout=60)
    if _outcome(repo, loop) != "CONDITIONS_MET":
        final = _cli(resume if _exists(repo, loop) else start, env)
        _, err = final.communicate(timeout=300)
        if final.returncode != 0:
            trial.problems.append(f"the last run exited {final.returncode}: {err.strip()[-300:]}")
    trial.seconds = time.monotonic() - started
    _check(trial, repo, loop, ledger, iterations)
    time.sleep(0.1)
    left = _leftovers(tag)
    if left:
        trial.problems.append(f"{len(left)} process(es) of the trial still alive: {left}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return trial


def _exists(repo: Path, loop: str) -> bool:
    """True when the workspace's store holds the loop (a kill may come before it is created)."""
    return _outcome(repo, loop) is not None


def _outcome(repo: Path, loop: str) -> str | None:
    """The loop's stored outcome ("" while it has none), or None when it is not stored yet."""
    database = repo / ".loopwright" / "loopwright.db"
    if not database.is_file():
        return None
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as conn:
        try:
            row = conn.execute("SELECT outcome FROM loops WHERE loop_id=?", (loop,)).fetchone()
        except sqlite3.OperationalError:  # the schema was not created yet
            return None
    return None if row is None else (row[0] or "")


def _check(trial: Trial, repo: Path, loop: str, ledger: Path, iterations: int) -> None:
    expected = [f"iteration {n}" for n in range(1, iterations + 1)]
    try:
        lines = _git(repo, "show", f"loopwright/{loop}:progress.txt").splitlines()
    except subprocess.CalledProcessError:
        lines = []
    if lines != expected:
        trial.problems.append(
            f"progress.txt on the branch is {lines}, expected {len(expected)} lines in order"
        )
    with sqlite3.connect(repo / ".loopwright" / "loopwright.db") as conn:
        state = json.loads(conn.execute("SELECT state FROM loops WHERE loop_id=?", (loop,)).fetchone()[0])
        rows = conn.execute("SELECT type, iteration, event FROM events WHERE loop_id=? ORDER BY seq", (loop,))
        events: list[tuple[str, int, dict[str, Any]]] = [
            (kind, iteration, json.loads(payload)) for kind, iteration, payload in rows
        ]
    if (state.get("outcome"), state.get("iteration")) != ("CONDITIONS_MET", iterations):
        trial.problems.append(f"ended {state.get('outcome')} at iteration {state.get('iteration')}")
    for kind in ("AGENT_COMPLETED", "CHECKPOINT_SAVED", "ITERATION_COMPLETED"):
        seen = [iteration for k, iteration, _ in events if k == kind]
        if seen != list(range(1, iterations + 1)):
            trial.problems.append(f"{kind} events name iterations {seen}")
    _check_ledger(trial, repo, loop, ledger, events)


def _check_ledger(
    trial: Trial, repo: Path, loop: str, ledger: Path, events: list[tuple[str, int, dict]]
) -> None:
    """Checks 4 and 5 of the module docstring, from the ledger's lines ``<kind> <iteration> <pid>
    <time>`` (kind ``start``/``end`` from an agent, ``beat`` from an agent or its grandchild)."""
    processes: dict[int, dict[str, float]] = {}  # pid -> iteration, first, last, agent, ended
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        kind, n, pid, at = line.split()
        seen = processes.setdefault(int(pid), {"iteration": int(n), "first": float(at), "last": float(at)})
        seen["last"] = max(seen["last"], float(at))
        if kind == "start":
            seen["agent"], seen["first"] = 1, float(at)
        elif kind == "end":
            seen["ended"] = 1
    agent_starts = sorted(p["first"] for p in processes.values() if p.get("agent"))
    for pid, seen in processes.items():
        later = [start for start in agent_starts if start > seen["first"] + 0.001]
        if later and seen["last"] > later[0]:
            role = "agent" if seen.get("agent") else "escaped helper"
            trial.problems.append(
                f"{role} {pid} of iteration {int(seen['iteration'])} was alive "
                f"{seen['last'] - later[0]:.2f} s after the next agent started"
            )
    kept: set[str] = set()
    for kind, _, data in events:
        if kind != "WORK_SALVAGED":
            continue
        try:
            kept.add(_git(repo, "show", f"{data['data']['ref']}:progress.txt").splitlines()[-1])
        except (subprocess.CalledProcessError, IndexError, KeyError):
            continue
    cut = [p for p in processes.values() if p.get("agent") and not p.get("ended")]
    trial.interrupted_agents = len(cut)
    for n in sorted({int(p["iteration"]) for p in cut}):
        if f"iteration {n}" not in kept:
            trial.problems.append(f"the interrupted work of iteration {n} is on no salvage ref")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials (default 10)")
    parser.add_argument("--iterations", type=int, default=6, help="iterations per loop (default 6)")
    parser.add_argument("--kills", type=int, default=3, help="kills per trial (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the time)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"chaos: {args.trials} trials, {args.iterations} iterations, {args.kills} kills each, seed {seed}")
    results = []
    for number in range(1, args.trials + 1):
        with tempfile.TemporaryDirectory(prefix="loopwright-chaos-") as folder:
            trial = run_trial(
                number, iterations=args.iterations, kills=args.kills, root=Path(folder), seed=seed + number
            )
        results.append(trial)
        verdict = "ok  " if trial.passed else "FAIL"
        shown = ", ".join(trial.kills) or "none"
        print(
            f"  {verdict} trial {number:3d}: {trial.seconds:5.1f} s, kills {shown} "
            f"({trial.interrupted_agents} mid-agent)"
        )
        for problem in trial.problems:
            print(f"         {problem}")
    passed = sum(t.passed for t in results)
    kills = sum(len(t.kills) for t in results)
    mid_agent = sum(t.interrupted_agents for t in results)
    print(f"chaos: {mid_agent} of the {kills} kills ended an agent mid-work; the others fell in start-up,")
    print("  restore, commit, checkpoint or evaluation")
    print(
        f"chaos: {passed}/{len(results)} trials passed ({kills} kills); no duplicate or lost iteration"
        if passed == len(results)
        else f"chaos: {passed}/{len(results)} trials passed ({kills} kills)"
    )
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
