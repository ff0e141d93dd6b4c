"""The agent's records in the DynamoDB store, under moto: kept, replaced, listed without being
listed as loops, and bounded to fit a DynamoDB item."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator

import pytest

from loopwright.adapters.aws.dynamodb_records import RECORD_MAX_BYTES, pack_record
from loopwright.adapters.aws.dynamodb_store import DynamoDbStore
from loopwright.models.records import OUTPUT_TAIL_CHARS, AgentOutput, IterationRecord
from tests.integration.aws_moto import fake_credentials, moto_dynamodb_store
from tests.integration.test_sqlite_store import make_state


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDbStore]:
    fake_credentials(monkeypatch)
    with moto_dynamodb_store() as opened:
        yield opened


def _record(loop_id: str, iteration: int, text: str) -> IterationRecord:
    return IterationRecord(
        loop_id=loop_id, iteration=iteration, prompt="p", output=AgentOutput(head=text, total_chars=len(text))
    )


def test_records_are_kept_replaced_and_listed_but_never_as_loops(store: DynamoDbStore) -> None:
    state = store.create_loop(make_state())
    loop_id = state.loop_id
    store.save_state(state.model_copy(update={"iteration": 2}))
    assert store.list_iteration_records(loop_id) == [] and store.get_iteration_record(loop_id, 1) is None

    store.save_iteration_record(_record(loop_id, 2, "two\n"))
    store.save_iteration_record(_record(loop_id, 1, "one\n"))
    store.save_iteration_record(_record(loop_id, 1, "one, again\n"))

    assert [s.iteration for s in store.list_iteration_records(loop_id)] == [1, 2]
    again = store.get_iteration_record(loop_id, 1)
    assert again is not None and again.output.text() == "one, again\n"
    assert [s.loop_id for s in store.list_loops()] == [loop_id]  # record items are no loops
    assert store.list_iteration_records("unknown") == []


def test_an_incompressible_record_is_shrunk_to_fit_an_item(store: DynamoDbStore) -> None:
    # Given an agent whose kept output is random text (it barely compresses)
    state = store.create_loop(make_state())
    rng = random.Random(7)
    noise = "".join(rng.choice(string.printable) for _ in range(OUTPUT_TAIL_CHARS * 2))
    record = IterationRecord(
        loop_id=state.loop_id,
        iteration=1,
        output=AgentOutput(head=noise[:100], tail=noise, total_chars=len(noise) + 100),
    )
    assert len(pack_record(record)) <= RECORD_MAX_BYTES

    # When it is stored, Then it reads back with its end and a count of everything written
    store.save_iteration_record(record)
    kept = store.get_iteration_record(state.loop_id, 1)
    assert kept is not None and kept.output.total_chars == len(noise) + 100
    assert noise.endswith(kept.output.tail) and 0 < len(kept.output.tail) <= OUTPUT_TAIL_CHARS
