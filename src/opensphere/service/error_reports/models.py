"""Failure-reporting tables: aggregated events, problems, crash dumps, retention settings.

An event row is already an aggregate (the device counts repeats per window), so a
fleet's millions of crashes are rows of counts. Every report query walks a
(tenant, time) or (problem, time) index.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from opensphere.service.storage.models import Base, timestamp, uuid_pk
from opensphere.service.storage.types import UTCDateTime

DEFAULT_EVENT_RETENTION_DAYS = 14
DEFAULT_DUMP_RETENTION_DAYS = 29


class Problem(Base):
    """Events with the same (category, component, image, outcome): one thing to fix."""

    __tablename__ = "problems"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "category", "component_key", "image_key", "outcome", name="uq_problems_key"
        ),
        Index("ix_problems_tenant_id", "tenant_id", "id"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    category: Mapped[str] = mapped_column(String(32))
    component_key: Mapped[str] = mapped_column(String(36))
    image_key: Mapped[str] = mapped_column(String(36))
    outcome: Mapped[str] = mapped_column(String(32))
    first_seen: Mapped[timestamp]
    last_seen: Mapped[timestamp]
    event_count: Mapped[int] = mapped_column(Integer, default=0)


class ErrorEvent(Base):
    """One aggregated event from one device; the primary key makes retries idempotent."""

    __tablename__ = "error_events"
    __table_args__ = (
        Index("ix_error_events_tenant_time", "tenant_id", "start_time"),
        Index("ix_error_events_device_time", "tenant_id", "device_id", "start_time"),
        Index("ix_error_events_problem_time", "problem_id", "start_time"),
        Index("ix_error_events_received_at", "received_at"),
    )

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    product_id: Mapped[uuid.UUID | None]
    device_group_id: Mapped[uuid.UUID | None]
    problem_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("problems.id"))
    category: Mapped[str] = mapped_column(String(32))
    component_id: Mapped[uuid.UUID | None]
    image_id: Mapped[uuid.UUID | None]
    exit_status: Mapped[int | None] = mapped_column(Integer)
    signal_status: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(512))
    event_count: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[timestamp]
    end_time: Mapped[timestamp]
    clock_skewed: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[timestamp]


class CrashDump(Base):
    """A crash dump of one app crash, uploaded only where the device group allows it."""

    __tablename__ = "crash_dumps"
    __table_args__ = (
        Index("ix_crash_dumps_device", "tenant_id", "device_id", "id"),
        Index("ix_crash_dumps_created_at", "created_at"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    device_id: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[uuid.UUID | None]
    component_id: Mapped[uuid.UUID | None]
    image_id: Mapped[uuid.UUID | None]
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[timestamp]


class ErrorReportSettings(Base):
    """Per-tenant retention; absent means the defaults (14 days of events, 29 of dumps)."""

    __tablename__ = "error_report_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    event_retention_days: Mapped[int] = mapped_column(Integer)
    dump_retention_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
