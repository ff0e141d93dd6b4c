"""The python agent: a callable ``module:function`` (the seed's ``work_function``) as the agent.

The callable receives the :class:`~loopwright.models.AgentRequest` and returns an
:class:`~loopwright.models.AgentResult`, a dict of its fields, an ``int`` (tokens used) or
``None``. It runs in the engine's process; it must work in ``request.worktree`` (the current
directory is not changed, as that would affect the whole process).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from loopwright.exceptions import AgentError, ConfigError
from loopwright.models import AgentRequest, AgentResult
from loopwright.ports import Agent, OutputCallback, StopCheck

WorkFunction = Callable[[AgentRequest], Any]


def load_function(spec: str) -> WorkFunction:
    """Import ``package.module:function``. Raises :class:`ConfigError` naming what is missing."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"agent.function: cannot import module {module_name!r}: {exc}") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"agent.function: {module_name!r} has no callable {attr!r}")
    return function  # type: ignore[no-any-return]


def coerce_result(value: Any) -> AgentResult:
    """Turn what a work function returned into an :class:`AgentResult`.

    Raises :class:`AgentError` for a value of another type or a dict with invalid fields.
    """
    if isinstance(value, AgentResult):
        return value
    if value is None:
        return AgentResult()
    if isinstance(value, bool):
        raise AgentError(f"work function returned a bool ({value}); return an AgentResult, dict, int or None")
    if isinstance(value, int):
        return AgentResult(tokens_used=value)
    if isinstance(value, dict):
        try:
            return AgentResult.model_validate(value)
        except ValidationError as exc:
            raise AgentError(f"work function returned an invalid result: {exc.errors()[0]['msg']}") from exc
    raise AgentError(
        f"work function returned {type(value).__name__}; return an AgentResult, dict, int or None"
    )


class PythonAgent(Agent):
    """Calls a work function once per iteration, in loopwright's process."""

    in_process = True

    def __init__(self, function: WorkFunction) -> None:
        self._function = function

    def run(
        self,
        request: AgentRequest,
        *,
        should_stop: StopCheck | None = None,
        on_output: OutputCallback | None = None,
    ) -> AgentResult:
        try:
            value = self._function(request)
        except AgentError:
            raise
        except Exception as exc:
            return AgentResult(failed=True, summary=f"work function raised {type(exc).__name__}: {exc}")
        return coerce_result(value)
