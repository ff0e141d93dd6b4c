"""Issue 15, part 2 on the Step Functions engine: the step that completes a loop with
CONDITIONS_MET builds, signs and stores its evidence bundle; nothing else does, and a bundle that
cannot be made never fails the loop (:mod:`loopwright.cloud.evidence_record`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loopwright.adapters.local.evidence_key import LocalEd25519Signer
from loopwright.cloud.evidence_record import (
    ENGINE,
    EvidenceKeeper,
    EvidenceTooSlowError,
    iteration_records,
    record_evidence,
)
from loopwright.cloud.steps import CloudPorts, start_step
from loopwright.cloud.steps_compact import next_input, run_iteration_step
from loopwright.evidence import EvidenceError, EvidenceStore, read_signed
from loopwright.exceptions import LoopFrameworkError
from loopwright.models import LoopOutcome, LoopPhase, NextAction, StepInput
from tests.fakes import MemoryStore
from tests.unit.test_cloud_steps import Scenario, _cloud_ports, _config, _create, run_state_machine
from tests.unit.test_evidence import completed_state


class MemoryBundles(EvidenceStore):
    def __init__(self, fail: bool = False) -> None:
        self.files: dict[str, bytes] = {}
        self.fail = fail

    def put(self, loop_id: str, data: bytes) -> None:
        if self.fail:
            raise LoopFrameworkError("the table is gone")
        self.files[loop_id] = data

    def get(self, loop_id: str) -> bytes | None:
        return self.files.get(loop_id)


class BrokenSigner(LocalEd25519Signer):
    def sign(self, message: bytes) -> bytes:
        raise EvidenceError("KMS key disabled")


def _keeper(bundles: EvidenceStore | None = None) -> EvidenceKeeper:
    return EvidenceKeeper(LocalEd25519Signer(Ed25519PrivateKey.generate()), bundles or MemoryBundles())


def _run(tmp_path: Path, passes_at: int, keeper: EvidenceKeeper | None) -> MemoryStore:
    store = MemoryStore()
    _create(store, _config(), "l1", tmp_path)
    ports = _cloud_ports(tmp_path, Scenario(passes_at), store)
    run_state_machine(CloudPorts(**{**ports.__dict__, "evidence": keeper}), "l1")
    return store


def test_the_completing_step_stores_a_bundle_that_verifies(tmp_path: Path) -> None:
    keeper = _keeper()
    store = _run(tmp_path, 3, keeper)
    assert store.get_state("l1").outcome is LoopOutcome.CONDITIONS_MET
    bundles = keeper.bundles
    assert isinstance(bundles, MemoryBundles) and set(bundles.files) == {"l1"}
    document = read_signed(bundles.files["l1"], keeper.signer)
    bundle = document.bundle
    assert (bundle.loop_id, bundle.outcome) == ("l1", "CONDITIONS_MET")
    assert [i.iteration for i in bundle.iterations] == [1, 2, 3]  # from the iteration records
    assert bundle.iterations[-1].conditions == {"a": "MET"}
    assert bundle.tokens_used == 30 and bundle.tool_versions["engine"] == ENGINE
    assert bundle.pinned_files_start == {} and bundle.pinned_files_end == {}  # not read on this engine


def test_a_loop_met_by_its_baseline_gets_a_bundle_without_iterations(tmp_path: Path) -> None:
    keeper = _keeper()
    _run(tmp_path, 0, keeper)
    assert isinstance(keeper.bundles, MemoryBundles)
    assert read_signed(keeper.bundles.files["l1"], keeper.signer).bundle.iterations == []


def test_a_loop_that_did_not_meet_its_conditions_gets_none(tmp_path: Path) -> None:
    keeper = _keeper()
    store = _run(tmp_path, 99, keeper)
    assert store.get_state("l1").outcome is LoopOutcome.ITERATION_LIMIT
    assert isinstance(keeper.bundles, MemoryBundles) and keeper.bundles.files == {}


@pytest.mark.parametrize(
    ("keeper", "says"),
    [
        (None, "no evidence key"),
        (EvidenceKeeper(BrokenSigner(Ed25519PrivateKey.generate()), MemoryBundles()), "KMS key disabled"),
        (_keeper(MemoryBundles(fail=True)), "the table is gone"),
    ],
)
def test_no_bundle_never_fails_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keeper: EvidenceKeeper | None, says: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="loopwright.cloud.evidence_record"):
        store = _run(tmp_path, 2, keeper)
    state = store.get_state("l1")
    assert (state.outcome, state.phase) == (LoopOutcome.CONDITIONS_MET, LoopPhase.COMPLETED)
    assert says in caplog.text


def test_record_evidence_reads_the_records_and_returns_the_stored_bytes() -> None:
    keeper = _keeper()
    data = record_evidence(completed_state(), MemoryStore(), keeper)
    assert data is not None and isinstance(keeper.bundles, MemoryBundles)
    assert keeper.bundles.files["l1"] == data
    assert record_evidence(completed_state(outcome=LoopOutcome.STOPPED), MemoryStore(), keeper) is None


def test_reading_too_many_records_gives_up_the_bundle() -> None:
    ticks = iter(range(100))
    state = completed_state(iteration=50)
    with pytest.raises(EvidenceTooSlowError, match="50 iteration records took more than 3 s"):
        iteration_records(MemoryStore(), state, budget_seconds=3, clock=lambda: float(next(ticks)))
    assert iteration_records(MemoryStore(), state) == []  # within the budget: none stored, none read


def test_the_compact_variant_signs_with_its_base_ports(tmp_path: Path) -> None:
    # run_iteration_step's decide runs with the base ports; the work steps with work_ports(base)
    store, keeper = MemoryStore(), _keeper()
    _create(store, _config(), "l1", tmp_path)
    ports = CloudPorts(**{**_cloud_ports(tmp_path, Scenario(2), store).__dict__, "evidence": keeper})
    event = next_input(start_step(StepInput(loop_id="l1"), ports))
    for _ in range(5):
        out = run_iteration_step(event, ports)
        if out.action is not NextAction.CONTINUE:
            break
        event = next_input(out)
    assert out.outcome is LoopOutcome.CONDITIONS_MET
    assert isinstance(keeper.bundles, MemoryBundles)
    assert [
        i.iteration for i in read_signed(keeper.bundles.files["l1"], keeper.signer).bundle.iterations
    ] == [1, 2]
