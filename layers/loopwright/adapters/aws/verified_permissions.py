"""Amazon Verified Permissions policy engine: the same Cedar questions, decided by a policy store.

Requests are built from :class:`AuthorizationRequest` as the local engine builds them for
cedarpy (:func:`~loopwright.models.parse_entity_uid`): principal, action
and resource uids ``Type::"id"``; the resource's attributes as one entity in
``entities.entityList`` (attributes whose value is None are left out: Cedar has no null); the
context as ``contextMap``. Python values become AttributeValues: bool -> ``boolean``, int ->
``long``, str -> ``string``, float -> ``decimal`` (four decimals, Cedar's precision), list ->
``set``, a dict ``{"__entity": {"type": T, "id": I}}`` -> ``entityIdentifier``, another dict ->
``record``.

Verified Permissions names determining policies by their policy-store ids, not by the ``@id``
annotation, so the constructor takes a mapping from store ids to annotations. The stack writes
only store id -> ``@id`` (``POLICY_MAP``; :meth:`VerifiedPermissionsPolicyEngine.from_json` adds
the other annotations from the policy files); the constructor's form is::

    {"<policy store policy id>": {"id": "iteration-limit", "outcome": "ITERATION_LIMIT",
                                  "message": "the loop has run its maximum number of iterations"}}

Each value holds the policy's annotations (string values); ``id`` is required. A determining
policy missing from the mapping is reported by its policy-store id.

Errors: a request Verified Permissions rejects as invalid (``ValidationException``: a uid,
attribute or context not matching the store's schema) and evaluation errors are returned in
:attr:`PolicyDecision.errors` (the core then denies: fail closed); any other AWS error
(throttling after the retries, access denied, unknown policy store) raises
:class:`LoopFrameworkError` ``from`` the botocore error. Authorization calls are read-only, so
botocore's standard retries apply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.exceptions import ClientError

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, error_code, retry_config
from loopwright.exceptions import ConfigError
from loopwright.models import AuthorizationRequest, PolicyDecision, parse_entity_uid
from loopwright.ports import PolicyEngine

#: Requests in one BatchIsAuthorized call (Verified Permissions quota).
MAX_BATCH_REQUESTS = 30
#: Prices (https://aws.amazon.com/verified-permissions/pricing/, read 2026-11-23): an IsAuthorized
#: call costs $0.000005, a BatchIsAuthorized call $0.00015 whatever its size (first 40 million a
#: month). So a batch only pays for itself when it is full: fewer requests go one by one.
BATCH_WORTH_IT_FROM = 30
#: Decimal places of a Cedar ``decimal``.
DECIMAL_PLACES = 4


class _InvalidRequest(ValueError):
    """The request cannot be expressed for Verified Permissions."""


class VerifiedPermissionsPolicyEngine(PolicyEngine):
    """:class:`PolicyEngine` over ``verifiedpermissions.is_authorized`` / ``batch_is_authorized``.

    Args:
        policy_store_id: the policy store holding loopwright's policies and schema.
        policies: policy-store policy id -> the policy's annotations (``id`` required), see the
            module docstring.
        client: a boto3 ``verifiedpermissions`` client; default one with standard-mode retries
            of ``max_attempts`` attempts in ``region_name``.

    Raises :class:`ConfigError` when ``policies`` is not of that shape.
    """

    def __init__(
        self,
        policy_store_id: str,
        policies: Mapping[str, Mapping[str, str]],
        *,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.policy_store_id = policy_store_id
        self._policies = _check_mapping(policies)
        self._client: Any = (
            client
            if client is not None
            else boto3.client(
                "verifiedpermissions", region_name=region_name, config=retry_config(max_attempts)
            )
        )

    @classmethod
    def from_json(
        cls,
        policy_store_id: str,
        policies_json: str,
        *,
        annotations: Mapping[str, Mapping[str, str]] | None = None,
        **kwargs: Any,
    ) -> VerifiedPermissionsPolicyEngine:
        """The engine with the mapping given as JSON text (an environment variable's value):
        store policy id -> the policy's ``@id`` (what the stack writes), or -> its annotations
        (the older form). An ``@id`` gets its annotations from ``annotations`` (``@id`` -> the
        policy's annotations, read from the policy files the store was made from); an ``@id``
        missing there keeps only its ``id``.

        Raises :class:`ConfigError` when the text is not JSON of the documented shape.
        """
        try:
            policies = json.loads(policies_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the Verified Permissions policy mapping is not JSON: {exc}") from exc
        if not isinstance(policies, dict):
            raise ConfigError("the Verified Permissions policy mapping must be a JSON object")
        known = annotations or {}
        resolved = {
            store_id: {**known.get(value, {}), "id": value} if isinstance(value, str) else value
            for store_id, value in policies.items()
        }
        return cls(policy_store_id, resolved, **kwargs)

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        """Decide ``request`` with one ``IsAuthorized`` call (see the module docstring for
        errors)."""
        try:
            principal, action, resource, context, entities = _convert(request)
        except _InvalidRequest as exc:
            return PolicyDecision(allowed=False, errors=[f"invalid authorization request: {exc}"])
        with aws_errors(f"asking Verified Permissions policy store {self.policy_store_id!r}"):
            try:
                response = self._client.is_authorized(
                    policyStoreId=self.policy_store_id,
                    principal=principal,
                    action=action,
                    resource=resource,
                    context=context,
                    entities=entities,
                )
            except ClientError as exc:
                if error_code(exc) == "ValidationException":
                    return _rejected(exc)
                raise
        return self._decision(response)

    def is_authorized_batch(self, requests: Sequence[AuthorizationRequest]) -> list[PolicyDecision]:
        """Decide ``requests`` in order: those sharing their resource's attributes in full
        ``BatchIsAuthorized`` calls of :data:`MAX_BATCH_REQUESTS` (a batch costs as much as 30
        single calls, :data:`BATCH_WORTH_IT_FROM`), the rest (the authorize step's two
        questions, for one) with ``IsAuthorized`` one by one."""
        decisions: dict[int, PolicyDecision] = {}
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        entities_of: dict[str, dict[str, Any]] = {}
        for position, request in enumerate(requests):
            try:
                principal, action, resource, context, entities = _convert(request)
            except _InvalidRequest as exc:
                decisions[position] = PolicyDecision(
                    allowed=False, errors=[f"invalid authorization request: {exc}"]
                )
                continue
            key = json.dumps(entities, sort_keys=True)
            entities_of[key] = entities
            item = {"principal": principal, "action": action, "resource": resource, "context": context}
            groups.setdefault(key, []).append((position, item))
        for key, members in groups.items():
            for start in range(0, len(members), MAX_BATCH_REQUESTS):
                chunk = members[start : start + MAX_BATCH_REQUESTS]
                if len(chunk) < BATCH_WORTH_IT_FROM:
                    for position, _ in chunk:
                        decisions[position] = self.is_authorized(requests[position])
                    continue
                for (position, _), decision in zip(
                    chunk, self._batch([item for _, item in chunk], entities_of[key]), strict=True
                ):
                    decisions[position] = decision
        return [decisions[position] for position in range(len(requests))]

    def _batch(self, items: list[dict[str, Any]], entities: dict[str, Any]) -> list[PolicyDecision]:
        with aws_errors(f"asking Verified Permissions policy store {self.policy_store_id!r}"):
            try:
                response = self._client.batch_is_authorized(
                    policyStoreId=self.policy_store_id, entities=entities, requests=items
                )
            except ClientError as exc:
                if error_code(exc) == "ValidationException":
                    return [_rejected(exc)] * len(items)
                raise
        results = response.get("results", [])
        if len(results) != len(items):
            return [
                PolicyDecision(
                    allowed=False,
                    errors=[f"Verified Permissions answered {len(results)} of {len(items)} requests"],
                )
            ] * len(items)
        return [self._decision(result) for result in results]

    def _decision(self, result: Mapping[str, Any]) -> PolicyDecision:
        """A decision from an IsAuthorized response (or one BatchIsAuthorized result)."""
        determining = [str(p["policyId"]) for p in result.get("determiningPolicies", [])]
        annotations = {
            store_id: dict(self._policies.get(store_id, {"id": store_id})) for store_id in determining
        }
        policy_ids = [annotations[store_id]["id"] for store_id in determining]
        return PolicyDecision(
            allowed=result.get("decision") == "ALLOW",
            policy_ids=policy_ids,
            annotations={entry["id"]: entry for entry in annotations.values()},
            errors=[self._name_policies(str(e.get("errorDescription", e))) for e in result.get("errors", [])],
        )

    def _name_policies(self, error: str) -> str:
        """``error`` with each known policy-store id followed by its ``@id``."""
        for store_id, policy in self._policies.items():
            if store_id in error:
                error = error.replace(store_id, f"{store_id} ({policy['id']})")
        return error


def _rejected(exc: ClientError) -> PolicyDecision:
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    return PolicyDecision(
        allowed=False, errors=[f"Verified Permissions rejected the request (ValidationException): {message}"]
    )


def _check_mapping(policies: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    checked: dict[str, dict[str, str]] = {}
    for store_id, policy in policies.items():
        if (
            not isinstance(policy, Mapping)
            or not isinstance(policy.get("id"), str)
            or not all(isinstance(value, str) for value in policy.values())
        ):
            raise ConfigError(
                f"Verified Permissions policy {store_id!r}: expected its annotations as an object of "
                f'strings with an "id", got {policy!r}'
            )
        checked[str(store_id)] = dict(policy)
    return checked


def _convert(
    request: AuthorizationRequest,
) -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, Any], dict[str, Any]]:
    """(principal, action, resource, context, entities) of the Verified Permissions request."""
    try:
        principal = _entity(parse_entity_uid(request.principal))
        action_uid = parse_entity_uid(request.action)
        resource = _entity(parse_entity_uid(request.resource))
    except ValueError as exc:
        raise _InvalidRequest(str(exc)) from exc
    attributes = {
        name: _attribute(value, name)
        for name, value in request.resource_attributes.items()
        if value is not None
    }
    context = {name: _attribute(value, name) for name, value in request.context.items()}
    entity_list: list[dict[str, Any]] = [{"identifier": resource, "attributes": attributes, "parents": []}]
    if request.principal_parents:
        try:
            parents = [_entity(parse_entity_uid(parent)) for parent in request.principal_parents]
        except ValueError as exc:
            raise _InvalidRequest(str(exc)) from exc
        entity_list.append({"identifier": principal, "attributes": {}, "parents": parents})
    return (
        principal,
        {"actionType": action_uid["type"], "actionId": action_uid["id"]},
        resource,
        {"contextMap": context},
        {"entityList": entity_list},
    )


def _entity(uid: Mapping[str, str]) -> dict[str, str]:
    return {"entityType": uid["type"], "entityId": uid["id"]}


def _attribute(value: Any, name: str) -> dict[str, Any]:
    """The AttributeValue of a Python value (see the module docstring); _InvalidRequest else."""
    if isinstance(value, bool):
        return {"boolean": value}
    if isinstance(value, int):
        return {"long": value}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, float):
        return {"decimal": f"{value:.{DECIMAL_PLACES}f}"}
    if isinstance(value, list | tuple):
        return {"set": [_attribute(member, name) for member in value]}
    if isinstance(value, Mapping):
        entity = value.get("__entity")
        if isinstance(entity, Mapping) and set(value) == {"__entity"} and {"type", "id"} <= set(entity):
            return {"entityIdentifier": _entity(entity)}
        return {"record": {str(key): _attribute(member, f"{name}.{key}") for key, member in value.items()}}
    raise _InvalidRequest(f"attribute {name!r}: {type(value).__name__} has no Cedar type")
