"""The plan API router in a Powertools resolver, over the SQLite plan store and a fake executor."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.sqlite_plan_store import SqlitePlanStore
from loopwright.dashboard.api import DashboardResolver
from loopwright.dashboard.errors import register_errors
from loopwright.dashboard.identity import (
    IMPERSONATION_HEADER,
    CognitoIdentityResolver,
    Identity,
    IdentityResolver,
    LocalIdentityResolver,
)
from loopwright.engine.plan_dispatch import PlanDispatcher
from loopwright.exceptions import LoopNotFoundError
from loopwright.models import LoopConfig, LoopOutcome, LoopState
from loopwright.models.plans import InspectionPacket, Plan
from loopwright.planapi.router import PlanApiDeps, build_plan_router
from loopwright.plans import service
from loopwright.plans.authorize import PlanAuthorizer
from loopwright.plans.decompose import ConditionPlanner
from loopwright.plans.inspect import build_packet
from loopwright.plans.ports import PlanExecutor, PlanWorkspace
from tests.fakes import ScriptedSandbox
from tests.unit.plans_fakes import FakeRunner

TASKS = [
    {"task_id": "a", "description": "a"},
    {"task_id": "b", "description": "b", "depends_on": ["a"]},
]
DRAFT = {
    "defaults": {"exit_conditions": [{"type": "CUSTOM", "name": "ok", "command": "check"}]},
    "tasks": TASKS,
}


class _Folder(PlanWorkspace):
    def __init__(self, root: Path) -> None:
        self.root = root

    def integrate(self, run_id: str, heads: Sequence[str], *, isolated: bool = True) -> Path:
        return self.root

    def changed_files(self, base: str | None, head: str | None) -> list[str]:
        return ["x.py"]


class FakeExecutor(PlanExecutor):
    def __init__(self, store: SqlitePlanStore, root: Path) -> None:
        self.store, self.root = store, root
        self.concurrency: list[int] = []

    def inspect_loop(self, project: str, loop_id: str) -> InspectionPacket:
        if loop_id != "loop_1":
            raise LoopNotFoundError(f"no loop {loop_id!r} in project {project!r}")
        state = LoopState(
            loop_id=loop_id,
            project=project,
            config=LoopConfig.model_validate(
                {"goal": "g", "project": project, "exit_conditions": [{"type": "CUSTOM", "command": "true"}]}
            ),
            outcome=LoopOutcome.CONDITIONS_MET,
        )
        return self.store.save_packet(project, build_packet(state, [], []))

    def dispatch(self, project: str, plan_id: str, *, concurrency: int) -> Plan:
        self.concurrency.append(concurrency)
        return PlanDispatcher(self.store, FakeRunner({}), concurrency=concurrency).dispatch(project, plan_id)

    def verify(self, project: str, plan_id: str) -> Plan:
        sandbox = ScriptedSandbox(lambda _c, _n: (0, "fine\n"))
        return service.verify_plan(self.store, project, plan_id, sandbox, _Folder(self.root))


class Api:
    """The plan router in the dashboard's resolver (validation, error answers), Cedar over
    ``policies/``; the caller is alice (no operators file: she operates every project) or the
    user named in ``user`` (through the local impersonation header: an operator of nothing)."""

    def __init__(self, tmp_path: Path, identity: IdentityResolver | None = None) -> None:
        self.store = SqlitePlanStore(tmp_path / "db")
        self.executor = FakeExecutor(self.store, tmp_path)
        self.identity = identity or LocalIdentityResolver(
            user="alice", operators_path=tmp_path / "operators.toml"
        )
        self.app = DashboardResolver(enable_validation=True)
        register_errors(self.app, Logger(child=True))
        deps = PlanApiDeps(
            self.store, ConditionPlanner(), self.executor, PlanAuthorizer(CedarPolicyEngine()), self.identity
        )
        self.app.include_router(build_plan_router(deps))

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        raw: str | None = None,
        user: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers[IMPERSONATION_HEADER] = user
        event = {
            "httpMethod": method,
            "path": path,
            "resource": path,
            "body": raw if raw is not None else (None if body is None else json.dumps(body)),
            "queryStringParameters": query,
            "headers": headers,
            "requestContext": {"stage": "test", "requestId": "r1"},
            "isBase64Encoded": False,
        }
        response = self.app.resolve(event, None)  # type: ignore[arg-type]
        return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    made = Api(tmp_path)
    yield made
    made.store.close()


def test_create_dispatch_verify_get_through_the_api(api: Api) -> None:
    status, plan = api("POST", "/api/projects/shop/plan", {"plan": DRAFT})
    assert (status, plan["status"], plan["project"]) == (201, "DRAFT", "shop")
    plan_id = plan["plan_id"]
    assert api("GET", "/api/projects/shop/plans")[1]["plans"][0]["plan_id"] == plan_id

    status, dispatched = api(
        "POST", f"/api/plans/{plan_id}/dispatch", {"parallel": False}, {"project": "shop"}
    )
    assert status == 202
    assert dispatched["runs"] == [
        {"task_id": "a", "loop_id": f"{plan_id}.a"},
        {"task_id": "b", "loop_id": f"{plan_id}.b"},
    ]
    assert api.executor.concurrency == [1]  # parallel=false: one task at a time

    status, verified = api("POST", f"/api/plans/{plan_id}/verify", {}, {"project": "shop"})
    assert (status, verified["status"], verified["verify_run_id"]) == (202, "VERIFIED", f"verify_{plan_id}")
    assert [c["name"] for c in verified["gate_result"]["checks"]] == ["gate:tasks", "gate:ok"]

    status, got = api("GET", f"/api/plans/{plan_id}", query={"project": "shop"})
    assert (status, [t["status"] for t in got["tasks"]]) == (200, ["COMPLETED", "COMPLETED"])
    status, trail = api("GET", f"/api/plans/{plan_id}/events", query={"project": "shop"})
    assert status == 200 and trail["events"][-1]["type"] == "plan_verified"

    status, error = api("POST", f"/api/plans/{plan_id}/dispatch", {}, {"project": "shop"})
    assert (status, error["error"]["code"]) == (409, "conflict")


def test_a_bad_plan_is_400_naming_the_field_and_nothing_is_stored(api: Api) -> None:
    cyclic = {**DRAFT, "tasks": [{"task_id": "a", "description": "a", "depends_on": ["a"]}]}
    status, body = api("POST", "/api/projects/shop/plan", {"plan": cyclic})
    assert status == 400
    assert body["error"]["field"] == "plan.tasks.0.depends_on"
    assert "cycle" in body["error"]["message"]
    for bad, field in (
        ({"plan": {"tasks": []}}, "plan.tasks"),
        ({"plan": {"tasks": [{"description": "x", "oops": 1}]}}, "plan.tasks.0.oops"),
        ({}, "body"),
        ({"packetId": "pkt_1", "loopId": "loop_1"}, "body"),
        ({"packetId": None, "plan": DRAFT}, "body"),  # null is refused: leave the field out
        ({"plan_id": "x"}, "plan_id"),
    ):
        status, body = api("POST", "/api/projects/shop/plan", bad)
        assert (status, body["error"]["field"]) == (400, field), bad
    status, body = api("POST", "/api/projects/shop/plan", raw="{nope")
    assert (status, body["error"]["field"]) == (400, "body")
    status, body = api("POST", "/api/projects/bad%20project/plan", {"plan": DRAFT})
    assert (status, body["error"]["field"]) == (400, "project_id")
    assert api.store.list_plans("shop") == []


def test_plans_from_packets_and_loops_use_the_planner(api: Api) -> None:
    status, plan = api("POST", "/api/projects/shop/plan", {"loopId": "loop_1"})
    # the loop met its conditions: the planner cannot decompose it -> a FAILED plan is recorded
    assert (status, plan["status"]) == (201, "FAILED")
    assert plan["gate_result"]["checks"][0]["name"] == "plan_generation"
    assert api("POST", "/api/projects/shop/plan", {"loopId": "loop_9"})[0] == 404
    packet_id = plan["packet_id"]
    assert api("POST", "/api/projects/shop/plan", {"packetId": packet_id})[0] == 201
    assert (
        api("POST", "/api/projects/other/plan", {"packetId": packet_id})[0] == 404
    )  # packets are per project


def test_another_projects_plan_is_not_found_and_the_project_is_required(api: Api) -> None:
    plan_id = api("POST", "/api/projects/a/plan", {"plan": DRAFT})[1]["plan_id"]
    for method, path in (
        ("GET", f"/api/plans/{plan_id}"),
        ("GET", f"/api/plans/{plan_id}/events"),
        ("POST", f"/api/plans/{plan_id}/dispatch"),
        ("POST", f"/api/plans/{plan_id}/verify"),
    ):
        status, body = api(method, path, {} if method == "POST" else None, {"project": "b"})
        assert (status, body["error"]["code"]) == (404, "not_found"), path
        status, body = api(method, path, {} if method == "POST" else None)
        assert (status, body["error"]["field"]) == (400, "project"), path
    assert api("GET", "/api/plans/no.such", query={"project": "a"})[0] == 404
    assert api("GET", "/api/projects/b/plans")[1] == {"plans": []}
    assert api("GET", f"/api/plans/{plan_id}", query={"project": "a"})[1]["status"] == "DRAFT"


# ----------------------------------------------------------------------------- authorization
PROOF_DRAFT = {
    "defaults": {
        "exit_conditions": [{"type": "CUSTOM", "name": "ok", "command": "check"}],
        "agent": {"kind": "command", "command": ["touch", "PROOF"]},
    },
    "tasks": [{"task_id": "a", "description": "a"}],
}


def test_a_non_operator_may_not_create_dispatch_or_verify_and_nothing_is_written(api: Api) -> None:
    # Given mallory, who operates no project (alice operates every one: no operators file)
    status, body = api("POST", "/api/projects/shop/plan", {"plan": PROOF_DRAFT}, user="mallory")
    # Then her plan is refused by Cedar, naming no permitting policy, and nothing is stored
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert body["error"]["policy_ids"] == [] and 'Group::"shop-operators"' in body["error"]["message"]
    assert api.store.list_plans("shop") == []
    assert api("POST", "/api/projects/shop/plan", {"loopId": "loop_1"}, user="mallory")[0] == 403
    assert api.store.list_plans("shop") == []  # not even the inspection's packet turned into a plan

    # And alice's plan may not be dispatched or verified by mallory: no loop starts
    plan_id = api("POST", "/api/projects/shop/plan", {"plan": PROOF_DRAFT})[1]["plan_id"]
    for action in ("dispatch", "verify"):
        status, body = api("POST", f"/api/plans/{plan_id}/{action}", {}, {"project": "shop"}, user="mallory")
        assert (status, body["error"]["code"]) == (403, "forbidden"), action
    assert api.executor.concurrency == []
    assert api.store.get_plan("shop", plan_id).status.value == "DRAFT"
    assert [e.type.value for e in api.store.list_events("shop", plan_id)] == ["plan_created"]
    # Reads are not plan changes
    assert api("GET", f"/api/plans/{plan_id}", query={"project": "shop"}, user="mallory")[0] == 200


def test_the_operators_file_names_who_changes_each_projects_plans(tmp_path: Path) -> None:
    (tmp_path / "operators.toml").write_text('[projects.shop]\noperators = ["bob"]\n')
    api = Api(tmp_path)
    try:
        assert api("POST", "/api/projects/shop/plan", {"plan": DRAFT}, user="bob")[0] == 201
        status, body = api("POST", "/api/projects/web/plan", {"plan": DRAFT}, user="bob")
        assert status == 403 and 'Group::"web-operators"' in body["error"]["message"]
        # With the file, the dashboard's own user is an operator only where it is listed
        assert api("POST", "/api/projects/shop/plan", {"plan": DRAFT})[0] == 403
        assert len(api.store.list_plans("shop")) == 1
    finally:
        api.store.close()


def test_an_agent_never_changes_plans(tmp_path: Path) -> None:
    def agent(event: Any) -> Identity:
        return Identity(principal='Agent::"loop_1"')

    api = Api(tmp_path, identity=agent)
    try:
        status, body = api("POST", "/api/projects/shop/plan", {"plan": DRAFT})
        assert (status, body["error"]["policy_ids"]) == (403, ["agent-cannot-change-plans"])
        assert "an agent may not create, dispatch or verify plans" in body["error"]["message"]
        assert api.store.list_plans("shop") == []
    finally:
        api.store.close()


def test_a_caller_without_identity_is_401(tmp_path: Path) -> None:
    api = Api(tmp_path, identity=CognitoIdentityResolver())
    try:
        status, body = api("POST", "/api/projects/shop/plan", {"plan": DRAFT})
        assert (status, body["error"]["code"]) == (401, "unauthenticated")
        assert api.store.list_plans("shop") == []
    finally:
        api.store.close()
