"""The evidence bundle of a completed loop (issue 15, part 2): build it from the loop's records,
sign it through a port, and check a signed file.

- :func:`pinned_paths`: which files the exit conditions depend on (the pinned checks' rule,
  :mod:`loopwright.steps.pins`);
- :func:`build_bundle`: the bundle of a loop that met its conditions;
- :class:`EvidenceSigner`: the signing port (Ed25519 locally:
  :class:`loopwright.adapters.local.evidence_key.LocalEd25519Signer`; AWS KMS ``Sign`` on AWS);
- :class:`EvidenceStore`: where a deployment keeps the signed files (on AWS the loops table,
  :class:`loopwright.adapters.aws.dynamodb_evidence.DynamoDbEvidenceStore`);
- :func:`sign_bundle` and :func:`read_signed`: the file's bytes, and checking them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from loopwright.exceptions import LoopFrameworkError
from loopwright.models import ExitConditionStatus, LoopState, utcnow
from loopwright.models.config import LoopConfig
from loopwright.models.enums import LoopOutcome
from loopwright.models.evidence import (
    EvidenceBundle,
    EvidenceCondition,
    EvidenceIteration,
    EvidenceSignature,
    SignedEvidence,
    canonical_json,
)
from loopwright.models.records import IterationRecord
from loopwright.steps.pins import pin_rules, pinned_files


class EvidenceError(LoopFrameworkError):
    """An evidence file that cannot be trusted or read; the message says why."""


def pinned_paths(paths: Iterable[str], config: LoopConfig) -> list[str]:
    """The files, of ``paths`` (the repository's tracked files, ``/`` separators), that the loop's
    checks depend on, sorted: the pinned checks' files (:func:`loopwright.steps.pins.pinned_files`,
    the same pins that hold an iteration changing them), the files an agent would edit to fake a
    pass."""
    return pinned_files(config, paths)


def pinned_rule(config: LoopConfig) -> str:
    """How :func:`pinned_paths` chose, in words: the loop's pins, ``kind: pattern`` each."""
    return "; ".join(pin_rules(config).describe())


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data``, 64 lower-case hex digits."""
    return hashlib.sha256(data).hexdigest()


def files_sha256(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """Path -> SHA-256 of the file ``root/path`` as it is on disk; a missing path is left out."""
    hashes = {}
    for path in paths:
        file = root / path
        if file.is_file():
            hashes[path] = sha256_hex(file.read_bytes())
    return hashes


def policy_set_sha256(policy_files: Mapping[str, str] | None) -> str | None:
    """SHA-256 of a policy set given as file name -> SHA-256 (one ``name sha`` line each, sorted
    by name); None when the set is not known."""
    if policy_files is None:
        return None
    return sha256_hex("".join(f"{name} {digest}\n" for name, digest in sorted(policy_files.items())).encode())


def output_sha256(status: ExitConditionStatus) -> str:
    """SHA-256 of a condition's kept output: stdout, then stderr, UTF-8."""
    return sha256_hex((status.stdout + status.stderr).encode())


def build_bundle(
    state: LoopState,
    records: Sequence[IterationRecord],
    *,
    pinned_start: Mapping[str, str],
    pinned_end: Mapping[str, str],
    tool_versions: Mapping[str, str],
) -> EvidenceBundle:
    """The evidence bundle of ``state`` (a loop that met its conditions), with its iteration
    ``records`` (oldest first) and the pinned files' hashes at its base and head commits.

    Raises :class:`EvidenceError` for a loop that has not completed with CONDITIONS_MET.
    """
    if state.outcome is not LoopOutcome.CONDITIONS_MET:
        outcome = state.outcome.value if state.outcome else "none yet"
        raise EvidenceError(
            f"loop {state.loop_id!r} has not completed (outcome: {outcome}): evidence is for a loop "
            "whose conditions held"
        )
    iterations = [
        EvidenceIteration(
            iteration=record.iteration,
            commit=record.commit,
            agent_exit_code=record.exit_code,
            tokens_used=record.usage.tokens_used if record.usage else 0,
            cost_usd=record.usage.cost_usd if record.usage else None,
            conditions={c.name: c.status for c in record.conditions},
        )
        for record in records
    ]
    conditions = [
        EvidenceCondition(
            name=status.name,
            type=status.type,
            required=status.required,
            command=status.command,
            exit_code=status.exit_code,
            status=status.status,
            summary=status.summary,
            output_sha256=output_sha256(status),
            output_truncated=status.output_truncated,
        )
        for status in state.exit_conditions
    ]
    return EvidenceBundle(
        loop_id=state.loop_id,
        project=state.project,
        goal=state.config.goal,
        config=state.config.model_dump(mode="json"),
        outcome=state.outcome.value,
        started_at=state.started_at,
        ended_at=state.ended_at,
        branch=state.branch,
        base_commit=state.base_commit,
        head_commit=state.head_commit,
        iterations=iterations,
        conditions=conditions,
        pinned_rule=pinned_rule(state.config),
        pinned_files_start=dict(pinned_start),
        pinned_files_end=dict(pinned_end),
        policy_set_sha256=policy_set_sha256(state.policy_files),
        tool_versions=dict(tool_versions),
        tokens_used=state.tokens_used,
        cost_usd=state.cost_usd,
        created_at=utcnow(),
    )


class EvidenceSigner(ABC):
    """Signs and verifies evidence bundles with one key.

    ``algorithm`` names the signature scheme (``Ed25519``; on AWS a KMS signing algorithm such
    as ``ECDSA_SHA_256``), ``key_id`` the key (what a verifier looks up).
    """

    algorithm: str
    key_id: str

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """The signature of ``message``. Raises :class:`EvidenceError` when the key cannot sign."""

    @abstractmethod
    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``message``."""

    def public_key(self) -> bytes | None:
        """The raw public key, to put in the file (informative: a verifier trusts its own copy),
        or None."""
        return None


class EvidenceStore(ABC):
    """Keeps each loop's signed evidence file, byte for byte."""

    @abstractmethod
    def put(self, loop_id: str, data: bytes) -> None:
        """Store ``data`` as ``loop_id``'s evidence file (replacing one stored before). Raises
        :class:`~loopwright.exceptions.LoopFrameworkError` when it cannot be stored."""

    @abstractmethod
    def get(self, loop_id: str) -> bytes | None:
        """``loop_id``'s evidence file, or None when it has none."""

    def location(self, loop_id: str) -> str:
        """Where ``loop_id``'s evidence file is kept, in words a human can follow (a path, a
        table and key); recorded in the EVIDENCE_RECORDED event."""
        return f"{type(self).__name__}[{loop_id}]"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign_bundle(bundle: EvidenceBundle, signer: EvidenceSigner) -> bytes:
    """The evidence file's bytes: :func:`canonical_json` of ``bundle`` and its signature, and a
    newline."""
    body = bundle.model_dump(mode="json")
    public = signer.public_key()
    signature = EvidenceSignature(
        algorithm=signer.algorithm,
        key_id=signer.key_id,
        public_key=_b64(public) if public is not None else None,
        value=_b64(signer.sign(canonical_json(body))),
    )
    return canonical_json({"bundle": body, "signature": signature.model_dump(mode="json")}) + b"\n"


def read_signed(data: bytes, signer: EvidenceSigner) -> SignedEvidence:
    """The evidence file ``data``, checked: canonical JSON (any change of layout is refused), a
    bundle of the schema, signed by ``signer``'s key. Raises :class:`EvidenceError` saying which
    check failed."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"not JSON: {exc}") from None
    try:
        canonical = canonical_json(raw) + b"\n"
    except ValueError as exc:
        raise EvidenceError(f"not canonical JSON: {exc}") from None
    if canonical != data:
        raise EvidenceError("the file is not in the canonical form it was signed in (changed after signing?)")
    try:
        document = SignedEvidence.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise EvidenceError(f"not an evidence bundle: {where}: {first['msg']}") from None
    signature = document.signature
    if signature.key_id != signer.key_id:
        raise EvidenceError(f"signed by key {signature.key_id!r}, not by the trusted key {signer.key_id!r}")
    if signature.algorithm != signer.algorithm:
        raise EvidenceError(
            f"signature.algorithm: {signature.algorithm!r}, the trusted key signs {signer.algorithm!r}"
        )
    public = signer.public_key()
    if signature.public_key is not None and (public is None or signature.public_key != _b64(public)):
        raise EvidenceError("signature.public_key: not the trusted key's public key")
    try:
        value = base64.b64decode(signature.value, validate=True)
    except ValueError:
        raise EvidenceError("signature.value: not base64") from None
    if _b64(value) != signature.value:  # unused bits of the last character changed
        raise EvidenceError("signature.value: not the canonical base64 of a signature")
    if not signer.verify(canonical_json(raw["bundle"]), value):
        raise EvidenceError("the signature does not match the bundle (the bundle was changed after signing)")
    return document
