"""System events for apps, and update deferral (reference §3.8).

The update agent calls ``announce`` when an update is ready to install; apps with
``SystemEventNotifications`` find an ``UpdateReadyForInstall`` event when they poll, and apps
with ``SoftwareUpdateDeferral`` may defer it. The agent asks ``deferred_until`` before it
installs, and calls ``finish`` once the update is installed or dropped. Whatever apps ask, no
update waits more than 24 hours after it was announced.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from opensphere.device.runtime.policy import MAX_UPDATE_DEFERRAL, update_deferral_deadline

MAX_QUEUED_EVENTS: Final = 16


class NoPendingUpdateError(Exception):
    """An app tried to defer or resume when no update is waiting."""


@dataclass(frozen=True)
class PendingUpdate:
    update_type: str
    announced: dt.datetime


class UpdateDeferrals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: PendingUpdate | None = None
        self._queues: dict[UUID, deque[dict[str, Any]]] = {}
        self._deferrals: dict[UUID, dt.datetime] = {}

    def subscribe(self, component_id: UUID) -> None:
        with self._lock:
            self._queues.setdefault(component_id, deque(maxlen=MAX_QUEUED_EVENTS))

    def unsubscribe(self, component_id: UUID) -> None:
        """Forget an app that was removed: its queue and any deferral it held."""
        with self._lock:
            self._queues.pop(component_id, None)
            self._deferrals.pop(component_id, None)

    def has_listeners(self) -> bool:
        """Whether any app receives update events (and so might defer)."""
        with self._lock:
            return bool(self._queues)

    def announce(self, update_type: str, now: dt.datetime) -> None:
        """An update is downloaded and ready; tell every subscribed app."""
        with self._lock:
            if self._pending is None:
                self._pending = PendingUpdate(update_type, now)
            event = self._event("Pending", now)
            for queue in self._queues.values():
                queue.append(event)

    def poll(self, component_id: UUID) -> list[dict[str, Any]]:
        with self._lock:
            queue = self._queues.get(component_id)
            if queue is None:
                return []
            events = list(queue)
            queue.clear()
            return events

    def defer(self, component_id: UUID, minutes: int, now: dt.datetime) -> dt.datetime:
        """Defer the pending update; returns the real deadline (capped at 24 hours)."""
        with self._lock:
            if self._pending is None:
                raise NoPendingUpdateError("no update is waiting to install")
            until = update_deferral_deadline(
                self._pending.announced, now + dt.timedelta(minutes=minutes)
            )
            self._deferrals[component_id] = until
            return until

    def resume(self, component_id: UUID) -> None:
        with self._lock:
            if self._pending is None:
                raise NoPendingUpdateError("no update is waiting to install")
            self._deferrals.pop(component_id, None)

    def deferred_until(self, now: dt.datetime) -> dt.datetime | None:
        """Until when apps hold the pending update back, or None if it may install now."""
        with self._lock:
            latest = max(self._deferrals.values(), default=None)
            return latest if latest is not None and latest > now else None

    def finish(self, now: dt.datetime) -> None:
        """The update was installed (or dropped): tell apps, forget deferrals."""
        with self._lock:
            if self._pending is None:
                return
            event = self._event("Complete", now)
            for queue in self._queues.values():
                queue.append(event)
            self._pending = None
            self._deferrals.clear()

    def _event(self, status: str, now: dt.datetime) -> dict[str, Any]:
        assert self._pending is not None
        left = self._pending.announced + MAX_UPDATE_DEFERRAL - now
        return {
            "event": "UpdateReadyForInstall",
            "update_type": self._pending.update_type,
            "status": status,
            "max_deferral_minutes": max(0, math.floor(left.total_seconds() / 60)),
        }
