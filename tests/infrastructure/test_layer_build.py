"""The core layer's build (``infrastructure.layer_build``): pip once, offline afterwards, and
nothing in it that Lambda never imports (issue 12 point 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infrastructure import constants
from infrastructure.layer_build import (
    LAYER_EXCLUDED,
    LayerBuildError,
    build_layer,
    pip_command,
    prune,
    requirements_hash,
)

REPO = constants.REPO_ROOT


def test_layer_build_installs_once_then_reuses_the_dependencies(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_pip(command: Any) -> tuple[int, str]:
        calls.append(list(command))
        target = Path(command[command.index("--target") + 1])
        (target / "pydantic").mkdir(parents=True)
        (target / "pydantic" / "__init__.py").write_text("")
        return 0, ""

    layer = build_layer(tmp_path, fake_pip)
    assert (layer / "python" / "pydantic" / "__init__.py").exists()
    assert (layer / "python" / "loopwright" / "models" / "workflow.py").exists()
    assert (layer / "python" / "policies" / "loopwright.cedarschema").exists()
    assert not list((layer / "python" / "loopwright").rglob("__pycache__"))
    assert build_layer(tmp_path, fake_pip) == layer
    assert len(calls) == 1
    assert calls[0][calls[0].index("--platform") + 1] == constants.LAYER_PIP_PLATFORM
    assert "--only-binary=:all:" in calls[0]


def test_layer_build_offline_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(LayerBuildError, match=r"python -m infrastructure\.layer_build"):
        build_layer(tmp_path, lambda command: (1, "ERROR: Could not find a version (network)"))
    assert not list(tmp_path.glob("layer-deps-*"))


def test_layer_requirements_leave_out_local_only_packages() -> None:
    command = " ".join(pip_command(Path("/x")))
    assert "cedarpy" not in command and "typer" not in command and "rich" not in command
    assert "--python-version 3.12" in command and "--implementation cp" in command


def _fake_distribution(site: Path, name: str, files: dict[str, str]) -> None:
    """A distribution as pip installs it: its files and a ``.dist-info`` whose RECORD lists them."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    for relative, text in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(text)
    (info / "METADATA").write_text(f"Name: {name}\n")
    record = [f"{relative},sha256=x,1" for relative in files]
    (info / "RECORD").write_text("\n".join([*record, f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]))


def test_prune_removes_the_excluded_distributions_and_keeps_the_rest(tmp_path: Path) -> None:
    # Given what bedrock-agentcore brings along
    site = tmp_path / "python"
    _fake_distribution(site, "uvicorn", {"uvicorn/__init__.py": "", "uvicorn/main.py": "", "bin/uvicorn": ""})
    _fake_distribution(site, "click", {"click/__init__.py": ""})
    _fake_distribution(site, "h11", {"h11/__init__.py": ""})
    _fake_distribution(site, "starlette", {"starlette/__init__.py": ""})
    (tmp_path / "outside.txt").write_text("not the layer's")
    _fake_distribution(site, "websockets", {"websockets/__init__.py": "", "../outside.txt": "x"})
    # When the layer's dependencies are pruned
    removed = prune(site)
    # Then uvicorn and what only it needs are gone, files and metadata
    assert removed == sorted(LAYER_EXCLUDED) == ["click", "h11", "uvicorn"]
    left = sorted(p.name for p in site.iterdir())
    assert left == ["starlette", "starlette-1.0.dist-info", "websockets", "websockets-1.0.dist-info"]
    assert (tmp_path / "outside.txt").exists()


def test_the_layer_build_prunes_and_keys_its_cache_by_the_exclusions(tmp_path: Path) -> None:
    def fake_pip(command: Any) -> tuple[int, str]:
        target = Path(command[command.index("--target") + 1])
        _fake_distribution(target, "uvicorn", {"uvicorn/__init__.py": ""})
        _fake_distribution(target, "pydantic", {"pydantic/__init__.py": ""})
        return 0, ""

    layer = build_layer(tmp_path, fake_pip)
    assert (layer / "python" / "pydantic").is_dir()
    assert not (layer / "python" / "uvicorn").exists()
    assert (tmp_path / f"layer-deps-{requirements_hash()}").is_dir()


_HANDLER_IMPORTS = """
import importlib.util, sys
from pathlib import Path
for name in {blocked!r}:
    sys.modules[name] = None  # an import of it now fails, as it would in the layer
for handler in sorted(Path({functions!r}).glob("*/handler.py")):
    spec = importlib.util.spec_from_file_location(f"handler_{{handler.parent.name}}", handler)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
import bedrock_agentcore.memory, bedrock_agentcore.tools.code_interpreter_client
import loopwright.adapters.aws.memory_checkpoints, loopwright.adapters.aws.dynamodb_store
print("imported")
"""


@pytest.mark.slow
def test_every_handler_imports_without_the_excluded_packages() -> None:
    # Given the packages the layer leaves out blocked
    code = _HANDLER_IMPORTS.format(blocked=list(LAYER_EXCLUDED), functions=str(REPO / "functions"))
    env = {"PYTHONPATH": str(REPO / "layers"), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    # When every handler (and the AgentCore clients they use) is imported
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    # Then nothing needed them
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("imported")
