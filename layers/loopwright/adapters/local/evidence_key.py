"""The local evidence signer: an Ed25519 key (``cryptography``) under the user's state folder.

:func:`verifier_from_pem` also checks, offline, bundles signed on AWS by a KMS ``ECC_NIST_P256``
key (:class:`EcdsaP256Verifier`, the PEM of KMS ``GetPublicKey``).

The key is ``$XDG_STATE_HOME/loopwright/evidence-ed25519.pem`` (default
``~/.local/state/loopwright/``; ``LOOPWRIGHT_STATE_HOME`` replaces the folder), a PKCS#8 PEM
file, mode 0600, made on first use. Its public key, as a PEM file, is what a reviewer is given
to check bundles elsewhere (``loopwright evidence verify --public-key FILE``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from loopwright.evidence import EvidenceError, EvidenceSigner

KEY_FILE_NAME = "evidence-ed25519.pem"


def user_state_dir() -> Path:
    """The user's loopwright state folder: ``$LOOPWRIGHT_STATE_HOME``, else
    ``$XDG_STATE_HOME/loopwright``, else ``~/.local/state/loopwright``."""
    if explicit := os.environ.get("LOOPWRIGHT_STATE_HOME"):
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "loopwright"


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class LocalEd25519Verifier(EvidenceSigner):
    """Verifies with an Ed25519 public key only (``sign`` raises :class:`EvidenceError`)."""

    algorithm = "Ed25519"

    def __init__(self, public: Ed25519PublicKey) -> None:
        self._public = public
        self.key_id = "ed25519:" + hashlib.sha256(_raw(public)).hexdigest()

    def sign(self, message: bytes) -> bytes:
        raise EvidenceError("a public key cannot sign")

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def public_key(self) -> bytes:
        return _raw(self._public)

    def public_pem(self) -> bytes:
        """The public key as a PEM file's bytes."""
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class LocalEd25519Signer(LocalEd25519Verifier):
    """Signs with the Ed25519 private key in ``path`` (made, mode 0600, when missing)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        super().__init__(private.public_key())
        self._private = private

    @classmethod
    def load_or_create(cls, folder: Path | None = None) -> LocalEd25519Signer:
        """The key in ``folder`` (default :func:`user_state_dir`), made when there is none.
        Raises :class:`EvidenceError` when the file cannot be read, written or is not an
        Ed25519 private key."""
        path = (folder or user_state_dir()) / KEY_FILE_NAME
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                pem = Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(pem)
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise EvidenceError(f"evidence key {path}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EvidenceError(f"evidence key {path} is not an Ed25519 private key")
        return cls(key)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


class EcdsaP256Verifier(EvidenceSigner):
    """Verifies ECDSA P-256 SHA-256 signatures (DER), as AWS KMS makes them with an
    ``ECC_NIST_P256`` key (:class:`loopwright.adapters.aws.kms_evidence_signer.KmsEvidenceSigner`),
    offline. ``key_id`` is the KMS key ARN the bundles name."""

    algorithm = "ECDSA_SHA_256"

    def __init__(self, public: ec.EllipticCurvePublicKey, key_id: str) -> None:
        self._public = public
        self.key_id = key_id

    def sign(self, message: bytes) -> bytes:
        raise EvidenceError("a public key cannot sign")

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def verifier_from_pem(path: Path, key_id: str | None = None) -> EvidenceSigner:
    """The verifier of the public key in PEM file ``path``: Ed25519 (a local key; ``key_id``
    unused), or ECDSA P-256 (an AWS KMS key; ``key_id``, its ARN, is then required). Raises
    :class:`EvidenceError` naming ``--public-key`` or ``--key-id`` when the key cannot be used."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"--public-key: {path} is not a readable PEM public key ({exc})") from None
    if isinstance(key, Ed25519PublicKey):
        return LocalEd25519Verifier(key)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        if not key_id:
            raise EvidenceError(
                "--key-id: an ECDSA P-256 key (AWS KMS) is named by its key ARN; pass --key-id ARN"
            )
        return EcdsaP256Verifier(key, key_id)
    raise EvidenceError(f"--public-key: {path} is neither an Ed25519 nor an ECDSA P-256 public key")
