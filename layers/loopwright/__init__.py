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
    "LoopFrameworkError",
    "LoopOutcome",
    "LoopPhase",
    "LoopResult",
    "LoopState",
    "PolicyViolationError",
]
__version__ = "0.1.0"
