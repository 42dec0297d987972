"""The permission check, as a pure function over the caller and their role in a tenant.

What each role may do follows Azure Sphere's legacy roles (reference §4.4):
Reader reads (error reports included), Contributor also creates and changes
(claims, products, device groups, deployments) but deletes nothing, and
Administrator may do everything, including managing users. The operator is the
service-wide administrator.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from opensphere.api.schemas import Role
from opensphere.service.errors import NotFoundError, PermissionDeniedError

RANK = {Role.READER: 1, Role.CONTRIBUTOR: 2, Role.ADMINISTRATOR: 3}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    user_name: str
    is_operator: bool
    token_id: uuid.UUID
    token_tenant_id: uuid.UUID | None


def tenant_not_found(tenant_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(
        f"tenant {tenant_id} does not exist or you have no role in it",
        code="tenant_not_found",
    )


def check_role(
    principal: Principal, tenant_id: uuid.UUID, role: Role | None, required: Role
) -> None:
    """Raise unless `principal`, holding `role` in the tenant (or none), may act as `required`.

    A caller with no role in a tenant learns nothing about it: the answer is the
    same as for a tenant that does not exist.
    """
    if principal.token_tenant_id is not None and principal.token_tenant_id != tenant_id:
        raise tenant_not_found(tenant_id)
    if principal.is_operator:
        return
    if role is None:
        raise tenant_not_found(tenant_id)
    if RANK[role] < RANK[required]:
        raise PermissionDeniedError(
            f"this needs the {required.value} role in the tenant; you are {role.value}",
            code="forbidden",
        )


def require_operator(principal: Principal) -> None:
    if not principal.is_operator or principal.token_tenant_id is not None:
        raise PermissionDeniedError(
            "only the service operator may do this", code="operator_required"
        )
