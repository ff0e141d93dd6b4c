"""Build hook: the default Cedar policies ship inside the package (``loopwright/policies/``).

The repository's top-level ``policies/`` is the one source of truth: the CDK app deploys it to
Verified Permissions, ``policies/tests`` checks it, and a checkout reads it in place. A wheel has
no checkout around it, so ``build_py`` copies the schema and the policy files (``*.cedarschema``,
``*.cedar``; not the request fixtures in ``policies/tests``) into the built package, byte for
byte, where :func:`loopwright.adapters.local.cedar_policy.default_policy_dir` finds them. Byte
copies keep the per-file SHA-256 digests a loop records (``LoopState.policy_files``) the same
in a checkout and in an install. The sdist carries ``policies/`` (MANIFEST.in), so a wheel built
from it gets the same files. Everything else about the build is in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: The source of truth, relative to this file.
POLICIES = Path(__file__).resolve().parent / "policies"
#: Where the copies go inside the built package.
PACKAGED = Path("loopwright") / "policies"
PATTERNS = ("*.cedarschema", "*.cedar")


class BuildWithPolicies(build_py):
    """``build_py`` plus a byte copy of ``policies/*.cedarschema`` and ``policies/*.cedar``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's policies/ in place
            return
        files = sorted(path for pattern in PATTERNS for path in POLICIES.glob(pattern))
        if not files:
            raise SystemExit(f"setup.py: no Cedar policies in {POLICIES}: the wheel would have none")
        target = Path(self.build_lib) / PACKAGED
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildWithPolicies})
