"""The evidence bundle of a loop completed by the state machine (issue 15, part 2, on AWS).

When a step ends a loop with CONDITIONS_MET (decide, or the baseline when the repository already
met its conditions), :func:`record_evidence` builds the bundle from the saved state and the
loop's iteration records (:func:`loopwright.evidence.build_bundle`), signs it with the
deployment's key (AWS: :class:`~loopwright.adapters.aws.kms_evidence_signer.KmsEvidenceSigner`,
KMS ``Sign``) and stores it (AWS: :class:`~loopwright.adapters.aws.dynamodb_evidence.DynamoDbEvidenceStore`,
an item of the loops table), where the dashboard's ``GET /api/loops/{loop_id}/evidence`` reads it.

What the Step Functions engine's bundle lacks: the pinned files' hashes (``pinned_files_start``
and ``pinned_files_end`` are empty, the loop's clone is in its Code Interpreter session, which the
completing step does not open) and the policy set's hash when the state holds none.

A bundle is never worth a failed loop: without a key (``EVIDENCE_KEY_ARN`` unset: a stack
deployed before the key existed, or the local execution of the state machine) or when building,
signing or storing fails, a warning is logged and the step goes on.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import loopwright
from loopwright.evidence import EvidenceSigner, EvidenceStore, build_bundle, sha256_hex, sign_bundle
from loopwright.models import IterationEventType, LoopOutcome, LoopState
from loopwright.models.records import IterationRecord
from loopwright.ports import LoopStore
from loopwright.workflow import Recorder

logger = logging.getLogger(__name__)

#: The engine named in the bundle's ``tool_versions``.
ENGINE = "step-functions"
#: Seconds the completing step may spend reading the loop's iteration records (one GetItem each)
#: before it gives up the bundle: the decide function runs at most 60 s.
READ_BUDGET_SECONDS = 30.0


class EvidenceTooSlowError(Exception):
    """The iteration records took longer than :data:`READ_BUDGET_SECONDS` to read."""


@dataclass(frozen=True)
class EvidenceKeeper:
    """How a deployment signs (``signer``) and keeps (``bundles``) its evidence files."""

    signer: EvidenceSigner
    bundles: EvidenceStore


def tool_versions() -> dict[str, str]:
    """What made the bundle: Python's and loopwright's versions, and the engine."""
    return {"python": platform.python_version(), "loopwright": loopwright.__version__, "engine": ENGINE}


def iteration_records(
    store: LoopStore,
    state: LoopState,
    *,
    budget_seconds: float = READ_BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> list[IterationRecord]:
    """The loop's iteration records, oldest first (one read each; missing ones left out).
    Raises :class:`EvidenceTooSlowError` once reading took more than ``budget_seconds``."""
    found = []
    deadline = clock() + budget_seconds
    for iteration in range(1, state.iteration + 1):
        if clock() > deadline:
            raise EvidenceTooSlowError(
                f"reading its {state.iteration} iteration records took more than {budget_seconds:g} s"
            )
        record = store.get_iteration_record(state.loop_id, iteration)
        if record is not None:
            found.append(record)
    return found


def record_evidence(
    state: LoopState, store: LoopStore, keeper: EvidenceKeeper | None, record: Recorder | None = None
) -> bytes | None:
    """Build, sign and store the bundle of ``state`` when it completed with CONDITIONS_MET; the
    stored file's bytes, or None (another outcome, no ``keeper``, or a failure, logged as a
    warning: the loop's completion never depends on its bundle).

    With ``record``, a stored bundle is recorded as EVIDENCE_RECORDED (``location``, ``sha256``),
    as the in-process engine records it, and a failure as an ERROR event naming the cause.
    """
    if state.outcome is not LoopOutcome.CONDITIONS_MET:
        return None
    if keeper is None:
        logger.warning(
            "loopwright: loop %r met its conditions but no evidence bundle is made: this deployment "
            "has no evidence key (EVIDENCE_KEY_ARN unset; deploy the stack's evidence key)",
            state.loop_id,
        )
        return None
    try:
        bundle = build_bundle(
            state,
            iteration_records(store, state),
            pinned_start={},
            pinned_end={},
            tool_versions=tool_versions(),
        )
        data = sign_bundle(bundle, keeper.signer)
        keeper.bundles.put(state.loop_id, data)
    except Exception as exc:  # never fail the loop: its bundle is a by-product
        logger.warning("loopwright: no evidence bundle for loop %r: %s", state.loop_id, str(exc)[:1000])
        if record is not None:
            record(IterationEventType.ERROR, f"evidence not written: {str(exc)[:1000]}")
        return None
    logger.info("loopwright: stored the evidence bundle of loop %r (%d bytes)", state.loop_id, len(data))
    if record is not None:
        location = keeper.bundles.location(state.loop_id)
        record(
            IterationEventType.EVIDENCE_RECORDED,
            f"signed evidence stored at {location}",
            location=location,
            sha256=sha256_hex(data),
        )
    return data
