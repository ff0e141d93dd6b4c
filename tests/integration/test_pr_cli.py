"""``loopwright pr`` and ``on_complete = "pr"`` (issue 15, part 4), driven as a user drives them:
a real loop on a real repository with a bare remote, and a fake ``gh`` on ``PATH`` that records
its arguments and the body it was given."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import cli, git, make_repo

CHECK = "import pathlib, sys; sys.exit(0 if pathlib.Path('done.txt').exists() else 1)"
AGENT = "import pathlib; pathlib.Path('done.txt').write_text('done\\n')"
FAKE_GH = textwrap.dedent(
    """\
    #!{python}
    import json, os, pathlib, sys
    args = sys.argv[1:]
    body = pathlib.Path(args[args.index("--body-file") + 1]).read_text()
    log = pathlib.Path(os.environ["FAKE_GH_LOG"])
    calls = json.loads(log.read_text()) if log.exists() else []
    calls.append({{"args": args, "body": body, "cwd": os.getcwd()}})
    log.write_text(json.dumps(calls))
    if os.environ.get("FAKE_GH_FAIL"):
        print("GraphQL: No commits between main and loopwright/x (createPullRequest)", file=sys.stderr)
        sys.exit(1)
    print("https://github.com/owner/repo/pull/7")
    """
)


def _config(tmp_path: Path, *, agent: str = AGENT, **extra: object) -> Path:
    lines = [
        'goal = "write done.txt"',
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
        f"python = {json.dumps(sys.executable)}",
        "[[exit_conditions]]",
        'type = "CUSTOM"',
        'name = "done"',
        f"command = [{json.dumps(sys.executable)}, '-c', {json.dumps(CHECK)}]",
        "[agent]",
        'kind = "command"',
        f"command = [{json.dumps(sys.executable)}, '-c', {json.dumps(agent)}]",
    ]
    path = tmp_path / "loop.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def no_gh(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PATH`` without any ``gh``."""
    kept = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "gh").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))


@pytest.fixture
def fake_gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_gh: None) -> Path:
    """A fake ``gh`` first on ``PATH``; returns the JSON file of its calls."""
    folder = tmp_path / "bin"
    folder.mkdir()
    gh = folder / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable))
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "gh-calls.json"
    monkeypatch.setenv("FAKE_GH_LOG", str(log))
    return log


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws", {"README.md": "hello\n"})


@pytest.fixture
def remote(tmp_path: Path, workspace: Path) -> Path:
    """A bare repository as the workspace's ``origin``, with ``main`` pushed."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(workspace, "remote", "add", "origin", str(bare))
    git(workspace, "push", "-q", "origin", "main")
    return bare


def _run_loop(tmp_path: Path, workspace: Path, loop_id: str = "done-1", **extra: object) -> dict[str, Any]:
    done = cli("run", "-w", str(workspace), "-c", str(_config(tmp_path, **extra)), "--loop-id", loop_id, "-q")
    assert done.returncode == 0, done.stderr
    status = cli("status", loop_id, "-w", str(workspace), "--json")
    return dict(json.loads(status.stdout))


def _calls(log: Path) -> list[dict[str, Any]]:
    return json.loads(log.read_text()) if log.exists() else []


def _remote_head(bare: Path, branch: str) -> str | None:
    refs = git(bare, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/heads/{branch}")
    return refs.split()[1] if refs else None


def test_pr_pushes_the_loops_commit_and_calls_gh_with_its_branch_and_body(
    tmp_path: Path, workspace: Path, remote: Path, fake_gh: Path
) -> None:
    state = _run_loop(tmp_path, workspace)
    done = cli("pr", "done-1", "-w", str(workspace))
    assert done.returncode == 0, done.stderr
    assert "pull request for loopwright/done-1 into main: https://github.com/owner/repo/pull/7" in done.stdout
    assert _remote_head(remote, "loopwright/done-1") == state["head_commit"]
    [call] = _calls(fake_gh)
    body_file = workspace / ".loopwright" / "pull-requests" / "done-1.md"
    assert call["args"] == [
        "pr",
        "create",
        "--base",
        "main",
        "--head",
        "loopwright/done-1",
        "--title",
        "loopwright: write done.txt",
        "--body-file",
        str(body_file),
    ]
    assert Path(call["cwd"]).resolve() == workspace.resolve()
    body = call["body"]
    assert body == body_file.read_text()
    assert "> write done.txt" in body
    assert "| done | CUSTOM | NOT_MET" in body and "| MET |" in body  # before (baseline) and after
    assert "- iterations: 1 (limit 20)" in body
    assert f"(head `{state['head_commit']}`)" in body
    # The loop's signed evidence is linked with its hash, and attached: a reviewer verifies the copy
    evidence = workspace / ".loopwright" / "evidence" / "done-1.json"
    assert f"- bundle: {evidence}\n- SHA-256: `{hashlib.sha256(evidence.read_bytes()).hexdigest()}`" in body
    attached = body.split("```json\n", 1)[1].split("\n```", 1)[0]
    copy = tmp_path / "evidence.json"
    copy.write_text(attached + "\n")
    checkout = workspace / ".loopwright" / "worktrees" / "done-1"
    verified = cli("evidence", "verify", str(copy), "--checkout", str(checkout), "--no-rerun")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_base_and_draft_flags_reach_gh(tmp_path: Path, workspace: Path, remote: Path, fake_gh: Path) -> None:
    _run_loop(tmp_path, workspace)
    done = cli("pr", "done-1", "-w", str(workspace), "--base", "release", "--draft", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "opened": True,
        "url": "https://github.com/owner/repo/pull/7",
        "branch": "loopwright/done-1",
        "base": "release",
    }
    args = _calls(fake_gh)[0]["args"]
    assert args[args.index("--base") + 1] == "release" and args[-1] == "--draft"


def test_on_complete_pr_opens_the_pull_request_when_the_loop_meets_its_conditions(
    tmp_path: Path, workspace: Path, remote: Path, fake_gh: Path
) -> None:
    config = _config(tmp_path, on_complete="pr")
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "done-1", "--json")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)  # stdout is the result only; the pull request is on stderr
    assert state["success"] is True
    assert "pull request for loopwright/done-1 into main: https://github.com/owner/repo/pull/7" in done.stderr
    [call] = _calls(fake_gh)
    assert call["args"][call["args"].index("--head") + 1] == "loopwright/done-1"
    assert _remote_head(remote, "loopwright/done-1") == state["head_commit"]


def test_on_complete_pr_does_nothing_for_a_loop_that_did_not_meet_them(
    tmp_path: Path, workspace: Path, remote: Path, fake_gh: Path
) -> None:
    config = _config(tmp_path, agent="pass", on_complete="pr", max_iterations=1)
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "stuck-1", "-q")
    assert done.returncode == 3, done.stderr  # the iteration limit
    assert _calls(fake_gh) == []
    # and `pr` refuses it: one line, exit 2, nothing pushed
    refused = cli("pr", "stuck-1", "-w", str(workspace))
    assert refused.returncode == 2
    expected = "loopwright: error: loop 'stuck-1' did not meet its exit conditions (ITERATION_LIMIT)"
    assert refused.stderr.strip().startswith(expected)
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert _calls(fake_gh) == [] and _remote_head(remote, "loopwright/stuck-1") is None


def test_without_a_remote_nothing_is_pushed_and_it_says_so(
    tmp_path: Path, workspace: Path, fake_gh: Path
) -> None:
    _run_loop(tmp_path, workspace)
    done = cli("pr", "done-1", "-w", str(workspace))
    assert done.returncode == 2
    assert "--remote: the repository has no git remote, so there is nowhere to push" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and _calls(fake_gh) == []
    git(workspace, "remote", "add", "upstream", str(tmp_path / "nowhere.git"))
    other = cli("pr", "done-1", "-w", str(workspace))
    assert other.returncode == 2
    assert "has no remote 'origin' (it has: upstream); name one with --remote" in other.stderr


def test_gh_failing_is_one_line_exit_1_after_the_push(
    tmp_path: Path, workspace: Path, remote: Path, fake_gh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _run_loop(tmp_path, workspace)
    monkeypatch.setenv("FAKE_GH_FAIL", "1")
    done = cli("pr", "done-1", "-w", str(workspace))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "`gh pr create` failed (exit 1): GraphQL: No commits between" in line
    assert "the branch was pushed, the body is in" in line
    assert _remote_head(remote, "loopwright/done-1") == state["head_commit"]


def test_without_gh_it_prints_the_body_and_the_commands_and_pushes_nothing(
    tmp_path: Path, workspace: Path, remote: Path, no_gh: None
) -> None:
    state = _run_loop(tmp_path, workspace)
    done = cli("pr", "done-1", "-w", str(workspace))
    assert done.returncode == 0, done.stderr
    body_file = workspace / ".loopwright" / "pull-requests" / "done-1.md"
    assert "loopwright: write done.txt" in done.stdout and "> write done.txt" in done.stdout
    assert "nothing pushed (gh (GitHub's CLI) is not on PATH)" in done.stdout
    assert f"git push origin {state['head_commit']}:refs/heads/loopwright/done-1" in done.stdout
    assert (
        "gh pr create --base main --head loopwright/done-1 --title 'loopwright: write done.txt' "
        f"--body-file {body_file}" in done.stdout
    )
    assert _remote_head(remote, "loopwright/done-1") is None


def test_bad_input_is_one_line_exit_2(tmp_path: Path, workspace: Path, remote: Path, fake_gh: Path) -> None:
    unknown = cli("pr", "nope-1", "-w", str(workspace))
    assert unknown.returncode == 2 and "no loop 'nope-1'" in unknown.stderr
    assert not (workspace / ".loopwright").exists()  # nothing written
    bad_id = cli("pr", "../x", "-w", str(workspace))
    assert bad_id.returncode == 2 and "LOOP_ID" in bad_id.stderr
    _run_loop(tmp_path, workspace)
    git(workspace, "checkout", "-q", "--detach")
    detached = cli("pr", "done-1", "-w", str(workspace))
    assert detached.returncode == 2
    assert "--base: the workspace is on a detached HEAD" in detached.stderr
    own = cli("pr", "done-1", "-w", str(workspace), "--base", "loopwright/done-1")
    assert own.returncode == 2 and "is the loop's own branch" in own.stderr
    dash = cli("pr", "done-1", "-w", str(workspace), "--base=-x")
    assert dash.returncode == 2 and "--base: '-x' is not a valid branch name" in dash.stderr
    for done in (unknown, bad_id, detached, own, dash):
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert _calls(fake_gh) == []


def test_on_complete_pr_without_a_remote_keeps_the_result_and_says_why(
    tmp_path: Path, workspace: Path, fake_gh: Path
) -> None:
    config = _config(tmp_path, on_complete="pr")
    done = cli("run", "-w", str(workspace), "-c", str(config), "--loop-id", "done-1", "-q")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(
        'loopwright: error: on_complete = "pr": the loop met its conditions but no pull request was '
        "opened: --remote: the repository has no git remote"
    )
    assert f"(then: `loopwright pr done-1 -w {workspace.resolve()}`)" in line
    result = json.loads((workspace / ".loopwright" / "last-result.json").read_text())
    assert result["success"] is True and _calls(fake_gh) == []
