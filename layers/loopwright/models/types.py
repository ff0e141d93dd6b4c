"""Reusable annotated types for ids, limits and commands."""

from __future__ import annotations

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

LoopId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,71}$"),
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

#: Largest token count or budget accepted: 2**53 - 1, the largest integer a JSON reader keeps exact
#: (JavaScript's ``Number.MAX_SAFE_INTEGER``; the dashboard reads these), well inside Cedar's
#: 64-bit ``Long``, so a budget accepted here can always be compared by the policies.
MAX_TOKENS = 2**53 - 1

TokenCount = Annotated[
    int,
    Field(ge=0, le=MAX_TOKENS, strict=True, description="tokens (a JSON integer, not a string)"),
]
