"""The evidence key: the customer-managed KMS key that signs each completed loop's evidence
bundle (issue 15, part 2; :mod:`loopwright.cloud.evidence_record`).

- An asymmetric key (``ECC_NIST_P256``, ``SIGN_VERIFY``): KMS ``Sign`` with ``ECDSA_SHA_256``
  over the bundle's SHA-256 (:class:`loopwright.adapters.aws.kms_evidence_signer.KmsEvidenceSigner`).
  Its private half never leaves KMS; anyone given its public key (``GetPublicKey``, once) checks a
  bundle offline with ``loopwright evidence verify --public-key PEM --key-id ARN``. KMS does not
  rotate asymmetric keys (the same key keeps verifying old bundles).
- Alias ``alias/loopwright-evidence-<stack name>``; removal policy from the stack's context, as
  its tables (``destroy`` schedules the key's deletion after KMS's waiting period: keep its public
  key to check old bundles).
- :meth:`EvidenceKey.connect`: ``kms:Sign`` on this key only, and ``EVIDENCE_KEY_ARN``, to the
  functions that complete loops (:data:`infrastructure.functions.NEEDS` ``evidence``); they store
  the signed file as an item of the loops table (no bucket: the stack has none).
- :meth:`EvidenceKey.connect_reader`: ``kms:GetPublicKey`` on this key only, and
  ``EVIDENCE_KEY_ARN``, to the dashboard's read function (``GET /api/evidence/public-key``).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infrastructure.dashboard_routes import EVIDENCE_KEY_READ_ACTIONS

#: What a function that signs bundles may do with the key (Verify and GetPublicKey are for
#: reviewers, who hold their own credentials).
SIGN_ACTIONS = ("kms:Sign",)
#: The signing functions' variable naming the key (``RuntimeSettings.evidence_key_arn``).
ENV_EVIDENCE_KEY_ARN = "EVIDENCE_KEY_ARN"


def evidence_alias(stack_name: str) -> str:
    """``alias/loopwright-evidence-<stack_name>``."""
    return f"alias/loopwright-evidence-{stack_name}"


class EvidenceKey(Construct):
    """:attr:`key` and the functions :meth:`connect` gave it (see the module docstring)."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "EvidenceKey",
            description="loopwright evidence bundles: signs each loop that met its conditions "
            "(ECDSA P-256; verify offline with its public key)",
            key_spec=kms.KeySpec.ECC_NIST_P256,
            key_usage=kms.KeyUsage.SIGN_VERIFY,
            alias=evidence_alias(Stack.of(self).stack_name),
            removal_policy=removal_policy,
        )
        #: The functions given :meth:`connect`.
        self.signers: list[lambda_.Function] = []

    def connect(self, function: lambda_.Function) -> None:
        """Let ``function`` sign with the key (:data:`SIGN_ACTIONS` on it only) and tell it which
        (:data:`ENV_EVIDENCE_KEY_ARN`)."""
        role = function.role
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(SIGN_ACTIONS), resources=[self.key.key_arn])
        )
        function.add_environment(ENV_EVIDENCE_KEY_ARN, self.key.key_arn)
        self.signers.append(function)

    def connect_reader(self, function: lambda_.Function) -> None:
        """Let ``function`` read the key's public half (:data:`EVIDENCE_KEY_READ_ACTIONS` on it
        only) and tell it which (:data:`ENV_EVIDENCE_KEY_ARN`)."""
        role = function.role
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(EVIDENCE_KEY_READ_ACTIONS), resources=[self.key.key_arn])
        )
        function.add_environment(ENV_EVIDENCE_KEY_ARN, self.key.key_arn)
