"""The device's event queue: aggregation, bounds, sealing for idempotent retries, persistence."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from opensphere.device.reporting.queue import EventQueue, Occurrence
from opensphere.formats.error_events import EventCategory

APP = uuid.uuid4()
IMAGE = uuid.uuid4()
T0 = 1_700_000_000


def crash(signal: int = 11) -> Occurrence:
    return Occurrence(EventCategory.APP_CRASH, APP, IMAGE, signal_status=signal)


def test_same_event_in_one_window_is_one_record_with_a_count(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path / "queue.json", window_seconds=3600)
    for second in range(5):
        queue.record(crash(), now=T0 + second)
    queue.record(crash(signal=6), now=T0 + 10)
    events = queue.pending()
    assert [(e.signal_status, e.count) for e in events] == [(11, 5), (6, 1)]
    assert (events[0].first_seen, events[0].last_seen) == (T0, T0 + 4)


def test_a_new_window_starts_a_new_record(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path / "queue.json", window_seconds=60)
    queue.record(crash(), now=T0)
    queue.record(crash(), now=T0 + 3600)
    assert [e.count for e in queue.pending()] == [1, 1]


def test_crash_flood_stays_bounded(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path / "queue.json", capacity=10, window_seconds=60)
    for i in range(600):
        queue.record(crash(signal=i % 3), now=T0 + i * 7)
    assert len(queue) == 10
    assert sum(e.count for e in queue.pending()) == 600
    dropped = [e for e in queue.pending() if e.category is EventCategory.EVENTS_DROPPED]
    assert sum(e.count for e in dropped) > 0
    assert (tmp_path / "queue.json").stat().st_size < 10_000


def test_planned_events_are_dropped_first_and_counted(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path / "queue.json", capacity=3)
    queue.record(Occurrence(EventCategory.OS_UPDATE), now=T0)
    queue.record(crash(11), now=T0 + 1)
    queue.record(Occurrence(EventCategory.APP_UPDATE, APP), now=T0 + 2)
    queue.record(crash(6), now=T0 + 3)
    events = queue.pending()
    assert [(e.category, e.signal_status, e.count) for e in events] == [
        (EventCategory.APP_CRASH, 11, 1),
        (EventCategory.EVENTS_DROPPED, None, 2),
        (EventCategory.APP_CRASH, 6, 1),
    ]
    queue.record(crash(4), now=T0 + 4)
    events = queue.pending()
    assert [(e.category, e.signal_status, e.count) for e in events] == [
        (EventCategory.EVENTS_DROPPED, None, 3),
        (EventCategory.APP_CRASH, 6, 1),
        (EventCategory.APP_CRASH, 4, 1),
    ]


def test_sealed_batch_is_resent_identically_until_acknowledged(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path / "queue.json")
    queue.record(crash(), now=T0)
    first = queue.next_batch(100)
    queue.record(crash(), now=T0 + 1)
    again = queue.next_batch(1)
    assert again == first
    assert first[0].count == 1
    queue.acknowledge([first[0].id])
    remaining = queue.pending()
    assert len(remaining) == 1
    assert remaining[0].id != first[0].id
    assert remaining[0].count == 1


def test_queue_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "queue.json"
    queue = EventQueue(path, capacity=2)
    for signal in (1, 2, 3):
        queue.record(crash(signal), now=T0)
    batch = queue.next_batch(1)
    reopened = EventQueue(path, capacity=2)
    assert reopened.pending() == queue.pending()
    assert [e.category for e in reopened.pending()] == [
        EventCategory.EVENTS_DROPPED,
        EventCategory.APP_CRASH,
    ]
    assert reopened.next_batch(1) == batch


def test_damaged_queue_file_is_set_aside_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "queue.json"
    EventQueue(path).record(crash(), now=T0)
    path.write_bytes(path.read_bytes()[:20])
    queue = EventQueue(path)
    assert queue.pending() == []
    assert (tmp_path / "queue.json.damaged").exists()
    queue.record(crash(), now=T0)
    assert json.loads(path.read_bytes())["records"]
