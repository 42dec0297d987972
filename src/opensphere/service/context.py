"""Per-request state: the database session, the caller, `now`, and the audit trail of changes."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import State

from opensphere.api.schemas import Role
from opensphere.service.auth.permissions import (
    Principal,
    check_role,
    require_operator,
    tenant_not_found,
)
from opensphere.service.errors import ConflictError
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import AuditEvent, RoleAssignment, Tenant

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AuditIntent:
    """A change under way; written as a success with the change, or as a failure after it."""

    action: str
    tenant_id: uuid.UUID | None
    target_type: str
    target_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestContext:
    session: Session
    principal: Principal
    request_id: str
    now: dt.datetime
    state: State

    def role_in(self, tenant_id: uuid.UUID) -> Role | None:
        role = self.session.scalar(
            select(RoleAssignment.role).where(
                RoleAssignment.tenant_id == tenant_id,
                RoleAssignment.user_id == self.principal.user_id,
            )
        )
        return None if role is None else Role(role)

    def authorize(self, tenant_id: uuid.UUID, required: Role) -> Tenant:
        """The tenant, if the caller may act in it with at least `required`."""
        role = self.role_in(tenant_id)
        check_role(self.principal, tenant_id, role, required)
        return self.tenant(tenant_id)

    def tenant(self, tenant_id: uuid.UUID) -> Tenant:
        """The tenant of an authorized change (already loaded by `authorize`)."""
        tenant = self.session.get(Tenant, tenant_id)
        if tenant is None:
            raise tenant_not_found(tenant_id)
        return tenant

    @contextlib.contextmanager
    def change(
        self,
        action: str,
        *,
        target_type: str,
        tenant_id: uuid.UUID | None = None,
        required: Role = Role.ADMINISTRATOR,
        operator: bool = False,
        target_id: str | None = None,
    ) -> Iterator[AuditIntent]:
        """Authorize, run the change, audit it and commit, all or nothing.

        In a tenant the caller needs the `required` role; outside one, the change is
        either the operator's or the caller's own (their tokens).
        """
        intent = AuditIntent(action, tenant_id, target_type, target_id)
        self.state.audit_intent = intent
        if tenant_id is not None:
            self.authorize(tenant_id, required)
        elif operator:
            require_operator(self.principal)
        yield intent
        self.session.add(self._audit_row(intent, result="success", error_code=None))
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            raise ConflictError(
                "the change clashes with a concurrent one (a name or key already taken); "
                "look again and retry",
                code="conflict",
            ) from exc
        self.state.audit_intent = None

    def _audit_row(self, intent: AuditIntent, *, result: str, error_code: str | None) -> AuditEvent:
        return AuditEvent(
            tenant_id=intent.tenant_id,
            actor_id=self.principal.user_id,
            actor_name=self.principal.user_name,
            action=intent.action,
            target_type=intent.target_type,
            target_id=intent.target_id,
            result=result,
            error_code=error_code,
            request_id=self.request_id,
            at=self.now,
            details=intent.details,
        )

    def record_failure(self, storage: Storage, error_code: str) -> None:
        """Audit a refused change in its own transaction, after the change rolled back."""
        intent: AuditIntent | None = getattr(self.state, "audit_intent", None)
        if intent is None:
            return
        self.state.audit_intent = None
        self.session.close()
        try:
            with storage.write_session() as session:
                if intent.tenant_id is not None and session.get(Tenant, intent.tenant_id) is None:
                    intent.tenant_id = None
                session.add(self._audit_row(intent, result="failure", error_code=error_code))
                session.commit()
        except Exception:
            log.exception(
                "could not audit a refused %s (request %s)", intent.action, self.request_id
            )
