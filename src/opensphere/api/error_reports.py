"""Wire models of failure reporting: ingest answers, report rows, problems, crash dumps."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from pydantic import Field

from opensphere.api.schemas import Model
from opensphere.formats.error_events import RejectedEvent


class IngestAnswer(Model):
    """What the service holds now (`stored` by this call, `duplicates` from before)."""

    stored: list[uuid.UUID]
    duplicates: list[uuid.UUID]
    rejected: list[RejectedEvent]


class ReportingConfig(Model):
    """What a device needs to know to report: its group's crash-dump opt-in and the limits."""

    allow_crash_dumps: bool
    max_batch_events: int
    max_batch_bytes: int
    max_crash_dump_bytes: int


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class ErrorReportRow(Model):
    """One row of the error report, with the original's columns (and ids to follow up)."""

    device_id: str
    event_type: str
    event_class: str
    event_category: str
    event_count: int
    description: str
    start_time: dt.datetime
    end_time: dt.datetime
    event_id: uuid.UUID
    problem_id: uuid.UUID
    component_id: uuid.UUID | None
    image_id: uuid.UUID | None
    clock_skewed: bool


class DailyCount(Model):
    day: dt.date
    count: int


class Problem(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID
    category: str
    component_id: uuid.UUID | None
    image_id: uuid.UUID | None
    outcome: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    event_count: int
    device_count: int


class ProblemDetail(Problem):
    trend: list[DailyCount] = Field(description="occurrences per UTC day, oldest first")
    recent: list[ErrorReportRow]


class CrashDump(Model):
    id: uuid.UUID
    device_id: str
    event_id: uuid.UUID | None
    component_id: uuid.UUID | None
    image_id: uuid.UUID | None
    size: int
    sha256: str
    created_at: dt.datetime


class ErrorReportSettings(Model):
    event_retention_days: int = Field(ge=1, le=365)
    dump_retention_days: int = Field(ge=1, le=365)
