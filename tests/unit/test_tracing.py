"""Tracing is on only when the process uses OpenTelemetry (or LOOPWRIGHT_TRACING=1)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loopwright.engine.tracing import TRACING_ENV, Tracing, tracing_enabled


def test_disabled_tracing_is_a_no_op() -> None:
    tracing = Tracing(enabled=False)
    with tracing.span("s", {"a": 1}):
        tracing.add_event("e", {"b": 2})


def test_enabled_when_opentelemetry_is_loaded_or_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRACING_ENV, "1")
    assert tracing_enabled()


def test_a_cli_run_does_not_import_opentelemetry() -> None:
    # Given a fresh process that starts the engine the way the CLI does
    code = (
        "import sys, tempfile, pathlib\n"
        "from loopwright.engine.tracing import tracing_enabled\n"
        "from loopwright.engine import LoopFramework\n"
        "assert not tracing_enabled()\n"
        "print('opentelemetry' in ' '.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Then OpenTelemetry was never imported
    assert done.stdout.strip() == "False"
