"""Lambda behind the dashboard API (``/api/...``, ``/``, ``/swagger``, ``/signin``): the resolver of
:func:`loopwright.dashboard.api.build_app` over the ports of this container.

Three functions run this code, chosen by ``LOOPWRIGHT_DASHBOARD_MODE``: ``read`` (every GET route,
read-only role), ``controls`` (the loops' POST routes) and ``plans`` (the plans' POST routes); the
default ``all`` serves every route. A request of another mode is answered 405 (or 404) before
routing. See :mod:`loopwright.cloud.dashboard_runtime`.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopwright.cloud.dashboard_runtime import DashboardSettings, build_dashboard, error_answer, refusal
from loopwright.cloud.observability import logger, tracer
from loopwright.cloud.runtime import RuntimeSettings
from loopwright.exceptions import ConfigError


@functools.cache
def settings() -> DashboardSettings:
    """This container's dashboard settings. Raises ConfigError naming a bad variable."""
    return DashboardSettings.from_environ()


@functools.cache
def app() -> APIGatewayRestResolver:
    """The resolver, built once per container. Raises ConfigError naming a missing variable."""
    return build_dashboard(RuntimeSettings.from_environ(), settings())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy event -> proxy response (JSON errors, see loopwright.dashboard.api)."""
    try:
        refused = refusal(event, settings().mode)
        if refused is not None:
            return refused
        resolver = app()
    except ConfigError as exc:
        logger.error("dashboard misconfigured", extra={"error": str(exc)})
        return error_answer(500, "internal", f"the dashboard is misconfigured: {exc}")
    response: dict[str, Any] = resolver.resolve(event, context)
    return response
