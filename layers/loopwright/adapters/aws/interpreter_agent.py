"""A command agent run in the loop's Code Interpreter session (AWS), as the local one runs it.

:class:`CodeInterpreterCommandAgent` *is* the local
:class:`~loopwright.adapters.local.command_agent.CommandAgent` (same ``{prompt_file}``...
placeholders, ``LOOPWRIGHT_*`` environment, ``prompt.md`` / ``failures.json`` / ``report.json``
files and result rules), given a sandbox that carries its files to the session:

1. the local agent writes its files in a fresh local temporary folder (Lambda's ``/tmp``);
2. they are written into the session (``writeFiles``) under
   ``<session working directory>/.loopwright/agent-runs/<run>/``, a folder per run, so a report
   left by an earlier run can never be read;
3. in the command's arguments and environment values the local folder's path is replaced by the
   session folder's, and the command runs in the loop's clone in the session (``executeCommand``,
   quoted, with its ``timeout_seconds``);
4. the session's ``report.json``, if the agent wrote one, and ``progress.md`` (the progress
   notes, issue 10: written with the notes the loop kept, the agent may append to them) are read
   back (``cat``) into the local folder, where the local agent parses the report and reads the
   notes (:func:`~loopwright.adapters.local.command_agent.read_notes`). A file the session no
   longer has leaves the local one as written: no report, the notes the loop had.

Five calls to the session per iteration (``pwd`` once per sandbox, ``writeFiles``, the command,
two ``cat``). Given a ``runner`` (:class:`~loopwright.deferred.DeferringSandbox`), the command and
the ``cat`` run in the background and the step that runs the agent returns while it works
(issue 12.5); each replay of that step writes the same files into the same run folder (named by
the runner's token) and polls the command.

AWS errors (throttling, a session that ended) raise :class:`AgentError`, so the
iteration is recorded as failed and the loop's policies decide what follows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox
from loopwright.adapters.local.command_agent import CommandAgent
from loopwright.deferred import DeferringSandbox
from loopwright.exceptions import AgentError, LoopFrameworkError, SandboxSessionEndedError
from loopwright.models import AgentRequest, AgentResult, CommandAgentConfig, CommandResult
from loopwright.ports import Agent, OutputCallback, Sandbox, StopCheck
from loopwright.steps.prompt import NOTES_FILE_NAME, REPORT_FILE_NAME

#: Folder, relative to the session's working directory, of the agent's files (a sub-folder per run).
SESSION_RUNS_FOLDER = PurePosixPath(".loopwright/agent-runs")
#: Name of the report file the local agent reads after the command.
REPORT_FILE = REPORT_FILE_NAME
#: The files read back from the session after the command: the report and the progress notes.
FETCHED_FILES = (REPORT_FILE_NAME, NOTES_FILE_NAME)
#: Seconds allowed to read the report back.
READ_TIMEOUT_SECONDS = 60.0


class _SessionFilesSandbox(Sandbox):
    """Runs the local agent's command in the session, with its files carried there and back."""

    def __init__(
        self,
        session: CodeInterpreterSandbox,
        *,
        local: Path,
        remote: PurePosixPath,
        remote_relative: PurePosixPath,
        runner: Sandbox | None = None,
    ) -> None:
        self._session = session
        self._runner: Sandbox = runner or session
        self._local = local
        self._remote = remote
        self._remote_relative = remote_relative

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
        should_stop: StopCheck | None = None,
    ) -> CommandResult:
        files = [p for p in sorted(self._local.rglob("*")) if p.is_file()]
        self._session.write_files(
            {
                str(self._remote_relative / p.relative_to(self._local).as_posix()): p.read_text(
                    encoding="utf-8"
                )
                for p in files
            }
        )
        outcome = self._runner.run(
            [self._translate(arg) for arg in command],
            cwd=cwd,
            timeout_seconds=timeout_seconds,
            env={name: self._translate(value) for name, value in (env or {}).items()},
            max_output_bytes=max_output_bytes,
            stdin=None if stdin is None else self._translate(stdin),
            on_output=on_output,
            idle_timeout_seconds=idle_timeout_seconds,
            should_stop=should_stop,
        )
        for folder in sorted({p.parent for p in files}):
            for name in FETCHED_FILES:
                self._fetch(folder / name)
        return outcome.model_copy(update={"command": list(command)})

    def _translate(self, text: str) -> str:
        return text.replace(str(self._local), str(self._remote))

    def _fetch(self, local_file: Path) -> None:
        """Copy the session's file (when it is there) to ``local_file``."""
        remote_file = self._remote / local_file.relative_to(self._local).as_posix()
        done = self._runner.run(
            ["cat", "--", str(remote_file)], cwd=Path("/"), timeout_seconds=READ_TIMEOUT_SECONDS
        )
        if done.exit_code == 0:
            local_file.write_text(done.stdout, encoding="utf-8")


class CodeInterpreterCommandAgent(Agent):
    """Runs :class:`CommandAgentConfig` ``command`` in the loop's Code Interpreter session; see the
    module docstring. ``request.worktree`` is the loop's clone in the session
    (:class:`~loopwright.adapters.aws.session_workspace.SessionWorkspace`)."""

    def __init__(
        self,
        config: CommandAgentConfig,
        sandbox: CodeInterpreterSandbox,
        *,
        runs_folder: PurePosixPath = SESSION_RUNS_FOLDER,
        runner: DeferringSandbox | None = None,
    ) -> None:
        self._config = config
        self._sandbox = sandbox
        self._runs_folder = PurePosixPath(runs_folder)
        self._runner = runner

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        """One iteration of the command in the session (see :class:`CommandAgent` for the result).

        Raises :class:`AgentError` when the session cannot be used (an AWS error), and
        :class:`SandboxSessionEndedError` when the session has ended.
        """
        try:
            with tempfile.TemporaryDirectory(prefix="loopwright-agent-") as folder:
                local = Path(folder)
                # A step replayed while the agent runs in the background (loopwright.deferred)
                # must find the same folder again: it is named by the deferred run's token.
                name = f"{request.iteration}-{self._runner.token}" if self._runner else local.name
                relative = self._runs_folder / name
                remote = self._sandbox.working_directory() / relative
                files = _SessionFilesSandbox(
                    self._sandbox, local=local, remote=remote, remote_relative=relative, runner=self._runner
                )
                local_request = request.model_copy(update={"state_dir": str(local)})
                return CommandAgent(self._config, files).run(
                    local_request, should_stop=should_stop, on_output=on_output
                )
        except SandboxSessionEndedError:
            raise  # not the agent's failure: the step fails and its retry gets a new session
        except LoopFrameworkError as exc:
            raise AgentError(f"the Code Interpreter session could not run the agent: {exc}") from exc
