"""The :class:`~loopwright.evidence.EvidenceSigner` on AWS KMS: an asymmetric signing key
(``KeySpec`` ``ECC_NIST_P256``, ``KeyUsage`` ``SIGN_VERIFY``) signs evidence bundles with KMS
``Sign``; ``Verify`` checks them. The private key never leaves KMS.

A bundle is larger than KMS's 4 KiB limit on a ``RAW`` message, so loopwright sends its SHA-256
(``MessageType`` ``DIGEST``) with ``ECDSA_SHA_256``: the signature is the same as KMS's over the
raw message, so anyone with the public key (KMS ``GetPublicKey``) can check it offline.
"""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
from botocore.exceptions import ClientError

from loopwright.adapters.aws._errors import aws_errors, error_code, retry_config
from loopwright.evidence import EvidenceSigner

#: The signing algorithm, for an ``ECC_NIST_P256`` key.
KMS_ALGORITHM = "ECDSA_SHA_256"


class KmsEvidenceSigner(EvidenceSigner):
    """Signs with the KMS key ``key_id`` (its ARN: what the bundle names and a verifier looks
    up). ``client``: a boto3 KMS client (default: one with standard retries). Errors of KMS
    raise :class:`~loopwright.exceptions.LoopFrameworkError` saying what to check."""

    algorithm = KMS_ALGORITHM

    def __init__(self, key_id: str, client: Any | None = None, *, region_name: str | None = None) -> None:
        self.key_id = key_id
        self._client = client or boto3.client("kms", region_name=region_name, config=retry_config())

    def sign(self, message: bytes) -> bytes:
        with aws_errors(f"signing evidence with KMS key {self.key_id}"):
            answer = self._client.sign(
                KeyId=self.key_id,
                Message=hashlib.sha256(message).digest(),
                MessageType="DIGEST",
                SigningAlgorithm=KMS_ALGORITHM,
            )
        return bytes(answer["Signature"])

    def public_pem(self) -> bytes:
        """The key's public key (KMS ``GetPublicKey``) as PEM (SubjectPublicKeyInfo), what
        ``loopwright evidence verify --public-key PEM --key-id ARN`` checks bundles with offline."""
        from cryptography.hazmat.primitives import serialization

        with aws_errors(f"reading the public key of KMS key {self.key_id}"):
            answer = self._client.get_public_key(KeyId=self.key_id)
        key = serialization.load_der_public_key(bytes(answer["PublicKey"]))
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            answer = self._client.verify(
                KeyId=self.key_id,
                Message=hashlib.sha256(message).digest(),
                MessageType="DIGEST",
                Signature=signature,
                SigningAlgorithm=KMS_ALGORITHM,
            )
        except ClientError as exc:
            if error_code(exc) == "KMSInvalidSignatureException":
                return False
            with aws_errors(f"verifying evidence with KMS key {self.key_id}"):
                raise
        return bool(answer["SignatureValid"])
