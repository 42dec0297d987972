"""Genuine TPMs: trusted TPM manufacturer (EK) CAs, and claiming by credential activation.

Claiming a TPM device takes two calls, as Keylime's registrar does:

1. `activations`: the host sends its EK certificate, EK public area and AK public area.
   The service checks that the certificate chains to a trusted TPM manufacturer CA, that
   it certifies this EK, and that the AK has the attributes only a TPM-made,
   non-exportable, restricted signing key has; then MakeCredential seals a fresh secret
   to (EK, name of the AK) and keeps only its hash.
2. `claim`: the host sends the secret back. Only a TPM that holds that EK and has that
   AK loaded can run ActivateCredential on it, so the secret proves the AK lives in the
   certified TPM; the device (ID = the AK's X‖Y) is claimed and the AK is bound to it.

A TPM whose EK certificate does not chain, or that cannot activate, is never claimed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from fastapi import APIRouter, Path
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from tpm2_pytss.utils import make_credential

from opensphere.api import schemas
from opensphere.api.schemas import Role
from opensphere.formats.errors import FormatError
from opensphere.formats.tpm import parse_attestation_key, parse_endorsement_key
from opensphere.service.ca.core import thumbprint
from opensphere.service.deps import Context
from opensphere.service.devices import device_out
from opensphere.service.errors import InvalidRequestError, NotFoundError
from opensphere.service.manufacturers import add_trusted_ca, trusted_ca_out, trusted_ca_page
from opensphere.service.paging import DEFAULT_LIMIT
from opensphere.service.products import get_device_group
from opensphere.service.storage.models import Device, TpmActivation, TpmDevice, TpmManufacturerCa
from opensphere.service.tenants import Continuation, Limit, TenantId

router = APIRouter(tags=["tpm devices"])

ACTIVATION_TTL = dt.timedelta(minutes=5)
SECRET_SIZE = 32
TpmCaId = Annotated[uuid.UUID, Path(description="the TPM manufacturer CA's GUID")]


class NotGenuineTpmError(Exception):
    """The EK certificate does not chain to a trusted TPM manufacturer CA."""


def parse_tpm_ca_certificate(pem: str, *, now: dt.datetime) -> x509.Certificate:
    """One CA certificate (RSA or EC, as TPM vendors use), valid now."""
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
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        is_ca = False
    if not is_ca:
        raise InvalidRequestError(
            "the certificate is not a CA certificate (basicConstraints CA)",
            code="invalid_certificate",
        )
    if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
        raise InvalidRequestError(
            "the certificate is not valid now (expired or not yet valid)",
            code="invalid_certificate",
        )
    return certificate


def verify_ek_certificate(
    certificate: x509.Certificate, trusted: dict[str, x509.Certificate], *, now: dt.datetime
) -> str:
    """The thumbprint of the trusted CA the EK certificate chains to; else `NotGenuineTpmError`.

    Path validation is cryptography's (RFC 5280); the end-entity policy accepts what EK
    certificates carry (an empty subject, a critical subjectAltName of TPM attributes,
    the TCG EK extended key usage) since they are not TLS certificates.
    """
    if not trusted:
        raise NotGenuineTpmError("no TPM manufacturer CA is trusted; register one first")
    verifier = (
        PolicyBuilder()
        .store(Store(list(trusted.values())))
        .time(now)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(certificate, []).chain
    except VerificationError as exc:
        raise NotGenuineTpmError(
            f"the EK certificate does not chain to a trusted TPM manufacturer CA: {exc}"
        ) from exc
    return thumbprint(chain[-1])


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"{what} is not base64url", code="invalid_request") from exc


def _b64out(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def trusted_tpm_cas(session: Session) -> dict[str, x509.Certificate]:
    rows = session.execute(select(TpmManufacturerCa.thumbprint, TpmManufacturerCa.certificate_pem))
    return {row[0]: x509.load_pem_x509_certificate(row[1].encode()) for row in rows}


@router.post("/v1/tpm-manufacturer-cas", status_code=201)
def register_tpm_manufacturer_ca(
    body: schemas.ManufacturerCaCreate, context: Context
) -> schemas.ManufacturerCa:
    """Trust a TPM manufacturer's EK CA (operator only)."""
    with context.change(
        "tpm_manufacturer_ca.register", target_type="tpm_manufacturer_ca", operator=True
    ) as change:
        certificate = parse_tpm_ca_certificate(body.certificate, now=context.now)
        row = add_trusted_ca(context, TpmManufacturerCa, body.name, certificate, change)
    return trusted_ca_out(row)


@router.get("/v1/tpm-manufacturer-cas")
def list_tpm_manufacturer_cas(
    context: Context, limit: Limit = DEFAULT_LIMIT, continuation_token: Continuation = None
) -> schemas.Page[schemas.ManufacturerCa]:
    return trusted_ca_page(context, TpmManufacturerCa, limit, continuation_token)


@router.delete("/v1/tpm-manufacturer-cas/{tpm_manufacturer_ca_id}")
def delete_tpm_manufacturer_ca(
    tpm_manufacturer_ca_id: TpmCaId, context: Context
) -> schemas.ManufacturerCa:
    """Stop trusting a TPM manufacturer CA for new claims (operator only)."""
    with context.change(
        "tpm_manufacturer_ca.delete",
        target_type="tpm_manufacturer_ca",
        operator=True,
        target_id=str(tpm_manufacturer_ca_id),
    ) as change:
        row = context.session.get(TpmManufacturerCa, tpm_manufacturer_ca_id)
        if row is None:
            raise NotFoundError(
                f"there is no TPM manufacturer CA {tpm_manufacturer_ca_id}",
                code="manufacturer_ca_not_found",
            )
        result = trusted_ca_out(row)
        context.session.delete(row)
        change.details = {"name": row.name, "thumbprint": row.thumbprint}
    return result


@router.post("/v1/tenants/{tenant_id}/tpm-devices/activations", status_code=201)
def start_tpm_activation(
    tenant_id: TenantId, body: schemas.TpmActivationRequest, context: Context
) -> schemas.TpmActivationChallenge:
    """Check the TPM is genuine and seal a secret to its EK and AK (Contributor)."""
    with context.change(
        "tpm_device.activation",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="device",
    ) as change:
        try:
            ek_certificate = x509.load_pem_x509_certificate(body.ek_certificate.encode())
        except ValueError as exc:
            raise InvalidRequestError(
                "the EK certificate is not a PEM certificate", code="invalid_ek_certificate"
            ) from exc
        try:
            issuer = verify_ek_certificate(
                ek_certificate, trusted_tpm_cas(context.session), now=context.now
            )
        except NotGenuineTpmError as exc:
            raise InvalidRequestError(f"the TPM is not genuine: {exc}", code="not_genuine") from exc
        try:
            ek_public = parse_endorsement_key(_b64(body.ek_public, "ek_public"), ek_certificate)
            ak = parse_attestation_key(_b64(body.ak_public, "ak_public"))
        except FormatError as exc:
            raise InvalidRequestError(str(exc), code="invalid_tpm_structure") from exc
        _refuse_claimed(context.session, ak.device_id)
        secret = secrets.token_bytes(SECRET_SIZE)
        credential_blob, encrypted_secret = make_credential(ek_public, secret, ak.name)
        context.session.execute(delete(TpmActivation).where(TpmActivation.expires_at < context.now))
        row = TpmActivation(
            tenant_id=tenant_id,
            device_id=ak.device_id,
            secret_sha256=hashlib.sha256(secret).digest(),
            ak_public=ak.public_area,
            ek_certificate=ek_certificate.public_bytes(Encoding.DER),
            manufacturer_ca_thumbprint=issuer,
            expires_at=context.now + ACTIVATION_TTL,
        )
        context.session.add(row)
        context.session.flush()
        change.target_id = ak.device_id
        change.details = {"activation_id": str(row.id), "manufacturer_ca": issuer}
    return schemas.TpmActivationChallenge(
        activation_id=row.id,
        device_id=ak.device_id,
        credential_blob=_b64out(bytes(credential_blob)),
        encrypted_secret=_b64out(bytes(encrypted_secret)),
        expires_at=row.expires_at,
    )


@router.post("/v1/tenants/{tenant_id}/tpm-devices/claim", status_code=201)
def claim_tpm_device(
    tenant_id: TenantId, body: schemas.TpmClaimRequest, context: Context
) -> schemas.Device:
    """Claim the TPM device that activated the credential (Contributor); permanent."""
    with context.change(
        "device.claim", tenant_id=tenant_id, required=Role.CONTRIBUTOR, target_type="device"
    ) as change:
        activation = context.session.get(TpmActivation, body.activation_id)
        if activation is None or activation.tenant_id != tenant_id:
            raise NotFoundError(
                f"there is no pending activation {body.activation_id} in this tenant",
                code="activation_not_found",
            )
        if activation.expires_at <= context.now:
            raise InvalidRequestError(
                "the activation expired; start a new one", code="activation_expired"
            )
        proof = hashlib.sha256(_b64(body.secret, "secret")).digest()
        if not hmac.compare_digest(proof, activation.secret_sha256):
            raise InvalidRequestError(
                "the secret is not the one sealed to this TPM: the attestation key is not in "
                "the TPM whose EK certificate was presented",
                code="activation_failed",
            )
        context.session.delete(activation)
        device_id = activation.device_id
        _refuse_claimed(context.session, device_id)
        group = (
            None
            if body.device_group_id is None
            else get_device_group(context.session, tenant_id, body.device_group_id)
        )
        device = Device(
            device_id=device_id,
            tenant_id=tenant_id,
            product_id=None if group is None else group.product_id,
            device_group_id=None if group is None else group.id,
            enabled=True,
            manufacturer_ca_thumbprint=activation.manufacturer_ca_thumbprint,
            claimed_at=context.now,
            updated_at=context.now,
        )
        context.session.add(device)
        context.session.flush()
        context.session.add(
            TpmDevice(
                device_id=device_id,
                ak_public=activation.ak_public,
                ek_certificate=activation.ek_certificate,
            )
        )
        change.target_id = device_id
        change.details = {"count": 1, "device_ids": [device_id], "tpm": True}
    return device_out(device)


def _refuse_claimed(session: Session, device_id: str) -> None:
    if session.scalar(select(Device.id).where(Device.device_id == device_id)) is not None:
        raise InvalidRequestError(
            "the device is already claimed; claiming is permanent", code="already_claimed"
        )
