"""Before iteration 1: preflight (every program found, nothing written otherwise), the baseline
evaluation (iteration 0), a condition that cannot be evaluated pausing the loop, the slow flag."""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.command_agent import CommandAgent
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.engine import LoopFramework
from loopwright.models import (
    AgentRequest,
    CommandResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    NextAction,
    VerificationResult,
)
from loopwright.models.agent_config import CommandAgentConfig
from loopwright.ports import OutputCallback, Sandbox
from loopwright.preflight import PreflightError, missing_programs, preflight
from loopwright.steps.decide import decide
from loopwright.steps.evaluate import evaluation_problem
from loopwright.steps.prompt import render_prompt
from tests.fakes import FakeWorkspace, MemoryStore

EV = IterationEventType
Answer = Callable[[Sequence[str]], CommandResult]


class Checks(Sandbox):
    """Answers each condition command with ``answer(command)``; finds every program but ``missing``."""

    def __init__(self, answer: Answer, missing: Sequence[str] = ()) -> None:
        self.answer = answer
        self.missing = set(missing)
        self.calls: list[list[str]] = []

    def find_program(self, name: str, *, cwd: Path) -> str | None:
        return None if name in self.missing else f"/usr/bin/{name}"

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
        self.calls.append(list(command))
        return self.answer(command)


def _result(command: Sequence[str], code: int | None, **fields: object) -> CommandResult:
    return CommandResult(command=list(command), exit_code=code, **fields)  # type: ignore[arg-type]


def passing(command: Sequence[str]) -> CommandResult:
    return _result(command, 0, stdout="ok")


def failing(command: Sequence[str]) -> CommandResult:
    return _result(command, 1, stdout=f"{command[0]} failed")


def not_found(command: Sequence[str]) -> CommandResult:
    return _result(command, None, error=f"command not found: {command[0]} (not on PATH)")


def timed_out(command: Sequence[str]) -> CommandResult:
    return _result(command, None, timed_out=True, duration_seconds=600.0)


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "make the checks pass",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 5,
        "git_isolation": False,
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


def _framework(tmp_path: Path, sandbox: Sandbox, store: MemoryStore, **kwargs: object) -> LoopFramework:
    return LoopFramework(
        kwargs.pop("config", None) or _config(),  # type: ignore[arg-type]
        workspace=tmp_path,
        store=store,
        sandbox=sandbox,
        policy=CedarPolicyEngine(),
        workspace_adapter=FakeWorkspace(tmp_path),
        **kwargs,  # type: ignore[arg-type]
    )


class Agent:
    """A work function: records each request; the checks follow ``answers[iteration]``."""

    def __init__(self, sandbox: Checks, answers: dict[int, Answer]) -> None:
        self.sandbox = sandbox
        self.answers = answers
        self.requests: list[AgentRequest] = []

    def __call__(self, request: AgentRequest) -> None:
        self.requests.append(request)
        self.sandbox.answer = self.answers.get(request.iteration, self.sandbox.answer)


# ----------------------------------------------------------------------------- preflight
def test_a_missing_condition_tool_is_one_error_naming_it_and_the_fix(tmp_path: Path) -> None:
    config = _config(exit_conditions=[{"type": "LINTING_CLEAN"}])
    with pytest.raises(PreflightError) as raised:
        preflight(config, None, Checks(passing, missing=["ruff"]), cwd=tmp_path)
    assert str(raised.value) == (
        "command not found: ruff (exit condition 'linting_clean'): install it in the project's "
        "environment or change its command"
    )
    assert "\n" not in str(raised.value)


def test_a_missing_agent_is_named_and_the_loop_is_not_created(tmp_path: Path) -> None:
    # Given an agent whose executable is nowhere, and conditions whose tool is missing too
    store = MemoryStore()
    sandbox = Checks(passing, missing=["no-such-agent", "check-a"])
    agent = CommandAgent(CommandAgentConfig(command=["no-such-agent", "--go"]), sandbox)
    loop = _framework(tmp_path, sandbox, store, agent=agent)
    # When the loop runs
    with pytest.raises(PreflightError) as raised:
        loop.run()
    # Then both are named, in one line, and nothing was stored or run
    assert raised.value.problems == [
        "command not found: no-such-agent (the agent): install it in the project's environment or "
        "change the agent in the config",
        "command not found: check-a (exit condition 'a'): install it in the project's environment "
        "or change its command",
    ]
    assert store.list_loops() == [] and store.events == [] and sandbox.calls == []


def test_a_program_several_conditions_need_is_named_once_with_all_of_them(tmp_path: Path) -> None:
    config = _config(
        exit_conditions=[{"type": "ALL_TESTS_PASS"}, {"type": "BUILD_SUCCEEDS"}, {"type": "LINTING_CLEAN"}]
    )
    problems = missing_programs(config, None, Checks(passing, missing=["python"]), cwd=tmp_path)
    assert problems == [
        "command not found: python (exit condition 'all_tests_pass', exit condition 'build_succeeds'): "
        "install it in the project's environment or change their commands"
    ]


def test_a_relative_script_is_looked_up_in_the_workspace(tmp_path: Path) -> None:
    # Given an agent ./agent.sh and a real sandbox
    sandbox = SubprocessSandbox()
    config = _config(exit_conditions=[{"type": "CUSTOM", "command": [sys.executable, "-c", "pass"]}])
    agent = CommandAgent(CommandAgentConfig(command=["./agent.sh"]), sandbox)
    # When the script is missing, preflight says where it looked
    with pytest.raises(
        PreflightError,
        match=rf"command not found: \./agent\.sh \(the agent\): no "
        rf"executable file \./agent\.sh in {tmp_path}",
    ):
        preflight(config, agent, sandbox, cwd=tmp_path)
    # And once it is there and executable, every program is found
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert missing_programs(config, agent, sandbox, cwd=tmp_path) == []
    # (python, the default tests' interpreter, is the sandbox's)
    assert (
        missing_programs(_config(exit_conditions=[{"type": "ALL_TESTS_PASS"}]), None, sandbox, cwd=tmp_path)
        == []
    )


def test_a_resumed_loop_is_preflighted_before_its_agent_runs(tmp_path: Path) -> None:
    # Given a loop stopped after iteration 1
    store = MemoryStore()
    sandbox = Checks(failing)
    loop = _framework(tmp_path, sandbox, store)

    def stop_after_one(request: AgentRequest) -> None:
        loop.request_stop("enough")

    assert loop.run(work_function=stop_after_one).outcome is LoopOutcome.STOPPED
    version = store.get_state(loop.loop_id).version
    # When its condition's tool has gone by the time it is resumed
    sandbox.missing = {"check-a"}
    ran: list[int] = []
    again = _framework(tmp_path, sandbox, store, loop_id=loop.loop_id)
    with pytest.raises(PreflightError, match="command not found: check-a"):
        again.run(work_function=lambda request: ran.append(request.iteration))
    # Then the agent did not run and the stored loop is as it was
    assert ran == [] and store.get_state(loop.loop_id).version == version


# ----------------------------------------------------------------------------- baseline
def test_an_already_green_repository_completes_with_no_iteration_and_no_agent_call(tmp_path: Path) -> None:
    store = MemoryStore()
    sandbox = Checks(passing)
    calls: list[int] = []
    result = _framework(tmp_path, sandbox, store).run(work_function=lambda r: calls.append(r.iteration))
    assert (result.outcome, result.iterations, calls) == (LoopOutcome.CONDITIONS_MET, 0, [])
    events = store.list_events(result.loop_id)
    assert [e.type for e in events] == [
        EV.LOOP_STARTED,
        EV.CHECKS_PINNED,
        EV.EXIT_CONDITIONS_EVALUATED,
        EV.VERIFICATION_PASSED,
        EV.LOOP_COMPLETED,
    ]
    assert events[2].iteration == 0 and events[2].data["baseline"] is True
    assert events[2].message.startswith("baseline: 1/1 exit conditions met")
    assert events[-1].data["iterations"] == 0


def test_iteration_1_is_told_the_baselines_failures(tmp_path: Path) -> None:
    store = MemoryStore()
    sandbox = Checks(failing)
    agent = Agent(sandbox, {1: passing})
    result = _framework(tmp_path, sandbox, store).run(work_function=agent)
    assert (result.outcome, result.iterations) == (LoopOutcome.CONDITIONS_MET, 1)
    first = agent.requests[0]
    assert first.failing_conditions == ["a"] and any("check-a failed" in f for f in first.failures)
    prompt = render_prompt(first)
    assert "check-a failed" in prompt and "not evaluated" not in prompt
    evaluations = store.list_events(result.loop_id, types=[EV.EXIT_CONDITIONS_EVALUATED])
    assert [(e.iteration, e.data.get("baseline")) for e in evaluations] == [(0, True), (1, None)]


def test_a_resumed_loop_does_not_evaluate_its_baseline_again(tmp_path: Path) -> None:
    store = MemoryStore()
    sandbox = Checks(failing)
    loop = _framework(tmp_path, sandbox, store)

    def stop_at_two(request: AgentRequest) -> None:
        if request.iteration == 2:
            loop.request_stop("later")

    assert loop.run(work_function=stop_at_two).outcome is LoopOutcome.STOPPED
    again = _framework(tmp_path, sandbox, store, loop_id=loop.loop_id)
    agent = Agent(sandbox, {3: passing})
    result = again.run(work_function=agent)
    assert (result.outcome, result.iterations) == (LoopOutcome.CONDITIONS_MET, 3)
    evaluations = store.list_events(loop.loop_id, types=[EV.EXIT_CONDITIONS_EVALUATED])
    assert [e.iteration for e in evaluations if e.data.get("baseline")] == [0]
    assert [e.iteration for e in evaluations] == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- ERROR pauses
def test_a_condition_that_cannot_run_at_baseline_pauses_before_the_agent_is_paid(tmp_path: Path) -> None:
    # Given a condition whose tool cannot start (it vanished after preflight)
    store = MemoryStore()
    sandbox = Checks(not_found)
    agent = Agent(sandbox, {1: passing})
    loop = _framework(tmp_path, sandbox, store)
    # When the loop runs
    result = loop.run(work_function=agent)
    # Then it pauses for a human, naming the condition and its error, and the agent never ran
    assert (result.outcome, result.phase, result.iterations) == (None, LoopPhase.PAUSED, 0)
    assert agent.requests == []
    reason = loop.get_state().outcome_reason or ""
    assert reason.startswith("paused: exit condition 'a' is ERROR: could not run: command not found: check-a")
    assert "not a failure the agent can fix" in reason
    assert store.list_events(loop.loop_id, types=[EV.LOOP_PAUSED])[0].message == reason
    # And once the tool is back, resuming evaluates the baseline again before the agent runs
    sandbox.answer = failing
    resumed = _framework(tmp_path, sandbox, store, loop_id=loop.loop_id).run(work_function=agent)
    assert (resumed.outcome, resumed.iterations) == (LoopOutcome.CONDITIONS_MET, 1)
    assert agent.requests[0].failing_conditions == ["a"]
    baselines = [e for e in store.list_events(loop.loop_id) if e.data.get("baseline")]
    assert [e.data["statuses"]["a"] for e in baselines] == ["ERROR", "NOT_MET"]


def test_a_condition_that_errors_after_an_iteration_pauses_and_is_checked_again_on_resume(
    tmp_path: Path,
) -> None:
    # Given a loop whose condition fails at baseline, then cannot run after iteration 1
    store = MemoryStore()
    sandbox = Checks(failing)
    agent = Agent(sandbox, {1: not_found})
    loop = _framework(tmp_path, sandbox, store)
    result = loop.run(work_function=agent)
    # Then it pauses after iteration 1 instead of handing the error to the agent
    assert (result.phase, result.iterations, len(agent.requests)) == (LoopPhase.PAUSED, 1, 1)
    assert "exit condition 'a' is ERROR" in (loop.get_state().outcome_reason or "")
    # When a human fixes the tool (the agent's fix was right) and resumes
    sandbox.answer = passing
    resumed = _framework(tmp_path, sandbox, store, loop_id=loop.loop_id).run(work_function=agent)
    # Then the conditions are evaluated again first, and the loop completes without the agent
    assert (resumed.outcome, resumed.iterations, len(agent.requests)) == (LoopOutcome.CONDITIONS_MET, 1, 1)


def test_a_timeout_pauses_at_baseline_but_is_the_agents_failure_after_an_iteration(tmp_path: Path) -> None:
    store = MemoryStore()
    sandbox = Checks(timed_out)
    at_baseline = _framework(tmp_path, sandbox, store).run(work_function=lambda r: None)
    assert (at_baseline.phase, at_baseline.iterations) == (LoopPhase.PAUSED, 0)
    # After an iteration (the baseline finished in time) the agent is told, and tries again
    sandbox = Checks(failing)
    agent = Agent(sandbox, {1: timed_out, 2: passing})
    result = _framework(tmp_path, sandbox, MemoryStore()).run(work_function=agent)
    assert (result.outcome, result.iterations) == (LoopOutcome.CONDITIONS_MET, 2)
    assert agent.requests[1].failing_conditions == ["a"]
    assert any("TIMEOUT" in f for f in agent.requests[1].failures)


def test_only_required_conditions_pause_and_a_humans_pause_comes_first() -> None:
    def status(name: str, value: ExitConditionStatusValue, required: bool = True) -> ExitConditionStatus:
        return ExitConditionStatus(
            name=name, type=ExitConditionType.CUSTOM, status=value, required=required, summary="boom"
        )

    err, timeout = ExitConditionStatusValue.ERROR, ExitConditionStatusValue.TIMEOUT
    assert evaluation_problem([status("opt", err, required=False)], baseline=True) is None
    assert evaluation_problem([status("t", timeout)], baseline=False) is None
    assert evaluation_problem([status("t", timeout)], baseline=True) is not None
    problem = evaluation_problem([status("x", err), status("y", err)], baseline=False)
    assert problem is not None and "'x' is ERROR: boom; exit condition 'y' is ERROR: boom" in problem
    failed = VerificationResult(passed=False, message="1 failing")
    human = decide(verification=failed, pause_reason="by ops", condition_problem=problem)
    assert (human.action, human.reason) == (NextAction.PAUSE, "paused: by ops")
    held = decide(verification=VerificationResult(passed=True, message="ok"), condition_problem=problem)
    assert held.action is NextAction.COMPLETE


# ----------------------------------------------------------------------------- slow flag
def test_a_condition_slower_than_30_s_is_flagged(tmp_path: Path) -> None:
    store = MemoryStore()
    sandbox = Checks(lambda command: _result(command, 0, duration_seconds=45.04))
    result = _framework(tmp_path, sandbox, store).run(work_function=lambda r: None)
    evaluation = store.list_events(result.loop_id, types=[EV.EXIT_CONDITIONS_EVALUATED])[0]
    assert evaluation.data["slow"] == {"a": 45.0}
    assert "(slow, over 30 s: a 45 s)" in evaluation.message
    quick = Checks(lambda command: _result(command, 0, duration_seconds=29.9))
    store = MemoryStore()
    result = _framework(tmp_path, quick, store).run(work_function=lambda r: None)
    assert "slow" not in store.list_events(result.loop_id, types=[EV.EXIT_CONDITIONS_EVALUATED])[0].data


def test_the_default_condition_timeout_fits_a_real_suite() -> None:
    assert _config(exit_conditions=[{"type": "ALL_TESTS_PASS"}]).exit_conditions[0].timeout_seconds == 600.0
