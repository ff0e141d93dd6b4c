"""loopwright installed like a tool: the wheel built, installed into a fresh venv, running a loop.

How the test stays offline and fast (11 to 19 s measured on the shared 2-core dev VM; the build
takes about 2 s), and what it proves:

- The wheel is built with ``pip wheel --no-deps --no-build-isolation`` from a copy of what an
  sdist holds (``pyproject.toml``, ``setup.py``, ``MANIFEST.in``, ``README.md``, ``layers/``,
  ``policies/``), so no other file of the checkout can leak into it, and the build uses the dev
  venv's setuptools (the ``dev`` extra pins one that builds wheels by itself).
- The fresh venv (``python -m venv --without-pip``) gets the wheel and nothing else of
  loopwright, installed by the dev venv's pip (``pip --python``). Its dependencies are the dev
  venv's, seen through a ``.pth`` file that appends the dev venv's site-packages to
  ``sys.path``: downloading them would need the network. Paths a ``.pth`` adds are not site
  folders, so the dev venv's editable install of loopwright (itself a ``.pth``) is not
  processed, and the fresh venv's own site-packages comes first: the test checks that the
  ``loopwright`` imported is the wheel's.
- ``loopwright run`` runs in a repository in a temporary folder, with no
  ``LOOPWRIGHT_POLICY_DIR`` and no ``PYTHONPATH``: the only policies it can find are the ones the
  wheel ships, and the digests it records are the checkout's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from tests.integration.helpers import make_repo

ROOT = Path(__file__).resolve().parents[2]
#: What an sdist holds (MANIFEST.in and setuptools' defaults), copied to build from.
SDIST_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
SDIST_FOLDERS = ("layers", "policies")
BUILD_NOISE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "tests")


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


def _build_wheel(tmp_path: Path) -> Path:
    found = tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    assert found >= (70, 1), (
        f"setuptools {metadata.version('setuptools')} cannot build a wheel without the `wheel` package: "
        "install the dev extra (./dev test does), which pins setuptools>=70.1"
    )
    source = tmp_path / "source"
    source.mkdir()
    for name in SDIST_FILES:
        shutil.copy2(ROOT / name, source / name)
    for name in SDIST_FOLDERS:
        # policies/tests is not shipped; layers/ has no tests folder, so the pattern is harmless there
        shutil.copytree(ROOT / name, source / name, ignore=BUILD_NOISE)
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(source),
        ]
    )
    (wheel,) = dist.glob("loopwright-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    (site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow
def test_the_built_wheel_installed_in_a_fresh_venv_runs_a_loop_with_its_packaged_policies(
    tmp_path: Path,
) -> None:
    # Given the wheel, built from the sources an sdist holds
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    checkout = CedarPolicyEngine(ROOT / "policies").policy_files()
    assert {f"loopwright/policies/{name}" for name in checkout} <= set(names)
    assert not [name for name in names if name.startswith("loopwright/policies/tests")]

    # And a fresh venv holding only that wheel of loopwright
    venv = _fresh_venv(tmp_path, wheel)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOOPWRIGHT_POLICY_DIR", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    repo = make_repo(tmp_path / "project", {"README.md": "a project\n"})
    (repo / "loopwright.toml").write_text(
        textwrap.dedent(
            """
            goal = "write done.txt"
            max_iterations = 3
            [[exit_conditions]]
            type = "CUSTOM"
            name = "done"
            command = ["sh", "-c", "test -f done.txt"]
            [agent]
            kind = "command"
            command = ["sh", "-c", "echo done > done.txt"]
            """
        )
    )
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import loopwright; from loopwright.adapters.local.cedar_policy import default_policy_dir; "
            "print(loopwright.__file__); print(default_policy_dir())",
        ],
        cwd=repo,
        env=env,
    ).stdout.split()
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert where == [str(site / "loopwright" / "__init__.py"), str(site / "loopwright" / "policies")]

    # When the installed `loopwright` runs a loop from the project's folder
    version = _run(["loopwright", "--version"], cwd=repo, env=env)
    done = subprocess.run(
        ["loopwright", "run", "--loop-id", "pkg-1"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it reaches its outcome under the packaged policies, whose digests are the checkout's
    assert version.stdout.strip() == "loopwright 0.1.0"
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CONDITIONS_MET" in done.stdout
    status = json.loads(_run(["loopwright", "status", "pkg-1", "--json"], cwd=repo, env=env).stdout)
    assert status["outcome"] == "CONDITIONS_MET"
    assert status["policy_files"] == checkout
