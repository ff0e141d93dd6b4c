"""Powertools Logger, Tracer and Metrics of the Lambda handlers, created once.

Service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (set by the CDK construct; the namespace falls back to
:data:`DEFAULT_METRICS_NAMESPACE`). The Tracer is inactive outside
Lambda (Powertools disables it when ``AWS_LAMBDA_FUNCTION_NAME`` is not set).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

#: Metrics namespace when ``POWERTOOLS_METRICS_NAMESPACE`` is not set (the CDK construct sets it;
#: a local run of the state machine may import this module before its environment is set, and
#: Powertools refuses to flush metrics without a namespace).
DEFAULT_METRICS_NAMESPACE = "loopwright"

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE))
