"""What the pages show that the API has no query for: fleet counts, rollout and error trends.

Every function here aggregates in the database (COUNT/SUM with GROUP BY, over the tenant's
index) or reads one bounded page, so a page costs the same with ten devices or a million.
Time buckets are computed with CASE in a subquery, which SQLite and PostgreSQL both accept.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from opensphere.api.schemas import AttestationResult, DeploymentState, UpdateState
from opensphere.service.dashboard.charts import Datum
from opensphere.service.error_reports.core import DailyCount
from opensphere.service.error_reports.models import ErrorEvent, Problem
from opensphere.service.storage.models import (
    Deployment,
    Device,
    DeviceGroup,
    DeviceTally,
    DeviceUpdateStatus,
    Image,
    Product,
    UpdateStateTally,
)

TOP = 8
UNASSIGNED = "(none)"
UNKNOWN_OS = "(not yet attested)"
FRESH = dt.timedelta(hours=24)
STALE = dt.timedelta(days=7)
UPDATE_TONES = {
    UpdateState.CHECKED: "neutral",
    UpdateState.DOWNLOADING: "progress",
    UpdateState.STAGED: "progress",
    UpdateState.INSTALLED: "good",
    UpdateState.FAILED: "failed",
}


NIL_GROUP = uuid.UUID(int=0)
"""How the tallies name 'no device group'."""


@dataclass(frozen=True, slots=True)
class FleetTotals:
    devices: int
    enabled: int


def fleet_totals(session: Session, tenant_id: uuid.UUID) -> FleetTotals:
    """From the tallies the database keeps (migration 0006): a few rows at any fleet size."""
    rows = session.execute(
        select(DeviceTally.value, func.sum(DeviceTally.count))
        .where(DeviceTally.tenant_id == tenant_id, DeviceTally.dimension == "enabled")
        .group_by(DeviceTally.value)
    ).all()
    by_value = {value: int(n) for value, n in rows}
    return FleetTotals(devices=sum(by_value.values()), enabled=by_value.get("1", 0))


def _tally_top(
    session: Session, tenant_id: uuid.UUID, column: InstrumentedAttribute[Any], dimension: str
) -> list[tuple[object, int]]:
    """The `TOP` largest values of a tallied column (group, or value of `dimension`)."""
    count = func.sum(DeviceTally.count).label("n")
    rows = session.execute(
        select(column, count)
        .where(DeviceTally.tenant_id == tenant_id, DeviceTally.dimension == dimension)
        .group_by(column)
        .having(count > 0)
        .order_by(count.desc())
        .limit(TOP)
    ).all()
    return [(value, int(n)) for value, n in rows]


def _names(
    session: Session, model: type[Product] | type[DeviceGroup], ids: Iterable[object]
) -> dict[uuid.UUID, str]:
    wanted = [i for i in ids if isinstance(i, uuid.UUID)]
    if not wanted:
        return {}
    rows = session.execute(select(model.id, model.name).where(model.id.in_(wanted)))
    return {row_id: name for row_id, name in rows}


def devices_by_product(session: Session, tenant_id: uuid.UUID) -> list[Datum]:
    """A device's product is its group's: the group tallies, summed per product."""
    count = func.sum(DeviceTally.count).label("n")
    rows = session.execute(
        select(DeviceGroup.product_id, count)
        .select_from(DeviceTally)
        .outerjoin(DeviceGroup, DeviceGroup.id == DeviceTally.device_group_id)
        .where(DeviceTally.tenant_id == tenant_id, DeviceTally.dimension == "enabled")
        .group_by(DeviceGroup.product_id)
        .having(count > 0)
        .order_by(count.desc())
        .limit(TOP)
    ).all()
    counts = [(value, int(n)) for value, n in rows]
    names = _names(session, Product, (value for value, _ in counts))
    return [
        Datum(names.get(value, UNASSIGNED) if isinstance(value, uuid.UUID) else UNASSIGNED, n)
        for value, n in counts
    ]


def devices_by_group(session: Session, tenant_id: uuid.UUID, base: str) -> list[Datum]:
    """The largest groups, each bar linking to its group page (`base` + group id)."""
    counts = [
        (None if value == NIL_GROUP else value, n)
        for value, n in _tally_top(session, tenant_id, DeviceTally.device_group_id, "enabled")
    ]
    groups = {
        group.id: group
        for group in session.scalars(
            select(DeviceGroup).where(
                DeviceGroup.id.in_([v for v, _ in counts if isinstance(v, uuid.UUID)])
            )
        )
    }
    products = _names(session, Product, (group.product_id for group in groups.values()))
    data = []
    for value, n in counts:
        group = groups.get(value) if isinstance(value, uuid.UUID) else None
        if group is None:
            data.append(Datum(UNASSIGNED, n))
        else:
            label = f"{products.get(group.product_id, '?')}/{group.name}"
            data.append(Datum(label, n, href=f"{base}{group.id}"))
    return data


def devices_by_os_version(session: Session, tenant_id: uuid.UUID) -> list[Datum]:
    counts = _tally_top(session, tenant_id, DeviceTally.value, "os_version")
    return [Datum(str(value) if value else UNKNOWN_OS, n) for value, n in counts]


def attestation_freshness(session: Session, tenant_id: uuid.UUID, now: dt.datetime) -> list[Datum]:
    """Devices by their last attestation: passed recently, passed long ago, failed, never."""
    passed = Device.last_attestation_result == AttestationResult.PASSED.value
    bucket = case(
        (Device.last_attestation_at.is_(None), 0),
        (Device.last_attestation_result == AttestationResult.FAILED.value, 1),
        (passed & (Device.last_attestation_at >= now - FRESH), 2),
        (passed & (Device.last_attestation_at >= now - STALE), 3),
        else_=4,
    ).label("bucket")
    inner = select(bucket).where(Device.tenant_id == tenant_id).subquery()
    result = session.execute(select(inner.c.bucket, func.count()).group_by(inner.c.bucket))
    rows = {int(index): int(n) for index, n in result}
    labels = (
        ("Never attested", "neutral"),
        ("Last attestation failed", "failed"),
        ("Passed, last 24 hours", "good"),
        ("Passed, 1 to 7 days ago", "progress"),
        ("Passed, over 7 days ago", "stale"),
    )
    return [Datum(label, int(rows.get(i, 0)), tone) for i, (label, tone) in enumerate(labels)]


def update_states(session: Session, tenant_id: uuid.UUID) -> list[Datum]:
    """Devices by the update state they last reported, every state shown (zeros too)."""
    rows = session.execute(
        select(UpdateStateTally.state, func.sum(UpdateStateTally.count))
        .where(UpdateStateTally.tenant_id == tenant_id)
        .group_by(UpdateStateTally.state)
    )
    return state_data({UpdateState(state): int(n) for state, n in rows})


def state_data(counts: dict[UpdateState, int]) -> list[Datum]:
    return [Datum(state.value, counts.get(state, 0), UPDATE_TONES[state]) for state in UpdateState]


def update_states_of(session: Session, device_ids: Sequence[str]) -> dict[str, str]:
    """The last reported update state of each device on a page."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(DeviceUpdateStatus.device_id, DeviceUpdateStatus.state).where(
            DeviceUpdateStatus.device_id.in_(device_ids)
        )
    )
    return {device_id: state for device_id, state in rows}


def group_device_counts(session: Session, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not group_ids:
        return {}
    rows = session.execute(
        select(DeviceTally.device_group_id, func.sum(DeviceTally.count))
        .where(DeviceTally.device_group_id.in_(group_ids), DeviceTally.dimension == "enabled")
        .group_by(DeviceTally.device_group_id)
    ).all()
    return {group_id: int(n) for group_id, n in rows}


def current_deployments(
    session: Session, group_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Deployment]:
    """Each group's current deployment (its newest not superseded), in one query."""
    if not group_ids:
        return {}
    rows = session.scalars(
        select(Deployment)
        .where(
            Deployment.device_group_id.in_(group_ids),
            Deployment.state != DeploymentState.SUPERSEDED.value,
        )
        .order_by(Deployment.id)
    )
    return {row.device_group_id: row for row in rows}


def failed_devices(
    session: Session, deployment_id: uuid.UUID, limit: int = 20
) -> list[DeviceUpdateStatus]:
    """Devices whose last report for the deployment is a failure (the status index)."""
    return list(
        session.scalars(
            select(DeviceUpdateStatus)
            .where(
                DeviceUpdateStatus.deployment_id == deployment_id,
                DeviceUpdateStatus.state == UpdateState.FAILED.value,
            )
            .order_by(DeviceUpdateStatus.reported_at.desc())
            .limit(limit)
        )
    )


def images_by_id(
    session: Session, tenant_id: uuid.UUID, image_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Image]:
    wanted = list(image_ids)
    if not wanted:
        return {}
    rows = session.scalars(
        select(Image).where(Image.tenant_id == tenant_id, Image.image_id.in_(wanted))
    )
    return {row.image_id: row for row in rows}


def group_labels(session: Session, group_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """`Product/Group` for each group id on a page of rows."""
    wanted = {group_id for group_id in group_ids if group_id is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(DeviceGroup.id, Product.name, DeviceGroup.name)
        .join(Product, Product.id == DeviceGroup.product_id)
        .where(DeviceGroup.id.in_(wanted))
    ).all()
    return {group_id: f"{product}/{group}" for group_id, product, group in rows}


def daily_events(
    session: Session, tenant_id: uuid.UUID, now: dt.datetime, days: int
) -> list[DailyCount]:
    """Events per UTC day over the last `days` days, oldest first, zeros included."""
    today = now.astimezone(dt.UTC).date()
    first_day = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
    bucket = case(
        *[
            (ErrorEvent.start_time < start + dt.timedelta(days=index + 1), index)
            for index in range(days - 1)
        ],
        else_=days - 1,
    ).label("bucket")
    inner = (
        select(bucket, ErrorEvent.event_count)
        .where(ErrorEvent.tenant_id == tenant_id, ErrorEvent.start_time >= start)
        .subquery()
    )
    result = session.execute(
        select(inner.c.bucket, func.sum(inner.c.event_count)).group_by(inner.c.bucket)
    )
    sums = {int(index): int(total or 0) for index, total in result}
    return [
        DailyCount(day=first_day + dt.timedelta(days=index), count=sums.get(index, 0))
        for index in range(days)
    ]


def events_by_category(session: Session, tenant_id: uuid.UUID, since: dt.datetime) -> list[Datum]:
    rows = session.execute(
        select(ErrorEvent.category, func.sum(ErrorEvent.event_count).label("n"))
        .where(ErrorEvent.tenant_id == tenant_id, ErrorEvent.start_time >= since)
        .group_by(ErrorEvent.category)
        .order_by(func.sum(ErrorEvent.event_count).desc())
        .limit(TOP)
    ).all()
    return [Datum(category, int(n or 0), "failed") for category, n in rows]


def top_problems(session: Session, tenant_id: uuid.UUID, base: str) -> list[Datum]:
    """The problems with the most events, each bar linking to its page (`base` + id)."""
    rows = session.scalars(
        select(Problem)
        .where(Problem.tenant_id == tenant_id, Problem.event_count > 0)
        .order_by(Problem.event_count.desc(), Problem.id)
        .limit(TOP)
    )
    return [
        Datum(f"{row.category} {row.outcome}".strip(), row.event_count, "failed", f"{base}{row.id}")
        for row in rows
    ]
