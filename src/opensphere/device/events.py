"""Events of secure boot and the update agent, kept in the failure-report queue until uploaded.

Boot describes what it refused with an ``ErrorEvent``; ``record_event`` files it in the
persistent, bounded, aggregating queue (``device/reporting/queue.py``) as the matching
event category, so boot failures reach the error report like app crashes do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from opensphere.device.errors import ImageRefusedError
from opensphere.device.flash import DeviceFlash
from opensphere.device.reporting.queue import EventQueue, Occurrence
from opensphere.formats.error_events import EventCategory


class EventType(StrEnum):
    BOOT_IMAGE_REFUSED = "BootImageRefused"
    APP_REFUSED = "AppRefused"
    CAPABILITY_REFUSED = "CapabilityRefused"
    UPDATE_FAILED = "UpdateFailed"
    UPDATE_ROLLED_BACK = "UpdateRolledBack"
    BOOT_CONTROL_DAMAGED = "BootControlDamaged"
    OS_UPDATED = "OsUpdated"
    APP_UPDATED = "AppUpdated"


CATEGORY: dict[EventType, EventCategory] = {
    EventType.BOOT_IMAGE_REFUSED: EventCategory.VERIFICATION_FAILURE,
    EventType.APP_REFUSED: EventCategory.VERIFICATION_FAILURE,
    EventType.CAPABILITY_REFUSED: EventCategory.VERIFICATION_FAILURE,
    EventType.UPDATE_FAILED: EventCategory.UPDATE_FAILURE,
    EventType.UPDATE_ROLLED_BACK: EventCategory.UPDATE_FAILURE,
    EventType.BOOT_CONTROL_DAMAGED: EventCategory.BOOT_FAILURE,
    EventType.OS_UPDATED: EventCategory.OS_UPDATE,
    EventType.APP_UPDATED: EventCategory.APP_UPDATE,
}


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    type: EventType
    component: str
    reason: str
    time: int
    slot: str | None = None
    component_id: str | None = None
    image_id: str | None = None

    @classmethod
    def refused(
        cls, kind: EventType, error: ImageRefusedError, *, time: int, slot: str | None = None
    ) -> ErrorEvent:
        return cls(
            type=kind,
            component=error.component,
            reason=error.reason,
            time=time,
            slot=slot,
            component_id=_text(error.component_id),
            image_id=_text(error.image_id),
        )

    def occurrence(self) -> Occurrence:
        slot = f" (slot {self.slot})" if self.slot else ""
        return Occurrence(
            category=CATEGORY[self.type],
            component_id=_uuid(self.component_id),
            image_id=_uuid(self.image_id),
            detail=f"{self.type.value}: {self.component}: {self.reason}{slot}",
        )


def record_event(flash: DeviceFlash, event: ErrorEvent) -> None:
    """Keep one event durably in the device's failure-report queue."""
    EventQueue(flash.events_queue).record(event.occurrence(), now=event.time)


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid(value: str | None) -> UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
