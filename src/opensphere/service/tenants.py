"""Tenants (never deleted) and the roles users hold in them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select

from opensphere.api import schemas
from opensphere.api.schemas import USER_NAME_PATTERN, Role
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, NotFoundError
from opensphere.service.paging import DEFAULT_LIMIT, MAX_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import RoleAssignment, Tenant, User
from opensphere.service.users import get_or_create_user, get_user

router = APIRouter(prefix="/v1", tags=["tenants"])

TenantId = Annotated[uuid.UUID, Path(description="the tenant's GUID")]
UserNamePath = Annotated[str, Path(min_length=1, max_length=254, pattern=USER_NAME_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")]
Continuation = Annotated[
    str | None, Query(max_length=200, description="from the previous page's answer")
]


def _tenant_out(tenant: Tenant, role: str | None) -> schemas.Tenant:
    return schemas.Tenant(
        id=tenant.id,
        name=tenant.name,
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
        role=None if role is None else Role(role),
    )


def _check_name_free(context: Context, name: str, *, except_id: uuid.UUID | None = None) -> None:
    existing = context.session.scalar(select(Tenant).where(Tenant.name_key == name.casefold()))
    if existing is not None and existing.id != except_id:
        raise ConflictError(f"a tenant named {name!r} already exists", code="name_conflict")


@router.post("/tenants", status_code=201)
def create_tenant(body: schemas.TenantCreate, context: Context) -> schemas.Tenant:
    """Create a tenant (operator only), optionally naming its first Administrator."""
    with context.change("tenant.create", target_type="tenant", operator=True) as change:
        _check_name_free(context, body.name)
        tenant = Tenant(
            name=body.name,
            name_key=body.name.casefold(),
            created_at=context.now,
            updated_at=context.now,
        )
        context.session.add(tenant)
        context.session.flush()
        change.tenant_id = tenant.id
        change.target_id = str(tenant.id)
        change.details = {"name": body.name}
        if body.administrator is not None:
            user = get_or_create_user(context.session, body.administrator, now=context.now)
            context.session.add(
                RoleAssignment(
                    tenant_id=tenant.id,
                    user_id=user.id,
                    role=Role.ADMINISTRATOR.value,
                    created_at=context.now,
                )
            )
            change.details["administrator"] = user.name
    return _tenant_out(tenant, None)


@router.get("/tenants")
def list_tenants(
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> schemas.Page[schemas.Tenant]:
    """The tenants you hold a role in (the operator sees all of them)."""
    after = decode_continuation(continuation_token)
    principal = context.principal
    query = select(Tenant, RoleAssignment.role).outerjoin(
        RoleAssignment,
        (RoleAssignment.tenant_id == Tenant.id) & (RoleAssignment.user_id == principal.user_id),
    )
    if not principal.is_operator:
        query = query.where(RoleAssignment.user_id == principal.user_id)
    if principal.token_tenant_id is not None:
        query = query.where(Tenant.id == principal.token_tenant_id)
    if after is not None:
        query = query.where(Tenant.id > after)
    rows = context.session.execute(query.order_by(Tenant.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda row: row[0].id, out=lambda row: _tenant_out(*row))


@router.get("/tenants/{tenant_id}")
def show_tenant(tenant_id: TenantId, context: Context) -> schemas.Tenant:
    tenant = context.authorize(tenant_id, Role.READER)
    return _tenant_out(tenant, context.role_in(tenant_id))


@router.patch("/tenants/{tenant_id}")
def update_tenant(
    tenant_id: TenantId, body: schemas.TenantUpdate, context: Context
) -> schemas.Tenant:
    """Rename a tenant (Administrator). Tenants are never deleted."""
    with context.change(
        "tenant.update",
        tenant_id=tenant_id,
        required=Role.ADMINISTRATOR,
        target_type="tenant",
        target_id=str(tenant_id),
    ) as change:
        tenant = context.tenant(tenant_id)
        _check_name_free(context, body.name, except_id=tenant.id)
        change.details = {"name": {"from": tenant.name, "to": body.name}}
        tenant.name = body.name
        tenant.name_key = body.name.casefold()
        tenant.updated_at = context.now
    return _tenant_out(tenant, context.role_in(tenant_id))


def _assignment_out(assignment: RoleAssignment, user: User) -> schemas.RoleAssignment:
    return schemas.RoleAssignment(
        tenant_id=assignment.tenant_id,
        user_id=user.id,
        user_name=user.name,
        role=Role(assignment.role),
        created_at=assignment.created_at,
    )


@router.get("/tenants/{tenant_id}/roles")
def list_roles(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> schemas.Page[schemas.RoleAssignment]:
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    query = (
        select(RoleAssignment, User)
        .join(User, User.id == RoleAssignment.user_id)
        .where(RoleAssignment.tenant_id == tenant_id)
    )
    if after is not None:
        query = query.where(RoleAssignment.user_id > after)
    rows = context.session.execute(query.order_by(RoleAssignment.user_id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda row: row[1].id, out=lambda row: _assignment_out(*row))


def _administrator_count(context: Context, tenant_id: uuid.UUID) -> int:
    return (
        context.session.scalar(
            select(func.count())
            .select_from(RoleAssignment)
            .where(
                RoleAssignment.tenant_id == tenant_id,
                RoleAssignment.role == Role.ADMINISTRATOR.value,
            )
        )
        or 0
    )


def _refuse_last_administrator(context: Context, assignment: RoleAssignment) -> None:
    if (
        assignment.role == Role.ADMINISTRATOR.value
        and _administrator_count(context, assignment.tenant_id) <= 1
    ):
        raise ConflictError(
            "a tenant keeps at least one Administrator: make someone else Administrator first",
            code="last_administrator",
        )


@router.put("/tenants/{tenant_id}/roles/{user_name}")
def assign_role(
    tenant_id: TenantId, user_name: UserNamePath, body: schemas.RoleAssign, context: Context
) -> schemas.RoleAssignment:
    """Give a user a role in the tenant (Administrator); the user is created if new."""
    with context.change(
        "role.assign",
        tenant_id=tenant_id,
        required=Role.ADMINISTRATOR,
        target_type="user",
        target_id=user_name,
    ) as change:
        user = get_or_create_user(context.session, user_name, now=context.now)
        assignment = context.session.get(RoleAssignment, (tenant_id, user.id))
        details: dict[str, Any] = {"role": body.role.value}
        if assignment is None:
            assignment = RoleAssignment(
                tenant_id=tenant_id, user_id=user.id, role=body.role.value, created_at=context.now
            )
            context.session.add(assignment)
        elif assignment.role != body.role.value:
            if body.role != Role.ADMINISTRATOR:
                _refuse_last_administrator(context, assignment)
            details["previous_role"] = assignment.role
            assignment.role = body.role.value
        change.details = details
    return _assignment_out(assignment, user)


@router.delete("/tenants/{tenant_id}/roles/{user_name}")
def remove_role(
    tenant_id: TenantId, user_name: UserNamePath, context: Context
) -> schemas.RoleAssignment:
    """Take a user's role in the tenant away (Administrator)."""
    with context.change(
        "role.remove",
        tenant_id=tenant_id,
        required=Role.ADMINISTRATOR,
        target_type="user",
        target_id=user_name,
    ) as change:
        user = get_user(context.session, user_name)
        assignment = context.session.get(RoleAssignment, (tenant_id, user.id))
        if assignment is None:
            raise NotFoundError(
                f"user {user_name!r} has no role in this tenant", code="role_not_found"
            )
        _refuse_last_administrator(context, assignment)
        change.details = {"role": assignment.role}
        result = _assignment_out(assignment, user)
        context.session.delete(assignment)
    return result
