"""A Code Interpreter session played on this machine, for the AWS agent and workspace tests.

:class:`LocalSession` answers ``invoke_code_interpreter`` as the service does: ``executeCommand``
runs the one shell line the sandbox built (so its quoting is exercised for real) in the
session's home folder, ``writeFiles`` writes files relative to that folder. Streams carry
``structuredContent`` like the real service.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox

REGION = "us-east-1"


class LocalSession:
    """The command client of a :class:`CodeInterpreterSandbox`; records every call."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.calls: list[dict[str, Any]] = []

    def invoke_code_interpreter(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        name, arguments = kwargs["name"], kwargs["arguments"]
        if name == "writeFiles":
            for item in arguments["content"]:
                target = self.home / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(item["text"], encoding="utf-8")
            result = {"content": [{"type": "text", "text": "written"}], "isError": False}
            return {"sessionId": kwargs["sessionId"], "stream": iter([{"result": result}])}
        assert name == "executeCommand", name
        done = subprocess.run(  # the line the sandbox built, as the service runs it
            ["/bin/sh", "-c", arguments["command"]],
            cwd=self.home,
            capture_output=True,
            text=True,
            check=False,
        )
        structured = {"stdout": done.stdout, "stderr": done.stderr, "exitCode": done.returncode}
        event = {"result": {"structuredContent": structured, "isError": done.returncode != 0}}
        return {"sessionId": kwargs["sessionId"], "stream": iter([event])}

    def commands(self) -> list[str]:
        """The shell lines run, oldest first."""
        return [c["arguments"]["command"] for c in self.calls if c["name"] == "executeCommand"]


def local_sandbox(home: Path, session_id: str = "sess-1") -> tuple[CodeInterpreterSandbox, LocalSession]:
    """A sandbox over an existing session ``session_id`` played by a :class:`LocalSession`."""
    session = LocalSession(home)
    sandbox = CodeInterpreterSandbox(
        REGION, session_id=session_id, interpreter=object(), command_client=session
    )
    return sandbox, session


def git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd`` with a test identity; its stdout."""
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def make_remote(root: Path, files: dict[str, str]) -> Path:
    """A bare repository ``<root>/remote.git`` whose ``main`` holds ``files`` (one commit)."""
    work = root / "seed"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "seed", cwd=work)
    remote = root / "remote.git"
    git("clone", "-q", "--bare", str(work), str(remote), cwd=root)
    return remote
