"""The local evidence signer: an Ed25519 key (``cryptography``) under the user's state folder.

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
from cryptography.hazmat.primitives import serialization
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

    @classmethod
    def from_pem(cls, path: Path) -> LocalEd25519Verifier:
        """The verifier of the Ed25519 public key in PEM file ``path``. Raises
        :class:`EvidenceError` when it cannot be read or is not an Ed25519 public key."""
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise EvidenceError(f"--public-key: {path} is not a readable PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise EvidenceError(f"--public-key: {path} is not an Ed25519 public key")
        return cls(key)

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
