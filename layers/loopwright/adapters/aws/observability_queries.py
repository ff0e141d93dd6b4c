"""The dashboard's traces (X-Ray) and metrics (CloudWatch) of loops in AWS.

- :class:`XRayTraceQueries`: ``GetTraceSummaries`` with the filter expression
  ``annotation.loop_id = "<loop_id>"``. The annotation is put by the loop's Lambda handlers
  (Powertools ``tracer.put_annotation(key="loop_id", value=...)``); loop ids are letters, digits,
  ``.``, ``_`` and ``-`` only, so the quoted value needs no escaping. The loop's lifetime is
  searched newest first in slices of :data:`TRACE_SLICE` (X-Ray keeps traces
  :data:`TRACE_RETENTION`; older slices are skipped), at most :data:`MAX_TRACE_SLICES` slices.
- :class:`CloudWatchMetricQueries`: ``GetMetricData`` of the Powertools metrics the Lambdas emit
  in the ``loopwright`` namespace (dimension ``service``): :data:`DEFAULT_METRIC_NAMES`, the Sum
  per period.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, aws_errors, retry_config
from loopwright.dashboard.ports import (
    MetricQueries,
    MetricSeries,
    MetricsResult,
    TraceQueries,
    TracesResult,
    TraceSummary,
)
from loopwright.models import LoopOutcome

#: The annotation the loop's Lambda handlers put on their traces.
LOOP_ANNOTATION = "loop_id"
#: Length of one GetTraceSummaries time range.
TRACE_SLICE = timedelta(hours=6)
#: How long X-Ray keeps traces (X-Ray FAQ: 30 days).
TRACE_RETENTION = timedelta(days=30)
#: Slices searched per request at most (a week of a long loop's most recent traces).
MAX_TRACE_SLICES = 28
#: Metrics the Lambda handlers emit (``cloud/runtime.py``, ``functions/``): steps, loops started,
#: loops awaiting a response, and one ``Loops<Outcome>`` per outcome.
DEFAULT_METRIC_NAMES: tuple[str, ...] = (
    "StepsCompleted",
    "LoopsStarted",
    "LoopsAwaitingResponse",
    *(f"Loops{o.value.title().replace('_', '')}" for o in LoopOutcome),
)
#: Queries in one GetMetricData call (CloudWatch quota: 500).
MAX_METRIC_QUERIES = 500


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


class XRayTraceQueries(TraceQueries):
    """:class:`TraceQueries` over X-Ray (see the module docstring).

    Raises :class:`~loopwright.exceptions.LoopFrameworkError` for an AWS error.
    """

    def __init__(
        self,
        *,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        annotation: str = LOOP_ANNOTATION,
    ) -> None:
        self.annotation = annotation
        self._client: Any = (
            client
            if client is not None
            else boto3.client("xray", region_name=region_name, config=retry_config(max_attempts))
        )

    def filter_expression(self, loop_id: str) -> str:
        """``annotation.<annotation> = "<loop_id>"``."""
        return f'annotation.{self.annotation} = "{loop_id}"'

    def traces(self, loop_id: str, *, start: datetime, end: datetime, limit: int = 50) -> TracesResult:
        """Up to ``limit`` trace summaries of ``loop_id``, newest first."""
        expression = self.filter_expression(loop_id)
        now = datetime.now(UTC)
        start = max(start, now - TRACE_RETENTION)
        end = min(end, now)
        found: list[TraceSummary] = []
        slice_end = end
        slices = 0
        with aws_errors(f"reading the X-Ray traces of loop {loop_id!r}"):
            while slice_end > start and len(found) < limit and slices < MAX_TRACE_SLICES:
                slice_start = max(start, slice_end - TRACE_SLICE)
                found += self._slice(expression, slice_start, slice_end, limit - len(found))
                slice_end = slice_start
                slices += 1
        found.sort(key=lambda t: t.start_time or now, reverse=True)
        note = None
        if slice_end > start:
            note = f"searched the newest {slices * TRACE_SLICE.total_seconds() / 3600:.0f} hours of the loop"
        return TracesResult(
            loop_id=loop_id,
            source="xray",
            filter_expression=expression,
            start=start,
            end=end,
            traces=found[:limit],
            note=note,
        )

    def _slice(self, expression: str, start: datetime, end: datetime, want: int) -> list[TraceSummary]:
        request: dict[str, Any] = {
            "StartTime": start,
            "EndTime": end,
            "TimeRangeType": "TraceId",
            "Sampling": False,
            "FilterExpression": expression,
        }
        found: list[TraceSummary] = []
        while len(found) < want:
            page = self._client.get_trace_summaries(**request)
            found += [_trace_summary(item) for item in page.get("TraceSummaries", [])]
            token = page.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
        return found[:want]


def _trace_summary(item: dict[str, Any]) -> TraceSummary:
    annotations: dict[str, list[str]] = {}
    for key, values in (item.get("Annotations") or {}).items():
        for value in values or []:
            raw = value.get("AnnotationValue") or {}
            shown = next(iter(raw.values()), None)
            if shown is not None:
                annotations.setdefault(str(key), []).append(str(shown))
    status = (item.get("Http") or {}).get("HttpStatus")
    return TraceSummary(
        trace_id=str(item.get("Id", "")),
        start_time=_utc(item.get("StartTime")),
        duration_seconds=item.get("Duration"),
        response_time_seconds=item.get("ResponseTime"),
        has_error=bool(item.get("HasError")),
        has_fault=bool(item.get("HasFault")),
        has_throttle=bool(item.get("HasThrottle")),
        http_status=int(status) if isinstance(status, int) else None,
        annotations=annotations,
    )


class CloudWatchMetricQueries(MetricQueries):
    """:class:`MetricQueries` over CloudWatch ``GetMetricData`` (see the module docstring).

    Args:
        namespace: the metrics namespace (``POWERTOOLS_METRICS_NAMESPACE`` of the Lambdas).
        service: the ``service`` dimension (``POWERTOOLS_SERVICE_NAME`` of the Lambdas).
        metric_names: the metrics read.

    Raises :class:`~loopwright.exceptions.LoopFrameworkError` for an AWS error.
    """

    def __init__(
        self,
        namespace: str,
        service: str,
        *,
        metric_names: Sequence[str] = DEFAULT_METRIC_NAMES,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.metric_names = list(metric_names)[:MAX_METRIC_QUERIES]
        self._client: Any = (
            client
            if client is not None
            else boto3.client("cloudwatch", region_name=region_name, config=retry_config(max_attempts))
        )

    def metrics(self, *, start: datetime, end: datetime, period_seconds: int = 60) -> MetricsResult:
        """The Sum of each metric per ``period_seconds`` between ``start`` and ``end``."""
        queries = [
            {
                "Id": f"m{index}",
                "Label": name,
                "MetricStat": {
                    "Metric": {
                        "Namespace": self.namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": "service", "Value": self.service}],
                    },
                    "Period": period_seconds,
                    "Stat": "Sum",
                },
                "ReturnData": True,
            }
            for index, name in enumerate(self.metric_names)
        ]
        points: dict[str, dict[datetime, float]] = {name: {} for name in self.metric_names}
        request: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        with aws_errors(f"reading CloudWatch metrics of namespace {self.namespace!r}"):
            while True:
                page = self._client.get_metric_data(**request)
                for result in page.get("MetricDataResults", []):
                    index = int(str(result.get("Id", "m0"))[1:])
                    series = points[self.metric_names[index]]
                    for stamp, value in zip(
                        result.get("Timestamps", []), result.get("Values", []), strict=False
                    ):
                        when = _utc(stamp)
                        if when is not None:
                            series[when] = float(value)
                token = page.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
        return MetricsResult(
            source="cloudwatch",
            namespace=self.namespace,
            start=start,
            end=end,
            series=[
                MetricSeries(
                    name=name,
                    statistic="Sum",
                    unit="Count",
                    period_seconds=period_seconds,
                    timestamps=sorted(points[name]),
                    values=[points[name][t] for t in sorted(points[name])],
                )
                for name in self.metric_names
            ],
            note=f"whole service (dimension service={self.service}), not only this loop",
        )
