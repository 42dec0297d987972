"""Storing a device's batch of error events: exactly once, aggregated into problems.

An event's primary key is (device, event id), so a retried batch inserts nothing
twice; problem counters grow only by the events this call actually inserted. The
answer names every id the service now holds, so the device can forget them.

A batch is a handful of statements whatever its size, each built once (building a
statement costs more than running it): the batch's problems, the events with
`ON CONFLICT DO NOTHING RETURNING id` (what it returns is what this call stored), the
problems' counters. Only a batch with a problem not seen before first looks up which of
its events are held already, so that a retried batch never creates an empty problem. On
PostgreSQL the events go in as one `INSERT … SELECT FROM unnest(arrays)`: a short statement
with one array per column, where a multi-row VALUES would have psycopg parse 1,700
placeholders on every batch.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, cast

from sqlalchemy import Connection, Table, any_, bindparam, case, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

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
from opensphere.service.storage.types import UTCDateTime, new_id

_EVENTS = cast(Table, ErrorEvent.__table__)
_PROBLEMS = cast(Table, Problem.__table__)
_DEVICES = cast(Table, Device.__table__)
ProblemKey = tuple[str, str, str, str]

_REPORTER = select(
    _DEVICES.c.device_id,
    _DEVICES.c.tenant_id,
    _DEVICES.c.product_id,
    _DEVICES.c.device_group_id,
    _DEVICES.c.enabled,
).where(_DEVICES.c.device_id == bindparam("p_device_id"))
_HELD_PG = select(_EVENTS.c.id).where(
    _EVENTS.c.device_id == bindparam("p_device_id"),
    _EVENTS.c.id == any_(bindparam("p_ids", type_=postgresql.ARRAY(_EVENTS.c.id.type))),
)
_HELD_SQLITE = select(_EVENTS.c.id).where(
    _EVENTS.c.device_id == bindparam("p_device_id"),
    _EVENTS.c.id.in_(bindparam("p_ids", expanding=True)),
)
_PROBLEM_MATCH = (
    (_PROBLEMS.c.tenant_id == bindparam("p_tenant_id"))
    & (_PROBLEMS.c.category == bindparam("p_category"))
    & (_PROBLEMS.c.component_key == bindparam("p_component_key"))
    & (_PROBLEMS.c.image_key == bindparam("p_image_key"))
    & (_PROBLEMS.c.outcome == bindparam("p_outcome"))
)
_PROBLEM_ID = select(_PROBLEMS.c.id).where(_PROBLEM_MATCH)
_NOW = bindparam("p_now", type_=UTCDateTime())
_NEW_PROBLEM_VALUES: Final = {
    "id": bindparam("p_id"),
    "tenant_id": bindparam("p_tenant_id"),
    "category": bindparam("p_category"),
    "component_key": bindparam("p_component_key"),
    "image_key": bindparam("p_image_key"),
    "outcome": bindparam("p_outcome"),
    "first_seen": _NOW,
    "last_seen": _NOW,
    "event_count": 0,
}
_NEW_PROBLEM = {
    "postgresql": postgresql.insert(_PROBLEMS).values(_NEW_PROBLEM_VALUES).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(_PROBLEMS).values(_NEW_PROBLEM_VALUES).on_conflict_do_nothing(),
}
_FIRST = bindparam("p_first", type_=UTCDateTime())
_LAST = bindparam("p_last", type_=UTCDateTime())
_GROW = (
    update(_PROBLEMS)
    .where(_PROBLEMS.c.id == bindparam("p_problem_id"))
    .values(
        event_count=_PROBLEMS.c.event_count + bindparam("p_count"),
        first_seen=case(
            (_PROBLEMS.c.event_count == 0, _FIRST),
            (_PROBLEMS.c.first_seen > _FIRST, _FIRST),
            else_=_PROBLEMS.c.first_seen,
        ),
        last_seen=case(
            (_PROBLEMS.c.event_count == 0, _LAST),
            (_PROBLEMS.c.last_seen < _LAST, _LAST),
            else_=_PROBLEMS.c.last_seen,
        ),
    )
)
_INSERT_SQLITE = sqlite.insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id)
# The per-event columns travel as arrays, the batch's constants once.
_INSERT_PG = text(
    """
    INSERT INTO error_events (
        device_id, id, tenant_id, product_id, device_group_id, problem_id, category,
        component_id, image_id, exit_status, signal_status, description, event_count,
        start_time, end_time, clock_skewed, received_at)
    SELECT :device_id, e.id, :tenant_id, :product_id, :device_group_id, e.problem_id,
        e.category, e.component_id, e.image_id, e.exit_status, e.signal_status,
        e.description, e.event_count, e.start_time, e.end_time, e.clock_skewed, :received_at
    FROM unnest(
        CAST(:id AS UUID[]), CAST(:problem_id AS UUID[]), CAST(:category AS VARCHAR[]),
        CAST(:component_id AS UUID[]), CAST(:image_id AS UUID[]),
        CAST(:exit_status AS INTEGER[]), CAST(:signal_status AS INTEGER[]),
        CAST(:description AS VARCHAR[]), CAST(:event_count AS INTEGER[]),
        CAST(:start_time AS TIMESTAMPTZ[]), CAST(:end_time AS TIMESTAMPTZ[]),
        CAST(:clock_skewed AS BOOLEAN[])
    ) AS e(id, problem_id, category, component_id, image_id, exit_status, signal_status,
           description, event_count, start_time, end_time, clock_skewed)
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)
_PER_EVENT: Final = (
    "id",
    "problem_id",
    "category",
    "component_id",
    "image_id",
    "exit_status",
    "signal_status",
    "description",
    "event_count",
    "start_time",
    "end_time",
    "clock_skewed",
)


@dataclass(frozen=True, slots=True)
class Reporter:
    """The claimed device a batch comes from, as its stored events record it."""

    device_id: str
    tenant_id: uuid.UUID
    product_id: uuid.UUID | None
    device_group_id: uuid.UUID | None
    enabled: bool


@dataclass
class IngestResult:
    stored: list[uuid.UUID] = field(default_factory=list)
    duplicates: list[uuid.UUID] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)


def find_reporter(connection: Connection, device_id: str) -> Reporter | None:
    """The device's registration, read inside the batch's own transaction."""
    row = connection.execute(_REPORTER, {"p_device_id": device_id}).first()
    return None if row is None else Reporter(*row)


def _match(tenant_id: uuid.UUID, key: ProblemKey) -> dict[str, Any]:
    return {
        "p_tenant_id": tenant_id,
        "p_category": key[0],
        "p_component_key": key[1],
        "p_image_key": key[2],
        "p_outcome": key[3],
    }


def _known_problems(
    connection: Connection, tenant_id: uuid.UUID, keys: set[ProblemKey]
) -> dict[ProblemKey, uuid.UUID]:
    """The problems of these keys that exist already."""
    found = {}
    for key in sorted(keys):
        problem_id = connection.execute(_PROBLEM_ID, _match(tenant_id, key)).scalar()
        if problem_id is not None:
            found[key] = problem_id
    return found


def _create_problems(
    connection: Connection, tenant_id: uuid.UUID, keys: set[ProblemKey], now: dt.datetime
) -> dict[ProblemKey, uuid.UUID]:
    """New problems (a concurrent creator of the same one wins quietly)."""
    created = {}
    for key in sorted(keys):
        match = _match(tenant_id, key)
        new_problem = _NEW_PROBLEM[connection.dialect.name]
        connection.execute(new_problem, {**match, "p_id": new_id(), "p_now": now})
        created[key] = connection.execute(_PROBLEM_ID, match).scalar_one()
    return created


def store_batch(
    connection: Connection, *, device: Reporter, batch: ParsedBatch, received_at: dt.datetime
) -> IngestResult:
    """Insert the batch's new events and grow their problems, in the caller's transaction."""
    result = IngestResult(rejected=list(batch.rejected))
    events = batch.events
    keys = [event.problem_key() for event in events]
    problems = _known_problems(connection, device.tenant_id, set(keys))
    if len(problems) < len(set(keys)):
        held = _held(connection, device.device_id, [event.id for event in events])
        result.duplicates = [event.id for event in events if event.id in held]
        fresh = [
            (event, key) for event, key in zip(events, keys, strict=True) if event.id not in held
        ]
        events, keys = [event for event, _ in fresh], [key for _, key in fresh]
        missing = set(keys) - problems.keys()
        problems.update(_create_problems(connection, device.tenant_id, missing, received_at))
    if not events:
        return result
    rows = [
        _event_row(event, problems[key], sent_at=batch.sent_at, received_at=received_at)
        for event, key in zip(events, keys, strict=True)
    ]
    inserted = _insert(connection, device, rows, received_at)
    growth: dict[uuid.UUID, list[Any]] = {}
    for row in rows:
        if row["id"] not in inserted:
            continue
        grow = growth.get(row["problem_id"])
        if grow is None:
            growth[row["problem_id"]] = [row["event_count"], row["start_time"], row["end_time"]]
        else:
            grow[0] += row["event_count"]
            grow[1] = min(grow[1], row["start_time"])
            grow[2] = max(grow[2], row["end_time"])
    if growth:
        connection.execute(
            _GROW,
            [
                {"p_problem_id": problem_id, "p_count": count, "p_first": first, "p_last": last}
                for problem_id, (count, first, last) in sorted(growth.items())
            ],
        )
    result.stored = [row["id"] for row in rows if row["id"] in inserted]
    result.duplicates += [row["id"] for row in rows if row["id"] not in inserted]
    return result


def _held(connection: Connection, device_id: str, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these events of the device are stored already."""
    postgres = connection.dialect.name == "postgresql"
    held = _HELD_PG if postgres else _HELD_SQLITE
    return set(connection.execute(held, {"p_device_id": device_id, "p_ids": ids}).scalars())


def _insert(
    connection: Connection, device: Reporter, rows: list[dict[str, Any]], received_at: dt.datetime
) -> set[uuid.UUID]:
    """Insert the rows that are not stored yet; the ids of those inserted."""
    batch_columns = {
        "device_id": device.device_id,
        "tenant_id": device.tenant_id,
        "product_id": device.product_id,
        "device_group_id": device.device_group_id,
        "received_at": received_at,
    }
    if connection.dialect.name == "postgresql":
        columns = {name: [row[name] for row in rows] for name in _PER_EVENT}
        return set(connection.execute(_INSERT_PG, {**columns, **batch_columns}).scalars())
    return set(
        connection.execute(_INSERT_SQLITE, [{**row, **batch_columns} for row in rows]).scalars()
    )


def _event_row(
    event: WireEvent, problem_id: uuid.UUID, *, sent_at: int, received_at: dt.datetime
) -> dict[str, Any]:
    times = place_in_time(event, sent_at=sent_at, received_at=received_at)
    return {
        "id": event.id,
        "problem_id": problem_id,
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
    }


def report_columns(category_name: str) -> tuple[str, str, str]:
    """Event Type, Event Class and Event Category of a stored event's category."""
    category = EventCategory(category_name)
    return planned_or_not(category), event_class(category), category.value
