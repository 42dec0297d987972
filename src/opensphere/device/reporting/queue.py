"""The device's error-event queue: survives reboots and power cuts, bounded, aggregating.

Occurrences of the same event (category, component, image, outcome) within one
window are one record with a count, like the original's Event Count. A record
handed to the uploader is *sealed*: later occurrences start a new record, so a
retry of a batch carries exactly the same events and ids, and the service stores
them once. Records leave the queue only when the service said it stored them.

The queue is a small JSON file replaced atomically (write, fsync, rename, fsync
the folder) on every change: a power cut leaves the old or the new state. Secure
boot, the app runtime and the uploader are separate processes: every operation
holds an exclusive lock on a sibling lock file and reads the file afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opensphere.device.flash import write_atomically
from opensphere.formats.error_events import PLANNED, EventCategory, WireEvent

STATE_VERSION = 1
DEFAULT_CAPACITY = 500
DEFAULT_WINDOW_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One thing that happened, before aggregation."""

    category: EventCategory
    component_id: uuid.UUID | None = None
    image_id: uuid.UUID | None = None
    exit_status: int | None = None
    signal_status: int | None = None
    signal_code: int | None = None
    detail: str = ""

    def key(self) -> tuple[Any, ...]:
        return (
            self.category,
            self.component_id,
            self.image_id,
            self.exit_status,
            self.signal_status,
            self.signal_code,
            self.detail,
        )


@dataclass(slots=True)
class _Record:
    event: WireEvent
    window: int
    sealed: bool = False

    def occurrence_key(self) -> tuple[Any, ...]:
        e = self.event
        return (
            e.category,
            e.component_id,
            e.image_id,
            e.exit_status,
            e.signal_status,
            e.signal_code,
            e.detail,
        )


@dataclass(slots=True)
class _State:
    records: list[_Record] = field(default_factory=list)


class EventQueue:
    def __init__(
        self,
        path: Path,
        *,
        capacity: int = DEFAULT_CAPACITY,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        if capacity < 2:
            raise ValueError("the queue needs room for at least two records")
        self.path = path
        self.capacity = capacity
        self.window_seconds = window_seconds

    @contextlib.contextmanager
    def _state(self, *, write: bool) -> Iterator[_State]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state, repaired = _load(self.path)
            yield state
            if write or repaired:
                _save(self.path, state)

    def __len__(self) -> int:
        with self._state(write=False) as state:
            return len(state.records)

    def pending(self) -> list[WireEvent]:
        with self._state(write=False) as state:
            return [record.event for record in state.records]

    def record(self, occurrence: Occurrence, *, now: int) -> uuid.UUID:
        """File one occurrence; the id of the event record that now counts it."""
        window = now // self.window_seconds
        with self._state(write=True) as state:
            for record in reversed(state.records):
                if (
                    not record.sealed
                    and record.window == window
                    and record.occurrence_key() == occurrence.key()
                ):
                    record.event = record.event.model_copy(
                        update={
                            "count": min(record.event.count + 1, 1_000_000),
                            "last_seen": max(now, record.event.last_seen),
                        }
                    )
                    return record.event.id
            while len(state.records) >= self.capacity:
                _drop_one(state, now=now, window=window)
            event = WireEvent(
                id=uuid.uuid4(),
                category=occurrence.category,
                component_id=occurrence.component_id,
                image_id=occurrence.image_id,
                exit_status=occurrence.exit_status,
                signal_status=occurrence.signal_status,
                signal_code=occurrence.signal_code,
                detail=occurrence.detail[:256],
                count=1,
                first_seen=now,
                last_seen=now,
            )
            state.records.append(_Record(event=event, window=window))
            return event.id

    def next_batch(self, max_events: int) -> list[WireEvent]:
        """The oldest events, sealed from now on so that a retry sends them unchanged."""
        with self._state(write=True) as state:
            batch = state.records[:max_events]
            for record in batch:
                record.sealed = True
            return [record.event for record in batch]

    def acknowledge(self, stored: Iterable[uuid.UUID]) -> None:
        """Forget what the service confirmed it stored (or already had)."""
        done = set(stored)
        with self._state(write=True) as state:
            state.records = [r for r in state.records if r.event.id not in done]


def _drop_one(state: _State, *, now: int, window: int) -> None:
    """Make room: the oldest planned (update) event goes first, else the oldest event.

    What is dropped is counted in an EventsDropped event, itself never dropped, so
    the service learns how much was lost, with the same exactly-once delivery.
    """
    records = state.records
    candidates = [
        i for i, r in enumerate(records) if r.event.category is not EventCategory.EVENTS_DROPPED
    ]
    victim = next(
        (i for i in candidates if not records[i].sealed and records[i].event.category in PLANNED),
        None,
    )
    if victim is None:
        unsealed = (i for i in candidates if not records[i].sealed)
        victim = next(unsealed, candidates[0] if candidates else 0)
    lost = records.pop(victim).event.count
    for record in reversed(records):
        if (
            record.event.category is EventCategory.EVENTS_DROPPED
            and not record.sealed
            and record.window == window
        ):
            record.event = record.event.model_copy(
                update={"count": min(record.event.count + lost, 1_000_000), "last_seen": now}
            )
            return
    records.append(
        _Record(
            event=WireEvent(
                id=uuid.uuid4(),
                category=EventCategory.EVENTS_DROPPED,
                detail="the device's event queue was full",
                count=lost,
                first_seen=now,
                last_seen=now,
            ),
            window=window,
        )
    )


def _save(path: Path, state: _State) -> None:
    data = {
        "version": STATE_VERSION,
        "records": [
            {"event": r.event.model_dump(mode="json"), "window": r.window, "sealed": r.sealed}
            for r in state.records
        ],
    }
    write_atomically(path, json.dumps(data, separators=(",", ":")).encode())


def _load(path: Path) -> tuple[_State, bool]:
    """The saved queue; a damaged file is set aside (never silently reused) and counted.

    The flag says the file was set aside, so the fresh state must be saved.
    """
    try:
        raw = json.loads(path.read_bytes())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"unknown queue version {raw.get('version')!r}")
        state = _State(
            records=[
                _Record(
                    event=WireEvent.model_validate(item["event"]),
                    window=int(item["window"]),
                    sealed=bool(item["sealed"]),
                )
                for item in raw["records"]
            ],
        )
    except FileNotFoundError:
        return _State(), False
    except (ValueError, KeyError, TypeError, AttributeError):
        os.replace(path, path.with_name(path.name + ".damaged"))
        return _State(), True
    return state, False
