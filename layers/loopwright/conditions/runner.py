"""Evaluate one exit condition: run its command in the sandbox and parse the output."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from loopwright.conditions.defaults import needs_scratch_dir, resolve_command, resolve_parser
from loopwright.conditions.parsers import parse
from loopwright.models import ExitConditionConfig, ExitConditionStatus, utcnow
from loopwright.ports import Sandbox


def evaluate_condition(
    cfg: ExitConditionConfig, sandbox: Sandbox, worktree: Path, iteration: int
) -> ExitConditionStatus:
    """Run ``cfg``'s command (:func:`resolve_command`) in ``worktree`` through ``sandbox``,
    limited to ``cfg.timeout_seconds`` (seconds; default 600 s) and
    ``cfg.max_output_bytes`` of stdout and of stderr, and parse it (:func:`resolve_parser`).
    A default BUILD_SUCCEEDS command gets a private temporary folder for its byte code,
    deleted afterwards.

    The result's ``details`` are the parser's, plus ``parser`` (its name). A command that
    cannot start or times out gives status ERROR or TIMEOUT, never an exception. Raises
    :class:`~loopwright.exceptions.ConfigError` for a CUSTOM condition without a command.
    """
    parser = resolve_parser(cfg)
    with contextlib.ExitStack() as stack:
        scratch = None
        if needs_scratch_dir(cfg):
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loopwright-")))
        command = resolve_command(cfg, scratch)
        result = sandbox.run(
            command,
            cwd=worktree,
            timeout_seconds=cfg.timeout_seconds,
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
