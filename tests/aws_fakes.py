"""Fakes of the AWS services moto does not have, behaving like the services, for loops run on
moto with every AWS adapter (``LocalStepFunctions(..., adapters="aws")``).

- Code Interpreter: :class:`~tests.unit.aws_session_fake.SessionService` (a session is a folder,
  ``executeCommand`` runs the sandbox's shell line in it, ``writeFiles`` writes into it; a
  session can expire, its files gone), played into every sandbox the runtime builds by
  :func:`~tests.unit.aws_loop_driver.play_code_interpreter`. Both are re-exported here.
- Verified Permissions: :class:`PolicyStoreFake`, the deployed policy store (the synthesized
  template's ``AWS::VerifiedPermissions::PolicyStore`` schema and ``Policy`` statements, which
  ``infrastructure/policies.py`` builds from ``policies/``) answering ``IsAuthorized`` and
  ``BatchIsAuthorized`` in the service's wire format, decided by cedarpy; played into every
  :class:`VerifiedPermissionsPolicyEngine` by :func:`play_verified_permissions`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cedarpy
import pytest
from botocore.exceptions import ClientError

from loopwright.adapters.aws import verified_permissions
from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine
from tests.unit.aws_loop_driver import play_code_interpreter
from tests.unit.aws_session_fake import SessionService

__all__ = ["PolicyStoreFake", "SessionService", "play_code_interpreter", "play_verified_permissions"]

POLICY_STORE_ID = "PSlocalfake000000000001"


class PolicyStoreFake:
    """A Verified Permissions policy store played with cedarpy: ``policies`` maps store policy
    ids to Cedar statements, ``schema`` is the store's schema (Cedar JSON); requests are checked
    against it (STRICT validation: a request the schema rejects is a ValidationException)."""

    def __init__(
        self, policies: Mapping[str, str], schema: str, policy_store_id: str = POLICY_STORE_ID
    ) -> None:
        self.policy_store_id = policy_store_id
        self.policies = dict(policies)
        self.schema = schema
        self._ids = list(self.policies)  # cedarpy names them policy0, policy1, ... in this order
        self._text = "\n".join(self.policies[i] for i in self._ids)
        self.calls: list[dict[str, Any]] = []

    @classmethod
    def from_template(cls, template: Mapping[str, Any]) -> PolicyStoreFake:
        """The store a deployment of ``template`` creates, each policy's id ``SP<logical id>``."""
        resources: Mapping[str, Any] = template["Resources"]
        (store,) = [r for r in resources.values() if r["Type"] == "AWS::VerifiedPermissions::PolicyStore"]
        policies = {
            f"SP{key}": r["Properties"]["Definition"]["Static"]["Statement"]
            for key, r in resources.items()
            if r["Type"] == "AWS::VerifiedPermissions::Policy"
        }
        return cls(policies, store["Properties"]["Schema"]["CedarJson"])

    def policy_map(self) -> dict[str, str]:
        """``POLICY_MAP``: store policy id -> the policy's ``@id``, as the stack writes it."""
        parsed = json.loads(cedarpy.policies_to_json_str(self._text))["staticPolicies"]
        return {self._ids[int(k.removeprefix("policy"))]: v["annotations"]["id"] for k, v in parsed.items()}

    def environment(self) -> dict[str, str]:
        """``POLICY_STORE_ID`` and ``POLICY_MAP`` of the authorize and control functions."""
        return {"POLICY_STORE_ID": self.policy_store_id, "POLICY_MAP": json.dumps(self.policy_map())}

    # ---------------------------------------------------------------- the service's operations
    def is_authorized(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if kwargs["policyStoreId"] != self.policy_store_id:
            raise _error("ResourceNotFoundException", f"policy store {kwargs['policyStoreId']} not found")
        entities = kwargs.get("entities", {}).get("entityList", [])
        return self._decide(kwargs, entities)

    def batch_is_authorized(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        entities = kwargs.get("entities", {}).get("entityList", [])
        results = [{"request": r, **self._decide(r, entities)} for r in kwargs["requests"]]
        return {"results": results}

    def _decide(self, request: Mapping[str, Any], entity_list: list[dict[str, Any]]) -> dict[str, Any]:
        cedar_request = {
            "principal": _uid(request["principal"]),
            "action": f'Action::"{request["action"]["actionId"]}"',
            "resource": _uid(request["resource"]),
            "context": _values(request.get("context", {}).get("contextMap", {})),
        }
        entities = [
            {
                "uid": {"type": e["identifier"]["entityType"], "id": e["identifier"]["entityId"]},
                "attrs": _values(e.get("attributes", {})),
                "parents": [{"type": p["entityType"], "id": p["entityId"]} for p in e.get("parents", [])],
            }
            for e in entity_list
        ]
        result = cedarpy.is_authorized(cedar_request, self._text, entities, schema=self.schema)
        errors = [str(getattr(e, "error", e)) for e in result.diagnostics.errors]
        if result.decision not in (cedarpy.Decision.Allow, cedarpy.Decision.Deny):
            raise _error("ValidationException", "; ".join(errors) or "the request does not match the schema")
        reasons = [self._ids[int(r.removeprefix("policy"))] for r in result.diagnostics.reasons]
        return {
            "decision": "ALLOW" if result.allowed else "DENY",
            "determiningPolicies": [{"policyId": p} for p in reasons],
            "errors": [{"errorDescription": e} for e in errors],
        }


def play_verified_permissions(monkeypatch: pytest.MonkeyPatch, store: PolicyStoreFake) -> None:
    """Every :class:`VerifiedPermissionsPolicyEngine` the runtime builds asks ``store``."""

    class Played(VerifiedPermissionsPolicyEngine):
        def __init__(
            self, policy_store_id: str, policies: Mapping[str, Mapping[str, str]], **kwargs: Any
        ) -> None:
            kwargs.pop("region_name", None)
            super().__init__(policy_store_id, policies, client=store, **kwargs)

    monkeypatch.setattr(verified_permissions, "VerifiedPermissionsPolicyEngine", Played)


def _uid(identifier: Mapping[str, str]) -> str:
    return f"{identifier['entityType']}::{json.dumps(identifier['entityId'])}"


def _values(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _value(value) for name, value in attributes.items()}


def _value(value: Mapping[str, Any]) -> Any:
    """A Verified Permissions AttributeValue as cedarpy's JSON value."""
    ((kind, inner),) = value.items()
    if kind in ("boolean", "long", "string"):
        return inner
    if kind == "decimal":
        return {"__extn": {"fn": "decimal", "arg": inner}}
    if kind == "set":
        return [_value(v) for v in inner]
    if kind == "record":
        return _values(inner)
    if kind == "entityIdentifier":
        return {"__entity": {"type": inner["entityType"], "id": inner["entityId"]}}
    raise _error("ValidationException", f"unsupported attribute value {kind!r}")


def _error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "IsAuthorized")
