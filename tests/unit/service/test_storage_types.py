"""UTCDateTime binds the same text on SQLite as SQLAlchemy's own DATETIME would."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import postgresql, sqlite

from opensphere.service.storage.types import UTCDateTime

SQLITE = sqlite.dialect()


def _sqlalchemys_own(value: dt.datetime) -> str:
    naive_utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    process = DateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert process is not None
    return str(process(naive_utc))


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 11, 30, 3, 34, 17, 247_139, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),  # no microseconds
        dt.datetime(5, 6, 7, 8, 9, 10, 11, tzinfo=dt.UTC),  # a year of one digit
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    ],
)
def test_sqlite_text_is_sqlalchemys(value: dt.datetime) -> None:
    process = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert process is not None
    assert process(value) == _sqlalchemys_own(value)


def test_none_binds_none_and_a_naive_value_is_refused() -> None:
    process = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert process is not None
    assert process(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        process(dt.datetime(2026, 1, 1))


def test_postgresql_keeps_sqlalchemys_processing() -> None:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    value = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert process(value) == dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC)
