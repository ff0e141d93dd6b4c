"""What the dashboard's routes work with: :class:`DashboardDeps` (ports only, no adapter)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from loopwright.dashboard.identity import IdentityResolver
from loopwright.dashboard.ports import (
    LivenessCheck,
    LoopQueries,
    MetricQueries,
    TraceQueries,
    UnavailableMetrics,
    UnavailableTraces,
)
from loopwright.models import ControlRequest, ControlResult, utcnow
from loopwright.ports import CheckpointStore, LoopStore


class ControlSubmitter(Protocol):
    """What applies a control: :class:`loopwright.controls.ControlService`.

    ``submit`` authorizes the request with Cedar, then applies or queues it; it raises
    :class:`~loopwright.exceptions.ControlDeniedError` (403),
    :class:`~loopwright.exceptions.ControlConflictError` (409) or
    :class:`~loopwright.exceptions.LoopNotFoundError` (404) having written nothing.
    """

    def submit(self, request: ControlRequest) -> ControlResult: ...


@dataclass
class DashboardDeps:
    """The ports the dashboard works with.

    ``liveness`` tells whether a process runs a loop (locally its lock file; None in AWS);
    ``clock`` gives the current UTC time (tests pass a fixed one); ``evidence`` reads a loop's
    signed evidence file (its bytes, or None when it has none; None: this deployment keeps none);
    ``evidence_key`` gives the key that signs them (:class:`EvidenceKey`; None: not known here).
    """

    store: LoopStore
    queries: LoopQueries
    checkpoints: CheckpointStore
    controls: ControlSubmitter
    identity: IdentityResolver
    traces: TraceQueries = field(default_factory=UnavailableTraces)
    metrics: MetricQueries = field(default_factory=UnavailableMetrics)
    liveness: LivenessCheck | None = None
    clock: Callable[[], datetime] = utcnow
    evidence: Callable[[str], bytes | None] | None = None
    evidence_key: Callable[[], EvidenceKey | None] | None = None


@dataclass(frozen=True)
class EvidenceKey:
    """The public half of the key that signs a deployment's evidence bundles: its signature
    ``algorithm`` and ``key_id`` (as the bundles name them) and its PEM (SubjectPublicKeyInfo)."""

    algorithm: str
    key_id: str
    public_key_pem: str
