"""The evaluation-overhead benchmark (bench/bench_evaluation.py) still runs and prints its figure."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from loopwright.adapters.local.project_env import InterpreterSource, ProjectEnvironment

BENCH_FILE = Path(__file__).resolve().parents[2] / "bench" / "bench_evaluation.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_evaluation", BENCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_figure_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    # loopwright's own interpreter has pytest: no venv is made (the real run makes one)
    bench = _load_bench()
    args = ["--python", sys.executable, "--runs", "1", "--warmup", "0"]
    assert bench.main(args) == 0
    line, cached = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(
        r"evaluation overhead: \d+\.\d\dx \((meets|misses) the target <= 1\.2x\): a pytest condition of "
        r"20 tests takes \d+ ms through loopwright, \d+ ms by hand \(median of 1; python .+\)",
        line,
    ), line
    # the evaluation cache's figure (issue 10): an unchanged tree next to a real evaluation
    assert re.fullmatch(
        r"evaluation of an unchanged tree: \d+\.\d ms, cached \((meets|misses) the target < 5 ms; "
        r"median of 1\), next to \d+ ms for the real evaluation of the same tree",
        cached,
    ), cached


def test_a_failing_suite_is_an_error(tmp_path: Path) -> None:
    bench = _load_bench()
    bench.make_project(tmp_path)
    # an "interpreter" whose every run fails, as a failing suite does
    environment = ProjectEnvironment(python="/bin/false", source=InterpreterSource.CONFIG, found_by="test")
    with pytest.raises(RuntimeError, match="the suite does not pass"):
        bench.measure(tmp_path, environment, runs=1, warmup=0)
    assert len(list((tmp_path / "tests").glob("test_*.py"))) == bench.FILES
