"""Amazon Verified Permissions: loopwright's Cedar schema and policies in a policy store.

The store validates STRICTly against ``cedar/loopwright.cedarschema.json``, the JSON form of
``policies/loopwright.cedarschema`` (CloudFormation takes JSON only; ``cedar/regenerate.sh``
converts it, and a test fails when the two are out of step). Every ``policies/*.cedar`` file is
split into single policies (``cedarpy.policies_to_json_str`` then ``policies_from_json_str`` of
each one, so annotations and text stay Cedar's own), each a static ``CfnPolicy``.

Verified Permissions names determining policies by their store ids, so
:meth:`PolicyStore.policy_map_json` maps each ``CfnPolicy.attr_policy_id`` (a token) to the
policy's ``@id`` for the ``POLICY_MAP`` environment variable of the functions that ask Cedar; they
read the other annotations (``outcome``, ``warns``, ``message``...) from the layer's policy files
(:meth:`~loopwright.adapters.aws.verified_permissions.VerifiedPermissionsPolicyEngine.from_json`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cedarpy
from aws_cdk import Fn, RemovalPolicy
from aws_cdk import aws_verifiedpermissions as avp
from constructs import Construct

from infrastructure.constants import POLICIES_DIR

#: The JSON schema given to the policy store (generated, see ``cedar/regenerate.sh``).
SCHEMA_JSON_PATH = Path(__file__).resolve().parent / "cedar" / "loopwright.cedarschema.json"
#: SHA-256 of the human-readable schema that :data:`SCHEMA_JSON_PATH` was generated from.
SCHEMA_SHA256_PATH = SCHEMA_JSON_PATH.with_suffix(".sha256")


@dataclass(frozen=True)
class CedarPolicy:
    """One policy: its Cedar text and its annotations (``@id`` required)."""

    source: str  # file name
    statement: str
    annotations: dict[str, str]

    @property
    def policy_id(self) -> str:
        """The ``@id`` annotation."""
        return self.annotations["id"]


def split_policies(text: str, source: str = "<text>") -> list[CedarPolicy]:
    """The static policies of a Cedar policy file, in file order.

    Raises ``ValueError`` when the text does not parse, holds templates, or a policy has no
    ``@id`` annotation.
    """
    parsed = json.loads(cedarpy.policies_to_json_str(text))
    if parsed.get("templates"):
        raise ValueError(f"{source}: policy templates are not supported")
    policies = []
    # policies_to_json_str names them policy0, policy1, ... in file order
    static = parsed["staticPolicies"]
    for key in sorted(static, key=lambda name: int(name.removeprefix("policy"))):
        est = static[key]
        annotations = {name: str(value) for name, value in (est.get("annotations") or {}).items()}
        if "id" not in annotations:
            raise ValueError(f"{source}: policy {key} has no @id annotation")
        single = {"staticPolicies": {"policy0": est}, "templates": {}, "templateLinks": []}
        statement = cedarpy.policies_from_json_str(json.dumps(single)).strip()
        policies.append(CedarPolicy(source=source, statement=statement, annotations=annotations))
    return policies


def load_policies(folder: Path = POLICIES_DIR) -> list[CedarPolicy]:
    """Every policy of ``folder/*.cedar`` (files in name order). Raises ``ValueError`` on a
    duplicate ``@id`` (see also :func:`split_policies`)."""
    policies = [
        policy
        for path in sorted(folder.glob("*.cedar"))
        for policy in split_policies(path.read_text(), path.name)
    ]
    ids = [policy.policy_id for policy in policies]
    duplicates = sorted({policy_id for policy_id in ids if ids.count(policy_id) > 1})
    if duplicates:
        raise ValueError(f"duplicate policy @id: {', '.join(duplicates)}")
    return policies


def logical_id(policy_id: str) -> str:
    """CloudFormation logical id part for a policy ``@id`` (``iteration-limit`` -> ``IterationLimit``)."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", policy_id) if part)


class PolicyStore(Construct):
    """The policy store (:attr:`store`) and one :class:`avp.CfnPolicy` per Cedar policy
    (:attr:`policies`, keyed by ``@id``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
        policies_dir: Path = POLICIES_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cedar_policies = load_policies(policies_dir)
        self.store = self._build_store(removal_policy)
        self.policies = self._build_policies()

    @property
    def policy_store_id(self) -> str:
        """The store id (a token)."""
        return self.store.attr_policy_store_id

    @property
    def policy_store_arn(self) -> str:
        """The store ARN (a token)."""
        return self.store.attr_arn

    def _build_store(self, removal_policy: RemovalPolicy) -> avp.CfnPolicyStore:
        store = avp.CfnPolicyStore(
            self,
            "Store",
            description="loopwright: limits and controls of autonomous loops (Cedar)",
            validation_settings=avp.CfnPolicyStore.ValidationSettingsProperty(mode="STRICT"),
            schema=avp.CfnPolicyStore.SchemaDefinitionProperty(
                cedar_json=json.dumps(json.loads(SCHEMA_JSON_PATH.read_text()), separators=(",", ":"))
            ),
            deletion_protection=avp.CfnPolicyStore.DeletionProtectionProperty(
                mode="ENABLED" if removal_policy == RemovalPolicy.RETAIN else "DISABLED"
            ),
        )
        store.apply_removal_policy(removal_policy)
        return store

    def _build_policies(self) -> dict[str, avp.CfnPolicy]:
        policies = {}
        for cedar in self.cedar_policies:
            policy = avp.CfnPolicy(
                self,
                f"Policy{logical_id(cedar.policy_id)}",
                policy_store_id=self.store.attr_policy_store_id,
                definition=avp.CfnPolicy.PolicyDefinitionProperty(
                    static=avp.CfnPolicy.StaticPolicyDefinitionProperty(
                        statement=cedar.statement,
                        description=f"{cedar.policy_id} ({cedar.source})"[:150],
                    )
                ),
            )
            policies[cedar.policy_id] = policy
        return policies

    def policy_map_json(self) -> str:
        """``{"<store policy id>": "<@id>"}`` as JSON text with the ids as tokens.

        Only the ``@id``: the Lambdas read each policy's other annotations (``outcome``,
        ``message``...) from the layer's copy of ``policies/`` (``LOOPWRIGHT_POLICIES_DIR``), the
        files the store was made from. With the annotations in it the map outgrew Lambda's 4 KB
        limit on a function's environment variables (18 policies).

        Built with ``Fn::Join`` because the keys are tokens (``Stack.to_json_string`` and
        ``CfnJson`` resolve token values, and ``CfnJson`` adds a custom resource); policy ids are
        alphanumeric, so they need no JSON escaping.
        """
        parts: list[str] = []
        for cedar in self.cedar_policies:
            prefix = "{" if not parts else ","
            parts += [f'{prefix}"', self.policies[cedar.policy_id].attr_policy_id]
            parts.append(f'":{json.dumps(cedar.policy_id)}')
        return Fn.join("", [*parts, "}"] if parts else ["{}"])
