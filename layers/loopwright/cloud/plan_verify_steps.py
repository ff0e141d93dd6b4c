"""The Verify step of the PlanDispatch state machine: gate:all outside the API call (issue 12).

A plan is verified by a *verify execution* of PlanDispatch (``infrastructure/plans.py``), started
by :meth:`~loopwright.adapters.aws.step_functions_plans.StepFunctionsPlanExecutor.verify` once it
has stored the plan VERIFYING (the API then answers 202)::

    Mode? -$.verify-> Verify -> Verified
                        '-(Catch)-> RecordFailure (the plan FAILED, a plan_verify ERROR check) -> Failed

The execution is named :func:`verify_execution_name` (one per plan: a FAILED plan is never
verified again). :func:`verify` runs gate:all (:func:`loopwright.plans.service.run_verify`) in
the environment the ports' ``gates`` factory gives (on AWS a Code Interpreter session holding the
merge of the tasks' pushed branches) and stores the plan VERIFIED or FAILED with every check. It
is idempotent: a retry after the plan was stored VERIFIED or FAILED changes nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loopwright.cloud.plan_steps import PlanStepPorts, dispatch_execution_name
from loopwright.exceptions import ConfigError
from loopwright.models.plans import PlanId, PlanStatus
from loopwright.models.types import ProjectId
from loopwright.plans import service
from loopwright.plans.errors import PlanConflictError


class VerifyInput(BaseModel):
    """The input of a verify execution of PlanDispatch (and of its Verify and RecordFailure steps).

    ``repository``: where the gates get the tasks' results when the plan's defaults name none
    (with ``LOOPWRIGHT_ADAPTERS=local`` the workspace folder, required; on AWS a git URL)."""

    model_config = ConfigDict(extra="ignore")

    verify: Literal[True] = Field(default=True, description="selects the verify branch of PlanDispatch")
    project: ProjectId
    plan_id: PlanId
    repository: str | None = Field(default=None, max_length=4096)
    error: dict[str, Any] | None = Field(default=None, description="set by a Catch: Error and Cause")
    execution: str | None = Field(default=None, description="the execution's id (RecordFailure)")


class VerifyOutput(BaseModel):
    """What Verify returns: the plan's status at the end (VERIFIED or FAILED) and whether it passed."""

    project: ProjectId
    plan_id: PlanId
    status: PlanStatus
    passed: bool


def verify_execution_name(project: str, plan_id: str) -> str:
    """The plan's verify execution: its dispatch execution's name and ``-verify`` (at most 39
    characters; Step Functions allows 80)."""
    return f"{dispatch_execution_name(project, plan_id)}-verify"


def verify(event: VerifyInput, ports: PlanStepPorts) -> VerifyOutput:
    """gate:all on the plan: a VERIFYING plan (RUNNING with every task ended: begun here) ends
    VERIFIED or FAILED; a plan VERIFIED or FAILED already is returned as it is (a retry).
    Raises :class:`PlanConflictError` for a plan in another status, ConfigError when the ports
    give no environment to run gates in."""
    plan = ports.plans.get_plan(event.project, event.plan_id)
    if plan.status is PlanStatus.RUNNING:
        plan = service.start_verify(ports.plans, event.project, event.plan_id)
    if plan.status is PlanStatus.VERIFYING:
        if ports.gates is None:
            raise ConfigError("no environment to run the plan's gates in (CODE_INTERPRETER_ID)")
        with ports.gates(plan, event.repository) as (sandbox, workspace):
            plan = service.run_verify(ports.plans, plan, sandbox, workspace)
    elif plan.status not in (PlanStatus.VERIFIED, PlanStatus.FAILED) or plan.verify_run_id is None:
        raise PlanConflictError(
            f"plan {plan.plan_id} is {plan.status.value}; only a plan whose tasks ended can be verified"
        )
    return VerifyOutput(
        project=plan.project,
        plan_id=plan.plan_id,
        status=plan.status,
        passed=plan.status is PlanStatus.VERIFIED,
    )
