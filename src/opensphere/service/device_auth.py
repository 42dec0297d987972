"""The device credential: what a device that passed attestation sends to the device endpoints.

It is a short-lived bearer token, `osd1.<payload>.<signature>`: the payload is JSON
`{"sub": device ID, "tid": tenant ID, "exp": unix seconds}` in base64url, and the
signature is ES256 (raw r‖s, base64url) over `osd1.<payload>` by the service's
device-credential key (kept in the key store). It works over plain HTTP on loopback, needs
no TLS client-certificate plumbing in front of the service, and any service process can
check it with the public key alone. It is not a secret worth more than a day: it expires
with the device certificate, and `device_context` re-checks the registry on every request,
so disabling a device takes effect at once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.formats.errors import FormatError
from opensphere.formats.signatures import raw_signature_from_der, verify_es256
from opensphere.service.deps import db_session
from opensphere.service.errors import DeviceRefusedError
from opensphere.service.storage.models import Device

log = logging.getLogger(__name__)

CREDENTIAL_KEY_ID = "device-credential"
CREDENTIAL_LIFETIME = dt.timedelta(hours=24)
_PREFIX = b"osd1"
_MAX_CREDENTIAL_LENGTH = 1024
_SCHEME = "device "

router = APIRouter(prefix="/v1/device", tags=["device"])


class CredentialError(Exception):
    """The credential is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class DeviceCredential:
    device_id: str
    tenant_id: uuid.UUID
    expires_at: dt.datetime


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def issue_credential(
    key: ec.EllipticCurvePrivateKey,
    *,
    device_id: str,
    tenant_id: uuid.UUID,
    expires_at: dt.datetime,
) -> str:
    payload = json.dumps(
        {"sub": device_id, "tid": str(tenant_id), "exp": int(expires_at.timestamp())},
        separators=(",", ":"),
    ).encode()
    signing_input = _PREFIX + b"." + _b64(payload)
    signature = raw_signature_from_der(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return (signing_input + b"." + _b64(signature)).decode()


def verify_credential(
    credential: str, public_key: ec.EllipticCurvePublicKey, *, now: dt.datetime
) -> DeviceCredential:
    """The credential's claims if the service signed it and it has not expired."""
    raw = credential.encode()
    parts = raw.split(b".")
    if len(raw) > _MAX_CREDENTIAL_LENGTH or len(parts) != 3 or parts[0] != _PREFIX:
        raise CredentialError("not an osd1 device credential")
    try:
        verify_es256(public_key, parts[0] + b"." + parts[1], _unb64(parts[2]))
        payload = json.loads(_unb64(parts[1]))
        credential_claims = DeviceCredential(
            device_id=str(payload["sub"]),
            tenant_id=uuid.UUID(str(payload["tid"])),
            expires_at=dt.datetime.fromtimestamp(int(payload["exp"]), dt.UTC),
        )
    except FormatError as exc:
        raise CredentialError(f"the credential's signature is not the service's: {exc}") from exc
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise CredentialError("the credential is malformed") from exc
    if credential_claims.expires_at <= now:
        raise CredentialError(f"the credential expired at {credential_claims.expires_at}")
    return credential_claims


def refuse_device(request_id: str, reason: str, *, code: str = "device_refused") -> NoReturn:
    """Log why, answer the same to every refused device."""
    log.warning("device refused (request %s): %s", request_id, reason)
    raise DeviceRefusedError(
        "the device is refused; the operator can find why in the service log under this request id",
        code=code,
    )


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """A device endpoint's caller: a claimed, enabled device with a valid credential."""

    session: Session
    device: Device
    credential: DeviceCredential
    now: dt.datetime
    request_id: str


def request_credential(request: Request, now: dt.datetime) -> DeviceCredential:
    """The claims of the request's device credential; refuses the device if there is none."""
    request_id = request.state.request_id
    header = request.headers.get("authorization", "")
    if header[: len(_SCHEME)].lower() != _SCHEME:
        refuse_device(request_id, "no 'Authorization: Device <credential>' header")
    try:
        return verify_credential(
            header[len(_SCHEME) :].strip(), request.app.state.credential_public_key, now=now
        )
    except CredentialError as exc:
        refuse_device(request_id, f"bad device credential: {exc}")


def device_context(
    request: Request, session: Annotated[Session, Depends(db_session)]
) -> DeviceContext:
    now = request.app.state.clock.now()
    request_id = request.state.request_id
    credential = request_credential(request, now)
    device = session.scalar(select(Device).where(Device.device_id == credential.device_id))
    if device is None or device.tenant_id != credential.tenant_id:
        refuse_device(request_id, f"device {credential.device_id[:16]}… is not claimed")
    if not device.enabled:
        refuse_device(request_id, f"device {credential.device_id[:16]}… is disabled")
    return DeviceContext(
        session=session, device=device, credential=credential, now=now, request_id=request_id
    )


DeviceCaller = Annotated[DeviceContext, Depends(device_context)]


@router.get("/me")
def show_device_self(caller: DeviceCaller) -> schemas.DeviceIdentity:
    """The calling device's own registration (device credential)."""
    device = caller.device
    return schemas.DeviceIdentity(
        device_id=device.device_id,
        tenant_id=device.tenant_id,
        product_id=device.product_id,
        device_group_id=device.device_group_id,
        credential_expires_at=caller.credential.expires_at,
    )
