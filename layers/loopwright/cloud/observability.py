"""Powertools Logger, Tracer and Metrics of the Lambda handlers, created once.

Service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (set by the CDK construct; the namespace falls back to
:data:`DEFAULT_METRICS_NAMESPACE`). The Tracer is inactive outside
Lambda (Powertools disables it when ``AWS_LAMBDA_FUNCTION_NAME`` is not set).

Metrics go through :class:`QuietWhenDisabledProvider`: with ``POWERTOOLS_METRICS_DISABLED=true``
(the local run of the state machine, ``loopwright run --engine stepfunctions``, where the handlers
run in the CLI's process) Powertools 3 skips the flush at the end of each invocation but keeps the
values, and ``add_metric`` prints the whole set as an EMF line on stdout once a metric holds 100
values (``AmazonCloudWatchEMFProvider.add_metric``, which does not check that metrics are
disabled): about 100 steps into a local run, that line broke ``--json``. The provider drops the
values at every flush when metrics are disabled, so nothing accumulates and nothing is printed.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

#: Metrics namespace when ``POWERTOOLS_METRICS_NAMESPACE`` is not set (the CDK construct sets it;
#: a local run of the state machine may import this module before its environment is set, and
#: Powertools refuses to flush metrics without a namespace).
DEFAULT_METRICS_NAMESPACE = "loopwright"


class QuietWhenDisabledProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider that also forgets its metrics at a flush while metrics are
    disabled (see the module docstring); in Lambda (metrics on) it behaves as Powertools' own."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Flush as Powertools does; when metrics are disabled, drop what was added."""
        super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
        if is_metrics_disabled():
            self.clear_metrics()


logger = Logger()
tracer = Tracer()
metrics = Metrics(
    provider=QuietWhenDisabledProvider(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE),
        metric_set=Metrics._metrics,
        dimension_set=Metrics._dimensions,
        metadata_set=Metrics._metadata,
        default_dimensions=Metrics._default_dimensions,
    )
)
