"""The agent of the CLI benchmark: it records when the first iteration starts and does nothing.

``bench_loop.py`` runs ``python -m loopwright run --agent-function bench_agent:first_iteration``
with this folder on ``PYTHONPATH`` and ``LOOPWRIGHT_BENCH_STAMP`` naming a file; the file then
holds the wall-clock time (``time.time()``, seconds since the epoch) of the first call.
Kept apart from ``bench_loop.py`` so the CLI process imports nothing more than this.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from loopwright.models import AgentRequest

#: Environment variable naming the file the timestamp is written to (same name in bench_loop.py).
STAMP_ENV = "LOOPWRIGHT_BENCH_STAMP"


def first_iteration(request: AgentRequest) -> None:
    """Write ``time.time()`` to ``$LOOPWRIGHT_BENCH_STAMP`` on the first call; no work."""
    now = time.time()
    path = os.environ.get(STAMP_ENV)
    if path and not Path(path).exists():
        Path(path).write_text(repr(now), encoding="utf-8")
