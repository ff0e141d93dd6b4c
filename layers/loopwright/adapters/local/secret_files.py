"""Files that look like secrets: loopwright never commits them (issue 9, point 5).

A path is judged by its file name (case-insensitive), and for two package-manager files by
their content:

* environment files: ``.env``, ``.env.*`` except the templates ``.env.example``,
  ``.env.sample``, ``.env.template``, ``.env.dist`` (GitHub's ``Node.gitignore`` ignores
  ``.env`` and ``.env.*`` and keeps ``.env.example``);
* keys and key stores: ``*.pem``, ``*.key``, ``id_rsa*``, ``id_dsa*``, ``id_ecdsa*``,
  ``id_ed25519*``, ``*.ppk``, ``*.p12``, ``*.pfx`` (gitleaks rule ``pkcs12-file``), ``*.jks``,
  ``*.keystore``;
* credential files: ``credentials`` (``~/.aws/credentials``), ``.git-credentials``, ``.netrc``,
  ``_netrc``, ``.pgpass``, ``.htpasswd``;
* Terraform variables and state: ``*.tfvars``, ``*.tfvars.json`` (GitHub's
  ``Terraform.gitignore``: "likely to contain sensitive data"), ``*.tfstate``, ``*.tfstate.*``;
* ``.npmrc`` holding a registry token (``_authToken``, ``_auth``, ``_password``) and
  ``.pypirc`` holding a ``password``; without one they are ordinary configuration.

A false positive costs little (the file is not committed, and the warning names it); a secret
committed to a branch stays in its history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

#: File-name patterns (``fnmatch``, matched against the lower-cased name) of secret files.
SECRET_NAME_PATTERNS = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.ppk",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "credentials",
    ".git-credentials",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".htpasswd",
    "*.tfvars",
    "*.tfvars.json",
    "*.tfstate",
    "*.tfstate.*",
)
#: Names that match a pattern above but are templates meant to be committed.
SECRET_NAME_EXCEPTIONS = frozenset({".env.example", ".env.sample", ".env.template", ".env.dist"})
#: Files that are secrets only when their content holds a credential.
TOKEN_CONTENT = {
    ".npmrc": re.compile(
        r"_authToken\s*=|(?:^|:)_auth\s*=|(?:^|:)_password\s*=", re.IGNORECASE | re.MULTILINE
    ),
    ".pypirc": re.compile(r"^\s*password\s*[=:]", re.IGNORECASE | re.MULTILINE),
}
#: Bytes of a token-bearing file read to look for a credential.
MAX_READ_BYTES = 256 * 1024


def looks_like_secret(path: str, root: Path | None = None) -> bool:
    """True when ``path`` (relative, ``/``-separated, as git prints it) looks like a secret.

    ``root`` is the folder ``path`` is relative to; it is needed only for ``.npmrc`` and
    ``.pypirc``, whose content is read (an unreadable or missing file is not a secret).
    """
    name = PurePosixPath(path).name.lower()
    if name in SECRET_NAME_EXCEPTIONS:
        return False
    if any(fnmatchcase(name, pattern) for pattern in SECRET_NAME_PATTERNS):
        return True
    pattern = TOKEN_CONTENT.get(name)
    if pattern is None or root is None:
        return False
    try:
        with (root / path).open("rb") as handle:
            text = handle.read(MAX_READ_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    return pattern.search(text) is not None


def secret_paths(paths: Iterable[str], root: Path | None = None) -> list[str]:
    """The paths of ``paths`` that :func:`looks_like_secret`, in their order."""
    return [path for path in paths if looks_like_secret(path, root)]
