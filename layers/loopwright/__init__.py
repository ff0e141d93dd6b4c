"""loopwright: governed autonomous loops for AI coding agents.

The public API::

    from loopwright import LoopFramework, LoopConfig, ExitConditionConfig, ExitConditionType

See README.md for the command line.
"""

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
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # LoopFramework pulls in the local adapters (cedarpy, SQLite, git); import it only when asked,
    # so `import loopwright.models` stays light (Lambda handlers import the core alone).
    if name == "LoopFramework":
        from loopwright.engine.framework import LoopFramework

        return LoopFramework
    raise AttributeError(f"module 'loopwright' has no attribute {name!r}")
