"""API tokens: shown once, stored hashed, with expiry and revocation."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from opensphere.api import schemas
from opensphere.api.schemas import Role
from opensphere.service.auth.permissions import check_role
from opensphere.service.auth.tokens import issue_secret
from opensphere.service.deps import Context
from opensphere.service.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import ApiToken, RoleAssignment, Tenant, User
from opensphere.service.storage.types import new_id
from opensphere.service.tenants import Continuation, Limit, TenantId
from opensphere.service.users import get_user

router = APIRouter(prefix="/v1", tags=["tokens"])

TokenId = Annotated[uuid.UUID, Path(description="the token's id (not its secret)")]


def token_status(token: ApiToken, now: dt.datetime) -> str:
    if token.revoked_at is not None:
        return "Revoked"
    if token.expires_at <= now:
        return "Expired"
    return "Active"


def _token_out(token: ApiToken, user: User, now: dt.datetime) -> schemas.Token:
    return schemas.Token(
        id=token.id,
        name=token.name,
        user_id=user.id,
        user_name=user.name,
        tenant_id=token.tenant_id,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        status=token_status(token, now),
    )


@router.get("/me")
def show_me(context: Context) -> schemas.Me:
    """Who the token belongs to and the roles they hold."""
    principal = context.principal
    query = (
        select(RoleAssignment, Tenant)
        .join(Tenant, Tenant.id == RoleAssignment.tenant_id)
        .where(RoleAssignment.user_id == principal.user_id)
        .order_by(Tenant.id)
        .limit(1000)
    )
    if principal.token_tenant_id is not None:
        query = query.where(Tenant.id == principal.token_tenant_id)
    rows = context.session.execute(query).all()
    return schemas.Me(
        id=principal.user_id,
        name=principal.user_name,
        is_operator=principal.is_operator,
        token_id=principal.token_id,
        token_tenant_id=principal.token_tenant_id,
        roles=[
            schemas.TenantRole(tenant_id=t.id, tenant_name=t.name, role=Role(a.role))
            for a, t in rows
        ],
    )


def _token_owner(context: Context, body: schemas.TokenCreate) -> tuple[User, uuid.UUID | None]:
    """Whose token it is and which tenant it is limited to, if the caller may issue it."""
    principal = context.principal
    scope = body.tenant_id if body.tenant_id is not None else principal.token_tenant_id
    if principal.token_tenant_id is not None and scope != principal.token_tenant_id:
        raise PermissionDeniedError(
            "a token limited to one tenant can only create tokens for that tenant",
            code="forbidden",
        )
    if scope is not None:
        check_role(principal, scope, context.role_in(scope), Role.READER)
    if body.user is None or body.user == principal.user_name:
        owner = context.session.get(User, principal.user_id)
        assert owner is not None
        return owner, scope
    owner = get_user(context.session, body.user)
    if principal.is_operator and principal.token_tenant_id is None:
        return owner, scope
    if scope is None:
        raise InvalidRequestError(
            "to issue a token for another user, name the tenant (tenant_id) they belong to",
            code="tenant_required",
        )
    check_role(principal, scope, context.role_in(scope), Role.ADMINISTRATOR)
    if context.session.get(RoleAssignment, (scope, owner.id)) is None:
        raise NotFoundError(
            f"user {owner.name!r} has no role in tenant {scope}", code="role_not_found"
        )
    return owner, scope


@router.post("/tokens", status_code=201)
def create_token(body: schemas.TokenCreate, context: Context) -> schemas.CreatedToken:
    """Create an API token; its secret is in this answer and nowhere else, ever."""
    with context.change("token.create", target_type="token") as change:
        owner, scope = _token_owner(context, body)
        token_id = new_id()
        issued = issue_secret(token_id)
        token = ApiToken(
            id=token_id,
            user_id=owner.id,
            tenant_id=scope,
            name=body.name,
            secret_hash=issued.secret_hash,
            created_by=context.principal.user_id,
            created_at=context.now,
            expires_at=context.now + dt.timedelta(days=body.expires_in_days),
        )
        context.session.add(token)
        change.tenant_id = scope
        change.target_id = str(token_id)
        change.details = {"name": body.name, "user": owner.name, "days": body.expires_in_days}
    return schemas.CreatedToken(
        **_token_out(token, owner, context.now).model_dump(), token=issued.token
    )


@router.get("/tokens")
def list_tokens(
    context: Context, limit: Limit = DEFAULT_LIMIT, continuation_token: Continuation = None
) -> schemas.Page[schemas.Token]:
    """Your own tokens (never their secrets)."""
    after = decode_continuation(continuation_token)
    query = select(ApiToken).where(ApiToken.user_id == context.principal.user_id)
    if after is not None:
        query = query.where(ApiToken.id > after)
    rows = context.session.scalars(query.order_by(ApiToken.id).limit(limit + 1)).all()
    owner = context.session.get(User, context.principal.user_id)
    assert owner is not None
    return make_page(
        rows, limit, key=lambda t: t.id, out=lambda t: _token_out(t, owner, context.now)
    )


@router.get("/tenants/{tenant_id}/tokens")
def list_tenant_tokens(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> schemas.Page[schemas.Token]:
    """Tokens limited to this tenant, whoever holds them (Administrator)."""
    context.authorize(tenant_id, Role.ADMINISTRATOR)
    after = decode_continuation(continuation_token)
    query = (
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.tenant_id == tenant_id)
    )
    if after is not None:
        query = query.where(ApiToken.id > after)
    rows = context.session.execute(query.order_by(ApiToken.id).limit(limit + 1)).all()
    return make_page(
        rows, limit, key=lambda row: row[0].id, out=lambda row: _token_out(*row, context.now)
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: TokenId, context: Context) -> schemas.Token:
    """Revoke a token: your own, one limited to a tenant you administer, or any (operator)."""
    with context.change("token.revoke", target_type="token", target_id=str(token_id)) as change:
        token = context.session.get(ApiToken, token_id)
        principal = context.principal
        allowed = token is not None and (
            token.user_id == principal.user_id
            or (principal.is_operator and principal.token_tenant_id is None)
            or (
                token.tenant_id is not None
                and context.role_in(token.tenant_id) == Role.ADMINISTRATOR
                and principal.token_tenant_id in (None, token.tenant_id)
            )
        )
        if token is None or not allowed:
            raise NotFoundError(f"there is no token {token_id} of yours", code="token_not_found")
        change.tenant_id = token.tenant_id
        if token.revoked_at is None:
            token.revoked_at = context.now
        owner = context.session.get(User, token.user_id)
        assert owner is not None
    return _token_out(token, owner, context.now)
