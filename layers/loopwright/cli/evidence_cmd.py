"""``loopwright evidence ...``: the signed evidence bundle of a completed loop (issue 15, part 2).

- ``evidence export LOOP_ID [-o FILE]``: build and sign the bundle (default file
  ``<workspace>/.loopwright/evidence/<loop_id>.json``);
- ``evidence verify FILE [--public-key PEM] [--checkout DIR] [--no-rerun]``: check the signature
  and, in a checkout of the loop's branch, the pinned files and the conditions run again;
- ``evidence public-key [--key-id ARN]``: print the local key's public key (PEM), to give a
  reviewer; with ``--key-id``, an AWS deployment's KMS evidence key's (``GetPublicKey``).

Exit codes: 0 done / verified, 1 verification failed (the reason is printed), 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loopwright.adapters.local.environment import user_environment
from loopwright.adapters.local.evidence_bundle import evidence_file, signed_evidence
from loopwright.adapters.local.evidence_git import head_commit
from loopwright.adapters.local.evidence_key import (
    KEY_FILE_NAME,
    LocalEd25519Signer,
    user_state_dir,
    verifier_from_pem,
)
from loopwright.adapters.local.project_env import detect_project_environment
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.cli.common import EXIT_BAD_INPUT, EXIT_ERROR, JsonOpt, WorkspaceOpt, fail, workspace_path
from loopwright.cli.records import _open
from loopwright.conditions.runner import evaluate_condition
from loopwright.dashboard.deps import EvidenceKey
from loopwright.engine.local import state_dir_for
from loopwright.evidence import (
    EvidenceError,
    EvidenceSigner,
    files_sha256,
    read_signed,
)
from loopwright.exceptions import ConfigError
from loopwright.models.config import LoopConfig
from loopwright.models.evidence import EvidenceBundle
from loopwright.steps.features import all_conditions

evidence_app = typer.Typer(
    help="The signed evidence bundle of a completed loop: export it, verify it.",
    no_args_is_help=True,
)


def local_evidence_key() -> EvidenceKey | None:
    """The local evidence key's public half (the dashboard's ``/api/evidence/public-key``), or
    None before ``evidence export`` made the key (a read never makes one)."""
    if not (user_state_dir() / KEY_FILE_NAME).is_file():
        return None
    signer = LocalEd25519Signer.load_or_create()
    return EvidenceKey(signer.algorithm, signer.key_id, signer.public_pem().decode())


@evidence_app.command("export")
def export(
    loop_id: Annotated[str, typer.Argument(help="The loop (it must have met its conditions).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The file to write.", dir_okay=False)
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Build and sign the evidence bundle of a loop that met its conditions; prints the file's path."""
    root = workspace_path(workspace)
    store = _open(root, loop_id)
    try:
        state = store.get_state(loop_id)
        data = signed_evidence(store, state, Path(state.workspace or root))
    except EvidenceError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    finally:
        store.close()
    target = output or evidence_file(state_dir_for(root), loop_id)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        fail(f"--output: cannot write {target}: {exc.strerror}", EXIT_BAD_INPUT)
    typer.echo(str(target))


@evidence_app.command("public-key")
def public_key(
    key_id: Annotated[
        str | None,
        typer.Option(
            "--key-id",
            help="An AWS deployment's evidence key ARN (the stack's EvidenceKeyArn output): print its "
            "public key (KMS GetPublicKey, with your AWS credentials) instead of the local key's.",
        ),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="With --key-id: the key's region.")] = None,
) -> None:
    """Print the local evidence key's public key (PEM), made on first use; with --key-id, the AWS
    KMS evidence key's."""
    if key_id is not None:
        from loopwright.adapters.aws.kms_evidence_signer import KmsEvidenceSigner  # AWS only
        from loopwright.exceptions import LoopFrameworkError

        try:
            pem = KmsEvidenceSigner(key_id, region_name=region or _arn_region(key_id)).public_pem()
        except LoopFrameworkError as exc:
            fail(str(exc))
        typer.echo(pem.decode(), nl=False)
        return
    try:
        signer = LocalEd25519Signer.load_or_create()
    except EvidenceError as exc:
        fail(str(exc))
    typer.echo(signer.public_pem().decode(), nl=False)


def _arn_region(key_id: str) -> str | None:
    """The region of a key ARN (``arn:aws:kms:<region>:...``), or None for a bare key id."""
    parts = key_id.split(":")
    if len(parts) > 3 and parts[0] == "arn":
        return parts[3] or None
    return None


def _checkout_problems(bundle: EvidenceBundle, checkout: Path, rerun: bool) -> list[str]:
    """What differs in ``checkout`` from what ``bundle`` says held at its end."""
    problems = []
    head = head_commit(checkout)
    if head != bundle.head_commit:
        problems.append(f"the checkout is at {head}, the bundle's branch ended at {bundle.head_commit}")
    on_disk = files_sha256(checkout, bundle.pinned_files_end)
    for path, digest in sorted(bundle.pinned_files_end.items()):
        if path not in on_disk:
            problems.append(f"pinned file {path}: missing")
        elif on_disk[path] != digest:
            problems.append(
                f"pinned file {path}: changed (SHA-256 {on_disk[path]}, the bundle says {digest})"
            )
    if not rerun:
        return problems
    config = LoopConfig.model_validate(bundle.config)
    recorded = {c.name: c for c in bundle.conditions}
    # The project's interpreter and environment, found as the loop found them (its .venv, the
    # config's python and env): `python -m pytest` means the same here as in the loop.
    try:
        environment = detect_project_environment(
            checkout, checkout, user_environment(), python=config.python, env=config.env
        )
    except ConfigError as exc:
        return [*problems, f"conditions not run: the project's environment: {exc}"]
    sandbox = SubprocessSandbox(environment=environment)
    for cfg in all_conditions(config):  # the features' acceptance conditions too
        status = evaluate_condition(cfg, sandbox, checkout, iteration=0)
        want = recorded.get(cfg.key)
        if want is None:
            problems.append(f"condition {cfg.key}: not in the bundle's results")
        elif (status.status, status.exit_code) != (want.status, want.exit_code):
            problems.append(
                f"condition {cfg.key}: now {status.status.value} (exit code {status.exit_code}), "
                f"the bundle says {want.status.value} (exit code {want.exit_code})"
            )
    return problems


@evidence_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="The evidence file.", dir_okay=False)],
    public_key_file: Annotated[
        Path | None,
        typer.Option("--public-key", help="The signer's public key (PEM); default: your local evidence key."),
    ] = None,
    key_id: Annotated[
        str | None,
        typer.Option("--key-id", help="With an ECDSA P-256 --public-key: the AWS KMS key ARN that signed."),
    ] = None,
    checkout: Annotated[
        Path | None,
        typer.Option(
            "--checkout", help="A checkout of the loop's branch (default: the current folder, if it is one)."
        ),
    ] = None,
    rerun: Annotated[bool, typer.Option("--rerun/--no-rerun", help="Run the exit conditions again.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Check an evidence file's signature; in a checkout of the loop's branch, also its pinned files
    and (unless --no-rerun) its exit conditions, run again. Exit 1 when anything differs."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"FILE: cannot read {file}: {exc.strerror}", EXIT_BAD_INPUT)
    try:
        if public_key_file is not None:
            verifier: EvidenceSigner = verifier_from_pem(public_key_file, key_id)
        else:
            if not (user_state_dir() / "evidence-ed25519.pem").is_file():
                fail(
                    "no local evidence key: pass --public-key with the signer's public key (PEM)",
                    EXIT_BAD_INPUT,
                )
            verifier = LocalEd25519Signer.load_or_create()
    except EvidenceError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    try:
        document = read_signed(data, verifier)
    except EvidenceError as exc:
        fail(f"{file}: verification failed: {exc}", EXIT_ERROR)
    if checkout is not None and not checkout.is_dir():
        fail(f"--checkout: {checkout} is not a folder", EXIT_BAD_INPUT)
    folder = checkout or Path.cwd()
    in_checkout = checkout is not None or head_commit(folder) is not None
    problems = _checkout_problems(document.bundle, folder.resolve(), rerun) if in_checkout else []
    result = {
        "file": str(file),
        "loop_id": document.bundle.loop_id,
        "signature": "valid",
        "key_id": document.signature.key_id,
        "checkout": str(folder.resolve()) if in_checkout else None,
        "problems": problems,
        "verified": not problems,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        console = Console(soft_wrap=True, highlight=False)
        console.print(f"signature: valid (key {document.signature.key_id})")
        if not in_checkout:
            console.print(
                "checkout: none (run in a checkout of the loop's branch to check its files and conditions)"
            )
        for problem in problems:
            console.print(f"[bold red]FAIL[/] {problem}")
        if in_checkout and not problems:
            console.print(
                f"checkout {folder.resolve()}: pinned files match" + (", conditions hold" if rerun else "")
            )
    if problems:
        raise typer.Exit(EXIT_ERROR)
