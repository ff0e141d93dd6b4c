"""Issue 15, part 2: the evidence bundle's core (loopwright.evidence) and the local Ed25519 key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from loopwright.adapters.local.evidence_key import KEY_FILE_NAME, LocalEd25519Signer, verifier_from_pem
from loopwright.evidence import (
    EvidenceError,
    EvidenceSigner,
    build_bundle,
    files_sha256,
    pinned_paths,
    pinned_rule,
    policy_set_sha256,
    read_signed,
    sha256_hex,
    sign_bundle,
)
from loopwright.models import ExitConditionStatus, LoopConfig, LoopState
from loopwright.models.config import ExitConditionConfig
from loopwright.models.enums import ExitConditionStatusValue, ExitConditionType, LoopOutcome
from loopwright.models.evidence import evidence_schema
from loopwright.models.records import AgentUsage, IterationRecord

REPO = Path(__file__).resolve().parents[2]


def completed_state(**update: object) -> LoopState:
    config = LoopConfig(
        goal="make it pass",
        exit_conditions=[
            ExitConditionConfig(type=ExitConditionType.CUSTOM, name="check", command=["python", "check.py"])
        ],
    )
    status = ExitConditionStatus(
        name="check",
        type=ExitConditionType.CUSTOM,
        status=ExitConditionStatusValue.MET,
        command=["python", "check.py"],
        exit_code=0,
        summary="exit code 0",
        stdout="ok\n",
        stderr="",
    )
    state = LoopState(
        loop_id="l1",
        config=config,
        iteration=1,
        tokens_used=120,
        cost_usd=0.25,
        outcome=LoopOutcome.CONDITIONS_MET,
        exit_conditions=[status],
        branch="loopwright/l1",
        base_commit="a" * 40,
        head_commit="b" * 40,
        policy_files={"loop.cedar": "1" * 64},
    )
    return state.model_copy(update=update)


def record() -> IterationRecord:
    return IterationRecord(
        loop_id="l1",
        iteration=1,
        commit="b" * 40,
        exit_code=0,
        usage=AgentUsage(tokens_used=120, cost_usd=0.25),
    )


def bundle_bytes(signer: LocalEd25519Signer) -> bytes:
    bundle = build_bundle(
        completed_state(),
        [record()],
        pinned_start={"check.py": "c" * 64},
        pinned_end={"check.py": "d" * 64},
        tool_versions={"python": "3.11"},
    )
    return sign_bundle(bundle, signer)


@pytest.fixture()
def signer(tmp_path: Path) -> LocalEd25519Signer:
    return LocalEd25519Signer.load_or_create(tmp_path / "state")


def test_pinned_paths_are_the_pinned_checks_files_tests_shared_configs_and_files_a_command_names() -> None:
    config = LoopConfig(
        goal="g",
        exit_conditions=[
            ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS, command=["pytest", "-q"]),
            ExitConditionConfig(type=ExitConditionType.CUSTOM, command=["python", "./scripts/check.py"]),
            ExitConditionConfig(
                type=ExitConditionType.CUSTOM, name="sub", command=["sh", "run.sh"], cwd="pkg"
            ),
        ],
    )
    paths = [
        "src/app.py",
        "tests/test_app.py",
        "tests/data/input.txt",
        "pkg/app_test.py",
        "pyproject.toml",
        "sub/conftest.py",
        "scripts/check.py",
        "scripts/other.py",
        "pkg/run.sh",
        "run.sh",
        "README.md",
        "loopwright.toml",
    ]
    assert pinned_paths(paths, config) == [
        "loopwright.toml",
        "pkg/app_test.py",
        "pkg/run.sh",
        "pyproject.toml",
        "scripts/check.py",
        "sub/conftest.py",
        "tests/data/input.txt",
        "tests/test_app.py",
    ]
    assert "tests: conftest.py" in pinned_rule(config)


def test_files_sha256_hashes_what_is_on_disk_and_leaves_out_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"abc")
    assert files_sha256(tmp_path, ["a.txt", "gone.txt"]) == {
        "a.txt": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    }


def test_the_policy_set_hash_depends_on_every_file_and_is_none_when_unknown() -> None:
    one = policy_set_sha256({"a.cedar": "1" * 64, "b.cedar": "2" * 64})
    assert one == policy_set_sha256({"b.cedar": "2" * 64, "a.cedar": "1" * 64})
    assert one != policy_set_sha256({"a.cedar": "1" * 64, "b.cedar": "3" * 64})
    assert policy_set_sha256(None) is None


def test_the_bundle_carries_the_loops_goal_commits_results_and_totals() -> None:
    bundle = build_bundle(
        completed_state(),
        [record()],
        pinned_start={"x": "1" * 64},
        pinned_end={"x": "2" * 64},
        tool_versions={},
    )
    assert (bundle.goal, bundle.branch, bundle.head_commit) == ("make it pass", "loopwright/l1", "b" * 40)
    assert [(i.iteration, i.commit, i.tokens_used, i.cost_usd) for i in bundle.iterations] == [
        (1, "b" * 40, 120, 0.25)
    ]
    [condition] = bundle.conditions
    assert (condition.command, condition.exit_code, condition.status) == (["python", "check.py"], 0, "MET")
    assert condition.output_sha256 == sha256_hex(b"ok\n")
    assert (bundle.tokens_used, bundle.cost_usd) == (120, 0.25)
    assert bundle.policy_set_sha256 == policy_set_sha256({"loop.cedar": "1" * 64})
    assert bundle.config["goal"] == "make it pass"


@pytest.mark.parametrize("outcome", [None, LoopOutcome.ITERATION_LIMIT])
def test_a_loop_that_did_not_meet_its_conditions_has_no_bundle(outcome: LoopOutcome | None) -> None:
    with pytest.raises(EvidenceError, match="has not completed"):
        build_bundle(completed_state(outcome=outcome), [], pinned_start={}, pinned_end={}, tool_versions={})


def test_a_signed_bundle_reads_back(signer: LocalEd25519Signer) -> None:
    document = read_signed(bundle_bytes(signer), signer)
    assert document.bundle.loop_id == "l1"
    assert document.signature.algorithm == "Ed25519"
    assert document.signature.key_id == signer.key_id


def test_changing_any_one_byte_of_the_file_fails(signer: LocalEd25519Signer) -> None:
    data = bundle_bytes(signer)
    for position in range(len(data)):
        for flip in (0x01, 0x20):
            changed = data[:position] + bytes([data[position] ^ flip]) + data[position + 1 :]
            with pytest.raises(EvidenceError):
                read_signed(changed, signer)


def test_a_relaid_file_is_refused_as_not_canonical(signer: LocalEd25519Signer) -> None:
    pretty = json.dumps(json.loads(bundle_bytes(signer)), indent=1).encode()
    with pytest.raises(EvidenceError, match="canonical form"):
        read_signed(pretty, signer)


def test_a_resigned_changed_bundle_is_refused_by_the_trusted_key(
    signer: LocalEd25519Signer, tmp_path: Path
) -> None:
    forger = LocalEd25519Signer.load_or_create(tmp_path / "forger")
    with pytest.raises(EvidenceError, match="not by the trusted key"):
        read_signed(bundle_bytes(forger), signer)


def test_a_signature_under_the_trusted_key_id_that_does_not_match_is_refused(
    signer: LocalEd25519Signer,
) -> None:
    raw = json.loads(bundle_bytes(signer))
    raw["bundle"]["tokens_used"] = 1
    data = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    with pytest.raises(EvidenceError, match="does not match the bundle"):
        read_signed(data, signer)


def test_a_file_that_is_not_a_bundle_names_the_field(signer: LocalEd25519Signer) -> None:
    with pytest.raises(EvidenceError, match="not an evidence bundle: bundle: Field required"):
        read_signed(b'{"signature":{}}\n', signer)
    with pytest.raises(EvidenceError, match="not JSON"):
        read_signed(b"\xff", signer)


def test_the_key_is_made_once_with_mode_0600_and_kept(tmp_path: Path) -> None:
    first = LocalEd25519Signer.load_or_create(tmp_path / "state")
    path = tmp_path / "state" / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert LocalEd25519Signer.load_or_create(tmp_path / "state").key_id == first.key_id
    assert first.key_id.startswith("ed25519:") and len(first.key_id) == len("ed25519:") + 64


def test_a_key_file_that_is_not_a_key_is_an_evidence_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text("not a key")
    with pytest.raises(EvidenceError, match="evidence key"):
        LocalEd25519Signer.load_or_create(tmp_path)


def test_the_public_key_pem_verifies_what_the_private_key_signed(
    signer: LocalEd25519Signer, tmp_path: Path
) -> None:
    pem = tmp_path / "public.pem"
    pem.write_bytes(signer.public_pem())
    verifier = verifier_from_pem(pem)
    assert read_signed(bundle_bytes(signer), verifier).bundle.loop_id == "l1"
    with pytest.raises(EvidenceError, match="cannot sign"):
        verifier.sign(b"x")


def test_the_schema_in_the_repository_is_the_models_schema() -> None:
    stored = json.loads((REPO / "schemas" / "evidence-bundle.schema.json").read_text())
    assert stored == evidence_schema()


def test_a_pem_that_is_no_usable_key_names_the_option(tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    pem.write_text("hello")
    with pytest.raises(EvidenceError, match=r"--public-key: .* is not a readable PEM public key"):
        verifier_from_pem(pem)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem.write_bytes(
        p384.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(EvidenceError, match="neither an Ed25519 nor an ECDSA P-256"):
        verifier_from_pem(pem, "arn:key")
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem.write_bytes(
        p256.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(EvidenceError, match=r"--key-id: .* pass --key-id ARN"):
        verifier_from_pem(pem)
    assert verifier_from_pem(pem, "arn:key").key_id == "arn:key"


class LocalP256Signer(EvidenceSigner):
    """Signs as AWS KMS does with an ECC_NIST_P256 key and ECDSA_SHA_256 over a message's SHA-256."""

    algorithm = "ECDSA_SHA_256"
    key_id = "arn:aws:kms:eu-west-1:123456789012:key/test"

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message, ec.ECDSA(hashes.SHA256()))

    def verify(self, message: bytes, signature: bytes) -> bool:
        raise AssertionError("the offline verifier is under test")


def test_a_kms_style_ecdsa_bundle_verifies_offline_with_the_public_pem(tmp_path: Path) -> None:
    kms = LocalP256Signer()
    bundle = build_bundle(completed_state(), [], pinned_start={}, pinned_end={}, tool_versions={})
    data = sign_bundle(bundle, kms)
    pem = tmp_path / "kms.pem"
    pem.write_bytes(
        kms.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    offline = verifier_from_pem(pem, kms.key_id)
    assert read_signed(data, offline).signature.algorithm == "ECDSA_SHA_256"
    with pytest.raises(EvidenceError, match="does not match the bundle"):
        read_signed(data.replace(b'"tokens_used":120', b'"tokens_used":121'), offline)
    with pytest.raises(EvidenceError, match="cannot sign"):
        offline.sign(b"x")
