"""Background commands in a loop's Code Interpreter session (issue 12.5: no Lambda waits for the
agent or the checks): :class:`CodeInterpreterTasks`, the AWS
:class:`~loopwright.ports.BackgroundSandbox`.

``InvokeCodeInterpreter`` has three tools for it (the ``ToolName`` enum of the
``bedrock-agentcore`` API model): ``startCommandExecution`` (arguments ``command``; the answer's
``structuredContent`` has ``taskId`` and ``taskStatus``), ``getTask`` (``taskId``; answers
``taskStatus`` ``submitted``, ``working``, ``completed``, ``canceled`` or ``failed``, with
``stdout``, ``stderr``, ``exitCode`` and ``executionTime`` in milliseconds) and ``stopTask``
(``taskId``). The command line is the one the blocking sandbox sends to ``executeCommand``
(:func:`~loopwright.adapters.aws.code_interpreter_sandbox.shell_line`: quoted, GNU ``timeout``
inside), so a background command has the same time limit and output. That ``getTask`` returns a
finished task's whole output, and keeps it for the session's life, is read from the API model,
not verified against the service.

Errors of the service raise :class:`~loopwright.exceptions.LoopFrameworkError`, and
:class:`~loopwright.exceptions.SandboxSessionEndedError` when the session has ended (its tasks
went with it), as the blocking sandbox's do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loopwright.adapters.aws.code_interpreter_sandbox import (
    MAX_SESSION_TIMEOUT_SECONDS,
    TIMEOUT_EXIT_CODES,
    CodeInterpreterSandbox,
    StreamError,
    shell_line,
    tail,
)
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import CommandResult
from loopwright.ports import BackgroundSandbox

#: ``taskStatus`` values of a task that has ended (the API's ``TaskStatus`` enum).
ENDED_STATUSES = frozenset({"completed", "canceled", "failed"})


class CodeInterpreterTasks(BackgroundSandbox):
    """Background commands in ``sandbox``'s session (started by it when it has none), each allowed
    up to ``max_timeout_seconds`` (default the session's longest lifetime, 8 hours: no client
    waits for a background task, so the blocking sandbox's read timeout does not bound it)."""

    def __init__(
        self, sandbox: CodeInterpreterSandbox, *, max_timeout_seconds: float = MAX_SESSION_TIMEOUT_SECONDS
    ) -> None:
        self.sandbox = sandbox
        self.max_timeout_seconds = max_timeout_seconds

    def _invoke(self, tool: str, arguments: Mapping[str, Any], action: str) -> dict[str, Any]:
        return self.sandbox.invoke(tool, arguments, action, _structured)

    def start(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> str:
        """Start ``command`` (``startCommandExecution``); its task id. Raises
        :class:`LoopFrameworkError` for an empty command, a timeout above the sandbox's maximum,
        an AWS error, or an answer without a task id."""
        given = list(command)
        if not given:
            raise LoopFrameworkError("empty command")
        if timeout_seconds > self.max_timeout_seconds:
            raise LoopFrameworkError(
                f"timeout of {timeout_seconds} s is above the longest a background task may run, "
                f"{self.max_timeout_seconds} s"
            )
        line = shell_line(given, cwd=cwd, timeout_seconds=timeout_seconds, env=env, stdin=stdin)
        answer = self._invoke("startCommandExecution", {"command": line}, f"starting {given[0]!r}")
        task_id = answer.get("taskId")
        if not task_id:
            raise LoopFrameworkError(
                f"the Code Interpreter started {given[0]!r} but gave no task id: {answer}"
            )
        return str(task_id)

    def poll(self, task_id: str, *, max_output_bytes: int = 256 * 1024) -> CommandResult | None:
        """``getTask``: None while the task is ``submitted`` or ``working``, else its result
        (a ``canceled`` task is reported timed out: only a time limit cancels one)."""
        answer = self._invoke("getTask", {"taskId": task_id}, f"looking at task {task_id!r}")
        status = str(answer.get("taskStatus") or "")
        if status not in ENDED_STATUSES:
            return None
        exit_code = answer.get("exitCode")
        code = None if exit_code is None else int(exit_code)
        canceled = status == "canceled"
        timed_out = canceled or code in TIMEOUT_EXIT_CODES
        out, out_cut = tail(str(answer.get("stdout") or ""), max_output_bytes)
        err, err_cut = tail(str(answer.get("stderr") or ""), max_output_bytes)
        seconds = float(answer.get("executionTime") or 0.0) / 1000
        error = None
        if code is None and not timed_out:
            error = f"the Code Interpreter's task ended {status} without an exit code"
        return CommandResult(
            command=[],
            exit_code=None if timed_out else code,
            stdout=out,
            stderr=err,
            duration_seconds=seconds,
            timed_out=timed_out,
            truncated=out_cut or err_cut,
            error=error,
        )

    def cancel(self, task_id: str) -> None:
        """``stopTask``."""
        self._invoke("stopTask", {"taskId": task_id}, f"stopping task {task_id!r}")


def _structured(stream: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``structuredContent`` of the stream's ``result`` events, merged; an exception event
    raises :class:`StreamError` (see ``code_interpreter_sandbox._read_stream``)."""
    merged: dict[str, Any] = {}
    for event in stream:
        for name, body in event.items():
            if name != "result":
                message = body.get("message", "") if isinstance(body, Mapping) else body
                raise StreamError(f"the Code Interpreter answered {name}: {message}")
            merged.update(body.get("structuredContent") or {})
    return merged
