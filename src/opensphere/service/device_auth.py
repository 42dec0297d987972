"""The device credential: what a device that passed attestation sends to the device endpoints.

It is a short-lived bearer token, `osd2.<payload>.<tag>`: the payload is JSON
`{"sub": device ID, "tid": tenant ID, "exp": unix seconds}` in base64url, and the tag is an
HMAC-SHA256 (base64url) over `osd2.<payload>` under a key derived from the service's
device-credential key (kept in the key store). Only the service checks it, so a MAC does
what a signature would at a fraction of the cost (every attestation issues one); every
service process sharing the key store can issue and check it. It works over plain HTTP on
loopback and needs no TLS client-certificate plumbing in front of the service. It is not a
secret worth more than a day: it expires with the device certificate, and `device_context`
re-checks the registry on every request, so disabling a device takes effect at once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, NoReturn

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.formats.device_id import parse_device_id
from opensphere.service.deps import db_session
from opensphere.service.derived_keys import derive_mac_key
from opensphere.service.errors import DeviceRefusedError
from opensphere.service.storage.models import Device

log = logging.getLogger(__name__)

CREDENTIAL_KEY_ID = "device-credential"
CREDENTIAL_LIFETIME = dt.timedelta(hours=24)
_PREFIX = b"osd2"
_KEY_INFO = b"opensphere device credential v2"
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


class DeviceCredentials:
    """Issues and checks device credentials under the service's credential MAC key."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_key(cls, credential_key: ec.EllipticCurvePrivateKey) -> DeviceCredentials:
        """With the MAC key derived from the key store's device-credential key."""
        return cls(derive_mac_key(credential_key, _KEY_INFO))

    def issue(self, *, device_id: str, tenant_id: uuid.UUID, expires_at: dt.datetime) -> str:
        # JSON without an encoder: a device ID is hex and a UUID prints as hex and dashes.
        parse_device_id(device_id)
        payload = b'{"sub":"%s","tid":"%s","exp":%d}' % (
            device_id.encode(),
            str(tenant_id).encode(),
            int(expires_at.timestamp()),
        )
        tagged = _PREFIX + b"." + _b64(payload)
        return (tagged + b"." + _b64(self._tag(tagged))).decode()

    def verify(self, credential: str, *, now: dt.datetime) -> DeviceCredential:
        """The credential's claims if the service issued it and it has not expired."""
        raw = credential.encode()
        parts = raw.split(b".")
        if len(raw) > _MAX_CREDENTIAL_LENGTH or len(parts) != 3 or parts[0] != _PREFIX:
            raise CredentialError("not an osd2 device credential")
        try:
            tag = _unb64(parts[2])
        except (binascii.Error, ValueError) as exc:
            raise CredentialError("the credential is malformed") from exc
        if not hmac.compare_digest(tag, self._tag(parts[0] + b"." + parts[1])):
            raise CredentialError("the credential was not issued by this service")
        try:
            payload = json.loads(_unb64(parts[1]))
            claims = DeviceCredential(
                device_id=str(payload["sub"]),
                tenant_id=uuid.UUID(str(payload["tid"])),
                expires_at=dt.datetime.fromtimestamp(int(payload["exp"]), dt.UTC),
            )
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise CredentialError("the credential is malformed") from exc
        if claims.expires_at <= now:
            raise CredentialError(f"the credential expired at {claims.expires_at}")
        return claims

    def _tag(self, tagged: bytes) -> bytes:
        return hmac.digest(self._secret, tagged, "sha256")


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
        credentials: DeviceCredentials = request.app.state.credentials
        return credentials.verify(header[len(_SCHEME) :].strip(), now=now)
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
