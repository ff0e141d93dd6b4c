"""GitWorktreeWorkspace: a worktree per loop that never touches the user's checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from loopwright.adapters.local.git_workspace import (
    INITIAL_COMMIT_MESSAGE,
    GitWorktreeWorkspace,
    NoIsolationWorkspace,
)
from loopwright.exceptions import WorkspaceError

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

USER = ["-c", "user.name=Test User", "-c", "user.email=user@example.com"]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *USER, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's repository on branch ``main`` with one commit."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("VALUE = 1\n")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "user commit")
    return root


def user_snapshot(root: Path) -> tuple[str, str, str, dict[str, str]]:
    """(HEAD, current branch, status, file contents) of the user's checkout."""
    files = {
        str(p.relative_to(root)): p.read_text()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.parts and ".loopwright" not in p.parts
    }
    return (
        git(root, "rev-parse", "HEAD"),
        git(root, "symbolic-ref", "--short", "HEAD"),
        git(root, "status", "--porcelain", "--untracked-files=all"),
        files,
    )


def test_non_git_folder_is_initialised_with_a_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    workspace = GitWorktreeWorkspace(root)

    path, branch, base = workspace.prepare("loop_1")

    assert (root / ".git").is_dir()
    assert git(root, "log", "--format=%s%n%an") == f"{INITIAL_COMMIT_MESSAGE}\nloopwright"
    assert git(root, "ls-files").splitlines() == ["pkg/mod.py"]
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""
    assert base == git(root, "rev-parse", "HEAD")
    assert branch == "loopwright/loop_1"
    assert path == root / ".loopwright" / "worktrees" / "loop_1"
    assert (path / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert workspace.head("loop_1") == base


def test_repository_without_commits_gets_an_initial_commit(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q", "-b", "trunk")
    (root / "a.txt").write_text("a\n")

    _, _, base = GitWorktreeWorkspace(root).prepare("loop_1")

    assert git(root, "rev-parse", "HEAD") == base
    assert git(root, "symbolic-ref", "--short", "HEAD") == "trunk"
    assert git(root, "ls-files") == "a.txt"
    assert git(root, "status", "--porcelain") == ""


def test_user_checkout_is_untouched_by_the_loop(repo: Path) -> None:
    (repo / "app.py").write_text("VALUE = 'uncommitted'\n")
    (repo / "notes.txt").write_text("untracked\n")
    before = user_snapshot(repo)
    workspace = GitWorktreeWorkspace(repo)

    path, _, base = workspace.prepare("loop_1")
    assert base == before[0]
    assert (path / "app.py").read_text() == "VALUE = 1\n"  # starts from HEAD, not the checkout
    assert not (path / "notes.txt").exists()
    (path / "app.py").write_text("VALUE = 2\n")
    (path / "new.py").write_text("NEW = True\n")
    head, changed = workspace.commit("loop_1", "loopwright: iteration 1")

    assert head is not None and head != base
    assert sorted(changed) == ["app.py", "new.py"]
    assert user_snapshot(repo) == before
    assert git(repo, "log", "-1", "--format=%an <%ae>", "loopwright/loop_1") == (
        "loopwright <loopwright@localhost>"
    )
    assert git(repo, "rev-parse", "loopwright/loop_1") == head == workspace.head("loop_1")


def test_user_status_stays_clean_and_exclude_is_written_once(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    workspace.prepare("loop_1")
    workspace.prepare("loop_2")
    GitWorktreeWorkspace(repo).prepare("loop_1")

    assert git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored=no") == ""
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count(".loopwright/") == 1


def test_commit_without_changes_returns_none(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    path, _, base = workspace.prepare("loop_1")
    assert workspace.commit("loop_1", "nothing") == (None, [])
    (path / "app.py").write_text("VALUE = 3\n")
    head, _ = workspace.commit("loop_1", "something")
    assert workspace.commit("loop_1", "nothing again") == (None, [])
    assert workspace.head("loop_1") == head != base


def test_tree_hash_is_equal_for_equal_files_and_none_for_an_unknown_commit(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    path, _, base = workspace.prepare("loop_1")
    assert base is not None
    original = (path / "app.py").read_text()
    (path / "app.py").write_text("VALUE = 3\n")
    changed, _ = workspace.commit("loop_1", "A")
    (path / "app.py").write_text(original)
    back, _ = workspace.commit("loop_1", "back")  # the files of the base again (A, B, A)
    assert changed is not None and back is not None and back != base
    assert workspace.tree_hash("loop_1", back) == workspace.tree_hash("loop_1", base) is not None
    assert workspace.tree_hash("loop_1", changed) != workspace.tree_hash("loop_1", base)
    assert workspace.tree_hash("loop_1", "0" * 40) is None


def test_commits_made_by_the_agent_itself_are_reported(repo: Path) -> None:
    # Given an agent that commits its own change in the loop's worktree
    workspace = GitWorktreeWorkspace(repo)
    path, _, base = workspace.prepare("loop_1")
    (path / "app.py").write_text("VALUE = 2\n")
    git(path, "commit", "-q", "-am", "agent: bump VALUE")
    # When loopwright commits the iteration
    head, changed = workspace.commit("loop_1", "loopwright: iteration 1")
    # Then the agent's commit is the iteration's head, with the file it changed
    assert head == git(path, "rev-parse", "HEAD") != base
    assert changed == ["app.py"]
    assert git(path, "log", "-1", "--format=%s") == "agent: bump VALUE"
    assert workspace.commit("loop_1", "loopwright: iteration 2") == (None, [])


def test_build_noise_is_not_committed(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    path, _, _ = workspace.prepare("loop_1")
    noise = [
        "__pycache__/app.cpython-311.pyc",
        "pkg/__pycache__/m.cpython-311.pyc",
        "stray.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/0.6/x",
        ".mypy_cache/3.11/x.json",
        "demo.egg-info/PKG-INFO",
    ]
    for name in noise:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("noise\n")
    assert workspace.commit("loop_1", "only noise") == (None, [])

    (path / "pkg" / "m.py").write_text("M = 1\n")
    head, changed = workspace.commit("loop_1", "real change")
    assert head is not None
    assert changed == ["pkg/m.py"]
    tracked = git(path, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    assert sorted(tracked) == ["README.md", "app.py", "pkg/m.py"]


def test_reset_discards_changes_but_keeps_ignored_caches(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    path, _, base = workspace.prepare("loop_1")
    (path / "app.py").write_text("VALUE = 2\n")
    first, _ = workspace.commit("loop_1", "iteration 1")
    assert first is not None
    (path / "app.py").write_text("VALUE = 3\n")
    second, _ = workspace.commit("loop_1", "iteration 2")

    (path / "app.py").write_text("half-written by a killed agent")
    (path / "scratch").mkdir()
    (path / "scratch" / "tmp.py").write_text("x\n")
    (path / "__pycache__").mkdir()
    (path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")

    workspace.reset("loop_1", first)

    assert workspace.head("loop_1") == first != second
    assert (path / "app.py").read_text() == "VALUE = 2\n"
    assert not (path / "scratch").exists()
    assert (path / "__pycache__" / "app.cpython-311.pyc").exists()  # ignored: kept
    excludes = f"core.excludesFile={workspace.excludes_file}"
    assert git(path, "-c", excludes, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "HEAD") == base


def test_reset_removes_a_stale_index_lock(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    path, _, base = workspace.prepare("loop_1")
    gitdir = Path(git(path, "rev-parse", "--absolute-git-dir"))
    (gitdir / "index.lock").write_text("")
    (path / "app.py").write_text("partial\n")

    assert base is not None
    workspace.reset("loop_1", base)

    assert (path / "app.py").read_text() == "VALUE = 1\n"
    assert not (gitdir / "index.lock").exists()


def test_existing_worktree_is_reopened(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    path, branch, base = workspace.prepare("loop_1")
    (path / "app.py").write_text("VALUE = 2\n")
    head, _ = workspace.commit("loop_1", "iteration 1")
    (path / "wip.txt").write_text("uncommitted\n")

    again = GitWorktreeWorkspace(repo).prepare("loop_1")

    assert again == (path, branch, base)
    assert (path / "wip.txt").exists()  # reopening does not reset
    assert workspace.head("loop_1") == head


def test_removed_worktree_is_recreated_from_its_branch(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    path, branch, base = workspace.prepare("loop_1")
    (path / "app.py").write_text("VALUE = 2\n")
    head, _ = workspace.commit("loop_1", "iteration 1")

    workspace.remove("loop_1")
    assert not path.exists()
    assert workspace.head("loop_1") == head  # the branch is kept

    assert workspace.prepare("loop_1") == (path, branch, base)
    assert (path / "app.py").read_text() == "VALUE = 2\n"


def test_workspace_in_a_subfolder_works_in_the_same_subfolder(repo: Path) -> None:
    sub = repo / "service"
    sub.mkdir()
    (sub / "main.py").write_text("print('hi')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "service")

    workspace = GitWorktreeWorkspace(sub)
    path, _, _ = workspace.prepare("loop_1")

    assert path == sub / ".loopwright" / "worktrees" / "loop_1" / "service"
    assert (path / "main.py").is_file()
    (path / "main.py").write_text("print('bye')\n")
    _, changed = workspace.commit("loop_1", "edit")
    assert changed == ["service/main.py"]
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_user_identity_from_the_environment_is_not_used(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Somebody Else")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Somebody Else")
    monkeypatch.setenv("GIT_DIR", str(repo / "elsewhere"))
    workspace = GitWorktreeWorkspace(repo)
    monkeypatch.delenv("GIT_DIR")
    path, _, _ = workspace.prepare("loop_1")
    (path / "app.py").write_text("VALUE = 9\n")
    workspace.commit("loop_1", "iteration")
    monkeypatch.delenv("GIT_AUTHOR_NAME")
    monkeypatch.delenv("GIT_COMMITTER_NAME")
    assert git(repo, "log", "-1", "--format=%an/%cn", "loopwright/loop_1") == ("loopwright/loopwright")


def test_git_failure_names_the_command(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    workspace.prepare("loop_1")
    with pytest.raises(WorkspaceError, match=r"git reset .*deadbeef"):
        workspace.reset("loop_1", "deadbeef")


def test_missing_git_is_a_clear_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(repo / "no-such-bin"))
    with pytest.raises(WorkspaceError, match=r"git was not found.*git_isolation"):
        GitWorktreeWorkspace(repo).prepare("loop_1")


def test_no_isolation_workspace_is_the_folder_itself(tmp_path: Path) -> None:
    workspace = NoIsolationWorkspace(tmp_path)
    assert workspace.prepare("loop_1") == (tmp_path.resolve(), None, None)
    (tmp_path / "f.txt").write_text("x\n")
    assert workspace.commit("loop_1", "m") == (None, [])
    workspace.reset("loop_1", "abc")
    assert (tmp_path / "f.txt").exists()
    assert workspace.head("loop_1") is None
    assert not (tmp_path / ".git").exists()


# ------------------------------------------------------------------------ issue 10: time travel
def test_clean_tree_is_the_head_tree_only_when_git_status_lists_nothing(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    worktree, _, _ = workspace.prepare("cache")
    tree = git(worktree, "rev-parse", "HEAD^{tree}")
    assert workspace.clean_tree("cache") == tree

    (worktree / "__pycache__").mkdir()
    (worktree / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")  # ignored: still clean
    assert workspace.clean_tree("cache") == tree
    (worktree / "new.py").write_text("X = 1\n")  # untracked: the hash does not cover it
    assert workspace.clean_tree("cache") is None
    (worktree / "new.py").unlink()
    (worktree / "app.py").write_text("VALUE = 2\n")  # uncommitted change
    assert workspace.clean_tree("cache") is None
    head, _ = workspace.commit("cache", "iteration 1")
    assert head is not None
    assert workspace.clean_tree("cache") == git(worktree, "rev-parse", "HEAD^{tree}") != tree
    (worktree / "app.py").write_text("VALUE = 1\n")  # back to the first content: the first tree
    workspace.commit("cache", "iteration 2")
    assert workspace.clean_tree("cache") == tree
    assert workspace.clean_tree("never-prepared") is None


def test_branch_from_starts_a_loop_branch_at_a_commit(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo)
    worktree, _, _ = workspace.prepare("first")
    (worktree / "app.py").write_text("VALUE = 2\n")
    commit, _ = workspace.commit("first", "iteration 1")
    assert commit is not None
    before = user_snapshot(repo)

    workspace.branch_from("second", commit)
    path, branch, _ = workspace.prepare("second")

    assert (branch, workspace.head("second")) == ("loopwright/second", commit)
    assert (path / "app.py").read_text() == "VALUE = 2\n"
    assert user_snapshot(repo) == before  # the user's checkout is untouched
    with pytest.raises(WorkspaceError, match="branch 'loopwright/second' exists already"):
        workspace.branch_from("second", commit)
    with pytest.raises(WorkspaceError, match="invalid loop id"):
        workspace.branch_from("a..b", commit)
    with pytest.raises(WorkspaceError):
        workspace.branch_from("third", "0" * 40)  # no such commit
    assert workspace.head("third") is None
