"""Event placement in time (clock skew), CSV report rows and trends."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

from opensphere.formats.error_events import EventCategory, WireEvent
from opensphere.service.error_reports.core import (
    REPORT_COLUMNS,
    ReportRow,
    daily_trend,
    place_in_time,
    to_csv,
)

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def event(first: int, last: int) -> WireEvent:
    return WireEvent(
        id=uuid.uuid4(), category=EventCategory.APP_CRASH, count=1, first_seen=first, last_seen=last
    )


def test_device_times_kept_when_clocks_agree() -> None:
    t = int(NOW.timestamp())
    times = place_in_time(event(t - 600, t - 60), sent_at=t - 5, received_at=NOW)
    assert not times.clock_skewed
    assert times.start == NOW - dt.timedelta(minutes=10)
    assert times.end == NOW - dt.timedelta(minutes=1)


def test_device_clock_far_in_the_future_gets_the_receive_time() -> None:
    future = int((NOW + dt.timedelta(days=3650)).timestamp())
    times = place_in_time(event(future, future), sent_at=future, received_at=NOW)
    assert times.clock_skewed
    assert times.start == times.end == NOW


def test_device_clock_far_in_the_past_gets_the_receive_time() -> None:
    times = place_in_time(event(10, 20), sent_at=30, received_at=NOW)
    assert times.clock_skewed
    assert times.start == NOW


def test_event_times_inconsistent_with_a_sane_send_time_are_not_trusted() -> None:
    t = int(NOW.timestamp())
    future = t + 86400 * 30
    times = place_in_time(event(t, future), sent_at=t, received_at=NOW)
    assert times.clock_skewed


def test_csv_has_the_original_columns_and_defuses_formulas() -> None:
    row = ReportRow(
        "ab" * 64,
        "Unplanned",
        "Application",
        "AppCrash",
        3,
        "=HYPERLINK(x)",
        NOW,
        NOW + dt.timedelta(hours=1),
    )
    parsed = list(csv.reader(io.StringIO(to_csv([row]))))
    assert tuple(parsed[0]) == REPORT_COLUMNS
    assert parsed[1][:5] == ["ab" * 64, "Unplanned", "Application", "AppCrash", "3"]
    assert parsed[1][5] == "'=HYPERLINK(x)"
    assert parsed[1][6:] == ["2026-11-29T12:00:00Z", "2026-11-29T13:00:00Z"]


def test_daily_trend_fills_missing_days_with_zero() -> None:
    trend = daily_trend(
        [(NOW, 2), (NOW - dt.timedelta(days=2), 5), (NOW - dt.timedelta(days=30), 9)],
        now=NOW,
        days=3,
    )
    assert [(d.day.isoformat(), d.count) for d in trend] == [
        ("2026-11-27", 5),
        ("2026-11-28", 0),
        ("2026-11-29", 2),
    ]
