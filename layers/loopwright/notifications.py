"""Notifications of a loop's recorded events (issue 12.2), sent through the
:class:`~loopwright.ports.Notifier` port once the events are saved.

:func:`notifications_for` maps a step's events to notifications: HUMAN_INPUT_REQUESTED ->
AWAITING_RESPONSE (with the agent's question and, when a dashboard URL is known, the loop's page
there, where it is approved), POLICY_WARNING -> POLICY_WARNING, LOOP_COMPLETED -> LOOP_COMPLETED
(with the outcome), or LOOP_FAILED for the outcome FAILED. Other events notify no one.

:func:`publish` sends them and never raises for a notifier's failure: the state is saved already,
and a notification is not worth failing (and retrying) a step for; a failure is logged.

Delivery is at least once, not exactly once: a step retried after it published (its Lambda timed
out, or failed between the publication and its return) publishes again, and a standard SNS topic
does not deduplicate. Each notification carries a ``notification_id`` that is the same for every
publication of one happening (loop, iteration, kind, and the warning's policy), so a subscriber
that must not act twice can deduplicate on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from loopwright.exceptions import LoopFrameworkError
from loopwright.models import IterationEvent, IterationEventType, LoopOutcome, LoopState
from loopwright.models.notifications import Notification, NotificationKind
from loopwright.ports import Notifier

logger = logging.getLogger(__name__)

#: The event types that notify.
NOTIFYING_EVENTS = frozenset(
    {
        IterationEventType.HUMAN_INPUT_REQUESTED,
        IterationEventType.POLICY_WARNING,
        IterationEventType.LOOP_COMPLETED,
    }
)


def loop_page_url(dashboard_url: str, loop_id: str) -> str:
    """The dashboard's page of ``loop_id`` (its view ``#/loops/<loop_id>``, with the Approve
    button), under ``dashboard_url`` (the dashboard's base URL, ending in ``/``)."""
    return f"{dashboard_url.rstrip('/')}/#/loops/{loop_id}"


def notifications_for(
    state: LoopState, events: Iterable[IterationEvent], *, dashboard_url: str | None = None
) -> list[Notification]:
    """The notifications of ``events`` (recorded for ``state``'s loop), in their order."""
    found = []
    for event in events:
        if event.type in NOTIFYING_EVENTS:
            found.append(_notification(state, event, dashboard_url))
    return found


def _notification(state: LoopState, event: IterationEvent, dashboard_url: str | None) -> Notification:
    common: dict[str, Any] = {
        "project": state.project,
        "loop_id": state.loop_id,
        "iteration": event.iteration,
        "occurred_at": event.timestamp,
    }
    where = f"loop {state.loop_id} ({state.project}), iteration {event.iteration}"
    if event.type is IterationEventType.HUMAN_INPUT_REQUESTED:
        url = loop_page_url(dashboard_url, state.loop_id) if dashboard_url else None
        answer = f"Answer it at {url}" if url else f"Answer it with: loopwright approve {state.loop_id}"
        return Notification(
            kind=NotificationKind.AWAITING_RESPONSE,
            notification_id=f"{state.loop_id}:{event.iteration}:AWAITING_RESPONSE",
            title=f"loopwright: {state.loop_id} awaits a response",
            message=f"The agent of {where} asks:\n\n{event.message}\n\n{answer}",
            question=event.message,
            approve_url=url,
            **common,
        )
    if event.type is IterationEventType.POLICY_WARNING:
        policy_id = str(event.data.get("policy_id") or "") or None
        return Notification(
            kind=NotificationKind.POLICY_WARNING,
            notification_id=f"{state.loop_id}:{event.iteration}:POLICY_WARNING:{policy_id or ''}",
            title=f"loopwright: {state.loop_id} policy warning",
            message=f"Policy warning for {where}: {event.message}",
            policy_id=policy_id,
            **common,
        )
    outcome = str(event.data.get("outcome") or (state.outcome.value if state.outcome else "")) or None
    failed = outcome == LoopOutcome.FAILED.value
    kind = NotificationKind.LOOP_FAILED if failed else NotificationKind.LOOP_COMPLETED
    return Notification(
        kind=kind,
        notification_id=f"{state.loop_id}:{kind.value}",  # a loop ends once
        title=f"loopwright: {state.loop_id} {'failed' if failed else 'completed'} ({outcome or 'ended'})",
        message=f"The {where} ended: {event.message}",
        outcome=outcome,
        **common,
    )


def publish(notifier: Notifier | None, notifications: Sequence[Notification]) -> int:
    """Send ``notifications`` through ``notifier`` (none: nothing sent); the number sent. A
    notification that cannot be sent is logged and skipped, never raised."""
    if notifier is None:
        return 0
    sent = 0
    for notification in notifications:
        try:
            notifier.notify(notification)
        except LoopFrameworkError as exc:
            logger.warning(
                "loopwright: notification %s of loop %r not sent: %s",
                notification.kind.value,
                notification.loop_id,
                exc,
                extra={"loop_id": notification.loop_id, "kind": notification.kind.value},
            )
            continue
        sent += 1
    return sent
