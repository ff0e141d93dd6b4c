"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# Lambda sets these before any import; Powertools reads them when its objects are built.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "loopwright-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "loopwright-test")

# A loop that completes signs its evidence with the user's key (made on first use): the tests'
# loops use a key of their own, never the key under the real ~/.local/state.
os.environ["LOOPWRIGHT_STATE_HOME"] = tempfile.mkdtemp(prefix="loopwright-test-state-")

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _tracer_provider() -> TracerProvider:
    # The global provider can be set once per process: do it once for the whole session.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture
def span_exporter(_tracer_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test (the global OpenTelemetry provider records them)."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
