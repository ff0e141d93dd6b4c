"""A local loop's evidence bundle: built from its records and its branch, signed with the user's
Ed25519 key, kept at ``<state_dir>/evidence/<loop_id>.json`` (issue 15, part 2).

The in-process engine writes it when a loop completes with CONDITIONS_MET
(:meth:`loopwright.engine.drive.SessionDriver._finish`); ``loopwright evidence export`` writes it
again on demand, ``loopwright pr`` links it, the dashboard serves it.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from loopwright.adapters.local.evidence_git import files_sha256_at, git_version, tracked_files
from loopwright.adapters.local.evidence_key import LocalEd25519Signer
from loopwright.evidence import (
    EvidenceError,
    EvidenceSigner,
    EvidenceStore,
    build_bundle,
    pinned_paths,
    sign_bundle,
)
from loopwright.models import LoopState
from loopwright.models.records import IterationRecord
from loopwright.ports import LoopStore


def evidence_file(state_dir: Path, loop_id: str) -> Path:
    """Where a loop's evidence is kept: ``<state_dir>/evidence/<loop_id>.json``."""
    return state_dir / "evidence" / f"{loop_id}.json"


def read_evidence(state_dir: Path, loop_id: str) -> bytes | None:
    """The bytes of ``loop_id``'s evidence file in ``state_dir``, or None when it has none."""
    try:
        return evidence_file(state_dir, loop_id).read_bytes()
    except FileNotFoundError:
        return None


class EvidenceFiles(EvidenceStore):
    """Evidence files in ``<state_dir>/evidence/`` (the Step Functions engine run locally keeps
    them where the in-process engine does)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def location(self, loop_id: str) -> str:
        return str(evidence_file(self.state_dir, loop_id))

    def put(self, loop_id: str, data: bytes) -> None:
        target = evidence_file(self.state_dir, loop_id)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as exc:
            raise EvidenceError(f"cannot write {target}: {exc.strerror}") from None

    def get(self, loop_id: str) -> bytes | None:
        return read_evidence(self.state_dir, loop_id)


def tool_versions() -> dict[str, str]:
    """The versions the bundle records: Python, git, loopwright and cedarpy."""
    versions = {"python": platform.python_version(), "git": git_version()}
    for package in ("loopwright", "cedarpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _records(store: LoopStore, loop_id: str) -> list[IterationRecord]:
    records = []
    for summary in store.list_iteration_records(loop_id):
        if (record := store.get_iteration_record(loop_id, summary.iteration)) is not None:
            records.append(record)
    return records


def signed_evidence(
    store: LoopStore, state: LoopState, repo: Path, signer: EvidenceSigner | None = None
) -> bytes:
    """The signed bundle (the file's bytes) of ``state``, a loop that met its conditions, whose
    branch lives in the git repository ``repo``; ``signer`` defaults to the user's local key.

    Raises :class:`EvidenceError` when the loop has not met its conditions, has no commits on a
    branch (``git_isolation`` off) or git cannot read them, or the key cannot be read.
    """
    start, end = state.base_commit, state.head_commit
    if start is None or end is None:
        raise EvidenceError(
            f"loop {state.loop_id!r} has no commits on a branch (run without --no-git-isolation)"
        )
    paths = pinned_paths(
        sorted(set(tracked_files(repo, start)) | set(tracked_files(repo, end))), state.config
    )
    bundle = build_bundle(
        state,
        _records(store, state.loop_id),
        pinned_start=files_sha256_at(repo, start, paths),
        pinned_end=files_sha256_at(repo, end, paths),
        tool_versions=tool_versions(),
    )
    return sign_bundle(bundle, signer or LocalEd25519Signer.load_or_create())


def write_evidence(store: LoopStore, state: LoopState, repo: Path, target: Path) -> bytes:
    """:func:`signed_evidence` written to ``target`` (folders made); returns the bytes.

    Raises :class:`EvidenceError` as :func:`signed_evidence`, or when ``target`` cannot be written.
    """
    data = signed_evidence(store, state, repo)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise EvidenceError(f"cannot write {target}: {exc.strerror}") from None
    return data
