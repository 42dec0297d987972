"""Manufacturer CAs the operator trusts: a device is genuine if its IDevID chains to one.

Removing a CA stops new claims of its devices; devices already claimed stay claimed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Annotated, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Path
from sqlalchemy import select
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.service.auth.permissions import require_operator
from opensphere.service.ca.core import thumbprint, to_pem
from opensphere.service.context import AuditIntent, RequestContext
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, InvalidRequestError, NotFoundError
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import ManufacturerCa, TpmManufacturerCa
from opensphere.service.tenants import Continuation, Limit

router = APIRouter(prefix="/v1/manufacturer-cas", tags=["manufacturers"])

ManufacturerCaId = Annotated[uuid.UUID, Path(description="the manufacturer CA's GUID")]


def trusted_ca_out(row: ManufacturerCa | TpmManufacturerCa) -> schemas.ManufacturerCa:
    return schemas.ManufacturerCa.model_validate(row, from_attributes=True)


def parse_ca_certificate(pem: str, *, now: dt.datetime) -> x509.Certificate:
    """One P-256 CA certificate, valid now; anything else is refused with the reason."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise InvalidRequestError(
            "the certificate is not PEM-encoded X.509", code="invalid_certificate"
        ) from exc
    if len(certificates) != 1:
        raise InvalidRequestError(
            f"send exactly one certificate; got {len(certificates)}", code="invalid_certificate"
        )
    certificate = certificates[0]
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise InvalidRequestError(
            "the certificate is not a CA certificate (no basicConstraints)",
            code="invalid_certificate",
        ) from exc
    if not constraints.ca:
        raise InvalidRequestError(
            "the certificate is not a CA certificate (basicConstraints CA is false)",
            code="invalid_certificate",
        )
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidRequestError(
            "manufacturer CAs use ECDSA P-256 keys", code="invalid_certificate"
        )
    if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
        raise InvalidRequestError(
            "the certificate is not valid now (expired or not yet valid)",
            code="invalid_certificate",
        )
    return certificate


def trusted_manufacturer_cas(session: Session) -> dict[str, x509.Certificate]:
    """Every registered manufacturer CA, by thumbprint."""
    rows = session.execute(select(ManufacturerCa.thumbprint, ManufacturerCa.certificate_pem)).all()
    return {row[0]: x509.load_pem_x509_certificate(row[1].encode()) for row in rows}


@router.post("", status_code=201)
def register_manufacturer_ca(
    body: schemas.ManufacturerCaCreate, context: Context
) -> schemas.ManufacturerCa:
    """Trust a manufacturer CA (operator only)."""
    with context.change(
        "manufacturer_ca.register", target_type="manufacturer_ca", operator=True
    ) as change:
        certificate = parse_ca_certificate(body.certificate, now=context.now)
        row = add_trusted_ca(context, ManufacturerCa, body.name, certificate, change)
    return trusted_ca_out(row)


@router.get("")
def list_manufacturer_cas(
    context: Context, limit: Limit = DEFAULT_LIMIT, continuation_token: Continuation = None
) -> schemas.Page[schemas.ManufacturerCa]:
    return trusted_ca_page(context, ManufacturerCa, limit, continuation_token)


def _get(context: Context, ca_id: uuid.UUID) -> ManufacturerCa:
    row = context.session.get(ManufacturerCa, ca_id)
    if row is None:
        raise NotFoundError(
            f"there is no manufacturer CA {ca_id}", code="manufacturer_ca_not_found"
        )
    return row


@router.get("/{manufacturer_ca_id}")
def show_manufacturer_ca(
    manufacturer_ca_id: ManufacturerCaId, context: Context
) -> schemas.ManufacturerCa:
    require_operator(context.principal)
    return trusted_ca_out(_get(context, manufacturer_ca_id))


@router.delete("/{manufacturer_ca_id}")
def delete_manufacturer_ca(
    manufacturer_ca_id: ManufacturerCaId, context: Context
) -> schemas.ManufacturerCa:
    """Stop trusting a manufacturer CA for new claims (operator only)."""
    with context.change(
        "manufacturer_ca.delete",
        target_type="manufacturer_ca",
        operator=True,
        target_id=str(manufacturer_ca_id),
    ) as change:
        row = _get(context, manufacturer_ca_id)
        result = trusted_ca_out(row)
        context.session.delete(row)
        change.details = {"name": row.name, "thumbprint": row.thumbprint}
    return result


TrustedCaModel = type[ManufacturerCa] | type[TpmManufacturerCa]


def add_trusted_ca(
    context: RequestContext,
    model: TrustedCaModel,
    name: str,
    certificate: x509.Certificate,
    change: AuditIntent,
) -> ManufacturerCa | TpmManufacturerCa:
    """Register a CA the operator trusts (device or TPM manufacturer): names and
    certificates are unique per kind; the audited change names what was added."""
    fingerprint = thumbprint(certificate)
    taken = context.session.scalar(
        select(model.name).where(
            (model.name_key == name.casefold()) | (model.thumbprint == fingerprint)
        )
    )
    if taken is not None:
        raise ConflictError(
            f"this certificate or the name {name!r} is already registered",
            code="name_conflict",
        )
    row = model(
        name=name,
        name_key=name.casefold(),
        thumbprint=fingerprint,
        subject=certificate.subject.rfc4514_string()[:512],
        certificate_pem=to_pem(certificate),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        created_at=context.now,
    )
    context.session.add(row)
    context.session.flush()
    change.target_id = str(row.id)
    change.details = {"name": name, "thumbprint": fingerprint}
    return row


def trusted_ca_page(
    context: RequestContext,
    model: TrustedCaModel,
    limit: int,
    continuation_token: str | None,
) -> schemas.Page[schemas.ManufacturerCa]:
    """One page of a kind of trusted CA, for the operator."""
    require_operator(context.principal)
    after = decode_continuation(continuation_token)
    query = select(model)
    if after is not None:
        query = query.where(model.id > after)
    rows = cast(
        Sequence[ManufacturerCa | TpmManufacturerCa],
        context.session.scalars(query.order_by(model.id).limit(limit + 1)).all(),
    )
    return make_page(rows, limit, key=lambda row: row.id, out=trusted_ca_out)
