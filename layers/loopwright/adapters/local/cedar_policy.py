"""Local Cedar policy engine: the ``policies/`` folder evaluated in-process with cedarpy.

The folder holds one Cedar schema (``*.cedarschema``, human-readable format) and any number of
``*.cedar`` policy files. Every policy carries an ``@id("...")`` annotation, unique across the
folder; denials add ``@outcome("ITERATION_LIMIT" | ...)``, warnings ``@warns(...)``, and any policy
may add ``@message``.
At load, each file is parsed and validated against the schema on its own (so an error names
its file); the files are then parsed ONCE into a single :class:`cedarpy.PolicySet` reused for
every decision.

Where the folder is found (:func:`default_policy_dir`): the ``policy_dir`` argument, else the
``LOOPWRIGHT_POLICY_DIR`` environment variable, else ``policies/`` at the root of a source
checkout (``layers/loopwright/`` sits two levels below it), else the copy of it shipped inside
the installed package (``loopwright/policies/``, written by the build: see ``setup.py``). The
copy is byte for byte, so a loop records the same file digests under either.

Cost: the policy set and schema are parsed once (about 10 ms at load), and a loop's entity set
once per set of limits (cached). Measured after warm-up on a 2-core VM with cedarpy 4.12.2:
about 0.12 ms per decision, of which ``cedarpy.is_authorized`` itself takes about 0.085 ms
(checking the request against the schema costs about 0.015 ms of that).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from loopwright.exceptions import ConfigError
from loopwright.models import AuthorizationRequest, PolicyDecision, parse_entity_uid
from loopwright.ports import PolicyEngine

#: Environment variable naming the policy folder (overrides the default policies).
POLICY_DIR_ENV = "LOOPWRIGHT_POLICY_DIR"

#: Entity uids per loop kept parsed; a loop reuses one entity set for all its decisions.
DEFAULT_ENTITY_CACHE_SIZE = 256

_POSITIONAL_ID = re.compile(r"`(policy\d+)`")


def _checkout_policy_dir() -> Path | None:
    """``policies/`` of the source checkout this module runs from, or None when it runs from an
    install (``layers/loopwright/adapters/local/cedar_policy.py``: ``parents[3]`` is ``layers``)."""
    here = Path(__file__).resolve()
    return here.parents[4] / "policies" if here.parents[3].name == "layers" else None


def _packaged_policy_dir() -> Path | None:
    """``loopwright/policies/`` of the installed package (package data), or None when the package
    is not on the file system (a zip import)."""
    folder = resources.files("loopwright") / "policies"
    return folder if isinstance(folder, Path) else None


#: Where the default policies are looked for, in order: the checkout's, then the packaged copy.
CHECKOUT_POLICY_DIR = _checkout_policy_dir()
PACKAGED_POLICY_DIR = _packaged_policy_dir()


def policy_annotations(policy_dir: Path | str | None = None) -> dict[str, dict[str, str]]:
    """``@id`` -> annotations of every policy in ``policy_dir`` (default
    :func:`default_policy_dir`), loaded and validated as :class:`CedarPolicyEngine` loads them.

    Raises :class:`ConfigError` as :class:`CedarPolicyEngine` does.
    """
    engine = CedarPolicyEngine(policy_dir)
    return {policy_id: engine.annotations(policy_id) for policy_id in engine.policy_ids}


def default_policy_dir() -> Path:
    """The policy folder: ``$LOOPWRIGHT_POLICY_DIR`` if set, else ``policies/`` of the source
    checkout, else the policies shipped inside the installed package.

    Raises :class:`ConfigError` when ``LOOPWRIGHT_POLICY_DIR`` is not a folder, or when neither
    default folder exists (the message names the places looked at).
    """
    configured = os.environ.get(POLICY_DIR_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise ConfigError(f"{POLICY_DIR_ENV}={configured!r} is not a folder of Cedar policies")
        return path
    candidates = [folder for folder in (CHECKOUT_POLICY_DIR, PACKAGED_POLICY_DIR) if folder is not None]
    for folder in candidates:
        if folder.is_dir():
            return folder
    looked = " or ".join(str(folder) for folder in candidates) or "nowhere"
    raise ConfigError(
        f"no Cedar policy folder found: set {POLICY_DIR_ENV} to a folder holding "
        f"a .cedarschema and .cedar files (none at {looked}; reinstall loopwright from its wheel "
        "to get the default policies)"
    )


class CedarPolicyEngine(PolicyEngine):
    """:class:`PolicyEngine` over cedarpy and a folder of Cedar policies.

    Args:
        policy_dir: the folder; default :func:`default_policy_dir`.
        entities: entities present in every request (Cedar JSON entity format), for example
            users and their groups for the control actions; default none.
        entity_cache_size: parsed per-request entity sets kept (one per loop and its limits).

    Raises:
        ConfigError: the folder is missing, has no or several ``.cedarschema`` files, no
            ``.cedar`` file, a file that does not parse or validate against the schema, a
            policy without ``@id``, a duplicate ``@id``, a template, or ``entities`` that do
            not conform to the schema. The message names the file and the problem.
    """

    def __init__(
        self,
        policy_dir: Path | str | None = None,
        *,
        entities: Sequence[Mapping[str, Any]] = (),
        entity_cache_size: int = DEFAULT_ENTITY_CACHE_SIZE,
    ) -> None:
        self._dir = Path(policy_dir) if policy_dir is not None else default_policy_dir()
        if not self._dir.is_dir():
            raise ConfigError(f"Cedar policy folder {self._dir} does not exist")
        self._file_digests: dict[str, str] = {}
        self._schema = self._load_schema()
        texts = self._load_policy_files()
        combined = "\n".join(texts)
        self._policies = cedarpy.PolicySet.from_str(combined)
        self._annotations = _annotations_by_position(combined)
        self._base_entities = self._load_base_entities(entities)
        self._entities = functools.lru_cache(maxsize=entity_cache_size)(self._parse_entities)

    @property
    def policy_dir(self) -> Path:
        """The folder the policies were loaded from."""
        return self._dir

    def policy_files(self) -> dict[str, str]:
        """Every file loaded (the schema and each ``.cedar`` file) -> SHA-256 of the bytes read:
        what a loop records at its start and compares on resume (issue 11)."""
        return dict(sorted(self._file_digests.items()))

    @property
    def policy_ids(self) -> list[str]:
        """The ``@id`` of every loaded policy, in load order (files sorted by name)."""
        return [policy["id"] for policy in self._annotations.values()]

    def annotations(self, policy_id: str) -> dict[str, str]:
        """The annotations of the policy with ``@id`` ``policy_id``; KeyError if unknown."""
        for policy in self._annotations.values():
            if policy["id"] == policy_id:
                return dict(policy)
        raise KeyError(policy_id)

    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        """Decide ``request`` with the loaded policies.

        The resource entity is built from ``request.resource_attributes`` (attributes whose
        value is None are left out: Cedar has no null). Never raises for a bad request: a
        malformed uid, attributes or context not conforming to the schema, and policy
        evaluation errors are returned in ``errors`` (with positional policy ids replaced by
        ``@id``); the caller must treat a decision with errors as a denial.
        """
        return self.is_authorized_batch([request])[0]

    def is_authorized_batch(self, requests: Sequence[AuthorizationRequest]) -> list[PolicyDecision]:
        """Decide ``requests`` in order, in one cedarpy call when they share their resource's
        attributes (the authorize step's two questions do), else one call each."""
        try:
            prepared = [self._prepare(request) for request in requests]
            keys = {key for _, key in prepared}
            if len(keys) == 1:
                results = cedarpy.is_authorized_batch(
                    [cedar_request for cedar_request, _ in prepared],
                    self._policies,
                    self._entities(keys.pop()),
                    schema=self._schema,
                )
            else:
                results = [
                    cedarpy.is_authorized(
                        cedar_request, self._policies, self._entities(key), schema=self._schema
                    )
                    for cedar_request, key in prepared
                ]
        except (TypeError, ValueError) as exc:  # not JSON, not a uid, or not the schema's shape
            if len(requests) > 1:
                return [self.is_authorized(request) for request in requests]
            return [PolicyDecision(allowed=False, errors=[f"invalid authorization request: {exc}"])]
        return [self._decision(result) for result in results]

    def _prepare(self, request: AuthorizationRequest) -> tuple[dict[str, Any], str]:
        """The cedarpy request and the key of its entity set (the resource and its attributes)."""
        resource = parse_entity_uid(request.resource)
        attrs = {k: v for k, v in request.resource_attributes.items() if v is not None}
        delta: list[dict[str, Any]] = [{"uid": resource, "attrs": attrs, "parents": []}]
        if request.principal_parents:
            parents = [parse_entity_uid(parent) for parent in request.principal_parents]
            delta.append({"uid": parse_entity_uid(request.principal), "attrs": {}, "parents": parents})
        cedar_request = {
            "principal": parse_entity_uid(request.principal),
            "action": parse_entity_uid(request.action),
            "resource": resource,
            "context": request.context,
        }
        return cedar_request, json.dumps(delta, sort_keys=True)

    def _decision(self, result: Any) -> PolicyDecision:
        positions = sorted(result.diagnostics.reasons, key=_position)
        determining = [self._annotations[p] for p in positions]
        return PolicyDecision(
            allowed=result.allowed,
            policy_ids=[policy["id"] for policy in determining],
            annotations={policy["id"]: dict(policy) for policy in determining},
            errors=[self._name_policies(error) for error in result.diagnostics.errors],
        )

    # -- loading -------------------------------------------------------------------------------

    def _load_schema(self) -> cedarpy.Schema:
        schemas = sorted(self._dir.glob("*.cedarschema"))
        if len(schemas) != 1:
            found = ", ".join(p.name for p in schemas) or "none"
            raise ConfigError(
                f"Cedar policy folder {self._dir} needs exactly one .cedarschema file (found: {found})"
            )
        try:
            return cedarpy.Schema.from_str(self._read(schemas[0]))
        except ValueError as exc:
            raise ConfigError(f"{schemas[0]}: invalid Cedar schema: {exc}") from exc

    def _load_policy_files(self) -> list[str]:
        files = sorted(self._dir.glob("*.cedar"))
        if not files:
            raise ConfigError(f"Cedar policy folder {self._dir} has no .cedar policy file")
        texts: list[str] = []
        seen: dict[str, Path] = {}
        for path in files:
            text = self._read(path)
            try:
                cedarpy.PolicySet.from_str(text)
                parsed = json.loads(cedarpy.policies_to_json_str(text))
            except ValueError as exc:
                raise ConfigError(f"{path}: cannot parse Cedar policies: {exc}") from exc
            if parsed.get("templates"):
                raise ConfigError(f"{path}: Cedar templates are not supported; write static policies")
            self._validate(path, text)
            for position, policy in parsed.get("staticPolicies", {}).items():
                policy_id = (policy.get("annotations") or {}).get("id")
                if not policy_id:
                    raise ConfigError(f'{path}: policy {position} has no @id("...") annotation')
                if policy_id in seen:
                    raise ConfigError(f"{path}: @id {policy_id!r} is already used in {seen[policy_id]}")
                seen[policy_id] = path
            texts.append(text)
        return texts

    def _validate(self, path: Path, text: str) -> None:
        result = cedarpy.validate_policies(text, self._schema)
        if result.validation_passed:
            return
        names = result.id_annotations_by_policy_id
        problems = [
            f"policy {names.get(e.policy_id) or e.policy_id or '?'}: {e.error}" for e in result.errors
        ]
        raise ConfigError(f"{path}: Cedar policies do not match the schema: {'; '.join(problems)}")

    def _load_base_entities(self, entities: Sequence[Mapping[str, Any]]) -> cedarpy.Entities | None:
        if not entities:
            return None
        try:
            return cedarpy.Entities.from_json_str(json.dumps(list(entities)), self._schema)
        except ValueError as exc:
            raise ConfigError(f"entities do not conform to the Cedar schema: {exc}") from exc

    def _read(self, path: Path) -> str:
        """The UTF-8 text of ``path``, its digest recorded; ConfigError naming it if unreadable."""
        text = _read(path)
        self._file_digests[path.name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return text

    # -- per request ---------------------------------------------------------------------------

    def _parse_entities(self, delta: str) -> cedarpy.Entities:
        """The base entities plus ``delta`` (JSON); ValueError if they break the schema."""
        if self._base_entities is None:
            return cedarpy.Entities.from_json_str(delta, self._schema)
        return self._base_entities.with_added_json_str(delta, self._schema)

    def _name_policies(self, error: str) -> str:
        def replace(match: re.Match[str]) -> str:
            policy = self._annotations.get(match[1])
            return f"`{policy['id']}`" if policy else match[0]

        return _POSITIONAL_ID.sub(replace, error)


def _read(path: Path) -> str:
    """The UTF-8 text of ``path``; ConfigError naming it if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def _position(policy: str) -> int:
    digits = policy.removeprefix("policy")
    return int(digits) if digits.isdigit() else -1


def _annotations_by_position(text: str) -> dict[str, dict[str, str]]:
    """Positional policy id (``policy0``, ...) -> its annotations, in load order."""
    policies = json.loads(cedarpy.policies_to_json_str(text)).get("staticPolicies", {})
    by_position = {
        position: {key: value or "" for key, value in (policy.get("annotations") or {}).items()}
        for position, policy in policies.items()
    }
    return dict(sorted(by_position.items(), key=lambda item: _position(item[0])))
