"""./dev mutate's definition of a message-text mutant (scripts/mutation_report.py)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation_report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def function(source: str) -> ast.FunctionDef:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


ORIGINAL = """
def f(state, record, code):
    if code < 0:
        raise ValueError(f"bad code {code}")
    log.warning("odd code %s", code)
    record(EV.DONE, f"done with {code}", key="k")
    message = "it is " + str(code)
    summary_lines.append("not a message")
    return ParsedOutput(MET, "all good", {"exit_code": code}, ["a.py:1 failure"])
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('f"bad code {code}"', 'f"XXbad code XX{code}"', True),
        ('"odd code %s"', '"ODD CODE %s"', True),
        ('f"done with {code}"', 'f"XXdone with XX{code}"', True),
        ('"it is "', '"XXit is XX"', True),
        ('"all good"', '"XXall goodXX"', True),
        # records read back, not messages
        ('"not a message"', '"XXnot a messageXX"', False),
        ('{"exit_code": code}', '{"XXexit_codeXX": code}', False),
        ('["a.py:1 failure"]', '["XXa.py:1 failureXX"]', False),
        ('key="k"', 'key="XXkXX"', False),
        # not only text: the message becomes None, or the code changes
        ('"all good"', "None", False),
        ("code < 0", "code <= 0", False),
        ('raise ValueError(f"bad code {code}")', 'raise ValueError(f"bad code {code}", 1)', False),
    ],
)
def test_message_text_mutants(report: ModuleType, old: str, new: str, expected: bool) -> None:
    assert old in ORIGINAL
    mutated = ORIGINAL.replace(old, new).replace("def f(", "def f_mutant(")
    assert report.is_message_text(function(ORIGINAL), function(mutated)) is expected


def test_an_unchanged_function_is_not_a_message_text_mutant(report: ModuleType) -> None:
    assert report.is_message_text(function(ORIGINAL), function(ORIGINAL)) is False
