"""The audit log: every change, who made it, on what, when, with what result. Newest first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import Select, select

from opensphere.api import schemas
from opensphere.api.schemas import Role
from opensphere.service.auth.permissions import require_operator
from opensphere.service.deps import Context
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import AuditEvent
from opensphere.service.tenants import Continuation, Limit, TenantId

router = APIRouter(prefix="/v1", tags=["audit"])

ActionFilter = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[a-z_.-]+$", description="e.g. product.create"),
]
Since = Annotated[dt.datetime | None, Query(description="only events at or after this time")]
Until = Annotated[dt.datetime | None, Query(description="only events before this time")]


def _audit_out(event: AuditEvent) -> schemas.AuditEvent:
    return schemas.AuditEvent.model_validate(event, from_attributes=True)


def _page(
    context: Context,
    query: Select[AuditEvent],
    *,
    limit: int,
    continuation_token: str | None,
    action: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> schemas.Page[schemas.AuditEvent]:
    before = decode_continuation(continuation_token)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= _aware(since))
    if until is not None:
        query = query.where(AuditEvent.at < _aware(until))
    rows = context.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda e: e.id, out=_audit_out)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@router.get("/tenants/{tenant_id}/audit")
def list_tenant_audit(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
    action: ActionFilter = None,
    since: Since = None,
    until: Until = None,
) -> schemas.Page[schemas.AuditEvent]:
    context.authorize(tenant_id, Role.READER)
    return _page(
        context,
        select(AuditEvent).where(AuditEvent.tenant_id == tenant_id),
        limit=limit,
        continuation_token=continuation_token,
        action=action,
        since=since,
        until=until,
    )


@router.get("/audit")
def list_service_audit(
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
    action: ActionFilter = None,
    since: Since = None,
    until: Until = None,
) -> schemas.Page[schemas.AuditEvent]:
    """Changes outside any tenant: users' own tokens, refused requests (operator only)."""
    require_operator(context.principal)
    return _page(
        context,
        select(AuditEvent).where(AuditEvent.tenant_id.is_(None)),
        limit=limit,
        continuation_token=continuation_token,
        action=action,
        since=since,
        until=until,
    )
