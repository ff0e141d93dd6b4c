"""The in-process engine's evidence step: a loop that completed with CONDITIONS_MET on a git
branch gets its signed evidence bundle (:mod:`loopwright.adapters.local.evidence_bundle`) at
``<state_dir>/evidence/<loop_id>.json``, recorded as EVIDENCE_RECORDED (``location``: the
file's path, ``sha256``).

A bundle that cannot be made (git cannot read the branch, the user's key cannot be read) does not
change the loop's outcome: an ERROR event says why and how to make it later
(``loopwright evidence export``).
"""

from __future__ import annotations

from pathlib import Path

from loopwright.adapters.local.evidence_bundle import evidence_file, write_evidence
from loopwright.evidence import EvidenceError, sha256_hex
from loopwright.models import LoopState
from loopwright.models.enums import IterationEventType, LoopOutcome
from loopwright.ports import LoopStore
from loopwright.workflow import Recorder


def record_evidence(
    store: LoopStore, state: LoopState, *, repo: Path, state_dir: Path, record: Recorder
) -> None:
    """Write and record ``state``'s evidence when it completed with CONDITIONS_MET on a branch
    (``base_commit`` and ``head_commit`` set); otherwise do nothing. Never raises
    :class:`EvidenceError`: it is recorded as an ERROR event instead."""
    if state.outcome is not LoopOutcome.CONDITIONS_MET or not state.base_commit or not state.head_commit:
        return
    target = evidence_file(state_dir, state.loop_id)
    try:
        data = write_evidence(store, state, repo, target)
    except EvidenceError as exc:
        record(
            IterationEventType.ERROR,
            f"evidence not written: {exc}; make it with `loopwright evidence export {state.loop_id}`"[:2000],
        )
        return
    record(
        IterationEventType.EVIDENCE_RECORDED,
        f"signed evidence written to {target}",
        location=str(target),
        sha256=sha256_hex(data),
    )
