"""Where the default Cedar policies are found: the variable, the checkout, the packaged copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loopwright.adapters.local import cedar_policy
from loopwright.adapters.local.cedar_policy import POLICY_DIR_ENV, CedarPolicyEngine, default_policy_dir
from loopwright.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = ROOT / "policies"


def _copy(folder: Path) -> Path:
    shutil.copytree(CHECKOUT, folder, ignore=shutil.ignore_patterns("tests"))
    return folder


@pytest.fixture(autouse=True)
def _no_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_DIR_ENV, raising=False)


def test_in_a_checkout_the_checkout_folder_comes_first_then_the_package() -> None:
    assert cedar_policy.CHECKOUT_POLICY_DIR == CHECKOUT
    assert cedar_policy.PACKAGED_POLICY_DIR == ROOT / "layers" / "loopwright" / "policies"
    assert default_policy_dir() == CHECKOUT


def test_an_install_without_a_checkout_uses_the_packaged_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an installed package: no checkout around it, the policies copied in by the build
    packaged = _copy(tmp_path / "site-packages" / "loopwright" / "policies")
    monkeypatch.setattr(cedar_policy, "CHECKOUT_POLICY_DIR", None)
    monkeypatch.setattr(cedar_policy, "PACKAGED_POLICY_DIR", packaged)

    engine = CedarPolicyEngine()

    assert engine.policy_dir == packaged
    # the same bytes, so the same digests a loop records and compares on resume
    assert engine.policy_files() == CedarPolicyEngine(CHECKOUT).policy_files()


def test_the_checkout_wins_over_the_packaged_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cedar_policy, "PACKAGED_POLICY_DIR", _copy(tmp_path / "packaged"))

    assert default_policy_dir() == CHECKOUT


def test_the_variable_wins_over_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = _copy(tmp_path / "mine")
    monkeypatch.setattr(cedar_policy, "PACKAGED_POLICY_DIR", _copy(tmp_path / "packaged"))
    monkeypatch.setenv(POLICY_DIR_ENV, str(mine))

    assert default_policy_dir() == mine


def test_no_folder_anywhere_names_the_places_looked_at_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cedar_policy, "CHECKOUT_POLICY_DIR", tmp_path / "checkout" / "policies")
    monkeypatch.setattr(cedar_policy, "PACKAGED_POLICY_DIR", tmp_path / "packaged" / "policies")

    with pytest.raises(ConfigError) as caught:
        CedarPolicyEngine()

    message = str(caught.value)
    assert message.startswith("no Cedar policy folder found: set LOOPWRIGHT_POLICY_DIR")
    assert str(tmp_path / "checkout" / "policies") in message
    assert str(tmp_path / "packaged" / "policies") in message
