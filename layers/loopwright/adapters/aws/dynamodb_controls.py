"""The queued controls of the DynamoDB loop store (:class:`DynamoDbControls`, mixed into
:class:`~loopwright.adapters.aws.dynamodb_store.DynamoDbStore`): the loop item's ``controls``
map, control id -> the :class:`ControlRequest` JSON (see the store's module docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from loopwright.adapters.aws._errors import aws_errors, error_code
from loopwright.adapters.aws.dynamodb_keys import _CONTROLS, LOOPS_PARTITION_KEY
from loopwright.exceptions import LoopFrameworkError, LoopNotFoundError
from loopwright.models import ControlRequest


class DynamoDbControls:
    """Controls in the loops table; the host class sets ``loops_table`` and ``_client``."""

    loops_table: str
    _client: Any

    def add_control(self, request: ControlRequest) -> None:
        """Queue ``request`` in the loop item's ``controls`` map (``version`` is not changed).

        Two UpdateItems at most: set the map entry when the map exists, else create the map
        (conditions keep a concurrent writer's entry). Raises :class:`LoopNotFoundError` for an
        unknown loop."""
        names = {"#c": _CONTROLS, "#cid": request.control_id, "#id": LOOPS_PARTITION_KEY}
        body = {"S": request.model_dump_json()}
        key = {LOOPS_PARTITION_KEY: {"S": request.loop_id}}
        with aws_errors(self._action("queueing a control of", request.loop_id)):
            for _ in range(2):
                try:
                    self._client.update_item(
                        TableName=self.loops_table,
                        Key=key,
                        UpdateExpression="SET #c.#cid = :body",
                        ConditionExpression="attribute_exists(#c)",
                        ExpressionAttributeNames={"#c": _CONTROLS, "#cid": request.control_id},
                        ExpressionAttributeValues={":body": body},
                    )
                    return
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise
                try:
                    self._client.update_item(
                        TableName=self.loops_table,
                        Key=key,
                        UpdateExpression="SET #c = :map",
                        ConditionExpression="attribute_exists(#id) AND attribute_not_exists(#c)",
                        ExpressionAttributeNames={"#c": _CONTROLS, "#id": names["#id"]},
                        ExpressionAttributeValues={":map": {"M": {request.control_id: body}}},
                    )
                    return
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise
                    if not self._exists(request.loop_id):
                        raise self._not_found(request.loop_id) from exc
        raise LoopFrameworkError(f"could not queue control {request.control_id} of loop {request.loop_id!r}")

    def pending_controls(self, loop_id: str) -> list[ControlRequest]:
        """The queued controls of ``loop_id`` (strongly consistent read), oldest first."""
        with aws_errors(self._action("reading the controls of", loop_id)):
            response = self._client.get_item(
                TableName=self.loops_table,
                Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
                ConsistentRead=True,
                ProjectionExpression="#c",
                ExpressionAttributeNames={"#c": _CONTROLS},
            )
        entries = response.get("Item", {}).get(_CONTROLS, {}).get("M", {})
        controls = [ControlRequest.model_validate_json(value["S"]) for value in entries.values()]
        return sorted(controls, key=lambda c: (c.requested_at, c.control_id))

    def clear_controls(self, loop_id: str, control_ids: Sequence[str]) -> None:
        """Remove the given entries of the loop item's ``controls`` map (unknown ones are fine)."""
        if not control_ids:
            return
        names = {"#c": _CONTROLS} | {f"#k{i}": control_id for i, control_id in enumerate(control_ids)}
        removes = ", ".join(f"#c.#k{i}" for i in range(len(control_ids)))
        with aws_errors(self._action("clearing controls of", loop_id)):
            try:
                self._client.update_item(
                    TableName=self.loops_table,
                    Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
                    UpdateExpression=f"REMOVE {removes}",
                    ConditionExpression="attribute_exists(#c)",
                    ExpressionAttributeNames=names,
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise

    def _exists(self, loop_id: str) -> bool:
        response = self._client.get_item(
            TableName=self.loops_table,
            Key={LOOPS_PARTITION_KEY: {"S": loop_id}},
            ConsistentRead=True,
            ProjectionExpression="#id",
            ExpressionAttributeNames={"#id": LOOPS_PARTITION_KEY},
        )
        return "Item" in response

    def _action(self, verb: str, loop_id: str) -> str:
        return f"{verb} loop {loop_id!r} in DynamoDB table {self.loops_table!r}"

    def _not_found(self, loop_id: str) -> LoopNotFoundError:
        return LoopNotFoundError(
            f"no loop {loop_id!r} in DynamoDB table {self.loops_table!r}; "
            "list the loops with `loopwright status`"
        )
