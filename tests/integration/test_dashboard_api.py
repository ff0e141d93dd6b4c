"""The dashboard API resolved as Lambda resolves it, over a real SQLite store and Cedar policies:
lists, filters and pages, progress figures, events, checkpoints, history, controls and their
errors (400/403/404/409 bodies; nothing written on a rejected request), the OpenAPI document and
the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright.dashboard.server import http_to_event
from loopwright.models import Checkpoint, LoopOutcome, LoopPhase
from tests.integration.dashboard_helpers import Dashboard, iteration_events, loop_state, open_dashboard


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dashboard]:
    dashboard = open_dashboard(tmp_path)
    store = dashboard.store
    store.create_loop(
        loop_state("a1", project="alpha", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED)
    )
    store.create_loop(loop_state("a2", project="alpha", phase=LoopPhase.AWAITING_RESPONSE, iteration=2))
    store.create_loop(
        loop_state("b1", project="beta", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET)
    )
    store.create_loop(loop_state("b2", project="beta", phase=LoopPhase.PAUSED, iteration=1))
    running = store.create_loop(loop_state("run", project="beta", iteration=3))
    store.save_state(running, iteration_events("run", 3))
    dashboard.running.add("run")
    yield dashboard
    dashboard.queries.close()
    dashboard.store.close()


def ids(body: dict[str, object]) -> list[str]:
    items = body["items"]
    assert isinstance(items, list)
    return [item["loop_id"] for item in items]


# --------------------------------------------------------------------------------- loops
def test_loops_newest_first_filtered_and_paged(dash: Dashboard) -> None:
    status, body, headers = dash.call("GET", "/api/loops")
    assert status == 200 and ids(body) == ["run", "b2", "b1", "a2", "a1"]
    assert headers["Cache-Control"] == "no-store"
    assert dash.call("GET", "/api/loops?project=alpha")[1]["items"][0]["loop_id"] == "a2"
    assert ids(dash.call("GET", "/api/loops?status=AWAITING_RESPONSE")[1]) == ["a2"]
    assert ids(dash.call("GET", "/api/loops?status=STOPPED")[1]) == ["a1"]
    assert ids(dash.call("GET", "/api/loops?status=COMPLETED&project=beta")[1]) == ["b1"]

    seen: list[str] = []
    target = "/api/loops?limit=2"
    while True:
        status, body, _ = dash.call("GET", target)
        assert status == 200 and len(body["items"]) <= 2
        seen += ids(body)
        if body["next_cursor"] is None:
            break
        target = f"/api/loops?limit=2&cursor={body['next_cursor']}"
    assert seen == ["run", "b2", "b1", "a2", "a1"]


def test_loop_summaries_carry_status_and_liveness(dash: Dashboard) -> None:
    items = {item["loop_id"]: item for item in dash.call("GET", "/api/loops")[1]["items"]}
    assert items["run"]["running"] is True and items["run"]["shown_phase"] == "ITERATING"
    assert items["a2"]["shown_phase"] == "AWAITING_RESPONSE"
    dash.running.discard("run")
    items = {item["loop_id"]: item for item in dash.call("GET", "/api/loops")[1]["items"]}
    assert items["run"]["shown_phase"] == "INTERRUPTED"  # no process runs it


@pytest.mark.parametrize(
    ("target", "field", "words"),
    [
        ("/api/loops?limit=0", "limit", "greater than or equal to 1"),
        ("/api/loops?limit=abc", "limit", "valid integer"),
        ("/api/loops?status=RUNNING", "status", "'AWAITING_RESPONSE'"),
        ("/api/loops?cursor=nope", "cursor", "not a cursor"),
        ("/api/loops/run/events?type=NOPE", "type", "'LOOP_STARTED'"),
        ("/api/loops/run/events?limit=501", "limit", "less than or equal to 500"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_field(
    dash: Dashboard, target: str, field: str, words: str
) -> None:
    status, body, _ = dash.call("GET", target)
    assert status == 400
    assert body["error"]["code"] == "bad_request" and body["error"]["field"] == field
    assert words in body["error"]["message"]


# --------------------------------------------------------------------------------- one loop
def test_progress_of_a_running_loop(dash: Dashboard) -> None:
    status, body, _ = dash.call("GET", "/api/loops/run")
    assert status == 200
    assert (body["iteration"], body["max_iterations"], body["percent_iterations"]) == (3, 10, 30.0)
    assert body["phase"] == "ITERATING" and body["running"] is True and body["finished"] is False
    assert body["mean_iteration_seconds"] == 5.0
    assert body["eta_seconds"] == 35.0  # 7 iterations left x 5 s
    assert "max_iterations 10" in body["eta_basis"]
    assert [c["name"] for c in body["conditions"]] == ["all_tests_pass", "linting_clean"]
    assert dash.call("GET", "/progress/run")[1] == body  # the seed's alias


def test_unknown_loops_are_404(dash: Dashboard) -> None:
    for target in ("/api/loops/nope", "/api/loops/nope/events", "/checkpoints/nope", "/api/loops/bad%20id"):
        status, body, _ = dash.call("GET", target)
        assert status == 404 and body["error"]["code"] == "not_found", target
    status, body, _ = dash.call("GET", "/api/nothing")
    assert status == 404 and "no route GET /api/nothing" in body["error"]["message"]


def test_events_newest_first_in_pages_and_by_type(dash: Dashboard) -> None:
    status, body, _ = dash.call("GET", "/api/loops/run/events?limit=5")
    assert status == 200 and len(body["items"]) == 5
    assert [e["type"] for e in body["items"][:2]] == ["ITERATION_COMPLETED", "EXIT_CONDITIONS_EVALUATED"]
    seen = body["items"]
    while body["next_cursor"]:
        body = dash.call("GET", f"/api/loops/run/events?limit=5&cursor={body['next_cursor']}")[1]
        seen += body["items"]
    assert len(seen) == 12 and [e["iteration"] for e in seen] == sorted(
        (e["iteration"] for e in seen), reverse=True
    )
    typed = dash.call("GET", "/api/loops/run/events?type=ITERATION_STARTED&type=ITERATION_COMPLETED")[1]
    assert [(e["type"], e["iteration"]) for e in typed["items"][:3]] == [
        ("ITERATION_COMPLETED", 3),
        ("ITERATION_STARTED", 3),
        ("ITERATION_COMPLETED", 2),
    ]
    assert len(dash.call("GET", "/events/run?limit=3")[1]["items"]) == 3


def test_condition_history_and_metrics(dash: Dashboard) -> None:
    history = dash.call("GET", "/api/loops/run/conditions")[1]
    assert [(e["iteration"], e["met"]) for e in history["evaluations"]] == [(3, 2), (2, 1), (1, 0)]
    assert history["totals"]["linting_clean"] == {"MET": 1, "NOT_MET": 2}
    metrics = dash.call("GET", "/api/loops/run/metrics")[1]
    series = {s["name"]: s["values"] for s in metrics["loop"]["series"]}
    assert series["iteration_seconds"] == [5.0, 5.0, 5.0] and series["tokens"] == [100.0] * 3
    assert metrics["service"]["source"] == "unavailable locally"
    traces = dash.call("GET", "/api/loops/run/traces")[1]
    assert traces["source"] == "unavailable locally" and traces["traces"] == []


def test_checkpoints_with_their_checksums_verified(dash: Dashboard) -> None:
    state = dash.store.get_state("run")
    good = Checkpoint.from_loop_state(state, commit="abc123")
    bad = Checkpoint.from_loop_state(state).model_copy(update={"checksum": "0" * 64})
    dash.store.save(good, retention=5)
    dash.store.save(bad, retention=5)
    status, body, _ = dash.call("GET", "/api/loops/run/checkpoints")
    assert status == 200
    assert [(c["checkpoint_id"], c["valid"]) for c in body["checkpoints"]] == [
        (bad.checkpoint_id, False),
        (good.checkpoint_id, True),
    ]
    assert body["checkpoints"][1]["commit"] == "abc123"


# --------------------------------------------------------------------------------- controls
def test_raise_a_limit_of_an_idle_loop(dash: Dashboard) -> None:
    status, body, _ = dash.call("POST", "/api/loops/b2/limits", {"max_iterations": 30, "reason": "more"})
    assert status == 200 and body["status"] == "applied", body
    assert body["policy_ids"] == ["operators-control-loop"]
    assert body["control"]["principal"] == 'User::"alice"'
    assert dash.store.get_state("b2").config.max_iterations == 30


def test_a_control_of_a_running_loop_is_queued(dash: Dashboard) -> None:
    status, body, _ = dash.call("POST", "/api/loops/run/stop", {"reason": "enough"})
    assert status == 202 and body["status"] == "queued"
    assert dash.store.stop_requested("run") == "enough"
    assert dash.call("GET", "/api/loops/run")[1]["stop_requested"] == "enough"


def test_stop_now_of_a_running_loop_is_queued_with_now(dash: Dashboard) -> None:
    status, body, _ = dash.call("POST", "/api/loops/run/stop", {"reason": "now", "now": True})
    assert status == 202 and body["status"] == "queued" and body["control"]["now"] is True
    assert "ended now" in body["message"]
    [queued] = dash.store.pending_controls("run")
    assert queued.now is True


def test_resume_and_approve_hand_the_loop_to_the_resumer(dash: Dashboard) -> None:
    assert dash.call("POST", "/api/loops/b2/resume")[0] == 200
    status, body, _ = dash.call("POST", "/api/loops/a2/approve", {"response": "ship it"})
    assert status == 200, body
    assert [(loop_id, request.action.value) for loop_id, request in dash.resumed] == [
        ("b2", "RESUME"),
        ("a2", "APPROVE"),
    ]
    assert dash.resumed[1][1].response == "ship it"


def test_resume_from_a_named_checkpoint_and_an_unknown_one_is_404(dash: Dashboard) -> None:
    ckpt = Checkpoint.from_loop_state(dash.store.get_state("b2"), None)
    dash.store.save(ckpt, retention=5)
    assert dash.call("POST", "/api/loops/b2/resume", {"checkpoint_id": ckpt.checkpoint_id})[0] == 200
    assert dash.resumed[0][1].checkpoint_id == ckpt.checkpoint_id

    before = dash.snapshot("b2")
    status, body, _ = dash.call("POST", "/api/loops/b2/resume", {"checkpoint_id": "ckpt_000000000000"})
    assert status == 404, body
    assert body["error"] == {
        "code": "not_found",
        "field": "checkpoint_id",
        "message": "loop 'b2' has no checkpoint 'ckpt_000000000000'; list them with "
        "`loopwright events LOOP_ID --type CHECKPOINT_SAVED`",
    }
    assert dash.snapshot("b2") == before and len(dash.resumed) == 1


def test_a_user_outside_the_operators_group_is_refused_and_nothing_is_written(dash: Dashboard) -> None:
    before = dash.snapshot("run")
    status, body, _ = dash.call(
        "POST", "/api/loops/run/stop", {"reason": "x"}, headers={"X-Loopwright-User": "mallory"}
    )
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert 'User::"mallory" may not STOP' in body["error"]["message"]
    assert 'Group::"beta-operators"' in body["error"]["message"] and body["error"]["policy_ids"] == []
    assert dash.snapshot("run") == before


def test_operators_come_from_the_operators_file(tmp_path: Path) -> None:
    dashboard = open_dashboard(tmp_path, user="alice", operators='[projects.beta]\noperators = ["bob"]\n')
    dashboard.store.create_loop(loop_state("b2", project="beta", phase=LoopPhase.PAUSED, iteration=1))
    before = dashboard.snapshot("b2")
    assert dashboard.call("POST", "/api/loops/b2/limits", {"max_iterations": 20})[0] == 403
    assert dashboard.snapshot("b2") == before
    bob = {"X-Loopwright-User": "bob"}
    assert dashboard.call("POST", "/api/loops/b2/limits", {"max_iterations": 20}, headers=bob)[0] == 200
    identity = dashboard.call("GET", "/api/identity", headers=bob)[1]
    assert identity["groups"] == ['Group::"beta-operators"'] and identity["operates_all_projects"] is False


@pytest.mark.parametrize(
    ("path", "body", "raw", "field", "words"),
    [
        ("limits", {}, None, "body", "give at least one of max_iterations"),
        ("limits", {"max_iterations": 0}, None, "max_iterations", "greater than or equal to 1"),
        ("limits", {"max_iterations": 5, "colour": "red"}, None, "colour", "Extra inputs"),
        ("limits", None, "{not json", "body", "not valid JSON"),
        ("stop", {"reason": "x" * 2001}, None, "reason", "at most 2000"),
        ("stop", {"now": "yes"}, None, "now", "valid boolean"),
        ("approve", {"response": 5}, None, "response", "valid string"),
        ("approve", {"accept_pinned_change": "maybe"}, None, "accept_pinned_change", "valid boolean"),
        ("resume", {"checkpoint_id": "../x"}, None, "checkpoint_id", "should match pattern"),
    ],
)
def test_bad_control_bodies_are_400_and_write_nothing(
    dash: Dashboard, path: str, body: object, raw: str | None, field: str, words: str
) -> None:
    before = dash.snapshot("b2")
    status, answer, _ = dash.call("POST", f"/api/loops/b2/{path}", body, raw=raw)
    assert status == 400, answer
    assert answer["error"]["field"] == field and words in answer["error"]["message"]
    assert dash.snapshot("b2") == before


@pytest.mark.parametrize(
    ("loop_id", "path", "body", "words"),
    [
        ("b2", "approve", {"response": "ok"}, "not waiting for an answer"),
        ("a2", "approve", {"accept_pinned_change": True}, "no reverted change to pinned files"),
        ("run", "resume", None, "is running"),
        ("b1", "resume", None, "CONDITIONS_MET, which is final"),
        ("b1", "stop", None, "already ended"),
        ("b2", "pause", None, "not running"),
        ("a2", "limits", {"max_iterations": 1}, "below the 2 iterations already run"),
    ],
)
def test_controls_that_do_not_apply_are_409_and_write_nothing(
    dash: Dashboard, loop_id: str, path: str, body: object, words: str
) -> None:
    before = dash.snapshot(loop_id)
    status, answer, _ = dash.call("POST", f"/api/loops/{loop_id}/{path}", body)
    assert status == 409 and answer["error"]["code"] == "conflict", answer
    assert words in answer["error"]["message"]
    assert dash.snapshot(loop_id) == before
    assert dash.resumed == []


def test_a_body_that_is_not_json_is_refused_and_writes_nothing(dash: Dashboard) -> None:
    before = dash.snapshot("b2")
    for content_type in ("text/plain", "multipart/form-data"):
        status, body, _ = dash.call(
            "POST", "/api/loops/b2/stop", raw='{"reason": "x"}', headers={"Content-Type": content_type}
        )
        assert status == 415 and body["error"]["field"] == "Content-Type", body
    event = http_to_event("POST", "/api/loops/b2/stop", [("Content-Type", "application/json")], b"\xff\xfe")
    response = dash.app.resolve(event, None)  # type: ignore[arg-type]
    assert response["statusCode"] == 400 and "not UTF-8" in response["body"]
    assert dash.snapshot("b2") == before


def test_a_deeply_nested_body_is_400_in_the_lambda_too(dash: Dashboard) -> None:
    # Issue 11: 100,000 nested arrays reached the JSON parser: RecursionError, a 500
    before = dash.snapshot("b2")
    deep = "[" * 100_000 + "]" * 100_000
    status, body, headers = dash.call("POST", "/api/loops/b2/limits", raw=deep)
    assert (status, body["error"]["code"], body["error"]["field"]) == (400, "bad_request", "body")
    assert "64 levels" in body["error"]["message"] and headers["X-Content-Type-Options"] == "nosniff"
    nested_64 = {"reason": "x", "max_iterations": 5}
    assert dash.call("POST", "/api/loops/b2/limits", raw=json.dumps(nested_64))[0] == 200
    brackets_in_a_string = {"reason": "[" * 1000, "max_iterations": 6}  # text, not nesting
    assert dash.call("POST", "/api/loops/b2/limits", raw=json.dumps(brackets_in_a_string))[0] == 200
    assert dash.snapshot("b2")[0] == before[0] + 2  # only the two valid requests wrote


def test_an_undeclared_method_is_405_naming_the_allowed_ones(dash: Dashboard) -> None:
    status, body, headers = dash.call("DELETE", "/api/loops/b2")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    assert headers["Allow"] == "GET, HEAD"
    assert dash.call("GET", "/api/nothing/here")[0] == 404


def test_a_control_of_an_unknown_loop_is_404(dash: Dashboard) -> None:
    status, body, _ = dash.call("POST", "/api/loops/ghost/stop")
    assert status == 404 and body["error"]["field"] == "loop_id"


# --------------------------------------------------------------------------------- document, page
def test_openapi_document_lists_every_route_with_json_errors(dash: Dashboard) -> None:
    status, document, _ = dash.call("GET", "/api/openapi.json")
    assert status == 200
    paths = document["paths"]
    for path in (
        "/api/loops",
        "/api/loops/{loop_id}",
        "/api/loops/{loop_id}/events",
        "/api/loops/{loop_id}/checkpoints",
        "/api/loops/{loop_id}/conditions",
        "/api/loops/{loop_id}/traces",
        "/api/loops/{loop_id}/metrics",
        "/api/loops/{loop_id}/limits",
        "/progress/{session_id}",
        "/events/{session_id}",
        "/checkpoints/{session_id}",
    ):
        assert path in paths, path
    text = json.dumps(paths)
    assert '"422"' not in text and "HTTPValidationError" not in json.dumps(document)
    limits = paths["/api/loops/{loop_id}/limits"]["post"]["responses"]
    assert set(limits) >= {"200", "202", "400", "403", "404", "409"}
    assert limits["403"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    for enum in ("LoopPhase", "LoopOutcome", "IterationEventType"):
        assert document["components"]["schemas"][enum]["enum"]  # the page reads them from here
    swagger = dash.call("GET", "/swagger")
    assert swagger[0] == 200 and "SwaggerUIBundle" in swagger[1]
    assert dash.call("GET", "/swagger?format=json")[1]["paths"].keys() == paths.keys()


def test_the_page_and_its_files(dash: Dashboard) -> None:
    status, html, headers = dash.call("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<base href="/">' in html and "__BASE_HREF__" not in html
    assert (
        "script-src" not in headers["Content-Security-Policy"]
        and "default-src 'self'" in headers["Content-Security-Policy"]
    )
    for test_id in ("loops-table", "control-error", "control-stop", "conditions-chart", "events-list"):
        assert f'data-testid="{test_id}"' in html
    status, script, headers = dash.call("GET", "/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and "textContent" in script
    assert dash.call("GET", "/static/app.css")[0] == 200
    assert dash.call("GET", "/static/secret.py")[0] == 404


def test_the_page_knows_its_stage_prefix(dash: Dashboard) -> None:
    event = http_to_event("GET", "/", [], b"")
    event["requestContext"]["path"] = "/prod/"
    response = dash.app.resolve(event, None)  # type: ignore[arg-type]
    assert '<base href="/prod/">' in response["body"]


def test_loops_show_their_cost_and_a_cost_budget_is_raised(dash: Dashboard) -> None:
    # Given a loop that spent $3.75 of a $5 budget and ran a model without a price
    state = dash.store.get_state("b2")
    state.cost_usd = 3.75
    state.unpriced_models = ["my-local-llama"]
    state.config = state.config.model_copy(update={"cost_budget_usd": 5.0})
    dash.store.save_state(state)

    # Then the list, the loop's progress and the OpenAPI document carry the cost in US dollars
    listed = {item["loop_id"]: item for item in dash.call("GET", "/api/loops")[1]["items"]}
    assert (listed["b2"]["cost_usd"], listed["b2"]["cost_budget_usd"]) == (3.75, 5.0)
    assert (listed["b1"]["cost_usd"], listed["b1"]["cost_budget_usd"]) == (0.0, None)
    status, body, _ = dash.call("GET", "/api/loops/b2")
    assert status == 200
    assert (body["cost_usd"], body["cost_budget_usd"], body["percent_cost"]) == (3.75, 5.0, 75.0)
    assert body["unpriced_models"] == ["my-local-llama"]

    # A budget below the spend is a conflict; a bad one is a 400 naming the field; both write nothing
    version = dash.store.get_state("b2").version
    status, body, _ = dash.call("POST", "/api/loops/b2/limits", {"cost_budget_usd": 2})
    assert status == 409 and "below the $3.7500 already spent" in body["error"]["message"]
    status, body, _ = dash.call("POST", "/api/loops/b2/limits", {"cost_budget_usd": 0})
    assert status == 400 and body["error"]["field"] == "cost_budget_usd"
    status, body, _ = dash.call("POST", "/api/loops/b2/limits", {"cost_budget_usd": None})
    assert status == 400 and "leave cost_budget_usd out" in body["error"]["message"]
    assert dash.store.get_state("b2").version == version

    # When an operator raises it, the loop's budget changes
    status, body, _ = dash.call("POST", "/api/loops/b2/limits", {"cost_budget_usd": 12.5})
    assert status == 200 and body["status"] == "applied", body
    assert dash.store.get_state("b2").config.cost_budget_usd == 12.5
