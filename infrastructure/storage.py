"""DynamoDB tables: loops, their events, plans, and the steps' idempotency records.

Key schemas come from the adapter that reads and writes them
(:mod:`loopwright.adapters.aws.dynamodb_store`), so the two cannot drift apart. All tables are
on-demand, point-in-time recovery on, encrypted with the AWS-owned key by default
(``AWS_MANAGED``: the ``aws/dynamodb`` KMS key), removal policy from context.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from loopwright.adapters.aws import dynamodb_plan_store as plan_keys
from loopwright.adapters.aws import dynamodb_store as keys
from loopwright.cloud import idempotency

_S = dynamodb.AttributeType.STRING

#: Plans table keys: those of :mod:`loopwright.adapters.aws.dynamodb_plan_store` (issue 5).
PLANS_PARTITION_KEY = plan_keys.PARTITION_KEY
PLANS_SORT_KEY = plan_keys.SORT_KEY


class Storage(Construct):
    """The tables: :attr:`loops_table`, :attr:`events_table`, :attr:`plans_table` and
    :attr:`idempotency_table` (Powertools Idempotency records of the steps, see
    :mod:`loopwright.cloud.idempotency`: partition key ``id``, expired by DynamoDB TTL on
    ``expiration``)."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self._removal_policy = removal_policy
        self.loops_table = self._build_loops_table()
        self.events_table = self._build_events_table()
        self.plans_table = self._build_plans_table()
        self.idempotency_table = self._table(
            "IdempotencyTable", idempotency.PARTITION_KEY, ttl_attribute=idempotency.EXPIRY_ATTRIBUTE
        )

    def _table(
        self, construct_id: str, partition: str, sort: str | None = None, *, ttl_attribute: str | None = None
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            partition_key=dynamodb.Attribute(name=partition, type=_S),
            sort_key=dynamodb.Attribute(name=sort, type=_S) if sort else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=self._removal_policy == RemovalPolicy.RETAIN,
            removal_policy=self._removal_policy,
            time_to_live_attribute=ttl_attribute,
        )

    def _build_loops_table(self) -> dynamodb.Table:
        table = self._table("LoopsTable", keys.LOOPS_PARTITION_KEY)
        table.add_global_secondary_index(
            index_name=keys.LOOPS_BY_PROJECT_INDEX,
            partition_key=dynamodb.Attribute(name=keys.LOOPS_PROJECT_ATTRIBUTE, type=_S),
            sort_key=dynamodb.Attribute(name=keys.LOOPS_CREATED_ATTRIBUTE, type=_S),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        table.add_global_secondary_index(
            index_name=keys.LOOPS_ALL_INDEX,
            partition_key=dynamodb.Attribute(name=keys.LOOPS_ALL_ATTRIBUTE, type=_S),
            sort_key=dynamodb.Attribute(name=keys.LOOPS_CREATED_ATTRIBUTE, type=_S),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        return table

    def _build_events_table(self) -> dynamodb.Table:
        table = self._table("EventsTable", keys.EVENTS_PARTITION_KEY, keys.EVENTS_SORT_KEY)
        table.add_global_secondary_index(
            index_name=keys.EVENTS_BY_TYPE_INDEX,
            partition_key=dynamodb.Attribute(name=keys.EVENTS_LOOP_TYPE_ATTRIBUTE, type=_S),
            sort_key=dynamodb.Attribute(name=keys.EVENTS_SORT_KEY, type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        return table

    def _build_plans_table(self) -> dynamodb.Table:
        """Plans, their activity events and inspection packets of every project (key schema in
        :mod:`loopwright.adapters.aws.dynamodb_plan_store`), with the sparse index of a project's
        plans by creation time (keys only)."""
        table = self._table("PlansTable", PLANS_PARTITION_KEY, PLANS_SORT_KEY)
        table.add_global_secondary_index(
            index_name=plan_keys.PLANS_BY_CREATED_INDEX,
            partition_key=dynamodb.Attribute(name=plan_keys.PARTITION_KEY, type=_S),
            sort_key=dynamodb.Attribute(name=plan_keys.CREATED_ATTRIBUTE, type=_S),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        return table
