"""Error events kept on the device until the failure reporter uploads them.

For now a plain append-only JSON-lines file (``events/pending.jsonl``); the writer is the one
function ``record_event``, so a proper queue can replace it in one place. Each line is fsynced
before the call returns; a power cut can at worst leave a torn last line, which readers skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from uuid import UUID

from opensphere.device.errors import ImageRefusedError
from opensphere.device.flash import DeviceFlash, make_durable_dir


class EventType(StrEnum):
    BOOT_IMAGE_REFUSED = "BootImageRefused"
    APP_REFUSED = "AppRefused"
    CAPABILITY_REFUSED = "CapabilityRefused"
    UPDATE_FAILED = "UpdateFailed"
    UPDATE_ROLLED_BACK = "UpdateRolledBack"
    BOOT_CONTROL_DAMAGED = "BootControlDamaged"


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


def record_event(flash: DeviceFlash, event: ErrorEvent) -> None:
    """Append one event durably."""
    make_durable_dir(flash.events_file.parent)
    line = json.dumps({**asdict(event), "type": event.type.value}, sort_keys=True) + "\n"
    fd = os.open(flash.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_events(flash: DeviceFlash) -> Iterator[ErrorEvent]:
    """The pending events, oldest first; a torn or damaged line is skipped."""
    try:
        data = flash.events_file.read_bytes()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        try:
            raw = json.loads(line)
            yield ErrorEvent(**{**raw, "type": EventType(raw["type"])})
        except (ValueError, TypeError, KeyError):
            continue


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)
