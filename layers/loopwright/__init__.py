"""loopwright: governed autonomous loops for AI coding agents.

The public API::

    from loopwright import LoopFramework, LoopConfig, ExitConditionConfig, ExitConditionType

Names are imported on first use (PEP 562), so ``import loopwright`` costs nothing and a Lambda
handler that needs only ``loopwright.models`` never loads the engine or its adapters.
See README.md for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "LoopFramework": "loopwright.engine.framework",
    "CheckpointRecoveryError": "loopwright.exceptions",
    "ConfigError": "loopwright.exceptions",
    "ExitConditionEvaluationError": "loopwright.exceptions",
    "LoopFrameworkError": "loopwright.exceptions",
    "PolicyViolationError": "loopwright.exceptions",
    "Checkpoint": "loopwright.models",
    "ExitConditionConfig": "loopwright.models",
    "ExitConditionStatus": "loopwright.models",
    "ExitConditionStatusValue": "loopwright.models",
    "ExitConditionType": "loopwright.models",
    "IterationEvent": "loopwright.models",
    "IterationEventType": "loopwright.models",
    "LoopConfig": "loopwright.models",
    "LoopOutcome": "loopwright.models",
    "LoopPhase": "loopwright.models",
    "LoopResult": "loopwright.models",
    "LoopState": "loopwright.models",
}

__all__ = [
    "Checkpoint",
    "CheckpointRecoveryError",
    "ConfigError",
    "ExitConditionConfig",
    "ExitConditionEvaluationError",
    "ExitConditionStatus",
    "ExitConditionStatusValue",
    "ExitConditionType",
    "IterationEvent",
    "IterationEventType",
    "LoopConfig",
    "LoopFramework",
    "LoopFrameworkError",
    "LoopOutcome",
    "LoopPhase",
    "LoopResult",
    "LoopState",
    "PolicyViolationError",
]

if TYPE_CHECKING:
    from loopwright.engine.framework import LoopFramework
    from loopwright.exceptions import (
        CheckpointRecoveryError,
        ConfigError,
        ExitConditionEvaluationError,
        LoopFrameworkError,
        PolicyViolationError,
    )
    from loopwright.models import (
        Checkpoint,
        ExitConditionConfig,
        ExitConditionStatus,
        ExitConditionStatusValue,
        ExitConditionType,
        IterationEvent,
        IterationEventType,
        LoopConfig,
        LoopOutcome,
        LoopPhase,
        LoopResult,
        LoopState,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loopwright' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
