"""The dashboard: loops' progress, events, checkpoints and controls over an API and a web page.

:func:`~loopwright.dashboard.api.build_app` builds the Powertools resolver from
:class:`~loopwright.dashboard.api.DashboardDeps` (ports only: no adapter is imported here); the
Lambda handler (``functions/dashboard``) and the local server (``loopwright dashboard``) both
serve it. Modules are imported on use: ``import loopwright.dashboard`` loads nothing else.
"""

from __future__ import annotations
