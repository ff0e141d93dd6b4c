"""The handlers' Powertools Metrics print nothing while metrics are disabled (issue 12 point 10:
``loopwright run --engine stepfunctions --json`` must print only its JSON)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from loopwright.cloud.observability import metrics


@metrics.log_metrics
def _step(event: dict[str, Any], context: object) -> None:
    metrics.add_metric(name="StepsCompleted", unit=MetricUnit.Count, value=1)


def test_disabled_metrics_never_reach_stdout_however_many_steps_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given metrics disabled, as the local run of the state machine sets them
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    # When more steps run in one process than Powertools keeps values of one metric (100)
    for _ in range(250):
        _step({}, None)
    # Then nothing was printed (Powertools alone printed the set at the 100th value)
    assert capsys.readouterr().out == ""


def test_enabled_metrics_still_print_one_emf_line_per_invocation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    _step({}, None)
    _step({}, None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    blob = json.loads(lines[0])
    assert blob["StepsCompleted"] in (1.0, [1.0])  # one value: this invocation's only
    assert blob["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == "StepsCompleted"
