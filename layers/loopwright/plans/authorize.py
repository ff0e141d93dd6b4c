"""Who may change a project's plans: Cedar decides (``policies/plans.cedar``).

Creating a plan, dispatching it (its tasks run as loops: the commands the plan names run) and
verifying it (gate:all runs the gates' commands) are the Cedar actions of :data:`PLAN_CEDAR_ACTIONS`
on the resource ``Project::"<project>"``, whose ``operators`` attribute is the project's
operators group (:func:`~loopwright.models.operators_group`, ``Group::"<project>-operators"``),
as a loop's is for the controls (``policies/controls.cedar``). The shipped policies permit members
of that group and forbid every ``Agent``; anyone else is denied by default.

:class:`PlanAuthorizer` asks the :class:`~loopwright.ports.PolicyEngine` port (cedarpy locally,
Verified Permissions on AWS) before anything is written; the HTTP plan routes
(:mod:`loopwright.planapi.router`), the local dashboard, the dashboard's plans Lambda and the
``loopwright plan`` commands all go through it. Like the rest of the core it imports no adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from loopwright.models import AuthorizationRequest, PolicyDecision, operators_group, parse_entity_uid
from loopwright.plans.errors import PlanDeniedError
from loopwright.ports import PolicyEngine


class PlanAction(StrEnum):
    """A change to a project's plans; the value is the Cedar action id."""

    CREATE = "CreatePlan"
    DISPATCH = "DispatchPlan"
    VERIFY = "VerifyPlan"


#: The Cedar action uid of each plan change (``policies/loopwright.cedarschema``).
PLAN_CEDAR_ACTIONS: dict[PlanAction, str] = {action: f'Action::"{action.value}"' for action in PlanAction}
_VERBS = {PlanAction.CREATE: "create", PlanAction.DISPATCH: "dispatch", PlanAction.VERIFY: "verify"}


def project_resource(project: str) -> str:
    """The Cedar uid of a project: ``Project::"<project>"``."""
    return f'Project::"{project}"'


def project_attributes(project: str) -> dict[str, Any]:
    """The ``Project`` entity's attributes: ``operators``, the project's operators group (an
    entity reference, ``{"__entity": {"type": "Group", "id": "<project>-operators"}}``)."""
    return {"operators": {"__entity": parse_entity_uid(operators_group(project))}}


def plan_authorization_request(
    action: PlanAction, project: str, *, principal: str, groups: Sequence[str] = ()
) -> AuthorizationRequest:
    """The Cedar request: may ``principal`` (in ``groups``, uids ``Group::"..."``) take
    ``action`` on ``Project::"<project>"``?"""
    return AuthorizationRequest(
        principal=principal,
        principal_parents=list(groups),
        action=PLAN_CEDAR_ACTIONS[action],
        resource=project_resource(project),
        resource_attributes=project_attributes(project),
    )


class PlanAuthorizer:
    """Authorizes plan changes with Cedar through ``policy`` (see the module docstring)."""

    def __init__(self, policy: PolicyEngine) -> None:
        self.policy = policy

    def authorize(
        self, action: PlanAction, project: str, *, principal: str, groups: Sequence[str] = ()
    ) -> PolicyDecision:
        """The Allow decision of ``principal`` taking ``action`` on the plans of ``project``.

        Raises :class:`PlanDeniedError` (with the deciding ``policy_ids``) on a Deny, including a
        decision with errors (fail closed); the caller has written nothing yet and must not.
        Errors of the policy engine itself (Verified Permissions unreachable) propagate as
        :class:`~loopwright.exceptions.LoopFrameworkError`.
        """
        decision = self.policy.is_authorized(
            plan_authorization_request(action, project, principal=principal, groups=groups)
        )
        if decision.allowed and not decision.errors:
            return decision
        verb = _VERBS[action]
        if decision.policy_ids:
            because = "; ".join(
                f"{decision.annotations.get(p, {}).get('message', p)} (policy {p})"
                for p in decision.policy_ids
            )
        else:
            because = (
                f"no policy permits it: only members of the project's operators group "
                f"({operators_group(project)}) may {verb} its plans"
            )
        if decision.errors:
            because += f"; errors: {'; '.join(decision.errors)}"
        raise PlanDeniedError(
            f"{principal} may not {verb} plans of project {project!r}: {because}",
            policy_ids=list(decision.policy_ids),
        )
