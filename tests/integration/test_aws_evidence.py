"""Issue 15, part 2 on AWS (moto): a completed loop's bundle signed with a KMS key, stored in the
loops table, and served by the dashboard's ``GET /api/loops/{loop_id}/evidence``.

moto 5.2 does not implement KMS ``Sign`` with ``MessageType=DIGEST`` as KMS does (it hashes the
digest again), so the bundles here are checked with KMS ``Verify`` (moto, consistent with its
``Sign``), as in ``test_aws_kms_evidence_signer.py``."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from loopwright.adapters.aws.dynamodb_evidence import (
    EVIDENCE_MAX_BYTES,
    DynamoDbEvidenceStore,
    evidence_key,
)
from loopwright.adapters.aws.dynamodb_store import DynamoDbStore
from loopwright.adapters.aws.kms_evidence_signer import KmsEvidenceSigner
from loopwright.adapters.local.evidence_key import LocalEd25519Signer, verifier_from_pem
from loopwright.cli.evidence_cmd import evidence_app, local_evidence_key
from loopwright.cloud import runtime
from loopwright.cloud.evidence_record import record_evidence
from loopwright.cloud.runtime import RuntimeSettings
from loopwright.cloud.runtime_aws import evidence_keeper
from loopwright.evidence import read_signed
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import LoopOutcome, LoopPhase
from tests.integration.aws_moto import LOOPS_TABLE, REGION, fake_credentials, moto_dynamodb_store
from tests.integration.dashboard_helpers import loop_state
from tests.integration.test_dashboard_aws import _call, _handler
from tests.unit.test_evidence import completed_state


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DynamoDbStore, str]]:
    """The moto loop store and an ECC_NIST_P256 signing key's ARN."""
    fake_credentials(monkeypatch)
    with moto_dynamodb_store() as store:
        kms = boto3.client("kms", region_name=REGION)
        key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
        yield store, key["KeyMetadata"]["Arn"]


def _settings(**extra: str) -> RuntimeSettings:
    return RuntimeSettings.from_environ(
        {"LOOPWRIGHT_ADAPTERS": "aws", "LOOPS_TABLE_NAME": LOOPS_TABLE, "AWS_REGION": REGION, **extra}
    )


@pytest.mark.usefixtures("aws")
def test_the_store_keeps_the_file_byte_for_byte_beside_the_loop() -> None:
    bundles = DynamoDbEvidenceStore(LOOPS_TABLE, region_name=REGION)
    assert bundles.get("l1") is None
    bundles.put("l1", b'{"bundle":1}\n')
    assert bundles.get("l1") == b'{"bundle":1}\n'
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=LOOPS_TABLE, Key=evidence_key("l1")
    )
    assert zlib.decompress(item["Item"]["evidence"]["B"]) == b'{"bundle":1}\n'
    assert "project" not in item["Item"] and "gsi_all" not in item["Item"]  # never listed as a loop


@pytest.mark.usefixtures("aws")
def test_a_file_too_large_for_an_item_is_refused() -> None:
    with pytest.raises(LoopFrameworkError, match="above the"):
        DynamoDbEvidenceStore(LOOPS_TABLE, region_name=REGION).put("l1", os.urandom(EVIDENCE_MAX_BYTES + 1))


def test_without_a_key_the_functions_keep_no_bundles() -> None:
    assert evidence_keeper(_settings()) is None


def test_a_completed_loop_is_signed_with_kms_and_stored(aws: tuple[DynamoDbStore, str]) -> None:
    store, key_arn = aws
    keeper = evidence_keeper(_settings(EVIDENCE_KEY_ARN=key_arn))
    assert keeper is not None and keeper.signer.key_id == key_arn
    state = store.create_loop(completed_state())
    data = record_evidence(state, store, keeper)
    assert data is not None and keeper.bundles.get("l1") == data
    document = read_signed(data, KmsEvidenceSigner(key_arn, region_name=REGION))
    assert (document.signature.algorithm, document.signature.key_id) == ("ECDSA_SHA_256", key_arn)
    assert document.bundle.loop_id == "l1"
    assert store.get_state("l1").outcome is LoopOutcome.CONDITIONS_MET  # the loop item is untouched


def test_a_missing_key_logs_and_stores_nothing(aws: tuple[DynamoDbStore, str]) -> None:
    store, _ = aws
    keeper = evidence_keeper(_settings(EVIDENCE_KEY_ARN="arn:aws:kms:us-east-1:123456789012:key/missing"))
    state = store.create_loop(completed_state())
    assert record_evidence(state, store, keeper) is None
    assert DynamoDbEvidenceStore(LOOPS_TABLE, region_name=REGION).get("l1") is None


@pytest.fixture
def dashboard(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Any]]:
    fake_credentials(monkeypatch)
    for name, value in {
        "LOOPWRIGHT_ADAPTERS": "aws",
        "LOOPWRIGHT_DASHBOARD_MODE": "read",
        "LOOPS_TABLE_NAME": LOOPS_TABLE,
        "EVENTS_TABLE_NAME": "test-events",
        "MEMORY_ID": "mem-1",
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    runtime.ports.cache_clear()
    with moto_dynamodb_store() as store:
        yield _handler(), store
    runtime.ports.cache_clear()


def test_the_dashboard_serves_a_stored_bundle_on_aws(dashboard: tuple[ModuleType, Any]) -> None:
    module, store = dashboard
    store.create_loop(loop_state("done", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.CONDITIONS_MET))
    store.create_loop(loop_state("bare", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.ITERATION_LIMIT))
    signed = b'{"bundle":{"loop_id":"done"},"signature":{}}\n'
    DynamoDbEvidenceStore(LOOPS_TABLE, region_name=REGION).put("done", signed)
    claims = {"cognito:username": "alice"}
    status, body = _call(module, "GET", "/api/loops/done/evidence", claims)
    assert status == 200 and body == {"bundle": {"loop_id": "done"}, "signature": {}}
    status, body = _call(module, "GET", "/api/loops/bare/evidence", claims)
    assert status == 404 and "has no evidence bundle" in body["error"]["message"]
    status, body = _call(module, "GET", "/api/loops/nobody/evidence", claims)
    assert status == 404


def test_the_cli_prints_the_kms_keys_public_key_for_offline_checks(
    aws: tuple[DynamoDbStore, str], tmp_path: Path
) -> None:
    _, key_arn = aws
    result = CliRunner().invoke(evidence_app, ["public-key", "--key-id", key_arn])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("-----BEGIN PUBLIC KEY-----")
    pem = tmp_path / "kms.pem"
    pem.write_text(result.output)
    verifier = verifier_from_pem(pem, key_arn)  # what `evidence verify --public-key --key-id` uses
    assert (verifier.algorithm, verifier.key_id) == ("ECDSA_SHA_256", key_arn)


def test_the_cli_says_when_the_kms_key_cannot_be_read(aws: tuple[DynamoDbStore, str]) -> None:
    missing = "arn:aws:kms:us-east-1:123456789012:key/missing"
    result = CliRunner().invoke(evidence_app, ["public-key", "--key-id", missing])
    assert result.exit_code != 0 and "public key of KMS key" in result.output


def test_the_dashboard_serves_the_kms_public_key(
    dashboard: tuple[ModuleType, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _ = dashboard
    claims = {"cognito:username": "alice"}
    status, body = _call(module, "GET", "/api/evidence/public-key", claims)
    assert status == 404 and "no evidence key" in body["error"]["message"]
    kms = boto3.client("kms", region_name=REGION)
    key_arn = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("EVIDENCE_KEY_ARN", key_arn)  # what the stack gives the read function
    status, body = _call(_handler(), "GET", "/api/evidence/public-key", claims)
    assert status == 200 and (body["algorithm"], body["key_id"]) == ("ECDSA_SHA_256", key_arn)
    assert body["public_key_pem"] == KmsEvidenceSigner(key_arn, region_name=REGION).public_pem().decode()


def test_the_local_dashboard_serves_the_local_key_once_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(tmp_path / "state"))
    assert local_evidence_key() is None  # a read never makes the key
    signer = LocalEd25519Signer.load_or_create()
    key = local_evidence_key()
    assert key is not None and (key.algorithm, key.key_id) == ("Ed25519", signer.key_id)
    assert key.public_key_pem == signer.public_pem().decode()
