"""Storing a device's batch of error events: exactly once, aggregated into problems.

An event's primary key is (device, event id), so a retried batch inserts nothing
twice; problem counters grow only by the events this call actually inserted. The
answer names every id the service now holds, so the device can forget them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, case, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from opensphere.formats.error_events import (
    EventCategory,
    ParsedBatch,
    RejectedEvent,
    WireEvent,
    event_class,
)
from opensphere.formats.error_events import event_type as planned_or_not
from opensphere.service.error_reports.core import place_in_time
from opensphere.service.error_reports.models import ErrorEvent, Problem
from opensphere.service.storage.models import Device
from opensphere.service.storage.types import UTCDateTime

_EVENTS = cast(Table, ErrorEvent.__table__)
_PROBLEMS = cast(Table, Problem.__table__)


@dataclass
class IngestResult:
    stored: list[uuid.UUID] = field(default_factory=list)
    duplicates: list[uuid.UUID] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)


def _insert(session: Session, table: Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _problem_ids(
    session: Session, tenant_id: uuid.UUID, events: list[WireEvent], now: dt.datetime
) -> dict[tuple[str, str, str, str], uuid.UUID]:
    keys = {event.problem_key() for event in events}
    found: dict[tuple[str, str, str, str], uuid.UUID] = {}
    for key in sorted(keys):
        category, component, image, outcome = key
        match = (
            (_PROBLEMS.c.tenant_id == tenant_id)
            & (_PROBLEMS.c.category == category)
            & (_PROBLEMS.c.component_key == component)
            & (_PROBLEMS.c.image_key == image)
            & (_PROBLEMS.c.outcome == outcome)
        )
        session.execute(
            _insert(session, _PROBLEMS)
            .values(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                category=category,
                component_key=component,
                image_key=image,
                outcome=outcome,
                first_seen=now,
                last_seen=now,
                event_count=0,
            )
            .on_conflict_do_nothing()
        )
        found[key] = session.execute(select(_PROBLEMS.c.id).where(match)).scalar_one()
    return found


def store_batch(
    session: Session, *, device: Device, batch: ParsedBatch, received_at: dt.datetime
) -> IngestResult:
    """Insert the batch's new events and grow their problems; the caller commits."""
    result = IngestResult(rejected=list(batch.rejected))
    if not batch.events:
        return result
    ids = [event.id for event in batch.events]
    already = set(
        session.execute(
            select(_EVENTS.c.id).where(
                _EVENTS.c.device_id == device.device_id, _EVENTS.c.id.in_(ids)
            )
        ).scalars()
    )
    fresh = [event for event in batch.events if event.id not in already]
    result.duplicates = [event.id for event in batch.events if event.id in already]
    if not fresh:
        return result
    problems = _problem_ids(session, device.tenant_id, fresh, received_at)
    rows: list[dict[str, Any]] = []
    for event in fresh:
        times = place_in_time(event, sent_at=batch.sent_at, received_at=received_at)
        rows.append(
            {
                "device_id": device.device_id,
                "id": event.id,
                "tenant_id": device.tenant_id,
                "product_id": device.product_id,
                "device_group_id": device.device_group_id,
                "problem_id": problems[event.problem_key()],
                "category": event.category.value,
                "component_id": event.component_id,
                "image_id": event.image_id,
                "exit_status": event.exit_status,
                "signal_status": event.signal_status,
                "description": event.description()[:512],
                "event_count": event.count,
                "start_time": times.start,
                "end_time": times.end,
                "clock_skewed": times.clock_skewed,
                "received_at": received_at,
            }
        )
    inserted = set(
        session.execute(
            _insert(session, _EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id), rows
        ).scalars()
    )
    growth: dict[uuid.UUID, list[Any]] = defaultdict(lambda: [0, None, None])
    for row in rows:
        if row["id"] not in inserted:
            continue
        grow = growth[row["problem_id"]]
        grow[0] += row["event_count"]
        grow[1] = row["start_time"] if grow[1] is None else min(grow[1], row["start_time"])
        grow[2] = row["end_time"] if grow[2] is None else max(grow[2], row["end_time"])
    for problem_id, (count, first_time, last_time) in sorted(growth.items()):
        first = literal(first_time, UTCDateTime())
        last = literal(last_time, UTCDateTime())
        session.execute(
            update(_PROBLEMS)
            .where(_PROBLEMS.c.id == problem_id)
            .values(
                event_count=_PROBLEMS.c.event_count + count,
                first_seen=case(
                    (_PROBLEMS.c.event_count == 0, first),
                    (_PROBLEMS.c.first_seen > first, first),
                    else_=_PROBLEMS.c.first_seen,
                ),
                last_seen=case(
                    (_PROBLEMS.c.event_count == 0, last),
                    (_PROBLEMS.c.last_seen < last, last),
                    else_=_PROBLEMS.c.last_seen,
                ),
            )
        )
    result.stored = [row["id"] for row in rows if row["id"] in inserted]
    result.duplicates += [row["id"] for row in rows if row["id"] not in inserted]
    return result


def report_columns(category_name: str) -> tuple[str, str, str]:
    """Event Type, Event Class and Event Category of a stored event's category."""
    category = EventCategory(category_name)
    return planned_or_not(category), event_class(category), category.value
