"""Powertools Logger, Tracer and Metrics of the Lambda handlers, created once.

Service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (set by the CDK construct). The Tracer is inactive outside
Lambda (Powertools disables it when ``AWS_LAMBDA_FUNCTION_NAME`` is not set).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
