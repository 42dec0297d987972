"""`/v1/tenants/{tenant_id}/ca-certificates`: list, download, chain, proof of possession, revoke.

`certificate` downloads the tenant CA as a relying party should trust it (the
self-signed twin, see `ca.core.build_tenant_anchor`); `chain` is the PKCS#7 bundle that
links it to the service root. Expired certificates cannot be downloaded, as on Azure Sphere.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import update

from opensphere.api import schemas
from opensphere.api.schemas import CaCertificateStatus, CertificateFormat, Role
from opensphere.service.ca.authority import CertificateAuthority, TenantCaView, load_tenant_cas
from opensphere.service.ca.core import ca_status, issue_proof_certificate
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, NotFoundError
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import TenantCa
from opensphere.service.tenants import Continuation, Limit, TenantId

router = APIRouter(prefix="/v1/tenants/{tenant_id}/ca-certificates", tags=["ca-certificates"])

CaCertificateId = Annotated[uuid.UUID, Path(description="the CA certificate's GUID")]
FormatQuery = Annotated[CertificateFormat, Query(alias="format", description="pem or der")]
MEDIA_TYPES = {CertificateFormat.PEM: "application/x-pem-file"}
_BINARY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the certificate or bundle, PEM or DER",
        "content": {
            "application/x-pem-file": {"schema": {"type": "string"}},
            "application/pkix-cert": {"schema": {"type": "string", "format": "binary"}},
            "application/pkcs7-mime": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _authority(request: Request) -> CertificateAuthority:
    authority: CertificateAuthority = request.app.state.ca
    return authority


def _tenant_cas(request: Request, context: Context, tenant_id: uuid.UUID) -> list[TenantCaView]:
    """The tenant's CAs after any due rotation; never inside a write transaction (SQLite)."""
    return _authority(request).tenant_cas(tenant_id, now=context.now, request_id=context.request_id)


def _out(ca: TenantCaView, cas: list[TenantCaView], now: dt.datetime) -> schemas.CaCertificate:
    return schemas.CaCertificate(
        id=ca.id,
        tenant_id=ca.tenant_id,
        generation=ca.record.generation,
        subject=ca.subject,
        thumbprint=ca.thumbprint,
        status=ca_status(ca.record, [c.record for c in cas], now),
        not_before=ca.record.not_before,
        not_after=ca.record.not_after,
        active_from=ca.record.active_from,
        revoked_at=ca.record.revoked_at,
        created_at=ca.created_at,
    )


def _find(
    cas: list[TenantCaView], ca_id: uuid.UUID, now: dt.datetime, *, downloadable: bool = False
) -> TenantCaView:
    ca = next((ca for ca in cas if ca.id == ca_id), None)
    if ca is None:
        raise NotFoundError(
            f"there is no CA certificate {ca_id} in this tenant", code="ca_certificate_not_found"
        )
    if downloadable and ca.record.not_after <= now:
        raise ConflictError(
            "this CA certificate has expired and can no longer be downloaded",
            code="ca_certificate_expired",
        )
    return ca


def _encode(certificate: x509.Certificate, output: CertificateFormat) -> Response:
    if output == CertificateFormat.PEM:
        return Response(
            certificate.public_bytes(serialization.Encoding.PEM), media_type=MEDIA_TYPES[output]
        )
    return Response(
        certificate.public_bytes(serialization.Encoding.DER), media_type="application/pkix-cert"
    )


@router.get("")
def list_ca_certificates(
    tenant_id: TenantId,
    request: Request,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> schemas.Page[schemas.CaCertificate]:
    """Every generation of the tenant's CA with its status; a successor is created when due."""
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    cas = _tenant_cas(request, context, tenant_id)
    rows = [ca for ca in cas if after is None or ca.id > after][: limit + 1]
    return make_page(rows, limit, key=lambda ca: ca.id, out=lambda ca: _out(ca, cas, context.now))


@router.get("/{ca_certificate_id}")
def show_ca_certificate(
    tenant_id: TenantId, ca_certificate_id: CaCertificateId, request: Request, context: Context
) -> schemas.CaCertificate:
    context.authorize(tenant_id, Role.READER)
    cas = _tenant_cas(request, context, tenant_id)
    return _out(_find(cas, ca_certificate_id, context.now), cas, context.now)


@router.get("/{ca_certificate_id}/certificate", response_class=Response, responses=_BINARY)
def download_ca_certificate(
    tenant_id: TenantId,
    ca_certificate_id: CaCertificateId,
    request: Request,
    context: Context,
    output: FormatQuery = CertificateFormat.PEM,
) -> Response:
    """The CA certificate to register with a relying party (self-signed: trusts one tenant)."""
    context.authorize(tenant_id, Role.READER)
    ca = _find(
        _tenant_cas(request, context, tenant_id), ca_certificate_id, context.now, downloadable=True
    )
    return _encode(x509.load_pem_x509_certificate(ca.anchor_pem.encode()), output)


@router.get("/{ca_certificate_id}/chain", response_class=Response, responses=_BINARY)
def download_ca_chain(
    tenant_id: TenantId,
    ca_certificate_id: CaCertificateId,
    request: Request,
    context: Context,
    output: FormatQuery = CertificateFormat.DER,
) -> Response:
    """PKCS#7 bundle: the tenant CA as signed by the service root, and the root."""
    context.authorize(tenant_id, Role.READER)
    ca = _find(
        _tenant_cas(request, context, tenant_id), ca_certificate_id, context.now, downloadable=True
    )
    root = _authority(request).root(now=context.now)
    certificates = [x509.load_pem_x509_certificate(ca.certificate_pem.encode()), root.certificate]
    encoding = (
        serialization.Encoding.PEM
        if output == CertificateFormat.PEM
        else serialization.Encoding.DER
    )
    return Response(
        pkcs7.serialize_certificates(certificates, encoding), media_type="application/pkcs7-mime"
    )


@router.post("/{ca_certificate_id}/proof", response_class=Response, responses=_BINARY)
def download_proof(
    tenant_id: TenantId,
    ca_certificate_id: CaCertificateId,
    body: schemas.ProofRequest,
    request: Request,
    context: Context,
    output: FormatQuery = CertificateFormat.DER,
) -> Response:
    """A proof-of-possession certificate: CN = the verification code, signed by this CA."""
    with context.change(
        "ca_certificate.proof",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="ca_certificate",
        target_id=str(ca_certificate_id),
    ) as change:
        cas = load_tenant_cas(context.session.connection(), tenant_id)
        ca = _find(cas, ca_certificate_id, context.now, downloadable=True)
        if ca.record.revoked_at is not None:
            raise ConflictError("this CA certificate is revoked", code="ca_certificate_revoked")
        proof = issue_proof_certificate(
            body.verification_code, issuer=_authority(request).issuer(ca), now=context.now
        )
        change.details = {"verification_code": body.verification_code}
    return _encode(proof, output)


@router.post("/{ca_certificate_id}/revoke")
def revoke_ca_certificate(
    tenant_id: TenantId, ca_certificate_id: CaCertificateId, request: Request, context: Context
) -> schemas.CaCertificate:
    """Revoke a CA (Administrator): it signs nothing more; a new CA takes over at once."""
    with context.change(
        "ca_certificate.revoke",
        tenant_id=tenant_id,
        required=Role.ADMINISTRATOR,
        target_type="ca_certificate",
        target_id=str(ca_certificate_id),
    ) as change:
        cas = load_tenant_cas(context.session.connection(), tenant_id)
        ca = _find(cas, ca_certificate_id, context.now)
        status = ca_status(ca.record, [c.record for c in cas], context.now)
        if status in (CaCertificateStatus.REVOKED, CaCertificateStatus.EXPIRED):
            raise ConflictError(
                f"this CA certificate is already {status.value}", code="ca_certificate_not_live"
            )
        context.session.execute(
            update(TenantCa).where(TenantCa.id == ca.id).values(revoked_at=context.now)
        )
        change.details = {"generation": ca.record.generation, "thumbprint": ca.thumbprint}
    _authority(request).forget(tenant_id)
    cas = _tenant_cas(request, context, tenant_id)
    return _out(_find(cas, ca_certificate_id, context.now), cas, context.now)
