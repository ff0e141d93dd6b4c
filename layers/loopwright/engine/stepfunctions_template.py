"""The synthesized template the local Step Functions runner executes
(:mod:`loopwright.engine.stepfunctions`): the CDK stack synthesized with the ``steps`` or
``compact`` state machine (:data:`STATE_MACHINES`) and cached under ``<repo>/build/`` by the
variant and a hash of its sources (a synth takes about 8 s; a cached one about 1 ms), and the
few CloudFormation intrinsic functions the local runner resolves to moto ARNs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopwright.exceptions import ConfigError

#: Repository root (this file is ``<root>/layers/loopwright/engine/stepfunctions_template.py``).
REPO_ROOT = Path(__file__).resolve().parents[3]
#: What the synthesized template depends on: the CDK app and, since ``infrastructure/`` imports
#: names and limits from it, the package (the stub layer itself does not depend on the package).
TEMPLATE_SOURCES = ("app.py", "cdk.json", "infrastructure", "policies", "functions", "layers/loopwright")
STACK_NAME = "Loopwright"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
#: The state machine variants (CDK context :data:`STATE_MACHINE_CONTEXT`,
#: ``infrastructure/compact_state_machine.py``): one Lambda per step, or one per iteration.
STATE_MACHINES = ("steps", "compact")
STATE_MACHINE_CONTEXT = "loopwright:stateMachine"
#: Environment variable choosing the variant when a caller gives none (``loopwright run --engine
#: stepfunctions``); unset: ``steps``.
STATE_MACHINE_ENV = "LOOPWRIGHT_STATE_MACHINE"
_SYNTH_SCRIPT = """
import os, sys
from app import build_app
app = build_app(sys.argv[1])
try:
    app.synth()
except RuntimeError as exc:  # cdk-nag findings fail synth after the template is written
    print(exc, file=sys.stderr)
"""


# ----------------------------------------------------------------------------- synth
def _sources_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for name in TEMPLATE_SOURCES:
        base = root / name
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def state_machine_variant(value: str | None = None) -> str:
    """``value``, or :data:`STATE_MACHINE_ENV`'s value, or ``steps``; checked against
    :data:`STATE_MACHINES`. Raises :class:`ConfigError` naming where the bad value came from."""
    source = "state_machine" if value is not None else STATE_MACHINE_ENV
    variant = value if value is not None else os.environ.get(STATE_MACHINE_ENV) or "steps"
    if variant not in STATE_MACHINES:
        raise ConfigError(f"{source}: {variant!r} is not one of {', '.join(STATE_MACHINES)}")
    return variant


def synthesize_template(
    cache_dir: Path | None = None, *, root: Path = REPO_ROOT, state_machine: str | None = None
) -> dict[str, Any]:
    """The ``Loopwright`` stack's template (stub layer) as a dict, with the ``state_machine``
    variant (:func:`state_machine_variant`), from
    ``<cache_dir>/stepfunctions-template-<variant>-<hash>.json`` when the sources are unchanged,
    else from a synth (``python -c build_app(...)`` in ``root``, about 8 s, the variant passed as
    CDK context in ``CDK_CONTEXT_JSON``) that is then cached.

    ``cache_dir`` defaults to ``<root>/build`` (gitignored). Raises :class:`ConfigError` for an
    unknown variant, and when the synth writes no template (its stderr is in the message).
    """
    variant = state_machine_variant(state_machine)
    cache = cache_dir or root / "build"
    cached = cache / f"stepfunctions-template-{variant}-{_sources_hash(root)}.json"
    if cached.is_file():
        template: dict[str, Any] = json.loads(cached.read_text())
        return template
    env = {
        **os.environ,
        "LOOPWRIGHT_CDK_LAYER": "stub",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "CDK_CONTEXT_JSON": json.dumps(
            {**json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}"), STATE_MACHINE_CONTEXT: variant}
        ),
    }
    env.pop("CDK_OUTDIR", None)
    with tempfile.TemporaryDirectory(prefix="loopwright-synth-") as outdir:
        proc = subprocess.run(  # our own interpreter and script
            [sys.executable, "-c", _SYNTH_SCRIPT, outdir],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        produced = Path(outdir) / f"{STACK_NAME}.template.json"
        if not produced.is_file():
            raise ConfigError(f"CDK synth wrote no template: {proc.stderr.strip()[-2000:]}")
        text = produced.read_text()
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(text)
    template = json.loads(text)
    return template


# ----------------------------------------------------------------------------- intrinsics
def resolve_intrinsics(node: Any, refs: Mapping[str, str], arns: Mapping[str, str]) -> Any:
    """``node`` with ``Fn::Join``, ``Fn::GetAtt [id, "Arn"]`` and ``Ref`` replaced.

    ``refs``: logical id or pseudo parameter -> value; ``arns``: logical id -> ARN. Raises
    :class:`ConfigError` naming any other intrinsic function or unknown reference.
    """
    if isinstance(node, list):
        return [resolve_intrinsics(item, refs, arns) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), *_ = node.items()
        if key == "Fn::Join":
            separator, parts = value
            return separator.join(str(resolve_intrinsics(p, refs, arns)) for p in parts)
        if key == "Fn::GetAtt":
            logical_id, attribute = value if isinstance(value, list) else value.split(".", 1)
            if attribute != "Arn" or logical_id not in arns:
                raise ConfigError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute}")
            return arns[logical_id]
        if key == "Ref":
            if value not in refs:
                raise ConfigError(f"cannot resolve Ref {value}")
            return refs[value]
        if key.startswith("Fn::"):
            raise ConfigError(f"intrinsic function {key} is not supported locally")
    return {k: resolve_intrinsics(v, refs, arns) for k, v in node.items()}
