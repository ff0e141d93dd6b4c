"""The dashboard's link to a loop's signed evidence bundle (issue 15, part 2).

- ``GET /api/loops/{loop_id}/evidence``: the evidence file exactly as it was signed
  (:class:`~loopwright.models.evidence.SignedEvidence`, canonical JSON), so what is downloaded
  verifies with ``loopwright evidence verify``. 404 for an unknown loop, a loop without
  evidence (locally ``loopwright evidence export LOOP_ID`` makes it; on AWS the step that
  completes a loop with CONDITIONS_MET does, :mod:`loopwright.cloud.evidence_record`), or a
  deployment that keeps none.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from loopwright.dashboard.deps import DashboardDeps
from loopwright.dashboard.errors import ApiError, answer_doc, error_doc
from loopwright.models.evidence import SignedEvidence
from loopwright.models.types import is_loop_id

JSON = "application/json"


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
