"""Which files loopwright refuses to commit, the line that says so, and the start_from option."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.adapters.local.secret_files import looks_like_secret, secret_paths
from loopwright.config_loader import load_config
from loopwright.exceptions import ConfigError
from loopwright.models.workspace import MAX_LISTED_PATHS, WorkspaceSnapshot


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "services/api/.env",
        ".env.local",
        ".env.production",
        ".ENV",
        "id_rsa",
        "home/.ssh/id_rsa.pub",
        "id_ed25519",
        "id_ecdsa",
        "certs/server.pem",
        "tls.key",
        "client.p12",
        "client.PFX",
        "release.jks",
        "putty.ppk",
        ".aws/credentials",
        ".git-credentials",
        ".netrc",
        ".pgpass",
        "infra/prod.tfvars",
        "infra/prod.tfvars.json",
        "terraform.tfstate",
        "terraform.tfstate.backup",
    ],
)
def test_secret_names(path: str) -> None:
    assert looks_like_secret(path)


@pytest.mark.parametrize(
    "path",
    [
        ".env.example",
        "config/.env.sample",
        ".env.template",
        ".env.dist",
        "environment.py",
        "env/settings.py",
        "keys.py",
        "key.txt",
        "credentials.md",
        "pem.py",
        "docs/id_rsa_setup.md.txt/readme",
        ".npmrc",  # no file to read: not a secret by its name alone
        "main.tf",
    ],
)
def test_ordinary_names(path: str) -> None:
    assert not looks_like_secret(path)


@pytest.mark.parametrize(
    ("name", "text", "secret"),
    [
        (".npmrc", "//registry.npmjs.org/:_authToken=npm_abc\n", True),
        (".npmrc", "_auth = dXNlcjpwYXNz\n", True),
        (".npmrc", "//npm.example.com/:_password=cGFzcw==\n", True),
        (".npmrc", "save-exact=true\nregistry=https://registry.npmjs.org/\n", False),
        (".pypirc", "[pypi]\nusername = __token__\npassword = pypi-AgEI\n", True),
        (".pypirc", "[distutils]\nindex-servers = pypi\n", False),
    ],
)
def test_token_files_are_secrets_only_with_a_credential(
    tmp_path: Path, name: str, text: str, secret: bool
) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / name).write_text(text)
    assert looks_like_secret(f"web/{name}", tmp_path) is secret


def test_secret_paths_keeps_order_and_drops_the_rest() -> None:
    assert secret_paths(["a.py", "z.pem", ".env", "b.py"]) == ["z.pem", ".env"]


def test_snapshot_line_counts_everything_and_lists_a_bounded_few() -> None:
    many = [f"data/{n}.csv" for n in range(MAX_LISTED_PATHS + 5)]
    snapshot = WorkspaceSnapshot(
        commit="1a2b3c4d5e6f",
        head="5e6f7a8b9c0d",
        untracked=many[:MAX_LISTED_PATHS],
        untracked_count=len(many),
        uncommitted=["app.py"],
        uncommitted_count=1,
    )
    line = snapshot.describe()
    assert line.startswith("started from your working tree: snapshot 1a2b3c4d of 26 files on HEAD 5e6f7a8b")
    assert "25 untracked: data/0.csv" in line and "data/19.csv and 5 more" in line
    assert "data/20.csv" not in line
    assert line.endswith("; 1 uncommitted: app.py)")
    single = WorkspaceSnapshot(commit="c" * 40, head="h" * 40, uncommitted=["a.py"], uncommitted_count=1)
    assert "of 1 file on HEAD" in single.describe()


def test_start_from_is_checked_at_the_edge(tmp_path: Path) -> None:
    base = {"goal": "g", "exit_conditions": [{"type": "ALL_TESTS_PASS"}]}
    assert load_config(tmp_path, None, base)[0].start_from == "working-tree"
    assert load_config(tmp_path, None, {**base, "start_from": "head"})[0].start_from == "head"
    with pytest.raises(ConfigError, match="start_from: Input should be 'working-tree' or 'head'"):
        load_config(tmp_path, None, {**base, "start_from": "HEAD~1"})
