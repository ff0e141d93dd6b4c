"""What :class:`~loopwright.engine.framework.LoopFramework` provides to the classes mixed into it
(:class:`~loopwright.engine.drive.SessionDriver`, :class:`~loopwright.engine.restore.Restoring`):
its ports, its step writer and its event recorder, declared once here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopwright.engine.step_writer import StepWriter
from loopwright.models import IterationEvent, IterationEventType, LoopState
from loopwright.ports import CheckpointStore, LoopStore, Workspace


class EngineHost:
    """The attributes and methods the engine's mixins use; :class:`LoopFramework` defines them."""

    loop_id: str
    workspace: Path
    state_dir: Path
    store: LoopStore
    checkpoints: CheckpointStore
    _writer: StepWriter

    def get_state(self) -> LoopState:
        """The loop's current state (LoopFramework's)."""
        raise NotImplementedError

    def emit_event(
        self, event_type: IterationEventType, message: str = "", *, iteration: int | None = None, **data: Any
    ) -> IterationEvent:
        """Record an event (LoopFramework's)."""
        raise NotImplementedError

    def _workspace(self) -> Workspace:
        raise NotImplementedError
