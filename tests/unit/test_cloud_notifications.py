"""Notifications from the state machine's steps (issue 12.2), chained as the ASL chains them,
with a fake notifier: a question, a policy warning, the loop's end, and a notifier that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.adapters.aws.sns_notifier import SnsNotifier
from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.notifier import NoopNotifier
from loopwright.adapters.local.python_agent import PythonAgent
from loopwright.cloud import runtime
from loopwright.cloud.steps import CloudPorts, record_failure_step, start_step
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import (
    AgentRequest,
    AgentResult,
    LoopConfig,
    LoopOutcome,
    LoopPhase,
    LoopState,
    NextAction,
    StepInput,
)
from loopwright.models.notifications import Notification, NotificationKind
from loopwright.notifications import loop_page_url
from loopwright.ports import Notifier
from tests.fakes import FakeWorkspace, MemoryStore
from tests.unit.test_cloud_runtime import AWS_ENV
from tests.unit.test_cloud_steps import Scenario, run_state_machine

DASHBOARD = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/"


class FakeNotifier(Notifier):
    """Keeps what it was asked to send; with ``fail``, raises as the SNS adapter does."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[Notification] = []
        self.fail = fail

    def notify(self, notification: Notification) -> None:
        if self.fail:
            raise LoopFrameworkError("publishing to SNS failed (AccessDenied: no); the caller's IAM role")
        self.sent.append(notification)


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "make the check pass",
        "project": "shop",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 5,
        "git_isolation": False,
        "max_stuck_iterations": None,  # scripted agents that change nothing: not about stuck loops
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


def _ports(
    tmp_path: Path, scenario: Scenario, store: MemoryStore, notifier: Notifier, **agent: object
) -> CloudPorts:
    def work(request: AgentRequest) -> AgentResult:
        scenario.work(request)
        return AgentResult(tokens_used=10, **agent)  # type: ignore[arg-type]

    return CloudPorts(
        store=store,
        checkpoints=store,
        policy=CedarPolicyEngine(),
        sandbox=scenario.sandbox(),
        agent=PythonAgent(work),
        workspace=FakeWorkspace(tmp_path),
        state_dir=tmp_path / "state",
        notifier=notifier,
        dashboard_url=DASHBOARD,
    )


def _create(store: MemoryStore, loop_id: str, tmp_path: Path, **config: object) -> None:
    store.create_loop(
        LoopState(loop_id=loop_id, project="shop", config=_config(**config), worktree=str(tmp_path))
    )


def test_a_loop_that_awaits_a_human_notifies_the_question_and_the_approve_url(tmp_path: Path) -> None:
    # Given an agent that asks a question in its first iteration
    store, notifier = MemoryStore(), FakeNotifier()
    _create(store, "l-ask", tmp_path)
    ports = _ports(tmp_path, Scenario(passes_at=99), store, notifier, needs_human="may I drop the table?")

    # When the state machine runs until the loop waits
    decisions = run_state_machine(ports, "l-ask")

    # Then one AWAITING_RESPONSE notification carries the question and the loop's dashboard page
    assert decisions[-1].action is NextAction.AWAIT_HUMAN
    assert store.get_state("l-ask").phase is LoopPhase.AWAITING_RESPONSE
    [sent] = notifier.sent
    assert sent.kind is NotificationKind.AWAITING_RESPONSE
    assert sent.question is not None and "may I drop the table?" in sent.question
    assert sent.approve_url == loop_page_url(DASHBOARD, "l-ask") == f"{DASHBOARD}#/loops/l-ask"
    assert sent.approve_url in sent.message
    assert sent.attributes() == {"project": "shop", "loop_id": "l-ask", "kind": "AWAITING_RESPONSE"}


def test_without_a_dashboard_the_question_says_how_to_approve_from_the_cli(tmp_path: Path) -> None:
    store, notifier = MemoryStore(), FakeNotifier()
    _create(store, "l-cli", tmp_path)
    ports = _ports(tmp_path, Scenario(passes_at=99), store, notifier, needs_human="which port?")
    ports.dashboard_url = None

    run_state_machine(ports, "l-cli")

    [sent] = notifier.sent
    assert sent.approve_url is None and "loopwright approve l-cli" in sent.message


def test_a_completed_loop_notifies_its_outcome_after_the_state_is_saved(tmp_path: Path) -> None:
    store, notifier = MemoryStore(), FakeNotifier()
    _create(store, "l-done", tmp_path)

    run_state_machine(_ports(tmp_path, Scenario(passes_at=2), store, notifier), "l-done")

    [sent] = notifier.sent
    assert sent.kind is NotificationKind.LOOP_COMPLETED
    assert sent.outcome == LoopOutcome.CONDITIONS_MET.value
    assert store.get_state("l-done").outcome is LoopOutcome.CONDITIONS_MET  # saved before it was sent
    assert sent.notification_id == "l-done:LOOP_COMPLETED"


def test_policy_warnings_notify_and_the_iteration_limit_ends_the_loop(tmp_path: Path) -> None:
    # Given a loop whose check never passes: Cedar warns at 80% of 5 iterations, then denies
    store, notifier = MemoryStore(), FakeNotifier()
    _create(store, "l-warn", tmp_path)

    run_state_machine(_ports(tmp_path, Scenario(passes_at=99), store, notifier), "l-warn")

    kinds = [n.kind for n in notifier.sent]
    assert kinds == [
        NotificationKind.POLICY_WARNING,
        NotificationKind.POLICY_WARNING,
        NotificationKind.LOOP_COMPLETED,
    ]
    warnings = [n for n in notifier.sent if n.kind is NotificationKind.POLICY_WARNING]
    assert [w.iteration for w in warnings] == [4, 5]
    assert all(w.policy_id for w in warnings)
    assert notifier.sent[-1].outcome == LoopOutcome.ITERATION_LIMIT.value


def test_a_failed_loop_notifies_loop_failed(tmp_path: Path) -> None:
    store, notifier = MemoryStore(), FakeNotifier()
    _create(store, "l-fail", tmp_path)
    ports = _ports(tmp_path, Scenario(passes_at=99), store, notifier)
    start_step(StepInput(loop_id="l-fail"), ports)

    record_failure_step(StepInput(loop_id="l-fail"), {"Error": "States.Timeout", "Cause": "slow"}, ports)

    [sent] = notifier.sent
    assert sent.kind is NotificationKind.LOOP_FAILED and sent.outcome == "FAILED"
    assert "States.Timeout" in sent.message


def test_a_notifier_that_fails_never_fails_the_step(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, "l-quiet", tmp_path)

    decisions = run_state_machine(
        _ports(tmp_path, Scenario(passes_at=2), store, FakeNotifier(fail=True)), "l-quiet"
    )

    assert decisions[-1].outcome is LoopOutcome.CONDITIONS_MET
    assert store.get_state("l-quiet").outcome is LoopOutcome.CONDITIONS_MET


def test_steps_without_a_notifier_send_nothing(tmp_path: Path) -> None:
    store = MemoryStore()
    _create(store, "l-none", tmp_path)
    ports = _ports(tmp_path, Scenario(passes_at=2), store, FakeNotifier())
    ports.notifier = None

    assert run_state_machine(ports, "l-none")[-1].outcome is LoopOutcome.CONDITIONS_MET


def test_the_aws_runtime_publishes_to_sns_only_when_the_topic_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    assert runtime._aws_ports(runtime.RuntimeSettings.from_environ()).notifier is None

    topic = "arn:aws:sns:eu-west-1:123456789012:notifications"
    monkeypatch.setenv("NOTIFICATIONS_TOPIC_ARN", topic)
    monkeypatch.setenv("DASHBOARD_URL", DASHBOARD)
    built = runtime._aws_ports(runtime.RuntimeSettings.from_environ())
    assert isinstance(built.notifier, SnsNotifier) and built.notifier.topic_arn == topic
    assert built.dashboard_url == DASHBOARD


def test_the_local_runtime_sends_nothing(tmp_path: Path) -> None:
    settings = runtime.RuntimeSettings.from_environ(
        {"LOOPWRIGHT_ADAPTERS": "local", "LOOPWRIGHT_STATE_DIR": str(tmp_path)}
    )
    assert isinstance(runtime._local_ports(settings).notifier, NoopNotifier)
