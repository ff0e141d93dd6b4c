"""The ``loopwright`` command line."""

from __future__ import annotations

import os


def main() -> None:
    """Entry point of the ``loopwright`` script and ``python -m loopwright``.

    Pydantic's plugin discovery scans every installed distribution's entry points (about 80 ms
    measured here); the CLI uses no pydantic plugin, so it is switched off before pydantic loads
    unless the user set ``PYDANTIC_DISABLE_PLUGINS`` themselves.
    """
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from loopwright.cli.app import main as run_app  # after the variable is set

    run_app()
