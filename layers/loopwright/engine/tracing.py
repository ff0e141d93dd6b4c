"""OpenTelemetry for the engine, only when the process uses OpenTelemetry.

Importing the OpenTelemetry API costs about 100 ms here (its context runtime is found through
package entry points), and without an SDK every span is a no-op. So the engine traces when
OpenTelemetry is already loaded in the process (an application that configured an SDK, or
``opentelemetry-instrument loopwright ...``) or when ``LOOPWRIGHT_TRACING=1`` is set; otherwise
spans and span events cost nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

#: Set to "1" to trace even when OpenTelemetry was not loaded before the loop started.
TRACING_ENV = "LOOPWRIGHT_TRACING"
#: Name of the tracer (instrumentation scope) of loopwright's spans.
TRACER_NAME = "loopwright"


def tracing_enabled() -> bool:
    """True when OpenTelemetry is loaded in this process or ``LOOPWRIGHT_TRACING=1``."""
    return "opentelemetry.trace" in sys.modules or os.environ.get(TRACING_ENV) == "1"


class Tracing:
    """Spans and span events of one run; every method is a no-op when tracing is off."""

    def __init__(self, enabled: bool) -> None:
        self._trace: Any = None
        if enabled:
            from opentelemetry import trace  # deferred: see the module docstring

            self._trace = trace

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
        """A span named ``name``, current inside the block."""
        if self._trace is None:
            yield
            return
        with self._trace.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=dict(attributes)):
            yield

    @property
    def enabled(self) -> bool:
        """True when spans and events are recorded."""
        return self._trace is not None

    def add_event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """Add an event to the current span."""
        if self._trace is not None:
            self._trace.get_current_span().add_event(name, dict(attributes))
