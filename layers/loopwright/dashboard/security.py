"""Response headers and request limits shared by the Lambda and the local server.

- :data:`SECURITY_HEADERS` go on every answer (:func:`with_security_headers`); an answer without
  its own ``Content-Security-Policy`` (JSON, errors) gets :data:`API_CSP`, which allows nothing
  to run. The page sets its own (``page.PAGE_HEADERS``), Swagger UI one naming the hashes of its
  inline script and style (:func:`inline_csp`): no ``'unsafe-inline'``.
- :func:`json_too_deep`: a body nested deeper than :data:`MAX_JSON_DEPTH` is refused before any
  JSON parser sees it (CPython's parser raises ``RecursionError`` near 100,000 levels; pydantic
  and Powertools recurse too). It scans the text once, outside strings, in linear time.
"""

from __future__ import annotations

import base64
import hashlib
import operator
import re
from collections.abc import Mapping
from itertools import accumulate, count
from typing import Any

#: Deepest nesting of arrays and objects a request body may have (no body of this API needs
#: more than about 8).
MAX_JSON_DEPTH = 64
#: The policy of answers that are not a page: nothing may load or run, nothing may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Headers every answer carries (an answer's own value wins).
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_OPENS = bytes.maketrans(b"[{]}", b"\x01\x01\x00\x00")
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON ``text`` nests arrays/objects more than ``limit`` levels deep (brackets
    inside strings do not count). Invalid JSON is judged the same way; the parser refuses it
    later."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if brackets.count("[") + brackets.count("{") <= limit:
        return False
    # depth after the i-th bracket = opened - closed = 2 * opened - i (C-level iteration: a
    # 1 MiB body of brackets takes tens of milliseconds)
    opened = accumulate(brackets.encode("ascii").translate(_OPENS))
    deepest: int = max(map(operator.sub, map((2).__mul__, opened), count(1)))
    return deepest > limit


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def inline_csp(html: str) -> str:
    """A policy for ``html`` allowing exactly its inline ``<script>`` and ``<style>`` elements
    (by SHA-256), same-origin requests, ``data:`` images and fonts, and nothing else."""
    scripts = [_digest(body) for kind, body in _INLINE.findall(html) if kind == "script"]
    styles = [_digest(body) for kind, body in _INLINE.findall(html) if kind == "style"]
    return (
        f"default-src 'none'; script-src {' '.join(scripts) or 'none'}; "
        f"style-src {' '.join(styles) or 'none'}; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def with_security_headers(response: dict[str, Any]) -> dict[str, Any]:
    """``response`` (an API Gateway proxy response) with :data:`SECURITY_HEADERS`, and
    :data:`API_CSP` unless it has a policy; in ``multiValueHeaders`` when it uses them."""
    single: Mapping[str, Any] = response.get("headers") or {}
    multi: dict[str, list[Any]] | None = response.get("multiValueHeaders")
    present = {str(k).lower() for k in single} | {str(k).lower() for k in (multi or {})}
    missing = {
        name: value
        for name, value in {**SECURITY_HEADERS, "Content-Security-Policy": API_CSP}.items()
        if name.lower() not in present
    }
    if multi is not None:
        multi.update({name: [value] for name, value in missing.items()})
    else:
        response["headers"] = {**single, **missing}
    return response
