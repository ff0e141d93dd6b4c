"""Enumerations of loopwright's domain (names from seed 001, T007-T011)."""

from __future__ import annotations

from enum import StrEnum


class ExitConditionType(StrEnum):
    """Kinds of objective exit condition. Each maps to a default tool (see ``conditions.defaults``)."""

    ALL_TESTS_PASS = "ALL_TESTS_PASS"
    LINTING_CLEAN = "LINTING_CLEAN"
    BUILD_SUCCEEDS = "BUILD_SUCCEEDS"
    SECURITY_SCAN_CLEAN = "SECURITY_SCAN_CLEAN"
    CUSTOM = "CUSTOM"


class ExitConditionStatusValue(StrEnum):
    """Result of evaluating one exit condition."""

    PENDING = "PENDING"  # not evaluated yet
    MET = "MET"  # the tool ran and reported success
    NOT_MET = "NOT_MET"  # the tool ran and reported failures
    ERROR = "ERROR"  # the tool could not run, or its output could not be understood
    TIMEOUT = "TIMEOUT"  # the tool exceeded its timeout and its process tree was killed


class LoopPhase(StrEnum):
    """Where a loop is in its life cycle; the step names of the state machine."""

    INITIALIZING = "INITIALIZING"
    AUTHORIZING = "AUTHORIZING"
    ITERATING = "ITERATING"
    CHECKPOINTING = "CHECKPOINTING"
    EVALUATING = "EVALUATING"
    VERIFYING = "VERIFYING"
    DECIDING = "DECIDING"
    AWAITING_RESPONSE = "AWAITING_RESPONSE"  # waiting for a human (seed 003 badge)
    PAUSED = "PAUSED"  # paused by a human, or until a usage limit resets (resume_at); resumable
    INTERRUPTED = "INTERRUPTED"  # the process died or was stopped mid-run; resumable
    COMPLETED = "COMPLETED"  # ended with an outcome


class LoopOutcome(StrEnum):
    """How a loop ended."""

    CONDITIONS_MET = "CONDITIONS_MET"  # every required exit condition held and gate:all passed
    ITERATION_LIMIT = "ITERATION_LIMIT"  # Cedar denied the next iteration: iteration limit
    TOKEN_BUDGET_EXHAUSTED = "TOKEN_BUDGET_EXHAUSTED"  # Cedar denied: token budget spent
    COST_BUDGET_EXHAUSTED = "COST_BUDGET_EXHAUSTED"  # Cedar denied: cost budget (US dollars) spent
    TIME_LIMIT = "TIME_LIMIT"  # Cedar denied: wall-clock limit reached
    POLICY_DENIED = "POLICY_DENIED"  # Cedar denied for another policy
    STOPPED = "STOPPED"  # a human asked the loop to stop
    FAILED = "FAILED"  # an unrecoverable error ended the loop
    AGENT_FAILING = "AGENT_FAILING"  # Cedar denied: the agent failed max_consecutive_failures times in a row
    SESSION_LIMIT = "SESSION_LIMIT"  # Cedar denied: a new agent session would pass max_sessions
    STUCK = "STUCK"  # Cedar denied: no progress (stuck.cedar; its policies pause the loop instead)


class IterationEventType(StrEnum):
    """Types of the events a loop records (stored, and added to the OpenTelemetry span)."""

    LOOP_STARTED = "LOOP_STARTED"
    LOOP_RESUMED = "LOOP_RESUMED"
    WORKSPACE_SNAPSHOT = "WORKSPACE_SNAPSHOT"  # the loop's branch started from the user's working tree
    POLICY_EVALUATED = "POLICY_EVALUATED"
    POLICY_WARNING = "POLICY_WARNING"  # a limit is at or above its warning threshold (SC-008)
    POLICY_DENIED = "POLICY_DENIED"
    ITERATION_STARTED = "ITERATION_STARTED"
    AGENT_COMPLETED = "AGENT_COMPLETED"
    AGENT_FAILED = "AGENT_FAILED"  # the agent failed for a cause none of the events below name
    AGENT_USAGE_LIMITED = "AGENT_USAGE_LIMITED"  # usage limit: the loop pauses until it resets
    AGENT_RATE_LIMITED = "AGENT_RATE_LIMITED"  # rate limit: retried after a backoff, not counted
    AGENT_PROVIDER_OUTAGE = "AGENT_PROVIDER_OUTAGE"  # the provider is down: retried, not counted
    AGENT_AUTH_FAILED = "AGENT_AUTH_FAILED"  # authentication error: the loop pauses for a human
    AGENT_CRASHED = "AGENT_CRASHED"  # the agent exited with an error
    AGENT_TIMED_OUT = "AGENT_TIMED_OUT"  # the agent ran past its timeout and was ended
    AGENT_IDLE = "AGENT_IDLE"  # no output and no file change for idle_timeout_seconds: ended
    AGENT_ENDED_AT_LIMIT = "AGENT_ENDED_AT_LIMIT"  # a hard limit or stop --now ended the agent mid-run
    COST_UNKNOWN = "COST_UNKNOWN"  # the agent's model has no price: its tokens add no cost (once per model)
    CHECKPOINT_SAVED = "CHECKPOINT_SAVED"
    CHECKPOINT_RECOVERED = "CHECKPOINT_RECOVERED"
    CHECKPOINT_CORRUPT = "CHECKPOINT_CORRUPT"
    EXIT_CONDITIONS_EVALUATED = "EXIT_CONDITIONS_EVALUATED"
    VERIFICATION_PASSED = "VERIFICATION_PASSED"
    VERIFICATION_FAILED = "VERIFICATION_FAILED"
    ITERATION_COMPLETED = "ITERATION_COMPLETED"
    HUMAN_INPUT_REQUESTED = "HUMAN_INPUT_REQUESTED"
    CONTROL_APPLIED = "CONTROL_APPLIED"  # a human's control took effect (limit raised, approved...)
    LOOP_PAUSED = "LOOP_PAUSED"  # paused by a human, or until a usage limit resets
    STOP_REQUESTED = "STOP_REQUESTED"
    PROCESSES_ENDED = "PROCESSES_ENDED"  # processes a previous run left behind were ended on resume
    WORK_SALVAGED = "WORK_SALVAGED"  # an interrupted iteration's uncommitted changes, kept on a ref
    COMMITS_SET_ASIDE = "COMMITS_SET_ASIDE"  # resume moved the branch back past commits (kept on a ref)
    POLICY_SET_CHANGED = "POLICY_SET_CHANGED"  # an operator accepted a changed Cedar policy set
    SESSION_REPLACED = "SESSION_REPLACED"  # the loop's sandbox session had ended: a new one, clone restored
    SESSION_STOPPED = "SESSION_STOPPED"  # the loop's sandbox session was stopped (the loop ended or waits)
    CHECKS_PINNED = "CHECKS_PINNED"  # the files the exit conditions depend on, pinned at the start
    PINNED_CHANGE_ALLOWED = "PINNED_CHANGE_ALLOWED"  # an iteration changed pinned files; Cedar allowed it
    PINNED_CHANGE_REVERTED = "PINNED_CHANGE_REVERTED"  # ... Cedar did not: reverted (kept on a ref)
    PINNED_CHANGE_ACCEPTED = "PINNED_CHANGE_ACCEPTED"  # a human accepted a reverted change: the pin moved
    PINNED_CHANGE_REJECTED = "PINNED_CHANGE_REJECTED"  # a human left a reverted change reverted
    FEATURE_COMPLETED = "FEATURE_COMPLETED"  # a feature of the loop's feature list is done (issue 10.2)
    SESSION_HANDOFF = "SESSION_HANDOFF"  # the agent's session was handed off to a fresh one (issue 10.3)
    ITERATION_REVERTED = "ITERATION_REVERTED"  # on_regression "revert": worse than the best, reverted
    LOOP_COMPLETED = "LOOP_COMPLETED"
    EVIDENCE_RECORDED = "EVIDENCE_RECORDED"  # the completed loop's signed evidence bundle was written
    LOOP_ROLLED_BACK = "LOOP_ROLLED_BACK"  # a human reset the loop to a checkpoint (loopwright.travel)
    LOOP_FORKED = "LOOP_FORKED"  # a new loop started from a checkpoint of this one (both record it)
    ERROR = "ERROR"


class NextAction(StrEnum):
    """What the decide step tells the engine to do next."""

    CONTINUE = "CONTINUE"
    COMPLETE = "COMPLETE"
    STOP = "STOP"
    AWAIT_HUMAN = "AWAIT_HUMAN"
    PAUSE = "PAUSE"  # end this run without an outcome; resumed by a human or at LoopState.resume_at


class ControlAction(StrEnum):
    """What a human (or a schedule) asks of a loop from outside (issue 4; seed 000 US5).

    Each maps to a Cedar action in ``policies/``: see :data:`CONTROL_CEDAR_ACTIONS`.
    """

    PAUSE = "PAUSE"  # stop after the current step without an outcome; resumable
    RESUME = "RESUME"  # continue a PAUSED, INTERRUPTED or STOPPED loop
    STOP = "STOP"  # stop after the current step with outcome STOPPED
    APPROVE = "APPROVE"  # answer an agent's question (AWAITING_RESPONSE) and continue
    RAISE_LIMIT = "RAISE_LIMIT"  # change a limit: iterations, tokens, cost (US dollars) or duration
    ROLLBACK = "ROLLBACK"  # reset an idle loop to one of its checkpoints (state and branch head)
    FORK = "FORK"  # start a new loop on a new branch from one of the loop's checkpoints


class AgentKind(StrEnum):
    """How the agent of a loop is run."""

    COMMAND = "command"  # any command line, run in the worktree each iteration
    PYTHON = "python"  # a Python callable named ``module:function`` (seed work_function)
    AGENTCORE_RUNTIME = "agentcore_runtime"  # an agent in Amazon Bedrock AgentCore Runtime (AWS only)
    CLAUDE_CODE = "claude-code"  # Anthropic's Claude Code CLI (`claude -p`)
    CODEX = "codex"  # OpenAI's Codex CLI (`codex exec`)
    GEMINI = "gemini"  # Google's Gemini CLI (`gemini -p`)
    AIDER = "aider"  # aider (`aider --message`)


class HardLimit(StrEnum):
    """What ended an agent (or a condition) mid-run, not at a step boundary (issue 10 point 8)."""

    DEADLINE = "DEADLINE"  # the loop's max_duration_seconds arrived while the agent ran
    TOKEN_BUDGET = "TOKEN_BUDGET"  # the agent's streamed tokens crossed what is left of token_budget
    COST_BUDGET = "COST_BUDGET"  # the agent's streamed cost crossed what is left of cost_budget_usd
    STOP_NOW = "STOP_NOW"  # a human's `loopwright stop --now`


class AgentFailureCause(StrEnum):
    """Why an agent iteration did no work (issue 15.3); each has its event type and outcome.

    See :data:`FAILURE_CAUSE_EVENTS` and :func:`loopwright.workflow.run_iteration`.
    """

    USAGE_LIMIT = "USAGE_LIMIT"  # the provider's usage limit: pause until it resets (resume_at)
    RATE_LIMIT = "RATE_LIMIT"  # a rate limit (HTTP 429): retry after a backoff, not an iteration
    PROVIDER_OUTAGE = "PROVIDER_OUTAGE"  # the provider is down or overloaded (5xx): same as RATE_LIMIT
    AUTHENTICATION = "AUTHENTICATION"  # bad or missing credentials: pause for a human
    CRASH = "CRASH"  # the agent exited with an error or could not start
    TIMEOUT = "TIMEOUT"  # the agent ran past its timeout_seconds and was ended
    IDLE = "IDLE"  # no output and no file change for idle_timeout_seconds: the agent was ended


#: The causes retried after a backoff without counting an iteration against max_iterations.
TRANSIENT_FAILURE_CAUSES = frozenset({AgentFailureCause.RATE_LIMIT, AgentFailureCause.PROVIDER_OUTAGE})

#: The event each failure cause is recorded as.
FAILURE_CAUSE_EVENTS = {
    AgentFailureCause.USAGE_LIMIT: IterationEventType.AGENT_USAGE_LIMITED,
    AgentFailureCause.RATE_LIMIT: IterationEventType.AGENT_RATE_LIMITED,
    AgentFailureCause.PROVIDER_OUTAGE: IterationEventType.AGENT_PROVIDER_OUTAGE,
    AgentFailureCause.AUTHENTICATION: IterationEventType.AGENT_AUTH_FAILED,
    AgentFailureCause.CRASH: IterationEventType.AGENT_CRASHED,
    AgentFailureCause.TIMEOUT: IterationEventType.AGENT_TIMED_OUT,
    AgentFailureCause.IDLE: IterationEventType.AGENT_IDLE,
}
