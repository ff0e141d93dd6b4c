"""A Code Interpreter session played on this machine, for the AWS agent and workspace tests.

:class:`LocalSession` answers ``invoke_code_interpreter`` as the service does: ``executeCommand``
runs the one shell line the sandbox built (so its quoting is exercised for real) in the
session's home folder, ``writeFiles`` writes files relative to that folder. Background tasks as
the service keeps them: ``startCommandExecution`` starts the line (its own process group) and
answers its ``taskId`` at once, ``getTask`` answers ``working`` until it ended, then
``completed`` with its output and exit code, ``stopTask`` ends it (``canceled``). Streams carry
``structuredContent`` like the real service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox

REGION = "us-east-1"


class LocalSession:
    """The command client of a :class:`CodeInterpreterSandbox`; records every call. ``env``: the
    environment of the commands (default this process's)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.calls: list[dict[str, Any]] = []
        self.tasks: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.canceled: set[str] = set()

    def get_code_interpreter_session(self, **kwargs: Any) -> dict[str, Any]:
        return {"sessionId": kwargs["sessionId"], "status": "READY"}

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
        if name in ("startCommandExecution", "getTask", "stopTask"):
            structured = self._task(name, arguments)
            return {
                "sessionId": kwargs["sessionId"],
                "stream": iter([{"result": {"structuredContent": structured}}]),
            }
        assert name == "executeCommand", name
        done = subprocess.run(  # the line the sandbox built, as the service runs it
            ["/bin/sh", "-c", arguments["command"]],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        structured = {"stdout": done.stdout, "stderr": done.stderr, "exitCode": done.returncode}
        event = {"result": {"structuredContent": structured, "isError": done.returncode != 0}}
        return {"sessionId": kwargs["sessionId"], "stream": iter([event])}

    def commands(self) -> list[str]:
        """The shell lines run, oldest first (in the background too)."""
        return [
            c["arguments"]["command"]
            for c in self.calls
            if c["name"] in ("executeCommand", "startCommandExecution")
        ]

    def _task(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name == "startCommandExecution":
            task_id = f"task-{len(self.tasks) + 1}"
            output = self.home.parent / f".{self.home.name}-{task_id}"
            output.mkdir(parents=True, exist_ok=True)
            with (output / "stdout").open("wb") as out, (output / "stderr").open("wb") as err:
                process = subprocess.Popen(  # the line the sandbox built, in the background
                    ["/bin/sh", "-c", arguments["command"]],
                    cwd=self.home,
                    env=self.env,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            self.tasks[task_id] = (process, output)
            return {"taskId": task_id, "taskStatus": "submitted"}
        task_id = arguments["taskId"]
        process, output = self.tasks[task_id]
        if name == "stopTask":
            self.stop(task_id)
            return {"taskId": task_id, "taskStatus": "canceled"}
        if task_id in self.canceled:
            return {"taskId": task_id, "taskStatus": "canceled"}
        if process.poll() is None:
            return {"taskId": task_id, "taskStatus": "working"}
        return {
            "taskId": task_id,
            "taskStatus": "completed",
            "stdout": (output / "stdout").read_text(errors="replace"),
            "stderr": (output / "stderr").read_text(errors="replace"),
            "exitCode": process.returncode,
        }

    def stop(self, task_id: str) -> None:
        """End a background task and its processes (stopTask; the session's end)."""
        process, _ = self.tasks[task_id]
        if process.poll() is None:
            self.canceled.add(task_id)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for task_id in self.tasks:
            self.stop(task_id)


class SessionService:
    """The Code Interpreter's sessions played locally, as the service keeps them: each session has
    its own home folder ``<root>/<session id>`` (its files go with it), READY until it is stopped
    or :meth:`expire` ends it as its timeout would. It is at once the SDK's ``CodeInterpreter``
    (``start``), the command client (``invoke_code_interpreter``) and the session client
    (``get_code_interpreter_session``, ``stop_code_interpreter_session``). A call in an ended
    session fails with a ResourceNotFoundException naming it; asking for its status says
    TERMINATED."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = env
        self.status: dict[str, str] = {}
        self.sessions: dict[str, LocalSession] = {}
        self.stopped: list[str] = []
        self.expire_after: dict[str, int] = {}  # session id -> calls it still answers

    # The SDK's CodeInterpreter (start)
    def start(self, identifier: str, session_timeout_seconds: int) -> str:
        session_id = f"sess{len(self.sessions) + 1}"
        self.sessions[session_id] = LocalSession(self.root / session_id, env=self.env)
        self.status[session_id] = "READY"
        return session_id

    # The session client
    def get_code_interpreter_session(self, **kwargs: Any) -> dict[str, Any]:
        session_id = kwargs["sessionId"]
        if session_id not in self.status:
            raise _not_found(session_id, "GetCodeInterpreterSession")
        return {"sessionId": session_id, "status": self.status[session_id]}

    def stop_code_interpreter_session(self, **kwargs: Any) -> dict[str, Any]:
        session_id = kwargs["sessionId"]
        if self.status.get(session_id) != "READY":
            raise _not_found(session_id, "StopCodeInterpreterSession")
        self.stopped.append(session_id)
        self.expire(session_id)
        return {"sessionId": session_id}

    # The command client
    def invoke_code_interpreter(self, **kwargs: Any) -> dict[str, Any]:
        session_id = kwargs["sessionId"]
        left = self.expire_after.get(session_id)
        if left is not None:
            if left <= 0:
                self.expire(session_id)
            self.expire_after[session_id] = left - 1
        if self.status.get(session_id) != "READY":
            raise _not_found(session_id, "InvokeCodeInterpreter")
        return self.sessions[session_id].invoke_code_interpreter(**kwargs)

    def expire(self, session_id: str) -> None:
        """End the session as its timeout does: TERMINATED, its files gone."""
        self.status[session_id] = "TERMINATED"
        self.sessions[session_id].stop_all()
        shutil.rmtree(self.sessions[session_id].home, ignore_errors=True)

    def calls(self) -> list[dict[str, Any]]:
        return [call for session in self.sessions.values() for call in session.calls]

    def commands(self) -> list[str]:
        return [line for session in self.sessions.values() for line in session.commands()]


def _not_found(session_id: str, operation: str) -> ClientError:
    error = {"Code": "ResourceNotFoundException", "Message": f"Session {session_id} not found"}
    return ClientError({"Error": error}, operation)


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
