"""cloud.runtime.with_loop_agent on AWS: which agent and workspace a loop gets, the ConfigError when
its agent cannot run there, and an iterate step through the wiring in a (locally played) session."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.aws import code_interpreter_sandbox
from loopwright.adapters.aws.code_interpreter_sandbox import (
    MAX_SESSION_TIMEOUT_SECONDS,
    CodeInterpreterSandbox,
    CodeInterpreterSessions,
)
from loopwright.adapters.aws.interpreter_agent import CodeInterpreterCommandAgent
from loopwright.adapters.aws.runtime_agent import AgentCoreRuntimeAgent
from loopwright.adapters.aws.session_workspace import SessionWorkspace
from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.cloud import runtime
from loopwright.cloud.steps import CloudPorts, iterate_step
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig, LoopState, StepInput
from tests.fakes import MemoryStore
from tests.unit.aws_session_fake import LocalSession, git, make_remote

ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/fixer_agent-a1B2c3D4e5"
AWS = runtime.RuntimeSettings.from_environ(
    {"LOOPWRIGHT_ADAPTERS": "aws", "AWS_REGION": "us-east-1", "CODE_INTERPRETER_ID": "ci-1"}
)
LOCAL = runtime.RuntimeSettings.from_environ({"LOOPWRIGHT_ADAPTERS": "local"})


def config(agent: dict[str, Any] | None, repository: dict[str, Any] | None = None) -> LoopConfig:
    data: dict[str, Any] = {"goal": "write done.txt", "exit_conditions": [{"type": "LINTING_CLEAN"}]}
    if agent is not None:
        data["agent"] = agent
    if repository is not None:
        data["repository"] = repository
    return LoopConfig.model_validate(data)


def test_an_agent_the_iterate_lambda_waits_for_is_limited_to_its_15_minutes() -> None:
    # LOOPWRIGHT_BACKGROUND_COMMANDS=false: the iterate Lambda runs the agent and waits
    agent = {"kind": "command", "command": ["a"]}  # 1800 s by default
    runtime.check_agent_for_adapters(config(agent, {"url": "https://h/r.git"}), "aws")
    with pytest.raises(ConfigError, match=r"1800 s is above the 840 s .*iterate Lambda waits for it"):
        runtime.check_agent_for_adapters(config(agent, {"url": "https://h/r.git"}), "aws", background=False)


@pytest.mark.parametrize(
    ("agent", "repository", "adapters", "message"),
    [
        (
            {"kind": "python", "function": "m:f"},
            {"url": "https://h/r.git"},
            "aws",
            "agent.kind: 'python' agents run only locally",
        ),
        (
            {"kind": "agentcore_runtime", "agent_runtime_arn": ARN},
            None,
            "local",
            "agent.kind: 'agentcore_runtime' runs only with LOOPWRIGHT_ADAPTERS=aws",
        ),
        (
            {"kind": "command", "command": ["a"], "timeout_seconds": 30000},
            {"url": "https://h/r.git"},
            "aws",
            "agent.timeout_seconds: 30000 s is above the 28800 s an agent may work per iteration on "
            "AWS (the loop's Code Interpreter session lives at most 8 hours)",
        ),
        (
            {"kind": "command", "command": ["a"], "timeout_seconds": 60},
            None,
            "aws",
            "repository: required with LOOPWRIGHT_ADAPTERS=aws",
        ),
        (
            {"kind": "agentcore_runtime", "agent_runtime_arn": ARN},
            {"url": "https://h/r.git"},
            "aws",
            "repository.push: must be true",
        ),
        (None, None, "aws", "agent: a loop run by the state machine needs an agent"),
    ],
)
def test_an_agent_that_cannot_run_on_the_adapters_is_a_config_error(
    agent: dict[str, Any] | None, repository: dict[str, Any] | None, adapters: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        runtime.check_agent_for_adapters(config(agent, repository), adapters)


def test_the_repository_may_come_from_the_start_request() -> None:
    command = {"kind": "command", "command": ["a"], "timeout_seconds": 60}
    runtime.check_agent_for_adapters(config(command), "aws", repository="https://github.com/o/r.git")
    assert runtime.loop_repository(config(command), "git@github.com:o/r.git").url == "git@github.com:o/r.git"
    with pytest.raises(
        ConfigError, match=r"repository: Value error, must be a git URL .*\(got '/srv/repo'\)"
    ):
        runtime.loop_repository(config(command), "/srv/repo")


def test_with_loop_agent_refuses_before_building_anything() -> None:
    store = MemoryStore()
    store.create_loop(LoopState(loop_id="l1", config=config({"kind": "python", "function": "m:f"})))
    with pytest.raises(ConfigError, match="'python' agents run only locally"):
        runtime.with_loop_agent(CloudPorts(store=store), "l1", AWS)
    runtime_loop = config({"kind": "agentcore_runtime", "agent_runtime_arn": ARN})
    store.create_loop(LoopState(loop_id="l2", config=runtime_loop))
    with pytest.raises(ConfigError, match="runs only with LOOPWRIGHT_ADAPTERS=aws"):
        runtime.with_loop_agent(CloudPorts(store=store), "l2", LOCAL)


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalSession:
    """Every CodeInterpreterSandbox the runtime builds talks to one locally played session."""
    played = LocalSession(tmp_path / "session")

    class Played(CodeInterpreterSandbox):
        def __init__(self, region_name: str, **kwargs: Any) -> None:
            super().__init__(region_name, interpreter=_Interpreter(), command_client=played, **kwargs)

    class PlayedSessions(CodeInterpreterSessions):
        def __init__(self, region_name: str | None, **kwargs: Any) -> None:
            super().__init__(region_name, client=played, **kwargs)

    monkeypatch.setattr(code_interpreter_sandbox, "CodeInterpreterSandbox", Played)
    monkeypatch.setattr(code_interpreter_sandbox, "CodeInterpreterSessions", PlayedSessions)
    return played


class _Interpreter:
    def start(self, identifier: str, session_timeout_seconds: int) -> str:
        assert session_timeout_seconds == MAX_SESSION_TIMEOUT_SECONDS  # the clone lives 8 hours at most
        return "sess-1"


def test_a_command_agent_iterates_in_the_session_and_its_commit_is_pushed(
    tmp_path: Path, session: LocalSession
) -> None:
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    agent = {
        "kind": "command",
        "command": [
            sys.executable,
            "-c",
            "import pathlib,sys; pathlib.Path('done.txt').write_text(sys.argv[1])",
            "{loop_id}",
        ],
        "timeout_seconds": 60,
    }
    store = MemoryStore()
    store.create_loop(
        LoopState(loop_id="l1", config=config(agent, {"url": f"file://{remote}", "push": True}))
    )
    ports = runtime.with_loop_agent(CloudPorts(store=store, policy=CedarPolicyEngine()), "l1", AWS)
    assert isinstance(ports.agent, CodeInterpreterCommandAgent)
    assert isinstance(ports.workspace, SessionWorkspace) and not ports.workspace.fetch_agent_commits
    state = store.get_state("l1")
    clone = tmp_path / "session" / ".loopwright" / "worktrees" / "l1"
    assert (state.worktree, state.branch, state.sandbox_session_id) == (str(clone), "loopwright/l1", "sess-1")
    assert state.base_commit == git("rev-parse", "main", cwd=remote).strip()
    # The iterate step runs the agent in the clone and commits; the commit reaches the remote
    iterate_step(StepInput(loop_id="l1"), ports)
    after = store.get_state("l1")
    assert (clone / "done.txt").read_text() == "l1"
    assert after.iteration == 1 and after.head_commit == git("rev-parse", "loopwright/l1", cwd=remote).strip()
    # The next Lambda reuses the session and the clone: nothing is cloned again
    runtime.with_loop_agent(CloudPorts(store=store), "l1", AWS)
    assert sum(" clone -q " in line for line in session.commands()) == 1
    assert {c["sessionId"] for c in session.calls} == {"sess-1"}


def test_the_baseline_gets_the_loops_clone_before_any_iteration_made_it(
    tmp_path: Path, session: LocalSession
) -> None:
    # Given a new loop on AWS: no iteration has cloned its repository yet
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    agent = {"kind": "command", "command": ["true"], "timeout_seconds": 60}
    store = MemoryStore()
    store.create_loop(
        LoopState(loop_id="l1", config=config(agent, {"url": f"file://{remote}", "push": True}))
    )
    # When the Baseline state builds its ports (the Evaluate Lambda with needs_workspace)
    ports = runtime.with_loop_workspace(CloudPorts(store=store), "l1", AWS)
    # Then the conditions can run in the loop's clone, and no agent was built
    clone = tmp_path / "session" / ".loopwright" / "worktrees" / "l1"
    assert isinstance(ports.sandbox, CodeInterpreterSandbox) and ports.agent is None
    assert isinstance(ports.workspace, SessionWorkspace)
    assert store.get_state("l1").worktree == str(clone) and (clone / "README.md").read_text() == "hi\n"
    # And iteration 1 reuses that clone
    runtime.with_loop_agent(CloudPorts(store=store), "l1", AWS)
    assert sum(" clone -q " in line for line in session.commands()) == 1
    # Locally the worktree exists since the loop was created: only its git workspace is added
    base = CloudPorts(store=store)
    local = runtime.with_loop_workspace(base, "l1", LOCAL)
    assert local.workspace is not None and (local.store, local.sandbox) == (base.store, base.sandbox)
    assert sum(" clone -q " in line for line in session.commands()) == 1


def test_an_agentcore_runtime_agent_gets_the_loops_branch_and_a_fetching_workspace(
    tmp_path: Path, session: LocalSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    store = MemoryStore()
    loop = config(
        {"kind": "agentcore_runtime", "agent_runtime_arn": ARN}, {"url": f"file://{remote}", "push": True}
    )
    store.create_loop(LoopState(loop_id="l1", config=loop))
    ports = runtime.with_loop_agent(CloudPorts(store=store), "l1", AWS)
    assert isinstance(ports.agent, AgentCoreRuntimeAgent)
    assert isinstance(ports.workspace, SessionWorkspace) and ports.workspace.fetch_agent_commits
    seed = git("rev-parse", "main", cwd=remote).strip()
    repository = ports.agent.repository
    assert repository is not None
    assert (repository.branch, repository.base_commit, repository.head_commit) == (
        "loopwright/l1",
        seed,
        seed,
    )
    # The branch is on the remote before the agent runs, so the agent can check it out
    assert git("rev-parse", "loopwright/l1", cwd=remote).strip() == seed


def test_bubblewrap_isolation_is_refused_on_aws_instead_of_ignored() -> None:
    command = {"kind": "command", "command": ["a"], "timeout_seconds": 60}
    isolated = config(command, {"url": "https://h/r.git"}).model_copy(update={"isolation": "bubblewrap"})
    with pytest.raises(ConfigError, match="isolation: 'bubblewrap' is local"):
        runtime.check_agent_for_adapters(isolated, "aws")
