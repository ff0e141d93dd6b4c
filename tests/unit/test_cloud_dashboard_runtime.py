"""The dashboard's Lambda functions: what each mode refuses before routing, their settings, and the
sign-in page (served by the read function, over the local store here)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loopwright.cloud.dashboard_runtime import DashboardSettings, build_dashboard, refusal
from loopwright.cloud.runtime import RuntimeSettings, ports
from loopwright.cloud.signin import SIGNIN_JS, TOKEN_KEY, SignInSettings
from loopwright.dashboard.server import http_to_event
from loopwright.exceptions import ConfigError

DOMAIN = "https://loops-123.auth.eu-west-1.amazoncognito.com"


class Context:
    function_name = "dashboard"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:dashboard"
    aws_request_id = "req-1"


def _event(
    method: str, target: str, claims: dict[str, str] | None = None, body: Any = None
) -> dict[str, Any]:
    event = http_to_event(method, target, [], b"" if body is None else json.dumps(body).encode())
    if claims is not None:
        event["requestContext"]["authorizer"] = {"claims": claims}
    return event


def _error(answer: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    assert answer is not None
    return answer["statusCode"], json.loads(answer["body"])["error"]


# ----------------------------------------------------------------------------- refusal
def test_the_read_function_refuses_every_post_before_routing() -> None:
    status, error = _error(refusal(_event("POST", "/api/loops/l1/stop"), "read"))
    assert status == 405 and error["code"] == "method_not_allowed" and "read function" in error["message"]
    answer = refusal(_event("POST", "/api/loops/l1/stop"), "read")
    assert answer is not None and answer["headers"]["Allow"] == "GET"
    assert refusal(_event("GET", "/api/loops"), "read") is None


def test_the_post_functions_refuse_gets_and_each_others_routes() -> None:
    assert _error(refusal(_event("GET", "/api/loops"), "controls"))[0] == 405
    assert _error(refusal(_event("GET", "/api/plans/p1?project=demo"), "plans"))[0] == 405
    assert _error(refusal(_event("POST", "/api/plans/p1/dispatch?project=demo"), "controls"))[0] == 404
    assert _error(refusal(_event("POST", "/api/loops/l1/stop"), "plans"))[0] == 404
    assert refusal(_event("POST", "/api/loops/l1/stop"), "controls") is None
    assert refusal(_event("GET", "/api/loops"), "all") is None


@pytest.mark.parametrize(
    "target",
    ["/api/projects/demo/plan", "/api/plans/p1/dispatch?project=demo", "/api/plans/p1/verify?project=demo"],
)
def test_plan_changes_reach_the_router_which_asks_cedar(target: str) -> None:
    # No group check before routing: the plan router asks Verified Permissions (PlanAuthorizer),
    # so a denial names its policies (tests/integration/test_dashboard_aws.py).
    assert refusal(_event("POST", target, {"cognito:username": "bob"}), "plans") is None


def test_settings_name_a_bad_variable() -> None:
    assert DashboardSettings.from_environ({}).mode == "all"
    assert DashboardSettings.from_environ({"LOOPWRIGHT_DASHBOARD_MODE": "plans"}).mode == "plans"
    with pytest.raises(ConfigError, match="LOOPWRIGHT_DASHBOARD_MODE"):
        DashboardSettings.from_environ({"LOOPWRIGHT_DASHBOARD_MODE": "write"})
    assert SignInSettings.from_environ({}) is None
    with pytest.raises(ConfigError, match="COGNITO_DOMAIN_URL"):
        SignInSettings.from_environ({"COGNITO_DOMAIN_URL": "http://plain", "COGNITO_CLIENT_ID": "abc"})
    with pytest.raises(ConfigError, match="COGNITO_CLIENT_ID"):
        SignInSettings.from_environ({"COGNITO_DOMAIN_URL": DOMAIN})


# ----------------------------------------------------------------------------- sign-in page
@pytest.fixture
def local_runtime(tmp_path: Path) -> RuntimeSettings:
    ports.cache_clear()
    return RuntimeSettings.from_environ(
        {"LOOPWRIGHT_ADAPTERS": "local", "LOOPWRIGHT_STATE_DIR": str(tmp_path)}
    )


def test_the_read_function_serves_the_signin_page_with_its_settings(
    local_runtime: RuntimeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COGNITO_DOMAIN_URL", DOMAIN)
    monkeypatch.setenv("COGNITO_CLIENT_ID", "client123")
    app = build_dashboard(local_runtime, DashboardSettings(LOOPWRIGHT_DASHBOARD_MODE="read"))
    page = app.resolve(_event("GET", "/signin"), Context())  # type: ignore[arg-type]
    assert page["statusCode"] == 200
    assert f'data-domain="{DOMAIN}"' in page["body"] and 'data-client-id="client123"' in page["body"]
    assert f'data-token-key="{TOKEN_KEY}"' in page["body"] and '<script src="signin.js"' in page["body"]
    csp = page["multiValueHeaders"]["Content-Security-Policy"][0]
    assert f"connect-src 'self' {DOMAIN}" in csp and "script-src" not in csp  # default-src 'self'
    script = app.resolve(_event("GET", "/signin.js"), Context())  # type: ignore[arg-type]
    assert script["statusCode"] == 200 and "code_challenge_method" in script["body"]
    # And the page itself still answers (the app's own routes are there)
    assert app.resolve(_event("GET", "/"), Context())["statusCode"] == 200  # type: ignore[arg-type]


def test_the_controls_function_has_no_signin_page(
    local_runtime: RuntimeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COGNITO_DOMAIN_URL", DOMAIN)
    monkeypatch.setenv("COGNITO_CLIENT_ID", "client123")
    app = build_dashboard(local_runtime, DashboardSettings(LOOPWRIGHT_DASHBOARD_MODE="controls"))
    assert app.resolve(_event("GET", "/signin"), Context())["statusCode"] == 404  # type: ignore[arg-type]
    answer = app.resolve(_event("POST", "/api/loops/l1/stop", None, {}), Context())  # type: ignore[arg-type]
    assert answer["statusCode"] == 401  # Cognito claims only, never a header


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_signin_script_is_valid_javascript(tmp_path: Path) -> None:
    script = tmp_path / "signin.js"
    script.write_text(SIGNIN_JS, encoding="utf-8")
    completed = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


def test_the_read_lambda_answers_a_post_405_without_building_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the handler of the read function, with no store configured at all
    monkeypatch.setenv("LOOPWRIGHT_DASHBOARD_MODE", "read")
    monkeypatch.delenv("LOOPWRIGHT_ADAPTERS", raising=False)
    path = Path(__file__).resolve().parents[2] / "functions" / "dashboard" / "handler.py"
    spec = importlib.util.spec_from_file_location("handler_dashboard_read", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # When a control is posted to it, Then it is refused before any port is built
    answer = module.handler(
        _event("POST", "/api/loops/l1/stop", {"cognito:username": "alice"}, {}), Context()
    )
    assert answer["statusCode"] == 405 and answer["headers"]["Allow"] == "GET"
    # And a GET reaches the resolver (here: the missing setting is named, as JSON)
    answer = module.handler(_event("GET", "/api/loops"), Context())
    assert (
        answer["statusCode"] == 500
        and "LOOPWRIGHT_ADAPTERS" in json.loads(answer["body"])["error"]["message"]
    )
