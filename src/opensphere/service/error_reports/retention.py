"""Retention: events after 14 days and crash dumps after 29 (per tenant, configurable).

Several service processes may run this at once: every delete is idempotent, and on
PostgreSQL a transaction-scoped advisory lock lets one process do the work while
the others skip it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, exists, select, text
from sqlalchemy.orm import Session

from opensphere.service.error_reports.models import (
    DEFAULT_DUMP_RETENTION_DAYS,
    DEFAULT_EVENT_RETENTION_DAYS,
    CrashDump,
    ErrorEvent,
    ErrorReportSettings,
    Problem,
)
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import Tenant

log = logging.getLogger(__name__)
_LOCK_KEY = 7265813


@dataclass(frozen=True, slots=True)
class RetentionResult:
    events: int
    dumps: int
    problems: int
    skipped: bool = False


def _deleted(session: Session, statement: Delete) -> int:
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def apply_retention(storage: Storage, *, now: dt.datetime) -> RetentionResult:
    """Delete what is older than each tenant's retention, in one transaction."""
    with storage.write_session() as session:
        if session.get_bind().dialect.name == "postgresql" and not session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
        ):
            return RetentionResult(events=0, dumps=0, problems=0, skipped=True)
        configured = {row.tenant_id: row for row in session.scalars(select(ErrorReportSettings))}
        events = dumps = 0
        for tenant_id in list(session.scalars(select(Tenant.id))):
            setting = configured.get(tenant_id)
            event_days = setting.event_retention_days if setting else DEFAULT_EVENT_RETENTION_DAYS
            dump_days = setting.dump_retention_days if setting else DEFAULT_DUMP_RETENTION_DAYS
            events += _deleted(
                session,
                delete(ErrorEvent).where(
                    ErrorEvent.tenant_id == tenant_id,
                    ErrorEvent.received_at < now - dt.timedelta(days=event_days),
                ),
            )
            dumps += _deleted(
                session,
                delete(CrashDump).where(
                    CrashDump.tenant_id == tenant_id,
                    CrashDump.created_at < now - dt.timedelta(days=dump_days),
                ),
            )
        problems = _deleted(
            session,
            delete(Problem).where(
                ~exists().where(ErrorEvent.problem_id == Problem.id),
                Problem.last_seen < now - dt.timedelta(days=1),
            ),
        )
        session.commit()
    if events or dumps or problems:
        log.info(
            "retention removed %d events, %d crash dumps, %d empty problems",
            events,
            dumps,
            problems,
        )
    return RetentionResult(events=events, dumps=dumps, problems=problems)
