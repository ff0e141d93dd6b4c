"""CodeInterpreterCommandAgent: the local command agent's conventions, run in the loop's Code
Interpreter session (played locally by tests/unit/aws_session_fake.py)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.aws.interpreter_agent import CodeInterpreterCommandAgent
from loopwright.exceptions import AgentError, LoopFrameworkError
from loopwright.models import AgentRequest, CommandAgentConfig
from tests.unit.aws_session_fake import LocalSession, local_sandbox

#: The agent: checks what it was given, edits the worktree, writes its report.
AGENT = """
import json, os, pathlib, sys
prompt = pathlib.Path(sys.argv[1]).read_text()
failures = json.loads(pathlib.Path(os.environ["LOOPWRIGHT_FAILURES_FILE"]).read_text())
assert "## Goal" in prompt and "fix the tests" in prompt, prompt
assert failures["failing_conditions"] == ["tests"], failures
assert os.getcwd() == os.environ["LOOPWRIGHT_WORKSPACE"]
assert sys.argv[2] == os.environ["LOOPWRIGHT_ITERATION"] == "2"
pathlib.Path("fixed.txt").write_text(sys.argv[3])
mode = os.environ.get("AGENT_MODE", "ok")
report = pathlib.Path(os.environ["LOOPWRIGHT_REPORT_FILE"])
if mode == "notes":
    with open(os.environ["LOOPWRIGHT_NOTES_FILE"], "a") as notes:
        notes.write("- the import was the cause\\n")
if mode in ("ok", "notes"):
    report.write_text(json.dumps({"tokens_used": 42, "summary": "fixed the import"}))
elif mode == "limit":
    report.write_text(json.dumps({"usage_limit_resets_at": "2026-03-01T17:00:00+00:00"}))
elif mode == "bad-report":
    report.write_text('{"tokens_used": -1}')
elif mode == "fail":
    print("cannot fix", file=sys.stderr)
    sys.exit(3)
print("done")
"""


def request(worktree: Path) -> AgentRequest:
    return AgentRequest(
        loop_id="l1",
        iteration=2,
        goal="fix the tests",
        worktree=str(worktree),
        state_dir="/not/used/on/aws",
        max_iterations=5,
        tokens_used=10,
        failures=["tests: test_a failed"],
        failing_conditions=["tests"],
    )


def agent_for(
    tmp_path: Path, mode: str, **config: Any
) -> tuple[CodeInterpreterCommandAgent, LocalSession, Path]:
    sandbox, session = local_sandbox(tmp_path / "session")
    worktree = tmp_path / "session" / "wt" / "l1"
    worktree.mkdir(parents=True)
    command = [
        "env",
        f"AGENT_MODE={mode}",
        sys.executable,
        "-c",
        AGENT,
        "{prompt_file}",
        "{iteration}",
        "{loop_id}",
    ]
    return (
        CodeInterpreterCommandAgent(CommandAgentConfig(command=command, **config), sandbox),
        session,
        worktree,
    )


def test_the_command_runs_in_the_session_with_the_local_agents_files_and_report(tmp_path: Path) -> None:
    agent, session, worktree = agent_for(tmp_path, "ok", timeout_seconds=60)
    result = agent.run(request(worktree))
    assert (result.failed, result.exit_code, result.tokens_used, result.summary) == (
        False,
        0,
        42,
        "fixed the import",
    )
    assert (worktree / "fixed.txt").read_text() == "l1"
    # The files went through writeFiles (relative paths), the command through one quoted line
    (written,) = [c for c in session.calls if c["name"] == "writeFiles"]
    paths = sorted(item["path"] for item in written["arguments"]["content"])
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["failures.json", "progress.md", "prompt.md"]
    assert all(p.startswith(".loopwright/agent-runs/loopwright-agent-") for p in paths)
    assert all(c["sessionId"] == "sess-1" for c in session.calls)


def test_the_agents_progress_notes_are_read_back_from_the_session(tmp_path: Path) -> None:
    agent, _, worktree = agent_for(tmp_path, "notes", timeout_seconds=60)
    kept = request(worktree).model_copy(update={"notes": "- iteration 1 tried the fixture\n"})
    result = agent.run(kept)
    # the session's file started with the notes the loop kept, and the agent's line came back
    assert result.notes == "- iteration 1 tried the fixture\n- the import was the cause\n"
    assert result.tokens_used == 42


def test_notes_the_session_no_longer_has_leave_the_loops_notes(tmp_path: Path) -> None:
    agent, _, worktree = agent_for(tmp_path, "ok", timeout_seconds=60)
    gone = CodeInterpreterCommandAgent(
        CommandAgentConfig(command=["sh", "-c", 'rm -f "$LOOPWRIGHT_NOTES_FILE"'], timeout_seconds=60),
        agent._sandbox,
    )
    kept = request(worktree).model_copy(update={"notes": "- kept\n"})
    assert gone.run(kept).notes == "- kept\n"


def test_a_failing_command_and_an_invalid_report_fail_the_iteration(tmp_path: Path) -> None:
    agent, _, worktree = agent_for(tmp_path, "fail", timeout_seconds=60)
    failed = agent.run(request(worktree))
    assert (failed.failed, failed.exit_code) == (True, 3)
    assert failed.summary.startswith("agent exited with code 3: ") and "cannot fix" in failed.output
    bad, _, worktree_2 = agent_for(tmp_path / "b", "bad-report", timeout_seconds=60)
    invalid = bad.run(request(worktree_2))
    assert invalid.failed and invalid.summary.startswith("invalid agent report report.json: tokens_used")


def test_the_session_is_reused_and_each_run_has_fresh_files(tmp_path: Path) -> None:
    agent, session, worktree = agent_for(tmp_path, "ok", timeout_seconds=60)
    assert agent.run(request(worktree)).tokens_used == 42
    quiet = CodeInterpreterCommandAgent(
        CommandAgentConfig(command=["true"], timeout_seconds=60),
        agent._sandbox,
        runs_folder=agent._runs_folder,
    )
    second = quiet.run(request(worktree))
    # The first run's report is in the session still, but never read for the second
    assert (second.failed, second.tokens_used) == (False, 0)
    assert sum(line.endswith("pwd") for line in session.commands()) == 1  # asked once per session
    assert {c["sessionId"] for c in session.calls} == {"sess-1"}


def test_a_timeout_above_the_sandbox_maximum_fails_the_iteration_clearly(tmp_path: Path) -> None:
    agent, _, worktree = agent_for(tmp_path, "ok")  # the config's default 1800 s, above 900 s
    result = agent.run(request(worktree))
    assert result.failed and "above this sandbox's maximum of 900.0 s" in result.summary


class _Throttled(LocalSession):
    def invoke_code_interpreter(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs["name"] == "executeCommand" and "pwd" not in kwargs["arguments"]["command"]:
            return {"stream": iter([{"throttlingException": {"message": "Rate exceeded"}}])}
        return super().invoke_code_interpreter(**kwargs)


def test_aws_errors_raise_agent_error(tmp_path: Path) -> None:
    agent, _, worktree = agent_for(tmp_path, "ok", timeout_seconds=60)
    agent._sandbox._commands = _Throttled(tmp_path / "session")
    with pytest.raises(
        AgentError, match=r"session could not run the agent: .*ThrottlingException: Rate exceeded"
    ):
        agent.run(request(worktree))


def test_the_prompt_reaches_the_session_as_the_local_agent_writes_it(tmp_path: Path) -> None:
    agent, session, worktree = agent_for(tmp_path, "ok", timeout_seconds=60)
    agent.run(request(worktree))
    (written,) = [c for c in session.calls if c["name"] == "writeFiles"]
    files = {item["path"].rsplit("/", 1)[-1]: item["text"] for item in written["arguments"]["content"]}
    assert files["prompt.md"].startswith("# loopwright: iteration 2 of 5")
    assert json.loads(files["failures.json"])["failures"] == ["tests: test_a failed"]


def test_write_files_refuses_absolute_paths_and_reports_the_tools_error(tmp_path: Path) -> None:
    sandbox, session = local_sandbox(tmp_path / "session")
    with pytest.raises(LoopFrameworkError, match="relative to the session's folder"):
        sandbox.write_files({"/etc/passwd": "x"})

    def refuse(**kwargs: Any) -> dict[str, Any]:
        result = {"content": [{"type": "text", "text": "disk full"}], "isError": True}
        return {"stream": iter([{"result": result}])}

    session.invoke_code_interpreter = refuse  # type: ignore[method-assign]
    with pytest.raises(
        LoopFrameworkError, match=r"could not write \['a.txt'\] in session 'sess-1': disk full"
    ):
        sandbox.write_files({"a.txt": "a"})


def test_a_usage_limit_in_the_report_reaches_the_result(tmp_path: Path) -> None:
    agent, _, worktree = agent_for(tmp_path, "limit", timeout_seconds=60)
    result = agent.run(request(worktree))
    assert result.usage_limit_resets_at == datetime(2026, 3, 1, 17, 0, tzinfo=UTC) and not result.failed
