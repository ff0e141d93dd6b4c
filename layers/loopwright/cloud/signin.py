"""The dashboard's sign-in page in AWS: ``GET /signin`` and ``GET /signin.js``.

The API answers every ``/api/...`` request only with a Cognito ID token in ``Authorization``
(API Gateway's Cognito authorizer), and a browser's navigation cannot send one. So the page
(``GET /``, ``/static/...``) and this sign-in page are public (they hold no loop data), and the
page's script sends the token it finds in ``sessionStorage["loopwright.idToken"]``. This page
puts it there with the OAuth 2.0 authorization code grant with PKCE (RFC 7636) against the user
pool's managed login (Hosted UI), with no client secret:

1. ``/signin`` without ``code``: a random verifier and state are kept in ``sessionStorage``; the
   browser goes to ``<domain>/oauth2/authorize`` (``response_type=code``,
   ``code_challenge_method=S256``, ``redirect_uri`` = this page's URL, registered as the app
   client's callback URL by the stack).
2. Cognito signs the user in (password, then the TOTP code: MFA is required) and sends the browser
   back to ``/signin?code=...&state=...``; the page checks the state, exchanges the code at
   ``<domain>/oauth2/token`` with the verifier, keeps the ID token (valid 1 hour) and opens the
   dashboard. When it expires, the API answers 401: open ``/signin`` again (Cognito's session
   cookie usually signs in without a password).
3. ``/signin?signout=1`` forgets the token and signs out of Cognito (``<domain>/logout``; this
   page is also the app client's sign-out URL).

Settings (environment, set by ``infrastructure/dashboard.py``): ``COGNITO_DOMAIN_URL``
(``https://<prefix>.auth.<region>.amazoncognito.com``) and ``COGNITO_CLIENT_ID``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright.exceptions import ConfigError

#: ``sessionStorage`` key the dashboard's script reads the ID token from (``dashboard/static/app.js``).
TOKEN_KEY = "loopwright.idToken"


class SignInSettings(BaseModel):
    """Where users sign in: the user pool's domain and the dashboard's app client."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    domain_url: str = Field(alias="COGNITO_DOMAIN_URL", pattern=r"^https://[A-Za-z0-9.-]+$")
    client_id: str = Field(alias="COGNITO_CLIENT_ID", pattern=r"^[A-Za-z0-9]{1,128}$")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SignInSettings | None:
        """The settings, or None when neither variable is set (no sign-in page: a token comes
        from elsewhere, for example the CLI). Raises :class:`ConfigError` naming a bad variable."""
        values = dict(environ if environ is not None else os.environ)
        if not values.get("COGNITO_DOMAIN_URL") and not values.get("COGNITO_CLIENT_ID"):
            return None
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"environment variable {name}: {first['msg']}") from exc


def page_headers(settings: SignInSettings) -> dict[str, str]:
    """Headers of both answers: a script of this origin only, which may call the Cognito domain."""
    return {
        "Content-Security-Policy": f"default-src 'self'; connect-src 'self' {settings.domain_url}; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; form-action 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def signin_html(settings: SignInSettings) -> str:
    """The sign-in page: a status line and the script; the settings as data attributes."""
    domain = html.escape(settings.domain_url, quote=True)
    client = html.escape(settings.client_id, quote=True)
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>loopwright: sign in</title>
  <link rel="icon" href="data:,">
  <script src="signin.js" defer></script>
</head>
<body data-domain="{domain}" data-client-id="{client}" data-token-key="{TOKEN_KEY}">
  <h1>loopwright</h1>
  <p id="status" role="status">Signing in&hellip;</p>
  <p><a id="retry" href="signin" hidden>Sign in again</a> <a href="./">Dashboard</a></p>
  <noscript>Sign-in needs JavaScript.</noscript>
</body>
</html>
"""


#: The sign-in script (no third-party code; Web Crypto for the PKCE challenge).
SIGNIN_JS = r"""// loopwright sign-in: OAuth 2.0 authorization code grant with PKCE against Cognito.
"use strict";
(async function () {
  const data = document.body.dataset;
  const domain = data.domain, clientId = data.clientId, tokenKey = data.tokenKey;
  const here = location.origin + location.pathname;
  const home = new URL("./", location.href).href;
  const params = new URLSearchParams(location.search);
  const status = document.getElementById("status");
  function fail(text) {
    status.textContent = "Sign-in failed: " + text;
    document.getElementById("retry").hidden = false;
  }
  function b64url(buffer) {
    let text = "";
    for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  if (params.has("signout")) {
    sessionStorage.removeItem(tokenKey);
    const out = new URL(domain + "/logout");
    out.search = new URLSearchParams({ client_id: clientId, logout_uri: here }).toString();
    location.assign(out.href);
    return;
  }
  if (params.has("error")) {
    fail(params.get("error_description") || params.get("error"));
    return;
  }
  const code = params.get("code");
  if (!code) {
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    sessionStorage.setItem("loopwright.pkce", JSON.stringify({ verifier: verifier, state: state }));
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const url = new URL(domain + "/oauth2/authorize");
    url.search = new URLSearchParams({
      response_type: "code", client_id: clientId, redirect_uri: here, scope: "openid email profile",
      state: state, code_challenge: challenge, code_challenge_method: "S256",
    }).toString();
    location.assign(url.href);
    return;
  }
  const saved = JSON.parse(sessionStorage.getItem("loopwright.pkce") || "{}");
  sessionStorage.removeItem("loopwright.pkce");
  if (!saved.state || saved.state !== params.get("state")) {
    fail("the answer does not match a sign-in started in this tab; sign in again");
    return;
  }
  let tokens = null;
  try {
    const response = await fetch(domain + "/oauth2/token", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", client_id: clientId, code: code,
        redirect_uri: here, code_verifier: saved.verifier,
      }).toString(),
    });
    tokens = await response.json();
    if (!response.ok) throw new Error(tokens.error || "HTTP " + response.status);
  } catch (err) {
    fail(err.message);
    return;
  }
  if (!tokens || !tokens.id_token) {
    fail("Cognito returned no ID token");
    return;
  }
  sessionStorage.setItem(tokenKey, tokens.id_token);
  location.replace(home);
})();
"""


def build_signin_router(settings: SignInSettings) -> Router:
    """``GET /signin`` (the page) and ``GET /signin.js`` (its script), left out of the OpenAPI
    document (they are not API operations)."""
    router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated
    headers = page_headers(settings)
    page = signin_html(settings)

    @router.get("/signin", include_in_schema=False)
    def get_signin() -> Response[str]:
        return Response(200, "text/html; charset=utf-8", body=page, headers=dict(headers))

    @router.get("/signin.js", include_in_schema=False)
    def get_signin_js() -> Response[str]:
        return Response(200, "text/javascript; charset=utf-8", body=SIGNIN_JS, headers=dict(headers))

    return router
