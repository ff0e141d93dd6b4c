"""Reusable annotated types for ids, limits and commands."""

from __future__ import annotations

import re
import shlex
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints


def _split_command(value: object) -> object:
    """Accept a command as a list of arguments or as one string split like a POSIX shell would.

    The string is only *split* (``shlex.split``); it is never given to a shell, so ``;``, ``|``,
    ``$(...)`` and backticks stay literal arguments.
    """
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:  # unbalanced quotes
            raise ValueError(f"cannot split command {value!r}: {exc}") from exc
    return value


Command = Annotated[
    list[Annotated[str, StringConstraints(min_length=1)]],
    BeforeValidator(_split_command),
    Field(min_length=1, description="argv list (or one string split with shlex); never run by a shell"),
]

#: What a loop id may be: it names a git branch, a worktree folder, lock and agent files, and the
#: Step Functions executions of the loop, so it is checked before any of them is touched.
LOOP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,71}$"
_LOOP_ID_RE = re.compile(LOOP_ID_PATTERN)


#: A loop id in a model. The pattern is checked by pydantic-core (every model holding a loop id is
#: parsed several times an iteration); the git rules of :func:`is_loop_id` (no ``..``, no ``.lock``
#: end) are checked where an id enters: the CLI, :class:`~loopwright.engine.LoopFramework`, the
#: lock file and the worktree folder.
LoopId = Annotated[
    str,
    StringConstraints(pattern=LOOP_ID_PATTERN),
    Field(
        description="loop id: letters, digits, '.', '_' or '-', at most 72 characters (so that "
        "'<loop_id>-g<generation>' fits the 80-character Step Functions execution name quota)"
    ),
]

ProjectId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
    Field(description="project id: letters, digits, '.', '_' or '-', at most 128 characters"),
]

Seconds = Annotated[float, Field(gt=0, le=86_400, description="seconds, at most one day")]

#: Default ``idle_timeout_seconds`` of the agents run as a process, seconds: long enough for an
#: agent that thinks (or waits for a tool) quietly, short enough to free a hung one well before
#: its 30-minute ``timeout_seconds``.
DEFAULT_IDLE_TIMEOUT_SECONDS = 900.0

IdleSeconds = Annotated[
    float,
    Field(
        ge=0,
        le=86_400,
        description="seconds without output nor file change after which the agent is ended; 0: never",
    ),
]

#: Largest token count or budget accepted: 2**53 - 1, the largest integer a JSON reader keeps exact
#: (JavaScript's ``Number.MAX_SAFE_INTEGER``; the dashboard reads these), well inside Cedar's
#: 64-bit ``Long``, so a budget accepted here can always be compared by the policies.
MAX_TOKENS = 2**53 - 1

TokenCount = Annotated[
    int,
    Field(ge=0, le=MAX_TOKENS, strict=True, description="tokens (a JSON integer, not a string)"),
]


def is_loop_id(value: object) -> bool:
    """True when ``value`` is a valid loop id: :data:`LOOP_ID_PATTERN`, and a valid git branch name
    after ``loopwright/`` (no ``..``, not ending in ``.`` or ``.lock``)."""
    return (
        isinstance(value, str)
        and _LOOP_ID_RE.match(value) is not None
        and ".." not in value
        and not value.endswith((".", ".lock"))
    )


def loop_id_problem(value: object, field: str = "loop_id") -> str | None:
    """None when ``value`` is a valid loop id, else a one-line message naming ``field`` and what a
    loop id may be (for the caller's error at the edge)."""
    if is_loop_id(value):
        return None
    shown = repr(value)[:80]
    return (
        f"{field}: {shown} is not a loop id: use letters, digits, '.', '_' or '-' (no '..', not "
        "ending in '.' or '.lock'), starting with a letter or digit, at most 72 characters"
    )
