"""SessionWorkspace: the loop's clone in its Code Interpreter session, with real git run through
the sandbox's quoted shell line (tests/unit/aws_session_fake.py plays the session)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import pytest
from pydantic import ValidationError

from loopwright.adapters.aws.session_workspace import SessionWorkspace, noise_pathspecs
from loopwright.config_loader import format_validation_error
from loopwright.exceptions import LoopFrameworkError, WorkspaceError
from loopwright.models import CommandResult, LoopConfig, RepositoryConfig
from loopwright.ports import OutputCallback, Sandbox
from tests.unit.aws_session_fake import LocalSession, git, local_sandbox, make_remote


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {"app.py": "x = 1\n", "README.md": "hi\n"})


def workspace(
    tmp_path: Path,
    remote: Path,
    *,
    push: bool = True,
    ref: str | None = None,
    fetch_agent_commits: bool = False,
) -> tuple[SessionWorkspace, LocalSession]:
    sandbox, session = local_sandbox(tmp_path / "session")
    repository = RepositoryConfig(url=f"file://{remote}", ref=ref, push=push)
    root = PurePosixPath(tmp_path / "session" / "wt")
    return SessionWorkspace(sandbox, repository, root=root, fetch_agent_commits=fetch_agent_commits), session


def remote_head(remote: Path, branch: str = "loopwright/l1") -> str:
    return git("rev-parse", f"refs/heads/{branch}", cwd=remote).strip()


def test_prepare_clones_creates_and_pushes_the_branch_then_reopens(tmp_path: Path, remote: Path) -> None:
    ws, session = workspace(tmp_path, remote)
    seed = git("rev-parse", "main", cwd=remote).strip()
    path, branch, base = ws.prepare("l1")
    assert (path, branch, base) == (tmp_path / "session" / "wt" / "l1", "loopwright/l1", seed)
    assert (path / "app.py").read_text() == "x = 1\n"
    assert git("branch", "--show-current", cwd=path).strip() == "loopwright/l1"
    assert remote_head(remote) == seed  # pushed at once, so an agent elsewhere finds it
    # Reopening in the same session clones nothing and returns the same answer
    clones = sum(" clone -q " in line for line in session.commands())
    assert clones == 1
    assert ws.prepare("l1") == (path, branch, base)
    assert sum(" clone -q " in line for line in session.commands()) == clones


def test_commit_pushes_changes_but_not_build_noise_and_nothing_changed_is_none(
    tmp_path: Path, remote: Path
) -> None:
    ws, _ = workspace(tmp_path, remote)
    path, _, base = ws.prepare("l1")
    assert ws.commit("l1", "nothing") == (None, [])
    (path / "app.py").write_text("x = 2\n")
    (path / "pkg" / "__pycache__").mkdir(parents=True)
    (path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (path / "new.txt").write_text("n\n")
    head, changed = ws.commit("l1", "loopwright: iteration 1\n\nfixed x")
    assert head is not None and head != base
    assert sorted(changed) == ["app.py", "new.txt"]
    assert remote_head(remote) == head == ws.head("l1")
    assert git("log", "-1", "--format=%an <%ae>|%s", cwd=path).strip() == (
        "loopwright <loopwright@localhost>|loopwright: iteration 1"
    )
    # Only noise left: nothing to commit
    (path / "pkg" / "__pycache__" / "n.cpython-311.pyc").write_bytes(b"\1")
    assert ws.commit("l1", "noise") == (None, [])


def test_an_agent_that_committed_itself_moves_the_branch(tmp_path: Path, remote: Path) -> None:
    ws, _ = workspace(tmp_path, remote)
    path, _, _ = ws.prepare("l1")
    (path / "a.txt").write_text("a\n")
    git("add", "a.txt", cwd=path)
    git("commit", "-q", "-m", "agent's own commit", cwd=path)
    head, changed = ws.commit("l1", "unused")
    assert (head, changed) == (git("rev-parse", "HEAD", cwd=path).strip(), ["a.txt"])
    assert remote_head(remote) == head


def test_a_new_session_continues_from_the_pushed_branch_and_reset_force_pushes(
    tmp_path: Path, remote: Path
) -> None:
    first, _ = workspace(tmp_path / "one", remote)
    path, _, base = first.prepare("l1")
    (path / "app.py").write_text("x = 2\n")
    one, _ = first.commit("l1", "iteration 1")
    (path / "app.py").write_text("x = 3\n")
    two, _ = first.commit("l1", "iteration 2")
    # The session ended (its files are gone): a new one clones and finds the loop's branch
    second, _ = workspace(tmp_path / "two", remote)
    new_path, _, new_base = second.prepare("l1")
    assert (new_base, second.head("l1")) == (base, two)
    assert (new_path / "app.py").read_text() == "x = 3\n"
    # Resuming from the checkpoint of iteration 1 moves the branch back, on the remote too
    (new_path / "junk.txt").write_text("left by a check\n")
    assert one is not None
    second.reset("l1", one)
    assert (second.head("l1"), remote_head(remote)) == (one, one)
    assert not (new_path / "junk.txt").exists() and (new_path / "app.py").read_text() == "x = 2\n"
    with pytest.raises(WorkspaceError, match="not a commit id"):
        second.reset("l1", "--hard")


def test_push_failure_names_git_and_its_stderr(tmp_path: Path, remote: Path) -> None:
    ws, _ = workspace(tmp_path, remote)
    path, _, _ = ws.prepare("l1")
    remote.rename(remote.with_name("gone.git"))
    (path / "app.py").write_text("x = 2\n")
    with pytest.raises(
        WorkspaceError, match=r"`git push -q origin refs/heads/loopwright/l1:.*exit 128.*"
    ) as info:
        ws.commit("l1", "iteration 1")
    assert "does not appear to be a git repository" in str(info.value) or "not found" in str(info.value)


def test_git_failures_raise_workspace_errors_with_gits_stderr(tmp_path: Path, remote: Path) -> None:
    missing, _ = workspace(tmp_path / "a", tmp_path / "nowhere.git")
    with pytest.raises(
        WorkspaceError, match=r"`git clone -q -- file://.*nowhere\.git.*exit 128\): .*nowhere"
    ):
        missing.prepare("l1")
    bad_ref, _ = workspace(tmp_path / "b", remote, ref="release-9")
    with pytest.raises(WorkspaceError, match=r"repository\.ref 'release-9' is not a branch, tag or commit"):
        bad_ref.prepare("l1")
    with pytest.raises(WorkspaceError, match="invalid loop id"):
        bad_ref.prepare("../x")


def test_ref_names_a_remote_branch_and_values_stay_literal_arguments(tmp_path: Path) -> None:
    # A remote whose path holds shell syntax: quoted, it is only a path
    odd = tmp_path / "r;touch${IFS}PWNED;$(touch${IFS}PWNED2)&&`touch${IFS}PWNED3`"
    odd.mkdir()
    remote = make_remote(odd, {"a.txt": "a\n"})
    git("branch", "feature", "main", cwd=remote)
    ws, session = workspace(tmp_path, remote, ref="feature", push=False)
    path, _, base = ws.prepare("l1")
    assert base == git("rev-parse", "feature", cwd=remote).strip()
    assert (path / "a.txt").exists()
    assert not list(tmp_path.rglob("PWNED*"))
    assert any(str(remote) in line for line in session.commands())
    # Without push the remote never sees the loop's branch
    (path / "a.txt").write_text("b\n")
    assert ws.commit("l1", "iteration 1")[0] is not None
    assert "loopwright/l1" not in git("branch", "--list", cwd=remote)


def test_fetch_agent_commits_takes_the_agents_pushed_branch(tmp_path: Path, remote: Path) -> None:
    ws, _ = workspace(tmp_path, remote, fetch_agent_commits=True)
    path, _, _ = ws.prepare("l1")
    assert ws.commit("l1", "agent pushed nothing") == (None, [])
    # The agent (elsewhere) works on its own clone and pushes the loop's branch
    agent = tmp_path / "agent"
    git("clone", "-q", "-b", "loopwright/l1", str(remote), str(agent), cwd=tmp_path)
    (agent / "fix.py").write_text("fixed\n")
    git("add", "-A", cwd=agent)
    git("commit", "-q", "-m", "agent fix", cwd=agent)
    git("push", "-q", "origin", "loopwright/l1", cwd=agent)
    (path / "coverage.out").write_text("left by a check\n")
    head, changed = ws.commit("l1", "unused")
    assert (head, changed) == (remote_head(remote), ["fix.py"])
    assert (path / "fix.py").exists() and not (path / "coverage.out").exists()


class _Broken(Sandbox):
    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 256 * 1024,
        stdin: str | None = None,
        on_output: OutputCallback | None = None,
        idle_timeout_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> CommandResult:
        raise LoopFrameworkError("running a command failed (ThrottlingException: slow down)")


def test_session_errors_become_workspace_errors() -> None:
    ws = SessionWorkspace(_Broken(), RepositoryConfig(url="https://example.com/r.git"))
    with pytest.raises(WorkspaceError, match=r"could not run in the session: .*ThrottlingException") as info:
        ws.commit("l1", "m")
    assert isinstance(info.value.__cause__, LoopFrameworkError)


def test_noise_pathspecs_exclude_at_any_depth() -> None:
    assert ":(exclude,glob)**/__pycache__/**" in noise_pathspecs()
    assert ":(exclude,glob)**/*.pyc" in noise_pathspecs()


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        (
            {"url": "https://user:tok@github.com/o/r.git"},
            "repository.url: Value error, must not contain credentials",
        ),
        ({"url": "--upload-pack=evil"}, "repository.url: Value error, must be a git URL"),
        ({"url": "https://github.com/o/r.git", "ref": "-x"}, "repository.ref: Value error, must be a branch"),
        ({"url": "https://github.com/o/r.git", "pushh": True}, "repository.pushh: unknown field"),
    ],
)
def test_repository_config_names_the_bad_field(repository: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        LoopConfig.model_validate(
            {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}], "repository": repository}
        )
    assert format_validation_error(info.value, "config").startswith(f"config: {expected}")


def test_repository_config_accepts_the_usual_urls() -> None:
    for url in (
        "https://github.com/o/r.git",
        "git@github.com:o/r.git",
        "ssh://git@host/o/r",
        "file:///srv/r.git",
    ):
        assert RepositoryConfig(url=url, ref="v1.2/x_y+z").push is False


def test_file_text_reads_a_commits_file_and_none_when_absent(tmp_path: Path, remote: Path) -> None:
    ws, _ = workspace(tmp_path, remote)
    path, _, base = ws.prepare("l1")
    (path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    head, _ = ws.commit("l1", "iteration 1")
    assert head is not None and base is not None
    assert ws.file_text("l1", head, "pyproject.toml") == "[tool.pytest.ini_options]\naddopts = '-q'\n"
    assert ws.file_text("l1", base, "pyproject.toml") is None  # not in that commit
    assert ws.file_text("l1", base, "app.py") == "x = 1\n"
    assert ws.file_text("l1", "--output=x", "app.py") is None  # not a commit id: never an option


def test_tree_hash_is_equal_for_equal_files_and_none_for_a_non_commit(tmp_path: Path, remote: Path) -> None:
    ws, _ = workspace(tmp_path, remote)
    path, _, base = ws.prepare("l1")
    assert base is not None
    (path / "state.txt").write_text("A\n")
    first, _ = ws.commit("l1", "iteration 1")
    (path / "state.txt").unlink()
    back, _ = ws.commit("l1", "iteration 2")  # back to the files of the base
    assert first is not None and back is not None and back != base
    assert (
        ws.tree_hash("l1", back)
        == ws.tree_hash("l1", base)
        == git("rev-parse", f"{base}^{{tree}}", cwd=path).strip()
    )
    assert ws.tree_hash("l1", first) != ws.tree_hash("l1", base)
    assert ws.tree_hash("l1", "--output=x") is None  # not a commit id: never an option
    assert ws.tree_hash("l1", "0" * 40) is None  # not in the clone


def test_a_set_aside_commit_is_pushed_and_a_new_session_can_reset_to_it(tmp_path: Path, remote: Path) -> None:
    # Given a loop whose iteration was set aside (a held change to pinned files) and reverted
    first, _ = workspace(tmp_path / "one", remote)
    path, _, base = first.prepare("l1")
    assert base is not None
    (path / "test_app.py").write_text("def test_x():\n    assert True\n")
    held, _ = first.commit("l1", "iteration 1")
    saved = first.set_aside("l1", base, "pinned-iteration-1")
    assert saved is not None and saved.commit == held
    first.reset("l1", base)
    # Then the ref is on the remote, the branch is back
    assert git("rev-parse", saved.ref, cwd=remote).strip() == held
    assert remote_head(remote) == base
    # When a new session (a fresh clone, without the ref) accepts the change
    second, _ = workspace(tmp_path / "two", remote)
    second.prepare("l1")
    assert held is not None
    second.reset("l1", held)
    # Then it fetched the kept commit and the branch moved to it, on the remote too
    assert (second.head("l1"), remote_head(remote)) == (held, held)


def test_clean_tree_is_the_head_tree_unless_something_is_left_uncommitted(
    tmp_path: Path, remote: Path
) -> None:
    ws, _ = workspace(tmp_path, remote)
    path, _, _ = ws.prepare("l1")
    tree = git("rev-parse", "HEAD^{tree}", cwd=path).strip()
    assert ws.clean_tree("l1") == tree
    (path / "pkg" / "__pycache__").mkdir(parents=True)
    (path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")  # noise: never committed
    assert ws.clean_tree("l1") == tree
    (path / "new.txt").write_text("n\n")
    assert ws.clean_tree("l1") is None
    ws.commit("l1", "loopwright: iteration 1")
    assert ws.clean_tree("l1") == git("rev-parse", "HEAD^{tree}", cwd=path).strip() != tree
    assert ws.clean_tree("never-cloned") is None
