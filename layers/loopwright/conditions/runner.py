"""Evaluate one exit condition: run its command in the sandbox and parse the output."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from loopwright.conditions.defaults import needs_scratch_dir, resolve_command, resolve_parser
from loopwright.conditions.parsers import parse
from loopwright.deferred import deferral_key
from loopwright.models import CommandResult, ExitConditionConfig, ExitConditionStatus, utcnow
from loopwright.ports import Sandbox


def condition_folder(cfg: ExitConditionConfig, worktree: Path) -> Path | str:
    """The folder ``cfg``'s command runs in: ``worktree``, or its ``cwd`` inside it; a string
    (the reason) when that folder does not exist or leads outside the worktree (a symbolic link)."""
    if cfg.cwd is None:
        return worktree
    folder = worktree / cfg.cwd
    root = worktree.resolve()
    real = folder.resolve()
    if real != root and root not in real.parents:
        return f"cwd {cfg.cwd!r} leads outside the worktree (a symbolic link?)"
    if not real.is_dir():
        return f"cwd {cfg.cwd!r} is not a folder in the worktree"
    return folder


def evaluate_condition(
    cfg: ExitConditionConfig, sandbox: Sandbox, worktree: Path, iteration: int
) -> ExitConditionStatus:
    """Run ``cfg``'s command (:func:`resolve_command`) in ``worktree`` (or its ``cwd`` inside it)
    through ``sandbox``, with ``cfg.env`` over the sandbox's environment, limited to
    ``cfg.timeout_seconds`` (seconds; default 600 s) and ``cfg.max_output_bytes`` of
    stdout and of stderr, and parse it (:func:`resolve_parser`; paths shown relative to
    ``worktree``). A default BUILD_SUCCEEDS command gets a private temporary folder for its byte
    code, deleted afterwards.

    The result's ``details`` are the parser's, plus ``parser`` (its name). A command that
    cannot start (a missing tool, a ``cwd`` that is not a folder of the worktree) gives status
    ERROR, one that runs too long TIMEOUT, never an exception. Raises
    :class:`~loopwright.exceptions.ConfigError` for a CUSTOM condition without a command.
    """
    parser = resolve_parser(cfg)
    folder = condition_folder(cfg, worktree)
    with contextlib.ExitStack() as stack:
        scratch = None
        if needs_scratch_dir(cfg):
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loopwright-")))
        command = resolve_command(cfg, scratch)
        if isinstance(folder, str):
            result = CommandResult(command=command, exit_code=None, error=folder)
        else:
            with deferral_key(f"condition:{cfg.key}"):  # a replayed step finds its task again
                result = sandbox.run(
                    command,
                    cwd=folder,
                    timeout_seconds=cfg.timeout_seconds,
                    env=cfg.env or None,
                    max_output_bytes=cfg.max_output_bytes,
                )
    parsed = parse(parser, result, worktree)
    return ExitConditionStatus(
        name=cfg.key,
        type=cfg.type,
        status=parsed.status,
        required=cfg.required,
        iteration=iteration,
        command=command,
        exit_code=result.exit_code,
        duration_seconds=max(0.0, result.duration_seconds),
        summary=parsed.summary,
        details={"parser": parser, **parsed.details},
        failures=parsed.failures,
        stdout=result.stdout,
        stderr=result.stderr,
        output_truncated=result.truncated,
        evaluated_at=utcnow(),
    )
