"""The dashboard's link to a loop's signed evidence bundle (issue 15, part 2).

- ``GET /api/loops/{loop_id}/evidence``: the evidence file exactly as it was signed
  (:class:`~loopwright.models.evidence.SignedEvidence`, canonical JSON), so what is downloaded
  verifies with ``loopwright evidence verify``. 404 for an unknown loop, a loop without
  evidence (locally ``loopwright evidence export LOOP_ID`` makes it; on AWS the step that
  completes a loop with CONDITIONS_MET does, :mod:`loopwright.cloud.evidence_record`), or a
  deployment that keeps none.
- ``GET /api/evidence/public-key``: the public key that signs this deployment's bundles (locally
  the user's Ed25519 key, once made; on AWS the stack's KMS key, ``GetPublicKey``), for
  ``loopwright evidence verify --public-key PEM [--key-id KEY_ID]``. A reviewer who does not trust
  this server gets it elsewhere (``loopwright evidence public-key [--key-id ARN]``). 404 when the
  deployment has none.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from pydantic import BaseModel, Field

from loopwright.dashboard.deps import DashboardDeps
from loopwright.dashboard.errors import ApiError, answer_doc, error_doc
from loopwright.models.evidence import SignedEvidence
from loopwright.models.types import is_loop_id

JSON = "application/json"


class EvidencePublicKey(BaseModel):
    """The key that signs this deployment's evidence bundles."""

    algorithm: str = Field(description="the bundles' signature.algorithm (Ed25519, ECDSA_SHA_256)")
    key_id: str = Field(description="the bundles' signature.key_id (on AWS the KMS key ARN)")
    public_key_pem: str = Field(description="the public key, PEM (SubjectPublicKeyInfo)")


def register_evidence_reads(app: APIGatewayRestResolver, deps: DashboardDeps) -> None:
    """Add the route to ``app``."""

    @app.get(
        "/api/loops/<loop_id>/evidence",
        summary="A loop's signed evidence bundle",
        description="The evidence file of a completed loop, byte for byte as signed: its goal and "
        "config, each iteration's commit, each condition's command, exit code and output hash, the "
        "pinned files' hashes, the policy set's hash, tool versions, tokens and cost, and the "
        "signature. Check it with `loopwright evidence verify FILE`.",
        responses=answer_doc(SignedEvidence, "the evidence file") | error_doc(404, 500),
    )
    def get_evidence(loop_id: str) -> Response[str]:
        if not is_loop_id(loop_id):
            raise ApiError(404, "not_found", f"no loop {loop_id[:80]!r}: not a loop id", field="loop_id")
        deps.store.get_state(loop_id)
        if deps.evidence is None:
            raise ApiError(404, "not_found", "this deployment keeps no evidence bundles")
        data = deps.evidence(loop_id)
        if data is None:
            raise ApiError(
                404,
                "not_found",
                f"loop {loop_id!r} has no evidence bundle (one is made for a loop that met its "
                f"conditions: on AWS when it completes, locally by `loopwright evidence export {loop_id}`)",
            )
        return Response(200, JSON, body=data.decode())

    @app.get(
        "/api/evidence/public-key",
        summary="The key that signs evidence bundles",
        description="The public key of this deployment's evidence key, to check downloaded bundles "
        "offline: save `public_key_pem` and run `loopwright evidence verify FILE --public-key PEM "
        "--key-id KEY_ID`. 404 when the deployment has no evidence key.",
        responses=answer_doc(EvidencePublicKey, "the public key") | error_doc(404, 500),
    )
    def get_evidence_key() -> EvidencePublicKey:
        key = deps.evidence_key() if deps.evidence_key is not None else None
        if key is None:
            raise ApiError(404, "not_found", "this deployment has no evidence key")
        return EvidencePublicKey(
            algorithm=key.algorithm, key_id=key.key_id, public_key_pem=key.public_key_pem
        )
