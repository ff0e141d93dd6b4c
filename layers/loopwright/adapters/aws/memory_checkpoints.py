"""AgentCore Memory checkpoint store: each checkpoint is one blob event of a Memory session.

Layout in the Memory resource (id given to the constructor, created by the stack with its
``event_expiry_days``):

- actor id: one constant per deployment (``actor_id``, default :data:`DEFAULT_ACTOR_ID`), so
  ``ListSessions`` of that actor lists every loop with checkpoints;
- session id: the loop id (:func:`session_id_for`; a loop id that Memory's session-id pattern
  ``[a-zA-Z0-9][a-zA-Z0-9-_]*`` of at most 100 characters does not admit, such as one with a
  ``.``, is mapped to a sanitized prefix plus a SHA-256 suffix: deterministic and distinct);
- one event per checkpoint: payload ``[{"blob": <the Checkpoint JSON text>}]``, event timestamp
  the checkpoint's ``created_at``, metadata (string values) ``checkpoint_id``, ``iteration``,
  ``checksum``, ``loop_id`` and ``seq`` (the store's own save counter, zero-padded, so
  ``list_checkpoints`` orders newest first without relying on timestamps or the API's order).

Idempotency: ``save`` first lists the session's events (metadata only). A checkpoint already
stored with the same id and checksum is not written again (a retried Lambda or a retried call
re-saving the same checkpoint is a no-op; the same id with another checksum is an error). The
write passes ``clientToken`` = a UUID derived from (loop id, checkpoint id, checksum), so a
CreateEvent retried by botocore after a lost response is applied once by the service. The
event is written with the data-plane client's ``create_event`` (``MemoryClient.gmdp_client``)
because the SDK's ``create_blob_event`` accepts no client token.

Retention: after a write, all but the newest ``retention`` checkpoint events of the loop are
deleted (DeleteEvent; one already gone is fine). Events also expire after the Memory's
``event_expiry_days`` whatever the retention. Ordering and retention assume one writer per loop
(the engine's lease); two concurrent writers could number a save alike (both are kept).

Not measured: Memory's maximum blob size. A checkpoint holds the loop state, whose exit-condition
outputs are bounded by their ``max_output_bytes``; a rejected (too large) event surfaces as
:class:`LoopFrameworkError` naming ``ValidationException``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

import boto3
import botocore.session
from bedrock_agentcore.memory import MemoryClient
from botocore.exceptions import ClientError
from pydantic import ValidationError

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, error_code, retry_config
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import Checkpoint
from loopwright.ports import CheckpointStore

#: Actor id of the checkpoint events when none is given.
DEFAULT_ACTOR_ID = "loopwright"
#: Events listed per loop at most (retention keeps far fewer; expiry removes the rest).
MAX_LISTED_EVENTS = 1000
#: Digits of the ``seq`` metadata value.
SEQ_DIGITS = 12
#: Longest session id Memory accepts (API model: SessionId, max 100).
MAX_SESSION_ID = 100
_SESSION_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-_]*")
_TOKEN_NAMESPACE = uuid.UUID("6f1c0c52-5d0e-4c53-9a7e-6b7c3f0f2a10")


def session_id_for(loop_id: str) -> str:
    """The Memory session id of ``loop_id``: the id itself when Memory admits it, otherwise
    its characters outside ``[a-zA-Z0-9-_]`` replaced by ``-``, cut to 83 characters, plus
    ``-`` and 16 hex digits of its SHA-256 (deterministic, distinct per loop id)."""
    if len(loop_id) <= MAX_SESSION_ID and _SESSION_ID.fullmatch(loop_id):
        return loop_id
    digest = hashlib.sha256(loop_id.encode()).hexdigest()[:16]
    cleaned = re.sub(r"[^a-zA-Z0-9-_]", "-", loop_id)[:83]
    return f"{cleaned}-{digest}"


def memory_client(region_name: str | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> MemoryClient:
    """A ``bedrock_agentcore.memory.MemoryClient`` whose boto3 clients retry in standard mode
    with ``max_attempts`` attempts (the SDK builds its clients itself: the retry settings go in
    as the session's default client config, which botocore merges with the SDK's)."""
    core = botocore.session.Session()
    core.set_default_client_config(retry_config(max_attempts))
    return MemoryClient(region_name=region_name, boto3_session=boto3.Session(botocore_session=core))


class MemoryCheckpointStore(CheckpointStore):
    """:class:`CheckpointStore` over an AgentCore Memory resource (layout in the module doc).

    Args:
        memory_id: the Memory resource id.
        actor_id: actor id of the checkpoint events.
        client: a ``bedrock_agentcore.memory.MemoryClient``; default :func:`memory_client`.
        region_name: region of the default client.
        max_attempts: attempts per call of the default client (standard retry mode).

    Raises :class:`LoopFrameworkError` ``from`` the botocore error for AWS errors (throttling
    after the retries, unknown memory, missing permission).
    """

    def __init__(
        self,
        memory_id: str,
        *,
        actor_id: str = DEFAULT_ACTOR_ID,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.memory_id = memory_id
        self.actor_id = actor_id
        self._client: Any = client if client is not None else memory_client(region_name, max_attempts)

    def save(self, checkpoint: Checkpoint, retention: int) -> None:
        """Store ``checkpoint`` (once: see the module docstring) and delete all but the newest
        ``retention`` (>= 1) checkpoints of its loop.

        Raises :class:`LoopFrameworkError` for ``retention`` < 1, or a checkpoint id already
        stored with another checksum.
        """
        if retention < 1:
            raise LoopFrameworkError(f"checkpoint retention must be at least 1, got {retention}")
        session = session_id_for(checkpoint.loop_id)
        events = self._events(checkpoint.loop_id, include_payload=False)
        same = [e for e in events if _meta(e, "checkpoint_id") == checkpoint.checkpoint_id]
        if same and _meta(same[0], "checksum") != checkpoint.checksum:
            raise LoopFrameworkError(
                f"checkpoint {checkpoint.checkpoint_id!r} is already stored with another checksum"
            )
        if not same:
            seq = max((_seq(e) for e in events), default=0) + 1
            token = uuid.uuid5(
                _TOKEN_NAMESPACE, f"{checkpoint.loop_id}/{checkpoint.checkpoint_id}/{checkpoint.checksum}"
            )
            with aws_errors(self._action("saving checkpoint", checkpoint.loop_id)):
                created = self._client.gmdp_client.create_event(
                    memoryId=self.memory_id,
                    actorId=self.actor_id,
                    sessionId=session,
                    eventTimestamp=checkpoint.created_at,
                    payload=[{"blob": checkpoint.model_dump_json()}],
                    metadata={
                        "checkpoint_id": {"stringValue": checkpoint.checkpoint_id},
                        "iteration": {"stringValue": str(checkpoint.iteration)},
                        "checksum": {"stringValue": checkpoint.checksum},
                        "loop_id": {"stringValue": checkpoint.loop_id},
                        "seq": {"stringValue": f"{seq:0{SEQ_DIGITS}d}"},
                    },
                    clientToken=str(token),
                )
            events.append(created["event"])
        for stale in _newest_first(events)[retention:]:
            self._delete(checkpoint.loop_id, session, str(stale["eventId"]))

    def list_checkpoints(self, loop_id: str) -> list[Checkpoint | str]:
        """Checkpoints of ``loop_id``, newest first; one whose payload cannot be parsed is
        returned as its checkpoint id (its event id if that is missing too). Checksums are not
        verified here (the core does)."""
        found: list[Checkpoint | str] = []
        for event in _newest_first(self._events(loop_id, include_payload=True)):
            payload = event.get("payload") or [{}]
            blob = payload[0].get("blob") if isinstance(payload[0], Mapping) else None
            try:
                if isinstance(blob, str):
                    found.append(Checkpoint.model_validate_json(blob))
                else:
                    found.append(Checkpoint.model_validate(blob))
            except ValidationError:
                found.append(_meta(event, "checkpoint_id") or str(event.get("eventId", "")))
        return found

    # ----------------------------------------------------------------------------- internals
    def _action(self, verb: str, loop_id: str) -> str:
        return f"{verb} of loop {loop_id!r} in AgentCore Memory {self.memory_id!r}"

    def _events(self, loop_id: str, *, include_payload: bool) -> list[dict[str, Any]]:
        """The loop's events that carry a checkpoint id (other events of the session are not
        checkpoints and are left alone)."""
        with aws_errors(self._action("listing checkpoints", loop_id)):
            events = self._client.list_events(
                self.memory_id,
                self.actor_id,
                session_id_for(loop_id),
                max_results=MAX_LISTED_EVENTS,
                include_payload=include_payload,
            )
        return [dict(e) for e in events if _meta(e, "checkpoint_id") is not None]

    def _delete(self, loop_id: str, session: str, event_id: str) -> None:
        with aws_errors(self._action("deleting an old checkpoint", loop_id)):
            try:
                self._client.gmdp_client.delete_event(
                    memoryId=self.memory_id, actorId=self.actor_id, sessionId=session, eventId=event_id
                )
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":  # already gone (or expired)
                    raise


def _meta(event: Mapping[str, Any], key: str) -> str | None:
    value = (event.get("metadata") or {}).get(key)
    if isinstance(value, Mapping) and isinstance(value.get("stringValue"), str):
        return str(value["stringValue"])
    return None


def _seq(event: Mapping[str, Any]) -> int:
    value = _meta(event, "seq")
    return int(value) if value and value.isdigit() else 0


def _newest_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` by ``seq`` then event timestamp, newest first."""
    return sorted(events, key=lambda e: (_seq(e), str(e.get("eventTimestamp", ""))), reverse=True)
