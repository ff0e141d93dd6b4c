"""The signed evidence files of an AWS deployment, in the DynamoDB loops table
(:class:`DynamoDbEvidenceStore`, the :class:`~loopwright.evidence.EvidenceStore` on AWS).

One item per loop, beside its iteration records (no bucket, no new table, no new index):
partition key ``loop_id`` = ``"<loop_id>#evidence"`` (a loop id never holds ``#``), attributes
``evidence`` (B, the file's bytes compressed with zlib) and ``sha256`` (S, the SHA-256 of the
uncompressed file, for a quick look in the console). The item has no ``project``, ``gsi_all`` or
``created_at``, so it is in neither of the table's indexes and never listed as a loop.

DynamoDB items are limited to 400 KB: a compressed file above :data:`EVIDENCE_MAX_BYTES` is
refused with a :class:`~loopwright.exceptions.LoopFrameworkError` (the step logs it and the loop
completes without a stored bundle). A bundle holds a few hundred bytes per iteration, so this is
thousands of iterations.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import boto3

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, retry_config
from loopwright.adapters.aws.dynamodb_keys import LOOPS_PARTITION_KEY
from loopwright.evidence import EvidenceStore
from loopwright.exceptions import LoopFrameworkError

#: Largest compressed ``evidence`` attribute stored (bytes), under DynamoDB's 400 KB item limit.
EVIDENCE_MAX_BYTES = 380 * 1024
#: Suffix of an evidence item's key after the loop id.
EVIDENCE_KEY_SUFFIX = "#evidence"


def evidence_key(loop_id: str) -> dict[str, dict[str, str]]:
    """The loops-table key of ``loop_id``'s evidence item."""
    return {LOOPS_PARTITION_KEY: {"S": f"{loop_id}{EVIDENCE_KEY_SUFFIX}"}}


class DynamoDbEvidenceStore(EvidenceStore):
    """Evidence files in ``loops_table`` (see the module docstring). ``client``: a boto3
    DynamoDB client (default: one for ``region_name`` with standard retries)."""

    def __init__(
        self,
        loops_table: str,
        *,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.loops_table = loops_table
        self._client: Any = (
            client
            if client is not None
            else boto3.client("dynamodb", region_name=region_name, config=retry_config(max_attempts))
        )

    def location(self, loop_id: str) -> str:
        """``dynamodb://<table>/<loop_id>#evidence``: the item that holds the file."""
        return f"dynamodb://{self.loops_table}/{loop_id}{EVIDENCE_KEY_SUFFIX}"

    def put(self, loop_id: str, data: bytes) -> None:
        """Store ``data`` (one PutItem, replacing the stored file)."""
        packed = zlib.compress(data, 6)
        if len(packed) > EVIDENCE_MAX_BYTES:
            raise LoopFrameworkError(
                f"the evidence bundle of loop {loop_id!r} is {len(packed)} bytes compressed, above the "
                f"{EVIDENCE_MAX_BYTES} bytes a DynamoDB item can hold; export it with the CLI instead"
            )
        item = evidence_key(loop_id) | {
            "evidence": {"B": packed},
            "sha256": {"S": hashlib.sha256(data).hexdigest()},
        }
        with aws_errors(f"storing the evidence bundle of loop {loop_id!r} in table {self.loops_table!r}"):
            self._client.put_item(TableName=self.loops_table, Item=item)

    def get(self, loop_id: str) -> bytes | None:
        """The stored file (strongly consistent read), or None."""
        with aws_errors(f"reading the evidence bundle of loop {loop_id!r} from table {self.loops_table!r}"):
            response = self._client.get_item(
                TableName=self.loops_table, Key=evidence_key(loop_id), ConsistentRead=True
            )
        item = response.get("Item")
        if not item or "evidence" not in item:
            return None
        try:
            return zlib.decompress(item["evidence"]["B"])
        except zlib.error as exc:
            raise LoopFrameworkError(
                f"the evidence bundle of loop {loop_id!r} cannot be read: {exc}"
            ) from exc
