"""Error events the runtime records when an app stops: AppCrash and AppExit (reference §3.9).

The runtime writes through ``EventSink``; ``JsonLinesEventSink`` appends to
``events/pending.jsonl`` in the device folder, one fsync'd line per event, until the failure
reporter takes over the queue. A line has the fields of the boot's error events (``type``,
``component``, ``reason``, ``time`` in epoch seconds, ``slot``, ``component_id``,
``image_id``) plus ``app_name``, ``exit_code`` and ``signal``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID


class AppEventType(StrEnum):
    APP_CRASH = "AppCrash"  # killed by a signal, or a non-zero exit status
    APP_EXIT = "AppExit"  # exit status 0: a high-level app is expected never to return


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

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.event_type.value,
            "component": "app",
            "reason": self.reason,
            "time": int(self.time.timestamp()),
            "slot": None,
            "component_id": str(self.component_id),
            "image_id": str(self.image_id),
            "app_name": self.app_name,
            "exit_code": self.exit_code,
            "signal": self.signal,
        }


class EventSink(Protocol):
    def record(self, event: AppEvent) -> None:
        """Keep the event; it must survive a crash of the runtime once this returns."""


class JsonLinesEventSink:
    """Appends events as JSON lines to one file, on disk before ``record`` returns.

    Each line is one ``write`` to a file opened with ``O_APPEND``, so lines from other writers
    of the same file (secure boot records its refusals there) never interleave.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, event: AppEvent) -> None:
        line = json.dumps(event.to_json(), sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line.encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
