"""Pure decisions of failure reporting: when an event happened, how events group, report rows.

No I/O: values and `now` in, typed values out.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from opensphere.formats.error_events import WireEvent

REPORT_COLUMNS = (
    "Device ID",
    "Event Type",
    "Event Class",
    "Event Category",
    "Event Count",
    "Description",
    "Start Time",
    "End Time",
)
DEFAULT_MAX_CLOCK_SKEW = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class EventTimes:
    start: dt.datetime
    end: dt.datetime
    clock_skewed: bool


def place_in_time(
    event: WireEvent,
    *,
    sent_at: int,
    received_at: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_CLOCK_SKEW,
) -> EventTimes:
    """The device's own times when its clock agrees with ours, else the time we received it.

    A device whose clock is far off (a dead RTC battery, a rewound clock) would
    otherwise put its events decades away, outside every report window.
    """
    device_now = dt.datetime.fromtimestamp(sent_at, dt.UTC)
    skewed = abs(received_at - device_now) > max_skew
    if skewed:
        return EventTimes(start=received_at, end=received_at, clock_skewed=True)
    start = dt.datetime.fromtimestamp(event.first_seen, dt.UTC)
    end = dt.datetime.fromtimestamp(event.last_seen, dt.UTC)
    if end - received_at > max_skew or received_at - start > dt.timedelta(days=365):
        return EventTimes(start=received_at, end=received_at, clock_skewed=True)
    return EventTimes(start=start, end=end, clock_skewed=False)


@dataclass(frozen=True, slots=True)
class ReportRow:
    device_id: str
    event_type: str
    event_class: str
    event_category: str
    event_count: int
    description: str
    start_time: dt.datetime
    end_time: dt.datetime

    def cells(self) -> tuple[str, ...]:
        return (
            self.device_id,
            self.event_type,
            self.event_class,
            self.event_category,
            str(self.event_count),
            self.description,
            _iso(self.start_time),
            _iso(self.end_time),
        )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_csv(rows: Iterable[ReportRow]) -> str:
    """The original's CSV columns; cells that look like formulas are quoted harmlessly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow([_defuse(cell) for cell in row.cells()])
    return buffer.getvalue()


def _defuse(cell: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas (CSV injection)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


@dataclass(frozen=True, slots=True)
class DailyCount:
    day: dt.date
    count: int


def daily_trend(
    occurrences: Sequence[tuple[dt.datetime, int]], *, now: dt.datetime, days: int
) -> list[DailyCount]:
    """Occurrences per UTC day for the last `days` days, oldest first, zeros included."""
    today = now.astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    counts = {first + dt.timedelta(days=i): 0 for i in range(days)}
    for moment, count in occurrences:
        day = moment.astimezone(dt.UTC).date()
        if day in counts:
            counts[day] += count
    return [DailyCount(day=day, count=count) for day, count in counts.items()]
