"""Human controls of a loop: pause, resume, stop, approve a gate, raise a limit (issue 4).

:class:`ControlService` is what the CLI, the dashboard API and its Lambda call. For every
:class:`~loopwright.models.controls.ControlRequest` it

1. reads the loop (:class:`~loopwright.exceptions.LoopNotFoundError` if unknown);
2. asks Cedar (``policies/controls.cedar``): may this principal, in these groups, take this action
   on this loop? A denial raises :class:`~loopwright.exceptions.ControlDeniedError` naming the
   policy; operators are the members of the project's operators group
   (:func:`~loopwright.models.controls.operators_group`), and an agent may never raise its own
   limits or approve its own gate;
3. checks the control applies to the loop as it is
   (:class:`~loopwright.exceptions.ControlConflictError` otherwise; a running loop is never
   rolled back);
4. applies it: a loop that is running (``is_active``) gets it queued in the store and its engine
   applies it at the next step boundary (:func:`loopwright.workflow.apply_controls`); an idle loop
   is changed in the store at once, or handed to the ``resumer`` (RESUME, APPROVE). ROLLBACK
   and FORK (time travel) are applied by ``travel`` (:class:`~loopwright.travel.TimeTravel`);
   a forked loop is handed to the ``resumer`` to start.

Nothing is written before steps 1-3 have passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loopwright.exceptions import ControlConflictError, ControlDeniedError
from loopwright.models import IterationEvent, IterationEventType, LoopOutcome, LoopPhase, LoopState, utcnow
from loopwright.models.controls import (
    CONTROL_CEDAR_ACTIONS,
    ControlRequest,
    ControlResult,
    LimitChange,
)
from loopwright.models.enums import ControlAction
from loopwright.models.steps import AuthorizationRequest, PolicyDecision
from loopwright.ports import LoopStore, PolicyEngine
from loopwright.steps.authorize import loop_attributes, loop_resource
from loopwright.travel import TimeTravel

#: Continues a loop outside the caller: locally a background run of the in-process engine, on
#: AWS ``SendTaskSuccess`` (APPROVE of a loop waiting on a task token) or ``StartExecution``.
Resumer = Callable[[LoopState, ControlRequest], None]

#: Outcomes after which a loop may be resumed: a human's stop, a limit (raise it first, or Cedar
#: denies the next iteration again), and a failure (the loop continues from its checkpoint).
#: CONDITIONS_MET is final.
RESUMABLE_OUTCOMES = frozenset(
    {
        LoopOutcome.STOPPED,
        LoopOutcome.ITERATION_LIMIT,
        LoopOutcome.TOKEN_BUDGET_EXHAUSTED,
        LoopOutcome.COST_BUDGET_EXHAUSTED,
        LoopOutcome.TIME_LIMIT,
        LoopOutcome.POLICY_DENIED,
        LoopOutcome.FAILED,
        LoopOutcome.AGENT_FAILING,
        LoopOutcome.SESSION_LIMIT,
        LoopOutcome.STUCK,
    }
)


#: What a queued ``stop --now`` does (on AWS the running command is ended at the next poll of
#: its step: docs/hard-limits.md, "On AWS").
NOW_MESSAGE = (
    "the running agent or condition is ended now and the loop stops (on AWS: at the next poll of "
    "the running step)"
)


def policy_files_changed(before: dict[str, str] | None, now: dict[str, str] | None) -> list[str]:
    """Names of the policy files added, removed or changed between a loop's recorded policy set
    and the one read now (empty when either is unknown: none recorded yet, or an engine that
    cannot tell, as Verified Permissions)."""
    if before is None or now is None:
        return []
    return sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))


def cedar_action(action: ControlAction) -> str:
    """The Cedar action uid of a control, e.g. ``Action::"StopLoop"``."""
    return f'Action::"{CONTROL_CEDAR_ACTIONS[action]}"'


def authorization_request(request: ControlRequest, state: LoopState) -> AuthorizationRequest:
    """The Cedar request for ``request`` on the loop ``state`` (its limits and operators group)."""
    return AuthorizationRequest(
        principal=request.principal,
        principal_parents=list(request.groups),
        action=cedar_action(request.action),
        resource=loop_resource(state.loop_id),
        resource_attributes=loop_attributes(state),
    )


def check_limits(state: LoopState, limits: LimitChange) -> None:
    """Raise :class:`ControlConflictError` when a new limit is below what the loop already used
    (iterations run, tokens spent, US dollars spent, wall-clock seconds elapsed, agent sessions
    started)."""
    if limits.max_iterations is not None and limits.max_iterations < state.iteration:
        raise ControlConflictError(
            f"max_iterations: {limits.max_iterations} is below the {state.iteration} iterations "
            "already run; give a larger value"
        )
    if limits.token_budget is not None and limits.token_budget < state.tokens_used:
        raise ControlConflictError(
            f"token_budget: {limits.token_budget} is below the {state.tokens_used} tokens already "
            "spent; give a larger value"
        )
    if limits.cost_budget_usd is not None and limits.cost_budget_usd < state.cost_usd:
        raise ControlConflictError(
            f"cost_budget_usd: {limits.cost_budget_usd:g} is below the ${state.cost_usd:.4f} already "
            "spent; give a larger value"
        )
    elapsed = int(state.elapsed_seconds)
    if limits.max_duration_seconds is not None and limits.max_duration_seconds < elapsed:
        raise ControlConflictError(
            f"max_duration_seconds: {limits.max_duration_seconds} is below the {elapsed} s already "
            "elapsed; give a larger value"
        )
    if limits.max_sessions is not None and limits.max_sessions < state.agent_sessions:
        raise ControlConflictError(
            f"max_sessions: {limits.max_sessions} is below the {state.agent_sessions} agent sessions "
            "already started; give a larger value"
        )


def apply_limits(state: LoopState, limits: LimitChange) -> dict[str, int | float]:
    """Set the given limits on ``state.config``; returns the fields changed."""
    changes = limits.model_dump(exclude_none=True)
    state.config = state.config.model_copy(update=changes)
    return changes


class ControlService:
    """Authorizes and applies human controls (see the module docstring).

    ``resumer`` continues an idle loop (RESUME, APPROVE); without one those controls raise
    :class:`ControlConflictError`. ``is_running`` tells whether an engine runs the loop now
    (default: the stored ``is_active``; locally the loop's lock file tells, so a killed process
    does not count as running). ``travel`` applies ROLLBACK and FORK; without it (a deployment
    with no git workspace at hand) they raise :class:`ControlConflictError`.
    """

    def __init__(
        self,
        store: LoopStore,
        policy: PolicyEngine,
        resumer: Resumer | None = None,
        *,
        is_running: Callable[[LoopState], bool] | None = None,
        travel: TimeTravel | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.resumer = resumer
        self.travel = travel
        self.is_running = is_running or (lambda state: state.is_active and state.outcome is None)

    def submit(self, request: ControlRequest) -> ControlResult:
        """Authorize and apply ``request``.

        Raises :class:`~loopwright.exceptions.LoopNotFoundError`, :class:`ControlDeniedError`,
        :class:`ControlConflictError`; in every case nothing was written.
        """
        state = self.store.get_state(request.loop_id)
        decision = self._authorize(request, state)
        handlers = {
            ControlAction.PAUSE: self._pause,
            ControlAction.STOP: self._stop,
            ControlAction.RESUME: self._resume,
            ControlAction.APPROVE: self._approve,
            ControlAction.RAISE_LIMIT: self._raise_limit,
            ControlAction.ROLLBACK: self._rollback,
        }
        new_loop_id = None
        if request.action is ControlAction.FORK:
            status, message, phase, new_loop_id = self._fork(request, state)
        else:
            status, message, phase = handlers[request.action](request, state)
        return ControlResult(
            control=request,
            status=status,
            message=message,
            phase=phase,
            new_loop_id=new_loop_id,
            policy_ids=decision.policy_ids,
        )

    def authorize(self, request: ControlRequest, *, accepting_policy_change: bool = False) -> PolicyDecision:
        """Only ask Cedar whether ``request`` is allowed (nothing is applied): for callers that
        act themselves once allowed, such as ``loopwright resume`` in the caller's terminal.
        ``accepting_policy_change``: the caller resumes the loop under policy files that changed
        since it started (an operator's acceptance, see :func:`check_policy_set`): the request is
        decided by the files as they are now instead of being refused for the change.

        Raises :class:`~loopwright.exceptions.LoopNotFoundError` and :class:`ControlDeniedError`.
        """
        state = self.store.get_state(request.loop_id)
        return self._authorize(request, state, policy_change_accepted=accepting_policy_change)

    # ----------------------------------------------------------------------------- Cedar
    def _authorize(
        self, request: ControlRequest, state: LoopState, *, policy_change_accepted: bool = False
    ) -> PolicyDecision:
        changed = policy_files_changed(state.policy_files, self.policy.policy_files())
        if changed and not policy_change_accepted:
            # Policies edited on disk (by an agent running as the user, say) never decide a
            # control of a loop recorded under other ones.
            raise ControlDeniedError(
                f"the Cedar policies changed since loop {state.loop_id!r} last ran "
                f"({', '.join(changed)}): no control is decided by them until an operator accepts "
                f"them with `loopwright resume {state.loop_id} --accept-policy-change`",
                policy_ids=[],
            )
        decision = self.policy.is_authorized(authorization_request(request, state))
        if decision.allowed:
            return decision
        messages = [
            decision.annotations.get(policy_id, {}).get("message", policy_id)
            for policy_id in decision.policy_ids
        ]
        if messages:
            because = "; ".join(
                f"{m} (policy {p})" for m, p in zip(messages, decision.policy_ids, strict=True)
            )
        else:
            because = (
                f"no policy permits it: only members of the project's operators group "
                f'(Group::"{state.project}-operators") may control its loops'
            )
        if decision.errors:
            because += f"; errors: {'; '.join(decision.errors)}"
        raise ControlDeniedError(
            f"{request.principal} may not {request.action.value} loop {state.loop_id!r}: {because}",
            policy_ids=list(decision.policy_ids),
        )

    # ----------------------------------------------------------------------------- actions
    def _pause(self, request: ControlRequest, state: LoopState) -> tuple[str, str, LoopPhase]:
        self._require_running(state, "pause")
        self.store.add_control(request)
        return "queued", "the loop pauses after its current step", state.phase

    def _stop(self, request: ControlRequest, state: LoopState) -> tuple[str, str, LoopPhase]:
        if state.outcome is not None:
            raise ControlConflictError(
                f"loop {state.loop_id!r} already ended with {state.outcome.value}; nothing to stop"
            )
        if self.is_running(state):
            self.store.add_control(request)
            if request.now:
                return "queued", NOW_MESSAGE, state.phase
            return "queued", "the loop stops after its current step", state.phase
        reason = f"stopped: {request.reason or 'by ' + request.principal}"
        state.close_active_time(min(state.updated_at, utcnow()))  # a killed session's time ends there
        state.phase = LoopPhase.COMPLETED
        state.outcome = LoopOutcome.STOPPED
        state.outcome_reason = reason
        state.ended_at = utcnow()
        state.resume_at = None
        state.is_active = False
        self._save(
            state,
            request,
            IterationEventType.LOOP_COMPLETED,
            f"STOPPED: {reason}",
            outcome=LoopOutcome.STOPPED.value,
            iterations=state.iteration,
            tokens_used=state.tokens_used,
        )
        return "applied", "the loop is stopped", state.phase

    def _resume(self, request: ControlRequest, state: LoopState) -> tuple[str, str, LoopPhase]:
        if self.is_running(state):
            raise ControlConflictError(f"loop {state.loop_id!r} is running; nothing to resume")
        if state.phase is LoopPhase.AWAITING_RESPONSE:
            raise ControlConflictError(
                f"loop {state.loop_id!r} is waiting for an answer to its question; approve it instead"
            )
        if state.outcome is not None and state.outcome not in RESUMABLE_OUTCOMES:
            raise ControlConflictError(
                f"loop {state.loop_id!r} ended with {state.outcome.value}, which is final; start a new loop"
            )
        resumer = self._require_resumer("resume")
        resumer(state, request)
        return "applied", "the loop is resuming", state.phase

    def _approve(self, request: ControlRequest, state: LoopState) -> tuple[str, str, LoopPhase]:
        if state.phase is not LoopPhase.AWAITING_RESPONSE:
            raise ControlConflictError(
                f"loop {state.loop_id!r} is not waiting for an answer (phase {state.phase.value}); "
                "nothing to approve"
            )
        hold = state.pinned_hold
        if request.accept_pinned_change and hold is None:
            raise ControlConflictError(
                f"loop {state.loop_id!r} has no reverted change to pinned files to accept; "
                "approve it without --accept-pinned-change"
            )
        resumer = self._require_resumer("approve")
        state.human_response = request.response or "approved"
        accepted = ""
        if hold is not None:
            hold.answered = True
            hold.accepted_by = request.principal if request.accept_pinned_change else None
            accepted = " (change to pinned files " + (
                "accepted)" if request.accept_pinned_change else "left reverted)"
            )
        saved = self._save(
            state,
            request,
            IterationEventType.CONTROL_APPLIED,
            f"approved by {request.principal}{accepted}: {state.human_response[:200]}",
            **({"accept_pinned_change": True} if request.accept_pinned_change else {}),
        )
        resumer(saved, request)
        return "applied", "approved; the loop continues", saved.phase

    def _raise_limit(self, request: ControlRequest, state: LoopState) -> tuple[str, str, LoopPhase]:
        assert request.limits is not None  # checked by ControlRequest
        check_limits(state, request.limits)
        if self.is_running(state):
            self.store.add_control(request)
            return "queued", "the new limits apply from the loop's next iteration", state.phase
        changes = apply_limits(state, request.limits)
        self._save(
            state,
            request,
            IterationEventType.CONTROL_APPLIED,
            f"limits changed by {request.principal}: {_describe(changes)}",
            **changes,
        )
        return "applied", f"limits changed: {_describe(changes)}", state.phase

    def _rollback(self, request: ControlRequest, state: LoopState) -> tuple[str, str, LoopPhase]:
        travel = self._require_travel("roll back")
        if self.is_running(state):
            raise ControlConflictError(
                f"loop {state.loop_id!r} is running; pause or stop it before rolling it back"
            )
        rolled = travel.rollback(state, request)
        return (
            "applied",
            f"rolled back to iteration {rolled.iteration}; `loopwright resume {state.loop_id}` continues it",
            rolled.phase,
        )

    def _fork(self, request: ControlRequest, state: LoopState) -> tuple[str, str, LoopPhase, str]:
        travel = self._require_travel("fork")
        resumer = self._require_resumer("fork")
        travel.check_fork(state, request)  # refused here, before anything is written
        child = travel.fork(state, request)
        resumer(child, request)
        return (
            "applied",
            f"loop {child.loop_id} forked from iteration {child.forked_from_iteration} of "
            f"{state.loop_id} on branch {child.branch}; it is starting",
            child.phase,
            child.loop_id,
        )

    # ----------------------------------------------------------------------------- helpers
    def _require_travel(self, verb: str) -> TimeTravel:
        if self.travel is None:
            raise ControlConflictError(
                f"this service cannot {verb} loops: it has no git workspace (use the local CLI or "
                "dashboard in the loop's workspace)"
            )
        return self.travel

    def _require_running(self, state: LoopState, verb: str) -> None:
        if not self.is_running(state):
            raise ControlConflictError(
                f"loop {state.loop_id!r} is not running (phase {state.phase.value}); nothing to {verb}"
            )

    def _require_resumer(self, verb: str) -> Resumer:
        if self.resumer is None:
            raise ControlConflictError(f"this service cannot {verb} loops: no engine to continue them with")
        return self.resumer

    def _save(
        self,
        state: LoopState,
        request: ControlRequest,
        event_type: IterationEventType,
        message: str,
        **data: Any,
    ) -> LoopState:
        event = IterationEvent(
            loop_id=state.loop_id,
            iteration=state.iteration,
            type=event_type,
            phase=state.phase,
            message=message,
            data={"control": request.action.value, "principal": request.principal, **data},
        )
        return self.store.save_state(state, [event])


def _describe(changes: dict[str, int | float]) -> str:
    return ", ".join(f"{name}={value}" for name, value in changes.items())
