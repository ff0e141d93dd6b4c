"""Build the core Lambda layer without Docker: ``python/`` = pip wheels + loopwright + policies.

Layout of the build folder (default ``<repo>/build``, git-ignored)::

    build/layer-deps-<requirements hash>/python/   pip install --target (cached, needs the index once)
    build/layer-<full hash>/python/                 the deps (hard links) + loopwright/ + policies/

The dependencies are installed for Lambda's platform, not this machine's: ``pip install --target
... --platform manylinux2014_aarch64 --implementation cp --python-version 3.12
--only-binary=:all:`` (ARM_64 functions, Python 3.12). Their folder is keyed by a SHA-256 of the
requirements and the platform, so synth runs offline once it exists; the final folder is keyed by
that plus the package and policy sources, so editing loopwright only re-links and re-copies
(about a second), never calls pip. Without the dependency folder and without the index, synth
fails with :class:`LayerBuildError` saying to run ``python -m infrastructure.layer_build`` once
online.

``cedarpy``, ``typer`` and ``rich`` are not in the layer (local engine and CLI only).

What pip brings along and Lambda never imports is removed after the install
(:data:`LAYER_EXCLUDED`, each distribution's files as its ``RECORD`` lists them):
``uvicorn`` and what only it needs (``click``, ``h11``). bedrock-agentcore 1.25.0 depends on them
for ``BedrockAgentCoreApp.run`` (an agent's HTTP server), which imports ``uvicorn`` inside the
function; the functions only use its Memory and Code Interpreter clients. ``starlette`` and
``websockets`` stay: the package's ``__init__`` imports ``bedrock_agentcore.runtime``, whose
modules import both at import time, so ``import bedrock_agentcore.memory`` needs them
(``tests/infrastructure/test_layer_build.py`` imports every handler with the excluded packages
blocked). ``boto3``/``botocore`` stay, pinned by bedrock-agentcore (``boto3>=1.43.115``): the
runtime's own SDK is whatever version Lambda ships at the time ("Runtime-included SDK versions",
Lambda Developer Guide), and the AgentCore data plane (``bedrock-agentcore`` service) is newer
than the SDK a runtime may carry, so the layer pins the one the tests ran with.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from infrastructure.constants import (
    BUILD_DIR,
    LAYER_PIP_PLATFORM,
    LAYER_PYTHON_VERSION,
    PACKAGE_DIR,
    POLICIES_DIR,
)

#: What the layer installs (pinned: the versions the tests run with).
LAYER_REQUIREMENTS: tuple[str, ...] = (
    "pydantic==2.14.3",
    "aws-lambda-powertools[tracer]==3.37.0",
    "bedrock-agentcore==1.25.0",
)
#: Distributions removed from the installed dependencies (see the module docstring).
LAYER_EXCLUDED: tuple[str, ...] = ("uvicorn", "click", "h11")
#: Seconds pip may take before the build is abandoned.
PIP_TIMEOUT_SECONDS = 600
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")

#: Runs a command; returns (exit code, combined output). Replaceable in tests.
CommandRunner = Callable[[Sequence[str]], tuple[int, str]]


class LayerBuildError(RuntimeError):
    """The layer's dependencies could not be installed (offline, or pip failed)."""


def _run(command: Sequence[str]) -> tuple[int, str]:
    completed = subprocess.run(
        list(command), capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False
    )
    return completed.returncode, completed.stdout + completed.stderr


def requirements_hash(requirements: Iterable[str] = LAYER_REQUIREMENTS) -> str:
    """SHA-256 (first 16 hex digits) of the requirements, platform and Python version."""
    excluded = [f"-{name}" for name in sorted(LAYER_EXCLUDED)]
    text = "\n".join([*sorted(requirements), *excluded, LAYER_PIP_PLATFORM, LAYER_PYTHON_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sources_hash(*folders: Path) -> str:
    """SHA-256 (first 16 hex digits) of the relative paths and contents of the files under
    ``folders`` (caches and bytecode left out)."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(folder.parent)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def pip_command(target: Path, requirements: Sequence[str] = LAYER_REQUIREMENTS) -> list[str]:
    """The pip call installing ``requirements`` into ``target`` for Lambda's platform."""
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--target", str(target), "--platform", LAYER_PIP_PLATFORM,
        "--implementation", "cp", "--python-version", LAYER_PYTHON_VERSION,
        "--only-binary=:all:", *requirements,
    ]  # fmt: skip


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def prune(site: Path, names: Iterable[str] = LAYER_EXCLUDED) -> list[str]:
    """Remove the distributions ``names`` from ``site`` (a ``pip install --target`` folder): every
    file their ``RECORD`` lists (inside ``site`` only), folders left empty, and the
    ``.dist-info``. Returns the names removed, sorted."""
    wanted = {_canonical(name) for name in names}
    root = site.resolve()
    removed: list[str] = []
    for info in sorted(site.glob("*.dist-info")):
        name = _canonical(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        if name not in wanted:
            continue
        record = info / "RECORD"
        lines = record.read_text().splitlines() if record.exists() else []
        folders: set[Path] = set()
        for line in lines:
            path = (site / line.split(",", 1)[0]).resolve()
            if path.is_relative_to(root) and path.is_file() and info.resolve() not in path.parents:
                path.unlink()
                folders.update(p for p in path.parents if p.is_relative_to(root) and p != root)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        shutil.rmtree(info)
        removed.append(name)
    return sorted(removed)


def build_dependencies(build_dir: Path = BUILD_DIR, run: CommandRunner = _run) -> Path:
    """The folder whose ``python/`` holds the installed requirements, built when missing.

    Raises :class:`LayerBuildError` when pip fails (its output's tail and the fix in the message).
    """
    deps = build_dir / f"layer-deps-{requirements_hash()}"
    if (deps / "python").is_dir():
        return deps
    build_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="layer-deps-", dir=build_dir))
    code, output = run(pip_command(staging / "python"))
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(output.strip().splitlines()[-8:])
        raise LayerBuildError(
            f"pip could not install the layer's dependencies (exit {code}):\n{tail}\n"
            "Synth needs them once: run `python -m infrastructure.layer_build` with access to the "
            f"package index; later synths reuse {deps} offline. For tests, "
            "`-c loopwright:layer=stub` (or LOOPWRIGHT_CDK_LAYER=stub) synthesizes a stub layer."
        )
    prune(staging / "python")
    staging.rename(deps)
    return deps


def _link_or_copy(source: str, destination: str) -> object:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def build_layer(build_dir: Path = BUILD_DIR, run: CommandRunner = _run) -> Path:
    """The layer folder (its ``python/`` goes on ``sys.path`` in Lambda), built when missing.

    Older ``layer-<hash>`` folders are removed. Raises :class:`LayerBuildError` (see
    :func:`build_dependencies`).
    """
    deps = build_dependencies(build_dir, run)
    layer = build_dir / f"layer-{requirements_hash()}-{sources_hash(PACKAGE_DIR, POLICIES_DIR)}"
    if not (layer / "python").is_dir():
        staging = Path(tempfile.mkdtemp(prefix="layer-", dir=build_dir))
        python = staging / "python"
        shutil.copytree(deps / "python", python, copy_function=_link_or_copy)
        shutil.copytree(PACKAGE_DIR, python / PACKAGE_DIR.name, ignore=_IGNORED, dirs_exist_ok=True)
        shutil.copytree(POLICIES_DIR, python / "policies", ignore=_IGNORED)
        staging.rename(layer)
    for old in build_dir.glob("layer-*"):
        if old != layer and old.is_dir() and not old.name.startswith(("layer-deps-", "layer-stub")):
            shutil.rmtree(old, ignore_errors=True)
    return layer


def stub_layer(build_dir: Path = BUILD_DIR) -> Path:
    """A one-file layer for synth in tests (no pip, no copy of the package)."""
    layer = build_dir / "layer-stub"
    marker = layer / "python" / "loopwright_stub_layer.txt"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("stub layer: synthesized with -c loopwright:layer=stub, not deployable\n")
    return layer


def main() -> int:
    """``python -m infrastructure.layer_build``: build the layer (online once), print its folder."""
    try:
        print(build_layer())
    except LayerBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
