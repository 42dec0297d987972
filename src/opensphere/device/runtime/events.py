"""Error events the runtime records when an app stops: AppCrash and AppExit (reference §3.9).

The runtime writes through ``EventSink``; ``QueueEventSink`` files each event in the
device's persistent failure-report queue (``device/reporting/queue.py``), where repeated
crashes of one app aggregate into one record with a count.
"""

from __future__ import annotations

import datetime as dt
import signal
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from opensphere.device.reporting.queue import EventQueue, Occurrence
from opensphere.formats.error_events import EventCategory


class AppEventType(StrEnum):
    APP_CRASH = "AppCrash"  # killed by a signal, or a non-zero exit status
    APP_EXIT = "AppExit"  # exit status 0: a high-level app is expected never to return


CATEGORY = {
    AppEventType.APP_CRASH: EventCategory.APP_CRASH,
    AppEventType.APP_EXIT: EventCategory.APP_EXIT,
}


@dataclass(frozen=True)
class AppEvent:
    event_type: AppEventType
    time: dt.datetime
    component_id: UUID
    image_id: UUID
    app_name: str
    exit_code: int | None
    signal: int | None

    @classmethod
    def from_returncode(
        cls,
        returncode: int,
        *,
        time: dt.datetime,
        component_id: UUID,
        image_id: UUID,
        app_name: str,
    ) -> AppEvent:
        """An event for a process's ``returncode`` (negative: the signal that killed it)."""
        crashed = returncode != 0
        return cls(
            event_type=AppEventType.APP_CRASH if crashed else AppEventType.APP_EXIT,
            time=time,
            component_id=component_id,
            image_id=image_id,
            app_name=app_name,
            exit_code=returncode if returncode >= 0 else None,
            signal=-returncode if returncode < 0 else None,
        )

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"

    @property
    def reason(self) -> str:
        if self.signal is not None:
            return f"killed by {self.signal_name}"
        return f"exit status {self.exit_code}"

    def occurrence(self) -> Occurrence:
        return Occurrence(
            category=CATEGORY[self.event_type],
            component_id=self.component_id,
            image_id=self.image_id,
            exit_status=self.exit_code,
            signal_status=self.signal,
            detail=f"{self.app_name}: {self.reason}",
        )


class EventSink(Protocol):
    def record(self, event: AppEvent) -> None:
        """Keep the event; it must survive a crash of the runtime once this returns."""


class QueueEventSink:
    """Files app events in the device's failure-report queue, shared with secure boot."""

    def __init__(self, queue: EventQueue) -> None:
        self.queue = queue

    def record(self, event: AppEvent) -> None:
        self.queue.record(event.occurrence(), now=int(event.time.timestamp()))
