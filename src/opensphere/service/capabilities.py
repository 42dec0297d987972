"""Device capability files (appDevelopment, fieldServicing), signed by the service.

Each file is bound to one device ID. The signing key is the one the fleet's devices
trust for capabilities: the operator imports it into the service's key store once
(`sphere operator import-capability-key`), so it never travels over the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Path, Request, Response
from pydantic import Field
from sqlalchemy import select

from opensphere.api.schemas import Model, Role
from opensphere.formats.capability import CapabilityGrant, DeviceCapability, encode_capability_file
from opensphere.formats.device_id import DeviceId
from opensphere.formats.image_package import key_thumbprint
from opensphere.formats.signatures import raw_signature_from_der
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, InvalidRequestError, NotFoundError
from opensphere.service.keystore import KeyStoreError
from opensphere.service.storage.models import Device
from opensphere.service.tenants import TenantId

CAPABILITY_KEY_ID = "capability-signing"
NAMES = {capability.display_name: capability for capability in DeviceCapability}

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["devices"])


class CapabilityRequest(Model):
    capabilities: list[str] = Field(
        min_length=1, max_length=2, description="appDevelopment and/or fieldServicing"
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


@router.post(
    "/devices/{device_id}/capability",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_capability(
    tenant_id: TenantId,
    device_id: Annotated[str, Path(pattern=r"^[0-9a-f]{128}$")],
    body: CapabilityRequest,
    context: Context,
    request: Request,
) -> Response:
    """A capability file for one of the tenant's devices (Contributor), signed now."""
    with context.change(
        "device.capability",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="device",
        target_id=device_id,
    ) as change:
        unknown = sorted(set(body.capabilities) - set(NAMES))
        if unknown:
            raise InvalidRequestError(
                f"unknown capabilities {unknown}; use {sorted(NAMES)}", code="unknown_capability"
            )
        found = context.session.scalar(
            select(Device.id).where(Device.device_id == device_id, Device.tenant_id == tenant_id)
        )
        if found is None:
            raise NotFoundError(
                f"there is no device {device_id[:16]}… in this tenant", code="device_not_found"
            )
        try:
            key = request.app.state.keys.load(CAPABILITY_KEY_ID)
        except KeyStoreError as exc:
            raise ConflictError(
                "the service has no capability signing key yet: the operator imports the "
                "fleet's with 'sphere operator import-capability-key'",
                code="capability_key_missing",
            ) from exc
        now = int(context.now.timestamp())
        days = body.expires_in_days
        grant = CapabilityGrant(
            device_id=DeviceId(device_id),
            capabilities=frozenset(NAMES[name] for name in body.capabilities),
            issued_at=now,
            signer_thumbprint=key_thumbprint(key.public_key()),
            expires_at=None if days is None else now + int(dt.timedelta(days=days).total_seconds()),
        )
        data = encode_capability_file(grant, lambda message: _sign(key, message))
        change.details = {"capabilities": sorted(body.capabilities), "expires_in_days": days}
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{device_id[:16]}.capability"'},
    )


def _sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    return raw_signature_from_der(key.sign(message, ec.ECDSA(hashes.SHA256())))
