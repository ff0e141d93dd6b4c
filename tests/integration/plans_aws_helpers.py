"""Helpers of the plans' AWS tests: a DynamoDB plan store on moto."""

from __future__ import annotations

import boto3
from moto import mock_aws

from loopwright.adapters.aws._errors import retry_config
from loopwright.adapters.aws.dynamodb_plan_store import DynamoDbPlanStore, create_table_request

REGION = "us-east-1"
PLANS_TABLE = "test-plans"


class MotoPlanStore(DynamoDbPlanStore):
    """A :class:`DynamoDbPlanStore` on a moto table of its own: the mock starts with the store
    and stops at :meth:`close` (moto sets fake credentials while it runs)."""

    def __init__(self) -> None:
        self._mock = mock_aws()
        self._mock.start()
        client = boto3.client("dynamodb", region_name=REGION, config=retry_config(2))
        client.create_table(**create_table_request(PLANS_TABLE))
        super().__init__(PLANS_TABLE, client=client)

    def close(self) -> None:
        """Stop the mock (its tables go with it)."""
        self._mock.stop()
