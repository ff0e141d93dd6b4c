"""PlanAuthorizer: Cedar decides who changes a project's plans (policies/plans.cedar)."""

from __future__ import annotations

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.models import AuthorizationRequest, PolicyDecision, operators_group
from loopwright.plans.authorize import PlanAction, PlanAuthorizer, plan_authorization_request
from loopwright.plans.errors import PlanDeniedError
from loopwright.ports import PolicyEngine


@pytest.fixture(scope="module")
def authorizer() -> PlanAuthorizer:
    return PlanAuthorizer(CedarPolicyEngine())


def test_the_request_names_the_project_and_its_operators_group() -> None:
    request = plan_authorization_request(
        PlanAction.DISPATCH, "shop", principal='User::"bob"', groups=['Group::"x"']
    )
    assert (request.action, request.resource) == ('Action::"DispatchPlan"', 'Project::"shop"')
    assert request.resource_attributes == {
        "operators": {"__entity": {"type": "Group", "id": "shop-operators"}}
    }
    assert request.principal_parents == ['Group::"x"']


@pytest.mark.parametrize("action", list(PlanAction))
def test_operators_of_the_project_may_change_its_plans(
    authorizer: PlanAuthorizer, action: PlanAction
) -> None:
    decision = authorizer.authorize(action, "shop", principal='User::"bob"', groups=[operators_group("shop")])
    assert decision.allowed and decision.policy_ids == ["operators-change-plans"]


@pytest.mark.parametrize(
    ("principal", "groups", "policy_ids"),
    [
        ('User::"mallory"', [], []),
        ('User::"bob"', [operators_group("web")], []),  # an operator of another project
        ('Agent::"loop_1"', [], ["agent-cannot-change-plans"]),
    ],
)
def test_anyone_else_is_denied_naming_the_deciding_policies(
    authorizer: PlanAuthorizer, principal: str, groups: list[str], policy_ids: list[str]
) -> None:
    with pytest.raises(PlanDeniedError) as denied:
        authorizer.authorize(PlanAction.CREATE, "shop", principal=principal, groups=groups)
    assert denied.value.policy_ids == policy_ids
    assert f"{principal} may not create plans of project 'shop'" in str(denied.value)


class _AllowsWithErrors(PolicyEngine):
    def is_authorized(self, request: AuthorizationRequest) -> PolicyDecision:
        return PolicyDecision(allowed=True, policy_ids=["p"], errors=["attribute missing in policy q"])


def test_a_decision_with_errors_is_a_denial() -> None:
    with pytest.raises(PlanDeniedError, match="errors: attribute missing in policy q"):
        PlanAuthorizer(_AllowsWithErrors()).authorize(PlanAction.VERIFY, "shop", principal='User::"a"')
