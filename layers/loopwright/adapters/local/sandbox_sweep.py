"""Ending what is left of a sandboxed command whose supervisor died (killed with ``SIGKILL``):
its process group and every process carrying its marker (:mod:`loopwright.adapters.local.sandbox`)."""

from __future__ import annotations

import os

from loopwright.adapters.local import supervisor
from loopwright.adapters.local.processes import MARKER_ENV, end_processes, parse_marker


def sweep(token: str, started: tuple[int, int] | None, *, grace_seconds: float) -> list[str]:
    """End what is left of a command whose supervisor died: its process group and every
    process carrying its marker, with their descendants. Returns what could not be ended."""
    targets: dict[int, int] = {}
    stats = supervisor.all_stats()
    if started is not None:
        pid, ticks = started
        leader = next((s for s in stats if s.pid == pid), None)
        if leader is None or leader.start_ticks == ticks:
            targets.update({s.pid: s.start_ticks for s in stats if s.pgrp == pid and s.start_ticks >= ticks})
    for stat in stats:
        parsed = parse_marker(_marker_of(stat.pid))
        if parsed is not None and parsed[2] == token:
            targets[stat.pid] = stat.start_ticks
    for pid in list(targets):
        targets.update({s.pid: s.start_ticks for s in supervisor.descendants(pid, stats)})
    targets.pop(os.getpid(), None)
    _, left = end_processes(targets, grace_seconds=grace_seconds)
    return [f"pid {p.pid}: {p.command}" for p in left]


def _marker_of(pid: int) -> str | None:
    """The marker in the environment ``pid`` started with, if readable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    prefix = MARKER_ENV.encode() + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode("utf-8", "replace")
    return None
