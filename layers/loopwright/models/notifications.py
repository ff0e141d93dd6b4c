"""A notification to the people who follow a loop (issue 12.2): what a :class:`~loopwright.ports.Notifier`
sends when a loop waits for a human, crosses a policy's warning threshold, completes or fails."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from loopwright.models.types import LoopId


class NotificationKind(StrEnum):
    """What happened: the ``kind`` message attribute a subscription's filter policy can match."""

    AWAITING_RESPONSE = "AWAITING_RESPONSE"  # the agent asked a human a question (HUMAN_INPUT_REQUESTED)
    POLICY_WARNING = "POLICY_WARNING"  # a limit is at or above its warning threshold
    LOOP_COMPLETED = "LOOP_COMPLETED"  # the loop ended with an outcome other than FAILED
    LOOP_FAILED = "LOOP_FAILED"  # the loop ended FAILED (a step failed after its retries)


class Notification(BaseModel):
    """One notification; :meth:`attributes` are the fields a subscription may filter on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: NotificationKind
    project: str = Field(min_length=1)
    loop_id: LoopId
    iteration: int = Field(ge=0)
    notification_id: str = Field(
        description="the same for every publication of one happening (a retried step publishes the "
        "same id again): subscribers that must not act twice deduplicate on it"
    )
    title: str = Field(description="one line: the e-mail subject, the chat message's title")
    message: str = Field(description="what happened, in plain text")
    occurred_at: datetime
    question: str | None = Field(default=None, description="the agent's question (AWAITING_RESPONSE)")
    approve_url: str | None = Field(
        default=None, description="the dashboard's page of the loop, where it is approved (AWAITING_RESPONSE)"
    )
    outcome: str | None = Field(default=None, description="the loop's outcome (LOOP_COMPLETED, LOOP_FAILED)")
    policy_id: str | None = Field(default=None, description="the policy that warned (POLICY_WARNING)")

    def attributes(self) -> dict[str, str]:
        """The message attributes: ``project``, ``loop_id``, ``kind``."""
        return {"project": self.project, "loop_id": self.loop_id, "kind": self.kind.value}
