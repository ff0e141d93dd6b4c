"""The project's environment, end to end: a src-layout package with its own ``.venv``, a
third-party dependency and an editable install of itself reaches CONDITIONS_MET once its agent
fixes the bug in the worktree (issue 9, point 4); a venv without pytest is an ERROR that says so.

The venvs are made with the system's Python 3.11 (``sys._base_executable``), without pip (fast);
loopwright's pip installs into them (``pip --python``) from a wheelhouse downloaded once per
session (pytest, setuptools) and a tiny third-party wheel written here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from loopwright.adapters.local.environment import user_environment
from loopwright.adapters.local.project_env import InterpreterSource, detect_project_environment
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.conditions import evaluate_condition
from loopwright.engine.framework import LoopFramework
from loopwright.models import (
    ExitConditionConfig,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationEventType,
    LoopConfig,
    LoopOutcome,
)
from tests.integration.helpers import make_repo

pytestmark = pytest.mark.slow

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _venv(folder: Path) -> Path:
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    return folder / "bin" / "python"


def _tiny_wheel(folder: Path) -> Path:
    """A third-party distribution ``tinydep`` 1.0 (module ``tinydep``: ``double(x)``) as a wheel."""
    files = {
        "tinydep.py": "def double(x):\n    return 2 * x\n",
        "tinydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    records = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        records.append(f"{name},sha256={digest},{len(text.encode())}")
    records.append("tinydep-1.0.dist-info/RECORD,,")
    files["tinydep-1.0.dist-info/RECORD"] = "\n".join(records) + "\n"
    wheel = folder / "tinydep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    download = ["download", "-q", "--disable-pip-version-check", "-d", str(folder)]
    done = subprocess.run(
        [sys.executable, "-m", "pip", *download, "pytest", "setuptools>=64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot download pytest and setuptools: {done.stderr.strip()[-300:]}")
    _tiny_wheel(folder)
    return folder


PROJECT_FILES = {
    ".gitignore": ".venv/\n",
    "pyproject.toml": textwrap.dedent(
        """\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "calcpkg"
        version = "0.1"
        dependencies = ["tinydep"]
        """
    ),
    "src/calcpkg/__init__.py": "",
    "src/calcpkg/core.py": "import tinydep\n\n\ndef quadruple(x):\n    return tinydep.double(x) + x\n",
    "tests/test_core.py": "from calcpkg.core import quadruple\n\n\ndef test_quadruple():\n"
    "    assert quadruple(3) == 12\n",
}

#: The agent: fixes the bug in its working folder (the worktree), never in the main checkout.
AGENT = textwrap.dedent(
    """\
    import pathlib
    core = pathlib.Path("src/calcpkg/core.py")
    core.write_text(core.read_text().replace("tinydep.double(x) + x", "tinydep.double(tinydep.double(x))"))
    """
)


def test_a_src_layout_project_with_its_own_venv_converges(tmp_path: Path, wheelhouse: Path) -> None:
    # Given a src-layout package with its own .venv (untracked), a third-party dependency and an
    # editable install of itself, and a failing test
    workspace = make_repo(tmp_path / "calc", PROJECT_FILES)
    python = _venv(workspace / ".venv")
    _pip(python, "install", "--no-index", "--find-links", str(wheelhouse), "pytest", "setuptools", "tinydep")
    _pip(python, "install", "--no-index", "--no-build-isolation", "-e", str(workspace))
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    config = LoopConfig(
        goal="make quadruple right",
        exit_conditions=[ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS, timeout_seconds=120)],
        agent={"kind": "command", "command": ["python", str(agent)]},
        max_iterations=3,
    )

    # When the loop runs
    loop = LoopFramework(config, workspace=workspace, loop_id="calc-1")
    result = loop.run()

    # Then the agent's fix, in the worktree, is what the tests imported: the loop converges
    assert result.outcome is LoopOutcome.CONDITIONS_MET, result
    assert result.iterations == 1
    assert "tinydep.double(x) + x" in (workspace / "src/calcpkg/core.py").read_text()  # main untouched
    # ... and the interpreter and how it was found are recorded once, when the loop started
    started = [e for e in loop.store.list_events("calc-1") if e.type is IterationEventType.LOOP_STARTED]
    assert len(started) == 1
    data = started[0].data
    assert data["python"] == str(python)
    assert data["python_source"] == InterpreterSource.VENV.value
    assert data["venv"] == str(workspace / ".venv")
    worktree = Path(loop.get_state().worktree)
    assert data["import_roots"] == [str(worktree.resolve() / "src")]
    assert f"python {python}" in started[0].message


def test_a_venv_without_pytest_is_an_error_naming_the_interpreter(tmp_path: Path) -> None:
    # Given a project whose .venv lacks pytest
    workspace = make_repo(tmp_path / "bare", {"test_x.py": "def test_x():\n    pass\n"})
    python = _venv(workspace / ".venv")
    environment = detect_project_environment(workspace, workspace, user_environment())
    assert environment.python == str(python)

    # When its tests are evaluated
    cfg = ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS)
    status = evaluate_condition(cfg, SubprocessSandbox(environment=environment), workspace, iteration=1)

    # Then it is an ERROR of the condition saying what to do, not a failing test suite
    assert status.status is ExitConditionStatusValue.ERROR
    assert status.summary == (
        f"pytest is not installed in the project's environment ({python}): install it there "
        f'({python} -m pip install pytest) or set python = "..." in the config'
    )
    assert status.details["missing_module"] == "pytest"
    assert json.dumps(status.failures) == json.dumps([status.summary])
