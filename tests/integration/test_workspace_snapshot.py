"""The loop's branch starts from the working tree as the user sees it; secrets are never committed.

Real git repositories in ``tmp_path``; the user's checkout is compared before and after.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from loopwright.adapters.local.git_workspace import SNAPSHOT_MESSAGE, GitWorktreeWorkspace
from tests.integration.helpers import git, make_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's repository: ``app.py``, ``lib.py``, ``.gitignore`` (ignores ``*.log``) committed."""
    return make_repo(
        tmp_path / "project",
        {"app.py": "VALUE = 1\n", "lib.py": "LIB = 1\n", ".gitignore": "*.log\n"},
    )


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def user_view(root: Path) -> dict[str, str]:
    """Everything of the user's checkout a snapshot must not change: HEAD, branch, status,
    the index (its entries and the file's bytes), the stash and the user's own branches."""
    branches = git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads").splitlines()
    return {
        "head": git(root, "rev-parse", "HEAD"),
        "branch": git(root, "symbolic-ref", "HEAD"),
        "status": git(root, "status", "--porcelain", "--untracked-files=all"),
        "index": git(root, "ls-files", "-s"),
        "index_bytes": hashlib.sha256((root / ".git" / "index").read_bytes()).hexdigest(),
        "staged": git(root, "diff", "--cached", "--name-status"),
        "stash": git(root, "stash", "list"),
        "branches": "\n".join(b for b in branches if not b.startswith("refs/heads/loopwright/")),
    }


def tree_of(root: Path, commit: str) -> list[str]:
    return sorted(git(root, "ls-tree", "-r", "--name-only", commit).splitlines())


def test_branch_starts_from_staged_unstaged_and_untracked_files(repo: Path) -> None:
    # Given a checkout with a stash, a staged change, an unstaged change, a staged new file,
    # an untracked script, an untracked test and an ignored log
    write(repo, "app.py", "VALUE = 'stashed'\n")
    git(repo, "stash", "-q")
    write(repo, "app.py", "VALUE = 2\n")
    git(repo, "add", "app.py")
    write(repo, "lib.py", "LIB = 'unstaged'\n")
    write(repo, "staged_new.py", "NEW = 1\n")
    git(repo, "add", "staged_new.py")
    write(repo, "agent.sh", "#!/bin/sh\necho hi\n")
    (repo / "agent.sh").chmod(0o755)
    write(repo, "tests/test_app.py", "def test_app():\n    assert False\n")
    write(repo, "debug.log", "ignored\n")
    before = user_view(repo)
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")

    # When the loop's worktree is prepared
    path, branch, base = workspace.prepare("loop_1")

    # Then the worktree holds the working tree as the user sees it, ignored files aside
    assert (path / "app.py").read_text() == "VALUE = 2\n"
    assert (path / "lib.py").read_text() == "LIB = 'unstaged'\n"
    assert (path / "staged_new.py").is_file()
    assert (path / "agent.sh").stat().st_mode & 0o111  # still executable
    assert (path / "tests" / "test_app.py").is_file()
    assert not (path / "debug.log").exists()
    # as one snapshot commit on top of the user's HEAD, which is the loop's base
    assert base is not None and base != before["head"]
    assert git(repo, "rev-parse", f"{base}^") == before["head"]
    assert git(repo, "log", "-1", "--format=%s%n%an", base) == f"{SNAPSHOT_MESSAGE}\nloopwright"
    assert git(repo, "rev-parse", branch) == base == workspace.head("loop_1")
    # and what it started from is told, untracked and uncommitted apart
    started = workspace.started_from("loop_1")
    assert started is not None and started.commit == base and started.head == before["head"]
    assert sorted(started.untracked) == ["agent.sh", "tests/test_app.py"]
    assert sorted(started.uncommitted) == ["app.py", "lib.py", "staged_new.py"]
    assert (started.untracked_count, started.uncommitted_count, started.withheld) == (2, 3, [])
    line = started.describe()
    assert line.startswith(f"started from your working tree: snapshot {base[:8]} of 5 files on HEAD")
    assert "2 untracked: agent.sh, tests/test_app.py" in line
    # and nothing of the user's checkout changed: HEAD, branch, status, index, stash
    assert user_view(repo) == before


def test_diff_from_the_base_shows_only_the_agents_work(repo: Path) -> None:
    write(repo, "notes.md", "my notes\n")
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")
    path, _, base = workspace.prepare("loop_1")

    write(path, "app.py", "VALUE = 3\n")
    head, changed = workspace.commit("loop_1", "loopwright: iteration 1")

    assert changed == ["app.py"]
    assert head is not None and base is not None
    assert git(repo, "diff", "--name-only", base, head) == "app.py"


def test_clean_tree_starts_from_head_and_tells_nothing(repo: Path) -> None:
    write(repo, "debug.log", "ignored\n")
    write(repo, "pkg/__pycache__/m.cpython-311.pyc", "noise")
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")

    _, _, base = workspace.prepare("loop_1")

    assert base == git(repo, "rev-parse", "HEAD")
    assert workspace.started_from("loop_1") is None
    assert git(repo, "for-each-ref", "refs/loopwright") == ""


def test_from_head_ignores_uncommitted_and_untracked_files(repo: Path) -> None:
    write(repo, "app.py", "VALUE = 'uncommitted'\n")
    write(repo, "agent.sh", "#!/bin/sh\n")
    workspace = GitWorktreeWorkspace(repo, start_from="head")

    path, _, base = workspace.prepare("loop_1")

    assert base == git(repo, "rev-parse", "HEAD")
    assert (path / "app.py").read_text() == "VALUE = 1\n"
    assert not (path / "agent.sh").exists()
    assert workspace.started_from("loop_1") is None


def test_reopened_and_recreated_worktrees_keep_the_snapshot_as_base(repo: Path) -> None:
    write(repo, "agent.sh", "#!/bin/sh\n")
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")
    path, branch, base = workspace.prepare("loop_1")
    write(path, "app.py", "VALUE = 2\n")
    workspace.commit("loop_1", "iteration 1")

    assert GitWorktreeWorkspace(repo, start_from="working-tree").prepare("loop_1") == (path, branch, base)
    workspace.remove("loop_1")
    again = GitWorktreeWorkspace(repo, start_from="working-tree")
    assert again.prepare("loop_1") == (path, branch, base)
    assert again.started_from("loop_1") is None  # reopened: nothing new to tell
    assert (path / "agent.sh").is_file()


def test_secret_files_are_left_out_of_the_snapshot_with_their_names(repo: Path) -> None:
    # Given untracked secrets, templates meant to be committed, and a tracked .env in HEAD
    git(repo, "rm", "-q", "--cached", ".gitignore")
    write(repo, "config/.env", "TOKEN=committed-by-the-user\n")
    git(repo, "add", "-f", "config/.env")
    git(repo, "commit", "-q", "-m", "user commits a .env")
    write(repo, "config/.env", "TOKEN=changed-since\n")
    secrets = [".env", ".env.production", "id_rsa", "id_ed25519.pub", "certs/server.pem", "tls.key"]
    for name in secrets:
        write(repo, name, "secret\n")
    write(repo, ".env.example", "TOKEN=\n")
    write(repo, ".npmrc", "//registry.npmjs.org/:_authToken=abc123\n")
    write(repo, "web/.npmrc", "save-exact=true\n")
    write(repo, "main.py", "print('hi')\n")
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")

    path, _, base = workspace.prepare("loop_1")

    assert base is not None
    tree = tree_of(repo, base)
    assert not [name for name in [*secrets, ".npmrc"] if name in tree]
    assert {".env.example", "web/.npmrc", "main.py", "config/.env"} <= set(tree)
    # the tracked secret stays as committed; its change is not committed
    assert git(repo, "show", f"{base}:config/.env") == "TOKEN=committed-by-the-user"
    assert (path / "config" / ".env").read_text() == "TOKEN=committed-by-the-user\n"
    started = workspace.started_from("loop_1")
    assert started is not None
    assert sorted(started.withheld) == sorted([*secrets, ".npmrc", "config/.env"])
    assert "not committed, they look like secrets" in started.describe()
    assert "id_rsa" in started.describe()


def test_only_secrets_changed_starts_from_head_with_a_warning(repo: Path) -> None:
    write(repo, ".env", "TOKEN=x\n")
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")

    _, _, base = workspace.prepare("loop_1")

    assert base == git(repo, "rev-parse", "HEAD")
    started = workspace.started_from("loop_1")
    assert started is not None and (started.commit, started.withheld) == (None, [".env"])
    assert started.describe() == (
        f"started from HEAD {base[:8]}; not committed, they look like secrets "
        "(not in the loop's worktree): .env"
    )


def test_secrets_an_agent_writes_are_never_committed(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")
    path, _, base = workspace.prepare("loop_1")
    # Given an agent that writes a fix, a .env, a key and a weirdly named key file
    write(path, "app.py", "VALUE = 2\n")
    write(path, ".env", "OPENAI_API_KEY=sk-test\n")
    write(path, "deploy/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\n")
    write(path, "[a]*.pem", "key\n")

    head, changed = workspace.commit("loop_1", "loopwright: iteration 1")

    assert changed == ["app.py"]
    assert head is not None
    assert tree_of(repo, head) == [".gitignore", "app.py", "lib.py"]
    assert sorted(workspace.withheld("loop_1")) == [".env", "[a]*.pem", "deploy/id_rsa"]
    assert (path / ".env").is_file()  # left in the worktree, uncommitted
    # Only secrets left: nothing committed, still named
    assert workspace.commit("loop_1", "loopwright: iteration 2") == (None, [])
    assert sorted(workspace.withheld("loop_1")) == [".env", "[a]*.pem", "deploy/id_rsa"]
    # A commit with no secrets around names none
    workspace.reset("loop_1", base or "")
    write(path, "app.py", "VALUE = 3\n")
    workspace.commit("loop_1", "loopwright: iteration 3")
    assert workspace.withheld("loop_1") == []


def test_salvaged_work_leaves_secrets_out(repo: Path) -> None:
    workspace = GitWorktreeWorkspace(repo, start_from="working-tree")
    path, _, _ = workspace.prepare("loop_1")
    write(path, "app.py", "half done\n")
    write(path, "prod.tfvars", 'password = "x"\n')

    saved = workspace.salvage("loop_1", "1")

    assert saved is not None
    assert saved.files == ["app.py"]
    assert "prod.tfvars" not in tree_of(repo, saved.commit)


def test_plain_folder_gets_default_ignores_and_keeps_secrets_out(tmp_path: Path) -> None:
    # Given a folder that is not a repository, with a virtualenv, node_modules, build output
    # and secrets
    root = tmp_path / "plain"
    write(root, "src/app.py", "X = 1\n")
    write(root, ".venv/pyvenv.cfg", "home = /usr\n")
    write(root, ".venv/lib/site.py", "x\n")
    write(root, "node_modules/left-pad/index.js", "x\n")
    write(root, "dist/app-1.0.tar.gz", "x\n")
    write(root, "build/lib/app.py", "x\n")
    write(root, "app.egg-info/PKG-INFO", "x\n")
    write(root, ".tox/py311/x", "x\n")
    write(root, ".env", "TOKEN=x\n")
    write(root, "id_rsa", "key\n")
    workspace = GitWorktreeWorkspace(root, start_from="working-tree")

    path, _, base = workspace.prepare("loop_1")

    # Then only the sources are committed, and the secrets are named
    assert git(root, "ls-files").splitlines() == ["src/app.py"]
    assert base == git(root, "rev-parse", "HEAD")
    assert tree_of(root, "HEAD") == ["src/app.py"]
    assert not (path / ".env").exists()
    started = workspace.started_from("loop_1")
    assert started is not None and sorted(started.withheld) == [".env", "id_rsa"]
    # the ignore list is git's own file, not one of the user's
    exclude = (root / ".git" / "info" / "exclude").read_text().splitlines()
    assert {".venv/", "venv/", "env/", "node_modules/", "build/", "dist/", ".loopwright/"} <= set(exclude)
    assert not (root / ".gitignore").exists()
    assert git(root, "status", "--porcelain").splitlines() == ["?? .env", "?? id_rsa"]


def test_plain_folder_with_from_head_still_names_the_secrets(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    write(root, "main.py", "X = 1\n")
    write(root, "client.p12", "x")
    workspace = GitWorktreeWorkspace(root, start_from="head")

    workspace.prepare("loop_1")

    started = workspace.started_from("loop_1")
    assert started is not None and (started.commit, started.withheld) == (None, ["client.p12"])
    assert git(root, "ls-files").splitlines() == ["main.py"]
