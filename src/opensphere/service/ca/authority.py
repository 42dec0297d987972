"""The CA shell: reads and creates the root and tenant CAs through the database and key store.

Certificates and key ids live in the database, private keys in the `KeyStore`. Creating
a CA is a transaction of its own, so a request that triggers a rotation never holds it
back; when several service processes race to create the same CA generation, the unique
(tenant, generation) constraint lets one win and the others read the winner's.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from opensphere.service.ca.core import (
    CaRecord,
    IssuingCa,
    active_ca,
    build_root_ca,
    build_tenant_anchor,
    build_tenant_ca,
    next_change,
    plan_rotation,
    thumbprint,
    to_pem,
)
from opensphere.service.keystore import KeyStore
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import AuditEvent, ServiceCa, TenantCa
from opensphere.service.storage.types import new_id

log = logging.getLogger(__name__)

ROOT_ROW = 1
_TENANT_CA = TenantCa.__table__


CACHE_TTL = dt.timedelta(seconds=60)
CONCURRENT_CREATION = dt.timedelta(seconds=5)
"""How far after a request's `now` a CA that a concurrent request created still counts."""


class NoActiveCaError(Exception):
    """The tenant has no CA that may sign now (it could not be created)."""


@dataclass(frozen=True, slots=True)
class CurrentIssuer:
    """The CA that signs a tenant's device certificates now, and the chain devices get."""

    issuer: IssuingCa
    chain: tuple[str, ...]
    valid_until: dt.datetime


@dataclass(frozen=True, slots=True)
class TenantCaView:
    """A tenant CA row as the rules and the API need it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    key_id: str
    certificate_pem: str
    anchor_pem: str
    thumbprint: str
    subject: str
    created_at: dt.datetime
    record: CaRecord


def load_tenant_cas(connection: Connection, tenant_id: uuid.UUID) -> list[TenantCaView]:
    rows = connection.execute(
        select(_TENANT_CA).where(_TENANT_CA.c.tenant_id == tenant_id).order_by(_TENANT_CA.c.id)
    ).all()
    return [
        TenantCaView(
            id=row.id,
            tenant_id=row.tenant_id,
            key_id=row.key_id,
            certificate_pem=row.certificate_pem,
            anchor_pem=row.anchor_pem,
            thumbprint=row.thumbprint,
            subject=row.subject,
            created_at=row.created_at,
            record=CaRecord(
                generation=row.generation,
                not_before=row.not_before,
                not_after=row.not_after,
                active_from=row.active_from,
                revoked_at=row.revoked_at,
            ),
        )
        for row in rows
    ]


def active_view(cas: list[TenantCaView], now: dt.datetime) -> TenantCaView | None:
    active = active_ca([ca.record for ca in cas], now)
    return next((ca for ca in cas if ca.record is active), None)


class CertificateAuthority:
    """One per process; it caches parsed CAs and their keys, which never change."""

    def __init__(self, *, storage: Storage, keys: KeyStore) -> None:
        self._storage = storage
        self._keys = keys
        self._root: IssuingCa | None = None
        self._issuers: dict[uuid.UUID, IssuingCa] = {}
        self._current: dict[uuid.UUID, CurrentIssuer] = {}

    def cached_issuer(self, tenant_id: uuid.UUID, *, now: dt.datetime) -> CurrentIssuer | None:
        """The tenant's signing CA if known without touching the database.

        Entries live at most `CACHE_TTL`, so a revocation made by another service process
        is seen within that time; this process forgets a tenant at once when it revokes.
        """
        current = self._current.get(tenant_id)
        if current is None or now >= current.valid_until:
            return None
        return current

    def current_issuer(
        self, tenant_id: uuid.UUID, *, now: dt.datetime, request_id: str
    ) -> CurrentIssuer:
        """The tenant's signing CA, creating the first CA or a successor when due."""
        cas = self.tenant_cas(tenant_id, now=now, request_id=request_id)
        active = active_view(cas, now)
        if active is None:
            # A concurrent request (here or in another service process) read its clock a
            # moment after ours and created the first CA, active from then: it is ours too.
            soon = [
                ca.record.active_from
                for ca in cas
                if now < ca.record.active_from <= now + CONCURRENT_CREATION
            ]
            active = active_view(cas, min(soon)) if soon else None
        if active is None:
            raise NoActiveCaError(f"tenant {tenant_id} has no active CA")
        root = self.root(now=now)
        changes = next_change([ca.record for ca in cas], now)
        valid_until = now + CACHE_TTL if changes is None else min(now + CACHE_TTL, changes)
        current = CurrentIssuer(
            issuer=self.issuer(active),
            chain=(active.certificate_pem, root.pem),
            valid_until=valid_until,
        )
        self._current[tenant_id] = current
        return current

    def tenant_cas(
        self, tenant_id: uuid.UUID, *, now: dt.datetime, request_id: str
    ) -> list[TenantCaView]:
        """Every CA generation of the tenant, after creating the one the rotation plan asks for."""
        with self._storage.engine.connect() as connection:
            cas = load_tenant_cas(connection, tenant_id)
        if self.rotate(tenant_id, cas, now=now, request_id=request_id):
            with self._storage.engine.connect() as connection:
                cas = load_tenant_cas(connection, tenant_id)
        return cas

    def forget(self, tenant_id: uuid.UUID) -> None:
        self._current.pop(tenant_id, None)

    def root(self, *, now: dt.datetime) -> IssuingCa:
        if self._root is None:
            with self._storage.read_session() as session:
                row = session.get(ServiceCa, ROOT_ROW)
            if row is None:
                row = self._create_root(now)
            certificate = x509.load_pem_x509_certificate(row.certificate_pem.encode())
            self._root = IssuingCa.of(self._keys.load(row.key_id), certificate)
        return self._root

    def issuer(self, ca: TenantCaView) -> IssuingCa:
        issuing = self._issuers.get(ca.id)
        if issuing is None:
            certificate = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
            issuing = IssuingCa.of(self._keys.load(ca.key_id), certificate)
            self._issuers[ca.id] = issuing
        return issuing

    def rotate(
        self, tenant_id: uuid.UUID, cas: list[TenantCaView], *, now: dt.datetime, request_id: str
    ) -> bool:
        """Create the CA the rotation plan asks for, if any; True when the caller should re-read."""
        plan = plan_rotation([ca.record for ca in cas], now)
        if plan is None:
            return False
        root = self.root(now=now)
        key_id = f"tenant-ca-{new_id().hex}"
        key = self._keys.create(key_id)
        certificate = build_tenant_ca(key.public_key(), root=root, tenant_id=tenant_id, plan=plan)
        anchor = build_tenant_anchor(key, certificate)
        ca_id = new_id()
        try:
            with self._storage.write_session() as session:
                session.execute(
                    insert(TenantCa).values(
                        id=ca_id,
                        tenant_id=tenant_id,
                        generation=plan.generation,
                        key_id=key_id,
                        thumbprint=thumbprint(anchor),
                        subject=certificate.subject.rfc4514_string(),
                        certificate_pem=to_pem(certificate),
                        anchor_pem=to_pem(anchor),
                        not_before=certificate.not_valid_before_utc,
                        not_after=certificate.not_valid_after_utc,
                        active_from=plan.active_from,
                        revoked_at=None,
                        created_at=now,
                    )
                )
                session.add(
                    AuditEvent(
                        tenant_id=tenant_id,
                        actor_id=None,
                        actor_name="service",
                        action="ca_certificate.create",
                        target_type="ca_certificate",
                        target_id=str(ca_id),
                        result="success",
                        error_code=None,
                        request_id=request_id,
                        at=now,
                        details={
                            "generation": plan.generation,
                            "active_from": plan.active_from.isoformat(),
                            "not_after": certificate.not_valid_after_utc.isoformat(),
                        },
                    )
                )
                session.commit()
        except IntegrityError:
            log.info("another process created CA generation %d first", plan.generation)
        else:
            log.info(
                "created CA generation %d of tenant %s, active from %s",
                plan.generation,
                tenant_id,
                plan.active_from.isoformat(),
            )
        return True

    def _create_root(self, now: dt.datetime) -> ServiceCa:
        key_id = f"root-ca-{new_id().hex}"
        certificate = build_root_ca(self._keys.create(key_id), now=now)
        with self._storage.write_session() as session:
            session.add(
                ServiceCa(
                    id=ROOT_ROW, key_id=key_id, certificate_pem=to_pem(certificate), created_at=now
                )
            )
            try:
                session.commit()
                log.info("created the service root CA %s", thumbprint(certificate))
            except IntegrityError:
                session.rollback()
            row = session.get(ServiceCa, ROOT_ROW)
        assert row is not None
        return row
