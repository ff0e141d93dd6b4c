"""gate:all (seed 003 "Gate Execution"): the plan's gates run in order and each is parsed into a
:class:`~loopwright.models.plans.GateCheck`.

The checks are, in order: ``gate:tasks`` (every task COMPLETED; the seed's ``gate:task``),
``gate:integrate`` when the tasks' results could not be merged, then one check per configured
gate. Each gate is an exit condition (:class:`~loopwright.models.plans.GateConfig`) evaluated
once through the :class:`~loopwright.ports.Sandbox` port with its own timeout, exactly like a
loop's exit condition (same default commands and parsers). Every gate runs, even after one fails,
so the result records all of them; nothing is retried.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loopwright.conditions.runner import evaluate_condition
from loopwright.models import ExitConditionStatus, ExitConditionStatusValue
from loopwright.models.plans import (
    INTEGRATION_CHECK,
    MAX_GATE_TAIL_CHARS,
    TASKS_CHECK,
    GateCheck,
    GateCheckStatus,
    GateConfig,
    Plan,
    TaskState,
)
from loopwright.ports import Sandbox

_STATUS = {
    ExitConditionStatusValue.MET: GateCheckStatus.PASSED,
    ExitConditionStatusValue.NOT_MET: GateCheckStatus.FAILED,
    ExitConditionStatusValue.ERROR: GateCheckStatus.ERROR,
    ExitConditionStatusValue.TIMEOUT: GateCheckStatus.TIMEOUT,
    ExitConditionStatusValue.PENDING: GateCheckStatus.ERROR,
}


def output_digest(stdout: str, stderr: str) -> str:
    """SHA-256 hex digest of ``stdout``, a NUL byte and ``stderr`` (UTF-8): the gate output's
    evidence (the output itself is bounded and only its tail is kept)."""
    return hashlib.sha256(stdout.encode() + b"\0" + stderr.encode()).hexdigest()


def output_tail(stdout: str, stderr: str, limit: int = MAX_GATE_TAIL_CHARS) -> str:
    """The last ``limit`` characters of stdout followed by stderr."""
    joined = stdout + ("\n" if stdout and stderr and not stdout.endswith("\n") else "") + stderr
    return joined[-limit:]


def gate_check(name: str, status: ExitConditionStatus) -> GateCheck:
    """A gate's evaluated exit condition as a :class:`GateCheck` (exit code, duration in seconds,
    output digest and tail; the parsed summary and its most telling failure line as message)."""
    message = status.summary
    if status.failures and status.status is not ExitConditionStatusValue.MET:
        # exit-code gates keep their output's last lines (the end holds the summary); parsed
        # tools list their failures in order.
        if status.details.get("parser") == "exit_code":
            detail = f"last output: {status.failures[-1]}"
        else:
            detail = f"first failure: {status.failures[0]}"
        message = f"{message}; {detail}" if message else detail
    return GateCheck(
        name=name,
        status=_STATUS[status.status],
        passed=status.status is ExitConditionStatusValue.MET,
        message=message,
        command=status.command,
        exit_code=status.exit_code,
        duration_seconds=status.duration_seconds,
        output_sha256=output_digest(status.stdout, status.stderr),
        output_tail=output_tail(status.stdout, status.stderr),
        details={**status.details, "failures": status.failures[:20]},
    )


def tasks_check(plan: Plan) -> GateCheck:
    """``gate:tasks``: passed when every task COMPLETED; the message names the others."""
    others = [f"{t.task_id} {t.status.value}" for t in plan.tasks if t.status is not TaskState.COMPLETED]
    done = len(plan.tasks) - len(others)
    return GateCheck(
        name=TASKS_CHECK,
        status=GateCheckStatus.FAILED if others else GateCheckStatus.PASSED,
        passed=not others,
        message=f"{done}/{len(plan.tasks)} tasks completed"
        + (f"; not completed: {', '.join(others)}" if others else ""),
        details={"completed": done, "total": len(plan.tasks)},
    )


def integration_check(message: str, paths: Sequence[str] = ()) -> GateCheck:
    """``gate:integrate`` failed: the tasks' results could not be merged (``paths`` conflict)."""
    return GateCheck(
        name=INTEGRATION_CHECK,
        status=GateCheckStatus.FAILED,
        passed=False,
        message=message,
        details={"conflicts": list(paths)},
    )


def interrupted_check() -> GateCheck:
    """``gate:all`` ERROR: verification was interrupted (Ctrl-C) before every gate ran."""
    return GateCheck(
        name="gate:all",
        status=GateCheckStatus.ERROR,
        passed=False,
        message="interrupted before every gate ran; the plan is FAILED (no automatic retry)",
    )


#: Name of the check recorded when the verification itself failed (not a gate).
VERIFY_CHECK = "plan_verify"


def verify_error_check(message: str, **details: Any) -> GateCheck:
    """``plan_verify`` ERROR: the verification itself failed (its runner, not a gate); the plan
    ends FAILED (no automatic retry). ``details``: evidence (None values dropped)."""
    return GateCheck(
        name=VERIFY_CHECK,
        status=GateCheckStatus.ERROR,
        passed=False,
        message=message,
        details={k: v for k, v in details.items() if v is not None},
    )


def skipped_check(gate: GateConfig, reason: str) -> GateCheck:
    """A gate that was not run, with why."""
    return GateCheck(name=gate.key, status=GateCheckStatus.SKIPPED, passed=False, message=reason)


def run_gates(gates: Sequence[GateConfig], sandbox: Sandbox, cwd: Path) -> list[GateCheck]:
    """Run ``gates`` in order in ``cwd`` through ``sandbox``, each with its ``timeout_seconds``
    (default 600 s, :data:`~loopwright.models.config.DEFAULT_CONDITION_TIMEOUT_SECONDS`) and
    ``max_output_bytes``; one :class:`GateCheck` each, in the same order. A gate that cannot run
    or times out is an ERROR / TIMEOUT check, never an exception (a CUSTOM gate without a
    command cannot be configured)."""
    return [gate_check(gate.key, evaluate_condition(gate, sandbox, cwd, iteration=0)) for gate in gates]
