"""MemoryCheckpointStore against moto's AgentCore Memory data plane (CreateEvent, ListEvents,
DeleteEvent are implemented there; moto ignores clientToken, so idempotency is the store's own
look-up) and a throttling path with botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.stub import Stubber
from moto import mock_aws

from loopwright.adapters.aws.memory_checkpoints import (
    MemoryCheckpointStore,
    memory_client,
    session_id_for,
)
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import Checkpoint
from tests.integration.aws_moto import REGION, fake_credentials
from tests.integration.test_sqlite_store import make_state

MEMORY_ID = "loopwright_checkpoints-abcdefghij"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryCheckpointStore]:
    fake_credentials(monkeypatch)
    with mock_aws():
        yield MemoryCheckpointStore(MEMORY_ID, client=memory_client(REGION, max_attempts=2))


def checkpoints(loop_id: str, iterations: range) -> list[Checkpoint]:
    state = make_state(loop_id)
    made = []
    for iteration in iterations:
        state.iteration = iteration
        made.append(Checkpoint.from_loop_state(state, commit=f"c{iteration}"))
    return made


def test_save_and_list_newest_first_with_retention(store: MemoryCheckpointStore) -> None:
    saved = checkpoints("loop_a", range(1, 8))
    for ckpt in saved:
        store.save(ckpt, retention=3)
    other = checkpoints("loop_b", range(1, 2))[0]
    store.save(other, retention=1)

    kept = store.list_checkpoints("loop_a")
    assert kept == list(reversed(saved[-3:]))
    assert all(isinstance(c, Checkpoint) and c.is_valid() for c in kept)
    assert store.list_checkpoints("loop_b") == [other]
    assert store.list_checkpoints("nope") == []
    with pytest.raises(LoopFrameworkError, match="retention"):
        store.save(saved[0], retention=0)


def test_a_retried_save_does_not_write_twice(store: MemoryCheckpointStore) -> None:
    first, second = checkpoints("loop_a", range(1, 3))
    store.save(first, retention=5)
    store.save(second, retention=5)
    store.save(second, retention=5)  # the retried Lambda
    store.save(first, retention=5)  # an older one re-saved stays where it was
    assert store.list_checkpoints("loop_a") == [second, first]

    changed = second.model_copy(update={"checksum": "0" * 64})
    with pytest.raises(LoopFrameworkError, match="already stored with another checksum"):
        store.save(changed, retention=5)


def test_corrupt_payloads_are_returned_for_the_core_to_skip(store: MemoryCheckpointStore) -> None:
    good, tampered_source, broken = checkpoints("loop_a", range(1, 4))
    store.save(good, retention=5)
    tampered = tampered_source.model_copy(update={"iteration": 42})  # checksum no longer matches
    store.save(tampered, retention=5)
    store.save(broken, retention=5)
    # Damage the newest event's payload in the service itself
    data_plane = store._client.gmdp_client
    session = session_id_for("loop_a")
    newest = store._client.list_events(MEMORY_ID, store.actor_id, session)[-1]
    data_plane.delete_event(
        memoryId=MEMORY_ID, actorId=store.actor_id, sessionId=session, eventId=newest["eventId"]
    )
    data_plane.create_event(
        memoryId=MEMORY_ID,
        actorId=store.actor_id,
        sessionId=session,
        eventTimestamp=broken.created_at,
        payload=[{"blob": "{not json"}],
        metadata=newest["metadata"],
    )

    entries = store.list_checkpoints("loop_a")
    assert entries[0] == broken.checkpoint_id
    assert isinstance(entries[1], Checkpoint) and not entries[1].is_valid()
    assert entries[2] == good and good.is_valid()


def test_loop_ids_memory_rejects_get_a_stable_session_id(store: MemoryCheckpointStore) -> None:
    assert session_id_for("loop_a") == "loop_a"
    dotted = session_id_for("release.2.0")
    assert dotted.startswith("release-2-0-") and dotted == session_id_for("release.2.0")
    assert dotted != session_id_for("release-2.0")
    assert len(session_id_for("a" * 128)) <= 100
    ckpt = checkpoints("release.2.0", range(1, 2))[0]
    store.save(ckpt, retention=2)
    assert store.list_checkpoints("release.2.0") == [ckpt]


def test_throttling_surfaces_as_a_domain_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_credentials(monkeypatch)
    client = memory_client(REGION, max_attempts=1)
    assert client.gmdp_client.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    store = MemoryCheckpointStore(MEMORY_ID, client=client)
    with Stubber(client.gmdp_client) as stubber:
        stubber.add_client_error("list_events", "ThrottledException", "slow down", http_status_code=429)
        with pytest.raises(LoopFrameworkError, match=r"ThrottledException.*throttled") as info:
            store.list_checkpoints("loop_a")
        assert info.value.__cause__ is not None
