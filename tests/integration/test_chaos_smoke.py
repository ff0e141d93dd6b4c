"""A short chaos run (bench/chaos.py): loopwright killed at random moments and resumed loses no
iteration, does none twice, never runs two agents at once and salvages interrupted work."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

CHAOS_FILE = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos", CHAOS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


chaos = _load()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_a_loop_killed_three_times_ends_as_if_it_never_was(tmp_path: Path, seed: int) -> None:
    trial = chaos.run_trial(1, iterations=4, kills=3, root=tmp_path, seed=seed)
    assert trial.passed, trial.problems
