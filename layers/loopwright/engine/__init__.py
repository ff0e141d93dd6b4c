"""Engines that drive the core steps: the in-process :class:`LoopFramework`."""

from loopwright.engine.framework import LoopFramework, Observer

__all__ = ["LoopFramework", "Observer"]
