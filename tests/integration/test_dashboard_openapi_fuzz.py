"""schemathesis against the dashboard's OpenAPI document, with all of its checks (issue 11).

The app is the one ``loopwright dashboard`` serves (the dashboard routes and the plan routes,
both authorized by Cedar), over a seeded SQLite store with real loop ids (running, awaiting a
response, stopped, paused) and a real plan, served over HTTP by :class:`DashboardServer`; the
document is read from ``/api/openapi.json`` as a client would. Each operation gets
:data:`MAX_EXAMPLES` cases of schemathesis' positive data and as many of its negative data (when
it declares a query parameter or a body to break), through its Hypothesis strategies
(``APIOperation.as_strategy``), derandomized so a run is reproducible, and every response goes
through every check schemathesis enables by default, which is all of them: no 5xx, documented
status codes, content types, headers and response schemas, schema-violating requests refused,
schema-valid ones accepted (except the two refusals JSON Schema cannot state, see
:func:`semantic_refusal`), 405 with ``Allow`` for undeclared methods. A failure is reported with a
curl command. Loop and plan ids in paths are fixed to real ones (otherwise nearly every case
would be a 404 and the routes' code never run); positive cases of the plan routes name the
plan's project.

(schemathesis' pytest integration, ``schemathesis.pytest.from_fixture``, fails under pytest 9 with
``'Function' object has no attribute '_nodeid'``: hence the explicit loop over the operations.)
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.dashboard.server import DashboardServer
from loopwright.engine.plan_dispatch import LocalPlans
from loopwright.models import Checkpoint, LoopOutcome, LoopPhase
from loopwright.planapi.router import PlanApiDeps, build_plan_router
from loopwright.plans.authorize import PlanAuthorizer
from loopwright.plans.decompose import ConditionPlanner
from loopwright.plans.service import create_plan
from loopwright.plans.validation import parse_draft
from tests.integration.dashboard_helpers import Dashboard, iteration_events, loop_state, open_dashboard
from tests.integration.helpers import make_repo

pytestmark = pytest.mark.slow

#: Hypothesis examples per operation in the fuzzing phase (the coverage phase adds its own).
MAX_EXAMPLES = 25
#: The loop every ``{loop_id}`` / ``{session_id}`` path parameter names: a running loop with events
#: and a checkpoint, so controls are authorized, queued or refused as conflicts.
LOOP_ID = "run"
PROJECT = "demo"
OPERATORS = f'[projects.{PROJECT}]\noperators = ["alice"]\n'
PLAN_DRAFT: dict[str, Any] = {
    "goal": "one quick task",
    "defaults": {
        "max_iterations": 1,
        "git_isolation": False,
        "exit_conditions": [{"type": "CUSTOM", "name": "ok", "command": ["python", "-c", "pass"]}],
        "agent": {"kind": "command", "command": ["python", "-c", "pass"]},
    },
    "tasks": [{"task_id": "t1", "description": "nothing to do"}],
}


@dataclass
class Served:
    dashboard: Dashboard
    plans: LocalPlans
    server: DashboardServer
    plan_id: str
    statuses: Counter[int]


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("fuzz")
    workspace = make_repo(root / "ws", {"README.md": "fuzz\n"})
    state_dir = workspace / ".loopwright"
    state_dir.mkdir()
    dashboard = open_dashboard(state_dir, operators=OPERATORS)
    store = dashboard.store
    store.create_loop(
        loop_state("stopped", project=PROJECT, phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED)
    )
    store.create_loop(loop_state("ask", project=PROJECT, phase=LoopPhase.AWAITING_RESPONSE, iteration=2))
    store.create_loop(loop_state("paused", project="other", phase=LoopPhase.PAUSED, iteration=1))
    running = store.create_loop(loop_state(LOOP_ID, project=PROJECT, iteration=3))
    running = store.save_state(running, iteration_events(LOOP_ID, 3))
    store.save(Checkpoint.from_loop_state(running, commit="abc123"), retention=5)
    dashboard.running.add(LOOP_ID)

    plans = LocalPlans(workspace, state_dir=state_dir, background=True)
    plan = create_plan(plans.store, PROJECT, parse_draft(PLAN_DRAFT))
    router = build_plan_router(
        PlanApiDeps(
            store=plans.store,
            planner=ConditionPlanner(),
            executor=plans,
            authorizer=PlanAuthorizer(CedarPolicyEngine()),
            identity=dashboard.identity,
        )
    )
    dashboard.app.include_router(router)  # as `loopwright dashboard` serves it (build_app routers)

    server = DashboardServer(dashboard.app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(dashboard, plans, server, plan.plan_id, Counter())
    finally:
        server.shutdown()
        server.server_close()
        plans.join(timeout=30)
        plans.close()
        dashboard.queries.close()
        store.close()


def semantic_refusal(response: Any) -> list[Any]:
    """The checks not to run on ``response``: ``positive_data_acceptance`` when it is a 400 about
    an input whose rules JSON Schema cannot state: an opaque ``cursor`` (valid only as a
    ``next_cursor`` this API returned) or a plan draft (``plan.*``: cycles, unknown dependencies,
    the tasks' loop settings). Every other schema-valid case must be accepted."""
    if response.status_code != 400:
        return []
    field = str(response.json().get("error", {}).get("field") or "")
    return [positive_data_acceptance] if field == "cursor" or field.startswith("plan.") else []


def fuzz_operation(operation: Any, mode: GenerationMode, served: Served) -> str | None:
    """Run :data:`MAX_EXAMPLES` cases of ``operation`` in ``mode``; the first failure's report
    (with a curl command to reproduce it), or None."""
    names = set(re.findall(r"{(\w+)}", operation.path))
    fixed = {"loop_id": LOOP_ID, "session_id": LOOP_ID, "plan_id": served.plan_id}
    # Positive cases name the plan's real project (else nearly every one is a 404); negative
    # cases break it like any other parameter.
    declared = {parameter.name for parameter in operation.query}
    query = {"project": PROJECT} if mode is GenerationMode.POSITIVE and "project" in declared else None
    fixed_path = {k: v for k, v in fixed.items() if k in names}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failing case
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode, path_parameters=fixed_path, query=query))
    def run(case: Any) -> None:
        response = case.call(timeout=10)
        served.statuses[response.status_code] += 1
        case.validate_response(response, excluded_checks=semantic_refusal(response))

    try:
        run()
    except Unsatisfiable:
        return None  # nothing to negate: every parameter of the operation is fixed above
    except FailureGroup as exc:  # the check failed: its report names the case and a curl command
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def test_every_operation_conforms_to_the_document(served: Served) -> None:
    schema = schemathesis.openapi.from_url(served.server.url + "api/openapi.json")
    schema.config.update(base_url=served.server.url.rstrip("/"))
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document has an invalid operation: {result.err()}"
        operations.append(result.ok())
    labels = {operation.label for operation in operations}
    assert {
        "GET /api/loops/{loop_id}",
        "POST /api/loops/{loop_id}/limits",
        "GET /api/plans/{plan_id}",
    } <= labels
    failures: list[str] = []
    for operation in operations:
        # Negative data needs a declared query parameter or body to break (the path ids are fixed).
        negatable = len(operation.query) > 0 or len(operation.body) > 0
        for mode in (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if negatable else (GenerationMode.POSITIVE,)
        ):
            failure = fuzz_operation(operation, mode, served)
            if failure is not None:
                failures.append(failure)
    assert failures == [], "\n\n".join(failures)
    counts = served.statuses
    assert not [code for code in counts if code >= 500], counts
    # The cases reached the routes' code: successes, refused input, controls queued and refused.
    assert counts[200] > 0 and counts[202] > 0 and counts[400] > 0 and counts[409] > 0, counts
    assert sum(counts.values()) >= 15 * MAX_EXAMPLES, counts
