"""``isolation = "bubblewrap"``: the configuration, the fail-fast check and the mount order.

No bwrap is run here (``tests/integration/test_bubblewrap.py`` runs it); a missing or broken
bwrap is simulated with ``PATH``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from loopwright.adapters.local import isolation
from loopwright.adapters.local.isolation import BubblewrapIsolation, check_isolation, isolation_for
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig

CONDITIONS = [{"type": "CUSTOM", "command": "true"}]


def config(**fields: object) -> LoopConfig:
    return LoopConfig.model_validate({"goal": "g", "exit_conditions": CONDITIONS, **fields})


def test_isolation_is_off_by_default_and_the_network_switch_needs_it() -> None:
    assert (config().isolation, config().isolation_network) == ("none", True)
    assert config(isolation="bubblewrap", isolation_network=False).isolation_network is False
    with pytest.raises(ValidationError, match='isolation_network: false needs isolation = "bubblewrap"'):
        config(isolation_network=False)
    with pytest.raises(ValidationError, match="isolation"):
        config(isolation="docker")
    with pytest.raises(ValidationError, match="a python agent runs inside loopwright's process"):
        config(isolation="bubblewrap", agent={"kind": "python", "function": "m:f"})
    assert config(isolation="bubblewrap", agent={"kind": "command", "command": "a"}).agent is not None


def test_isolation_for_builds_the_sandboxs_isolation_only_when_asked(tmp_path: Path) -> None:
    worktree = tmp_path / ".loopwright" / "worktrees" / "loop-a"

    def build(cfg: LoopConfig) -> BubblewrapIsolation | None:
        return isolation_for(
            cfg, workspace=tmp_path, state_dir=tmp_path / ".loopwright", loop_id="loop-a", worktree=worktree
        )

    assert build(config()) is None
    if shutil.which("bwrap") is None:
        pytest.skip("bwrap is not installed: the bubblewrap case is covered by the fail-fast tests")
    try:
        boxed = build(config(isolation="bubblewrap", isolation_network=False))
    except ConfigError as exc:
        pytest.skip(f"bwrap cannot run here: {exc}")
    assert boxed is not None
    assert (boxed.loop_id, boxed.network, boxed.worktree) == ("loop-a", False, worktree.resolve())


@pytest.fixture
def path_without_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A PATH holding only ``true``; the probe's cache is emptied before and after."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "true").symlink_to("/bin/true")
    monkeypatch.setenv("PATH", str(bin_dir))
    isolation._probe.cache_clear()
    yield bin_dir
    isolation._probe.cache_clear()


def test_a_missing_bwrap_fails_fast_with_how_to_install_it(path_without_bwrap: Path) -> None:
    check_isolation(config())  # no isolation asked: nothing to check
    with pytest.raises(ConfigError) as caught:
        check_isolation(config(isolation="bubblewrap"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("isolation: 'bubblewrap' needs bwrap, which is not installed")
    assert "sudo apt-get install bubblewrap" in message


def test_a_bwrap_that_cannot_make_a_sandbox_fails_fast(path_without_bwrap: Path) -> None:
    fake = path_without_bwrap / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ConfigError) as caught:
        check_isolation(config(isolation="bubblewrap", isolation_network=False))
    message = str(caught.value)
    assert "\n" not in message
    assert "bwrap cannot make a sandbox here (bwrap: No permissions to create new namespace)" in message
    assert 'set isolation = "none"' in message


def _pairs(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def test_the_mounts_hide_the_state_and_keep_only_the_worktree_and_files_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "user-state"  # the user's evidence key folder
    keys.mkdir()
    monkeypatch.setenv("LOOPWRIGHT_STATE_HOME", str(keys))
    workspace = tmp_path / "repo"
    state_dir = workspace / ".loopwright"
    worktree = state_dir / "worktrees" / "loop-a"
    worktree.mkdir(parents=True)
    (workspace / ".git").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    policies = worktree / "policies"
    policies.mkdir()
    boxed = BubblewrapIsolation(
        workspace=workspace,
        state_dir=state_dir,
        loop_id="loop-a",
        worktree=worktree,
        network=False,
        policy_dir=policies,
        bwrap="/usr/bin/bwrap",
    )
    argv = boxed.wrap("/usr/bin/agent", ["agent", "--go"], cwd=worktree, env={"HOME": str(home)})
    ws, sd, wt = (str(p.resolve()) for p in (workspace, state_dir, worktree))
    loop_dir = f"{sd}/loops/loop-a"

    assert argv[:5] == ["/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev"]
    assert argv[-3:] == ["--", "/usr/bin/agent", "--go"]
    assert _pairs(argv, "--tmpfs") == ["/tmp", str(home.resolve()), str(keys.resolve()), sd]
    assert _pairs(argv, "--bind") == [wt, loop_dir]
    assert _pairs(argv, "--remount-ro") == [sd]
    assert ws in _pairs(argv, "--ro-bind")
    assert f"{loop_dir}/processes" in _pairs(argv, "--ro-bind")
    assert str(policies.resolve()) in _pairs(argv, "--ro-bind")
    # Order: the repository, then the state folder hidden over it, then the worktree and files
    # opened in it, then the ledger and the policies read-only again over those
    first = argv.index
    assert first(ws) < first(sd) < first(wt) < first(loop_dir) < first(f"{loop_dir}/processes")
    assert first(wt) < first(str(policies.resolve()))
    for flag in ("--unshare-pid", "--die-with-parent", "--new-session", "--unshare-net"):
        assert flag in argv
    assert _pairs(argv, "--cap-drop") == ["ALL"]
    assert _pairs(argv, "--chdir") == [wt]
    assert (state_dir / "loops" / "loop-a" / "processes").is_dir()


def test_without_git_isolation_the_repositorys_git_stays_read_only(tmp_path: Path) -> None:
    workspace = tmp_path / "repo"
    (workspace / ".git").mkdir(parents=True)
    boxed = BubblewrapIsolation(
        workspace=workspace,
        state_dir=workspace / ".loopwright",
        loop_id="loop-a",
        worktree=workspace,
        network=True,
        bwrap="/usr/bin/bwrap",
    )
    argv = boxed.wrap(sys.executable, ["python"], cwd=workspace, env={})
    git = str((workspace / ".git").resolve())
    assert argv.index(git) > argv.index("--bind")
    assert "--unshare-net" not in argv
