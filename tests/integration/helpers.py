"""Helpers for integration tests: real git repositories and the CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a test identity; returns stdout stripped."""
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository with ``files`` committed on branch ``main``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m loopwright ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "loopwright", *args], capture_output=True, text=True, timeout=timeout
    )


def cli_popen(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``python -m loopwright ARGS`` without waiting (to stop or kill it mid-run)."""
    return subprocess.Popen([sys.executable, "-m", "loopwright", *args], text=True, **kwargs)


def cli_json(*args: str) -> Any:
    """Run the CLI with ``--json`` and parse stdout."""
    done = cli(*args, "--json")
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def files_loop_config(path: Path, *, files: int, agent_argv: list[str], max_iterations: int) -> Path:
    """Write a loop config whose CUSTOM condition holds once ``work/<files>.txt`` exists and whose
    agent is the command ``agent_argv``; returns ``path``."""
    check = f"import pathlib,sys; sys.exit(0 if pathlib.Path('work/{files}.txt').exists() else 1)"
    path.write_text(
        textwrap.dedent(
            f"""
            goal = "write {files} files"
            max_iterations = {max_iterations}
            [[exit_conditions]]
            type = "CUSTOM"
            name = "files"
            command = ["python", "-c", {json.dumps(check)}]
            [agent]
            kind = "command"
            command = {json.dumps(agent_argv)}
            """
        )
    )
    return path
