"""Manufacturer CAs the operator trusts: a device is genuine if its IDevID chains to one.

Removing a CA stops new claims of its devices; devices already claimed stay claimed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Path
from sqlalchemy import select
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.service.auth.permissions import require_operator
from opensphere.service.ca.core import thumbprint, to_pem
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, InvalidRequestError, NotFoundError
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import ManufacturerCa
from opensphere.service.tenants import Continuation, Limit

router = APIRouter(prefix="/v1/manufacturer-cas", tags=["manufacturers"])

ManufacturerCaId = Annotated[uuid.UUID, Path(description="the manufacturer CA's GUID")]


def _out(row: ManufacturerCa) -> schemas.ManufacturerCa:
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
        fingerprint = thumbprint(certificate)
        taken = context.session.scalar(
            select(ManufacturerCa.name).where(
                (ManufacturerCa.name_key == body.name.casefold())
                | (ManufacturerCa.thumbprint == fingerprint)
            )
        )
        if taken is not None:
            raise ConflictError(
                f"this certificate or the name {body.name!r} is already registered",
                code="name_conflict",
            )
        row = ManufacturerCa(
            name=body.name,
            name_key=body.name.casefold(),
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
        change.details = {"name": body.name, "thumbprint": fingerprint}
    return _out(row)


@router.get("")
def list_manufacturer_cas(
    context: Context, limit: Limit = DEFAULT_LIMIT, continuation_token: Continuation = None
) -> schemas.Page[schemas.ManufacturerCa]:
    require_operator(context.principal)
    after = decode_continuation(continuation_token)
    query = select(ManufacturerCa)
    if after is not None:
        query = query.where(ManufacturerCa.id > after)
    rows = context.session.scalars(query.order_by(ManufacturerCa.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda row: row.id, out=_out)


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
    return _out(_get(context, manufacturer_ca_id))


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
        result = _out(row)
        context.session.delete(row)
        change.details = {"name": row.name, "thumbprint": row.thumbprint}
    return result
