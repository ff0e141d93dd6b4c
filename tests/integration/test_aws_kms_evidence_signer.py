"""Issue 15, part 2: evidence bundles signed and checked with an AWS KMS key (moto).

moto 5.2 does not implement ``MessageType=DIGEST`` (it hashes the digest again), so these tests
check KMS ``Sign`` against KMS ``Verify``; the offline check of a KMS signature with its public
key (:class:`~loopwright.adapters.local.evidence_key.EcdsaP256Verifier`) is tested in
``tests/unit/test_evidence.py`` with a local P-256 key, which signs as KMS does."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from loopwright.adapters.aws.kms_evidence_signer import KmsEvidenceSigner
from loopwright.evidence import EvidenceError, build_bundle, read_signed, sign_bundle
from loopwright.exceptions import LoopFrameworkError
from tests.integration.aws_moto import REGION, fake_credentials
from tests.unit.test_evidence import completed_state


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    fake_credentials(monkeypatch)
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


def signer_for(kms: object) -> KmsEvidenceSigner:
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")  # type: ignore[attr-defined]
    return KmsEvidenceSigner(key["KeyMetadata"]["Arn"], client=kms)


def bundle_bytes(signer: KmsEvidenceSigner) -> bytes:
    bundle = build_bundle(completed_state(), [], pinned_start={}, pinned_end={}, tool_versions={})
    return sign_bundle(bundle, signer)


def test_a_bundle_signed_with_kms_verifies_and_a_changed_one_does_not(kms: object) -> None:
    signer = signer_for(kms)
    data = bundle_bytes(signer)
    document = read_signed(data, signer)
    assert (document.signature.algorithm, document.signature.key_id) == ("ECDSA_SHA_256", signer.key_id)
    assert document.signature.public_key is None
    changed = data.replace(b'"tokens_used":120', b'"tokens_used":121')
    assert changed != data
    with pytest.raises(EvidenceError, match="does not match the bundle"):
        read_signed(changed, signer)


def test_another_kms_key_is_not_the_trusted_one(kms: object) -> None:
    data = bundle_bytes(signer_for(kms))
    with pytest.raises(EvidenceError, match="not by the trusted key"):
        read_signed(data, signer_for(kms))


def test_an_unknown_key_is_a_loopwright_error(kms: object) -> None:
    signer = KmsEvidenceSigner("arn:aws:kms:us-east-1:123456789012:key/missing", client=kms)
    with pytest.raises(LoopFrameworkError, match="signing evidence with KMS key"):
        signer.sign(b"x")
