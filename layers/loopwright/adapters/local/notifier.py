"""The local :class:`~loopwright.ports.Notifier`: sends nothing (the local engine and CLI show
a loop's events themselves)."""

from __future__ import annotations

from loopwright.models.notifications import Notification
from loopwright.ports import Notifier


class NoopNotifier(Notifier):
    """Sends nothing."""

    def notify(self, notification: Notification) -> None:
        return None
