"""Loops run through the synthesized state machine on moto (``loopwright run --engine
stepfunctions``): :func:`create_loop` creates a loop as ``start_loop`` does, :func:`execute_loop`
starts ``<loop_id>-g0`` on :class:`~loopwright.engine.stepfunctions.LocalStepFunctions` and
follows the continue-as-new executions (``-g1``, ...) to the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud.start import execution_name
from loopwright.cloud.steps import CloudPorts, start_step
from loopwright.engine.framework import LoopFramework
from loopwright.engine.stepfunctions import ExecutionSummary, Handler, LocalStepFunctions
from loopwright.engine.stepfunctions_template import synthesize_template
from loopwright.models import LoopConfig, LoopResult, StepInput, StepOutput


@dataclass
class StepFunctionsRun:
    """A loop run through the state machine: its result and every execution, in order."""

    result: LoopResult
    executions: list[ExecutionSummary] = field(default_factory=list)

    @property
    def largest_execution_events(self) -> int:
        """The largest execution's history event count."""
        return max((e.events for e in self.executions), default=0)


def create_loop(config: LoopConfig, workspace: Path, loop_id: str | None = None) -> str:
    """Create the loop (worktree, state) and record LOOP_STARTED as ``start_loop`` does; its id.
    The state lives under ``<workspace>/.loopwright``."""
    framework = LoopFramework(config, workspace=workspace, loop_id=loop_id)
    state = framework.initialize_sync()
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    start_step(StepInput(loop_id=state.loop_id), CloudPorts(store=store))
    return state.loop_id


def execute_loop(
    config: LoopConfig,
    workspace: Path,
    loop_id: str | None = None,
    iterations_per_execution: int | None = None,
    *,
    template: Mapping[str, Any] | None = None,
    handlers: Mapping[str, Handler] | None = None,
    timeout_seconds: float = 600.0,
    idempotency: Literal["dynamodb", "memory"] = "dynamodb",
    state_machine: str | None = None,
) -> StepFunctionsRun:
    """Create the loop, run ``<loop_id>-g0`` and every continue-as-new execution after it until
    the last one ends; the stored loop's :class:`LoopResult` and each execution's summary.

    ``template`` defaults to :func:`synthesize_template` (cached) of the ``state_machine``
    variant (:func:`state_machine_variant`: the argument, else ``LOOPWRIGHT_STATE_MACHINE``, else
    ``steps``). ``handlers`` replace real handlers by function folder name; ``idempotency`` as
    :class:`LocalStepFunctions`. Raises :class:`TimeoutError` when an execution runs longer
    than ``timeout_seconds``.
    """
    workspace = Path(workspace).resolve()
    state_dir = workspace / ".loopwright"
    with LocalStepFunctions(
        template or synthesize_template(state_machine=state_machine),
        state_dir,
        handlers=handlers,
        idempotency=idempotency,
    ) as local:
        loop = create_loop(config, workspace, loop_id)
        step_input = StepInput(loop_id=loop, baseline=True)  # a new loop: its baseline is due
        if iterations_per_execution is not None:
            step_input.iterations_per_execution = iterations_per_execution
        name = execution_name(loop, 0)
        local.start(name, step_input)
        executions: list[ExecutionSummary] = []
        while True:
            summary = local.wait(name, timeout_seconds)
            executions.append(summary)
            output = StepOutput.model_validate(summary.output) if summary.output else None
            if summary.status != "SUCCEEDED" or output is None or not output.handover:
                break
            name = execution_name(loop, output.generation)
        state = SqliteStore(state_dir / "loopwright.db").get_state(loop)
    return StepFunctionsRun(result=LoopResult.from_state(state), executions=executions)


def run_loop(
    config: LoopConfig,
    workspace: Path,
    loop_id: str | None = None,
    iterations_per_execution: int | None = None,
) -> LoopResult:
    """:func:`execute_loop`'s result; prints each execution's name, status and history events."""
    run = execute_loop(config, workspace, loop_id, iterations_per_execution)
    for execution in run.executions:
        print(f"{execution.name}: {execution.status}, {execution.events} history events")
    return run.result
