"""Issue 15, part 2: the dashboard links each loop's signed evidence (``/api/loops/{id}/evidence``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.adapters.local.evidence_bundle import evidence_file, read_evidence
from loopwright.dashboard.server import http_to_event
from loopwright.models import LoopOutcome, LoopPhase
from tests.integration.dashboard_helpers import Dashboard, loop_state, open_dashboard

SIGNED = b'{"bundle":{"loop_id":"done"},"signature":{"value":"x"}}\n'


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dashboard]:
    dashboard = open_dashboard(tmp_path, evidence=lambda loop_id: read_evidence(tmp_path, loop_id))
    done = loop_state("done", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET)
    dashboard.store.create_loop(done)
    dashboard.store.create_loop(loop_state("bare", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED))
    target = evidence_file(tmp_path, "done")
    target.parent.mkdir(parents=True)
    target.write_bytes(SIGNED)
    yield dashboard
    dashboard.queries.close()
    dashboard.store.close()


def test_the_evidence_file_is_served_byte_for_byte(dash: Dashboard) -> None:
    response = dash.app.resolve(http_to_event("GET", "/api/loops/done/evidence", [], b""), None)  # type: ignore[arg-type]
    assert response["statusCode"] == 200
    assert response["body"].encode() == SIGNED
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]


@pytest.mark.parametrize(
    ("loop_id", "says"),
    [("bare", "has no evidence bundle"), ("nobody", "nobody"), ("..", "not a loop id")],
)
def test_no_evidence_is_404_saying_why(dash: Dashboard, loop_id: str, says: str) -> None:
    status, body, _ = dash.call("GET", f"/api/loops/{loop_id}/evidence")
    assert status == 404
    assert says in json.dumps(body)


def test_a_deployment_without_evidence_answers_404(tmp_path: Path) -> None:
    dashboard = open_dashboard(tmp_path)
    dashboard.store.create_loop(
        loop_state("done", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET)
    )
    status, body, _ = dashboard.call("GET", "/api/loops/done/evidence")
    assert status == 404
    assert "keeps no evidence" in json.dumps(body)
    dashboard.queries.close()
    dashboard.store.close()


def test_the_route_is_in_the_openapi_document(dash: Dashboard) -> None:
    status, document, _ = dash.call("GET", "/api/openapi.json")
    assert status == 200
    assert set(document["paths"]["/api/loops/{loop_id}/evidence"]["get"]["responses"]) >= {"200", "404"}
