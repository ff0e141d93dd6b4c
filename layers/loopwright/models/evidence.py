"""The evidence bundle of a completed loop (issue 15, part 2): what a reviewer needs to check
"done" without trusting the agent or loopwright's own records.

A bundle (:class:`EvidenceBundle`) is signed as a whole (:class:`SignedEvidence`): the signature
covers :func:`canonical_json` of the bundle, and the file holds :func:`canonical_json` of the
signed document, so changing any byte of the file makes verification fail (a change of layout
is refused as "not canonical", a change of content breaks the signature). The JSON schema is
``schemas/evidence-bundle.schema.json`` (:func:`evidence_schema`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loopwright.models.enums import ExitConditionStatusValue, ExitConditionType

#: The bundle format this code writes and reads.
EVIDENCE_SCHEMA_VERSION = 1

Sha256Hex = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvidenceCondition(_Strict):
    """One exit condition's result in the loop's final evaluation: the command run (argv), its
    exit code (None: it did not start or timed out), status, summary and the SHA-256 (hex) of its
    output as kept (stdout then stderr, UTF-8; ``output_truncated``: the command wrote more than
    its ``max_output_bytes`` and only what was kept is hashed)."""

    name: str
    type: ExitConditionType
    required: bool = True
    command: list[str]
    exit_code: int | None
    status: ExitConditionStatusValue
    summary: str = ""
    output_sha256: Sha256Hex = Field(pattern=r"^[0-9a-f]{64}$")
    output_truncated: bool = False


class EvidenceIteration(_Strict):
    """One iteration: its commit on the loop's branch (None: the agent changed nothing), the
    agent's exit code, tokens and cost (US dollars, None: not reported), and each condition's
    status in the evaluation after it."""

    iteration: int = Field(ge=1)
    commit: str | None
    agent_exit_code: int | None = None
    tokens_used: int = Field(default=0, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    conditions: dict[str, ExitConditionStatusValue] = Field(default_factory=dict)


class EvidenceBundle(_Strict):
    """What a completed loop did and what held at its end.

    ``pinned_files_start``/``pinned_files_end``: path (relative to the repository, ``/``
    separators) -> SHA-256 (hex) of the files the exit conditions depend on
    (:func:`loopwright.evidence.pinned_paths`), at ``base_commit`` and at ``head_commit``.
    ``policy_set_sha256``: SHA-256 of the Cedar policy set (None when the engine cannot tell:
    a remote policy store). ``tool_versions``: program -> version string. ``tokens_used`` and
    ``cost_usd`` (US dollars) are the loop's totals.
    """

    schema_version: Literal[1] = 1
    loop_id: str
    project: str
    goal: str
    config: dict[str, Any] = Field(description="the loop's configuration as it ran (LoopConfig)")
    outcome: str
    started_at: datetime
    ended_at: datetime | None
    branch: str | None
    base_commit: str | None
    head_commit: str | None
    iterations: list[EvidenceIteration]
    conditions: list[EvidenceCondition]
    pinned_rule: str = Field(description="how pinned files were chosen (pinned_paths' rule)")
    pinned_files_start: dict[str, Sha256Hex]
    pinned_files_end: dict[str, Sha256Hex]
    policy_set_sha256: Sha256Hex | None
    tool_versions: dict[str, str]
    tokens_used: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    created_at: datetime


class EvidenceSignature(_Strict):
    """The signature of a bundle: ``algorithm`` (``Ed25519`` locally; a KMS signing algorithm
    on AWS), ``key_id`` (local: ``ed25519:`` and the SHA-256 of the raw public key; KMS: the key
    ARN), ``public_key`` (base64 of the raw public key, when the signer shares it) and
    ``value`` (base64 of the signature over :func:`canonical_json` of the bundle)."""

    algorithm: str
    key_id: str
    public_key: str | None = None
    value: str


class SignedEvidence(_Strict):
    """The evidence file: the bundle and its signature."""

    bundle: EvidenceBundle
    signature: EvidenceSignature


def canonical_json(data: Any) -> bytes:
    """``data`` (JSON values) as canonical JSON: keys sorted, no spaces, UTF-8, no trailing
    newline. Equal data gives equal bytes."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def evidence_schema() -> dict[str, Any]:
    """The JSON schema of the evidence file (:class:`SignedEvidence`)."""
    return SignedEvidence.model_json_schema()
