"""Error events the runtime records: AppCrash and AppExit when an app stops (reference §3.9),
and FirewallDenial when the runtime refuses an app's network request.

The runtime writes through ``EventSink``; ``QueueEventSink`` files each event in the
device's persistent failure-report queue (``device/reporting/queue.py``), where repeated
crashes or denials of one app aggregate into one record with a count.
"""

from __future__ import annotations

import datetime as dt
import signal
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from uuid import UUID

from opensphere.device.reporting.dumps import CrashInfo, write_dump
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
    log_tail: str = ""

    @classmethod
    def from_returncode(
        cls,
        returncode: int,
        *,
        time: dt.datetime,
        component_id: UUID,
        image_id: UUID,
        app_name: str,
        log_tail: str = "",
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
            log_tail=log_tail,
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

    def record_occurrence(self, occurrence: Occurrence, *, time: dt.datetime) -> None:
        """Keep an event that has no process exit behind it (a firewall denial)."""


class QueueEventSink:
    """Files app events in the device's failure-report queue, shared with secure boot.

    With a device folder, a crash also leaves a crash dump there when the device's
    group collects them.
    """

    def __init__(
        self,
        queue: EventQueue,
        *,
        device_folder: Path | None = None,
        memory_limit_bytes: int | None = None,
    ) -> None:
        self.queue = queue
        self.device_folder = device_folder
        self.memory_limit_bytes = memory_limit_bytes

    def record_occurrence(self, occurrence: Occurrence, *, time: dt.datetime) -> None:
        self.queue.record(occurrence, now=int(time.timestamp()))

    def record(self, event: AppEvent) -> None:
        event_id = self.queue.record(event.occurrence(), now=int(event.time.timestamp()))
        if self.device_folder is None or event.event_type is not AppEventType.APP_CRASH:
            return
        write_dump(
            self.device_folder,
            CrashInfo(
                event_id=event_id,
                component_id=event.component_id,
                image_id=event.image_id,
                app_name=event.app_name,
                time=event.time,
                exit_code=event.exit_code,
                signal=event.signal,
                log_tail=event.log_tail,
                memory_limit_bytes=self.memory_limit_bytes,
            ),
        )
