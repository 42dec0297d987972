"""The device registry: claiming with proof of possession, listing, moving, enabling.

Azure Sphere claims a device by its ID alone; here a claim carries the device's own
signed claim statement naming the tenant (`formats.claim`) and its manufacturer
identity certificate, so only the device itself can ask to join a tenant, and only a
genuine one is let in. Claiming is permanent: a claimed device is never claimed again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from cryptography import x509
from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select

from opensphere.api import schemas
from opensphere.api.schemas import DEVICE_ID_PATTERN, Role
from opensphere.factory.manufacturer import NotGenuineError, verify_idevid
from opensphere.formats.claim import StaleClaimStatementError, verify_claim_statement
from opensphere.formats.errors import FormatError, SignatureError
from opensphere.service.deps import Context
from opensphere.service.errors import InvalidRequestError, NotFoundError
from opensphere.service.manufacturers import trusted_manufacturer_cas
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.products import get_device_group
from opensphere.service.storage.models import Device
from opensphere.service.tenants import Continuation, Limit, TenantId
from opensphere.service.updates.publishing import update_status_out

router = APIRouter(prefix="/v1/tenants/{tenant_id}/devices", tags=["devices"])

CLAIM_STATEMENT_MAX_AGE = 600
DevicePathId = Annotated[
    str,
    Path(
        min_length=128,
        max_length=128,
        pattern=DEVICE_ID_PATTERN,
        description="the device ID: 128 lowercase hex characters",
    ),
]


@dataclass(frozen=True, slots=True)
class ClaimRefusal:
    index: int
    code: str
    message: str
    device_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "device_id": self.device_id,
            "code": self.code,
            "message": self.message,
        }


def device_out(device: Device) -> schemas.Device:
    return schemas.Device.model_validate(device, from_attributes=True)


def _check_claim(
    index: int,
    item: schemas.DeviceClaim,
    *,
    tenant_id: uuid.UUID,
    manufacturer_cas: dict[str, x509.Certificate],
    now: dt.datetime,
) -> tuple[str, str] | ClaimRefusal:
    """(device ID, manufacturer CA thumbprint) of a valid claim, or why it is refused."""
    try:
        raw = base64.urlsafe_b64decode(
            item.claim_statement + "=" * (-len(item.claim_statement) % 4)
        )
        statement = verify_claim_statement(
            raw, now=int(now.timestamp()), max_age=CLAIM_STATEMENT_MAX_AGE
        )
    except (binascii.Error, ValueError) as exc:
        code = "invalid_claim_statement"
        if isinstance(exc, SignatureError):
            code = "claim_signature_invalid"
        elif isinstance(exc, StaleClaimStatementError):
            code = "stale_claim_statement"
        message = str(exc) if isinstance(exc, FormatError) else "not base64url"
        return ClaimRefusal(index, code, f"the claim statement is refused: {message}")
    device_id = statement.device_id
    if statement.tenant_id != tenant_id:
        return ClaimRefusal(
            index,
            "claim_for_another_tenant",
            f"the device signed a claim into tenant {statement.tenant_id}, not this one",
            device_id,
        )
    try:
        idevid = x509.load_pem_x509_certificate(item.idevid.encode())
    except ValueError:
        return ClaimRefusal(
            index, "invalid_idevid", "the IDevID is not a PEM certificate", device_id
        )
    try:
        proven = verify_idevid(idevid, list(manufacturer_cas.values()), now=now)
    except NotGenuineError as exc:
        return ClaimRefusal(index, "not_genuine", f"the device is not genuine: {exc}", device_id)
    if proven != device_id:
        return ClaimRefusal(
            index,
            "not_genuine",
            "the IDevID belongs to another device than the claim statement",
            device_id,
        )
    issuer = next(
        fingerprint for fingerprint, ca in manufacturer_cas.items() if ca.subject == idevid.issuer
    )
    return device_id, issuer


@router.post("/claim", status_code=201)
def claim_devices(
    tenant_id: TenantId, body: schemas.DeviceClaimRequest, context: Context
) -> list[schemas.Device]:
    """Claim devices into the tenant (Contributor): every one of them, or none.

    Each device proves it consents (its signed claim statement for this tenant) and that
    it is genuine (its IDevID). When any is refused, nothing is claimed and the answer
    lists every refusal with its index, so the rest can be sent again.
    """
    with context.change(
        "device.claim", tenant_id=tenant_id, required=Role.CONTRIBUTOR, target_type="device"
    ) as change:
        group = (
            None
            if body.device_group_id is None
            else get_device_group(context.session, tenant_id, body.device_group_id)
        )
        manufacturer_cas = trusted_manufacturer_cas(context.session)
        refusals: list[ClaimRefusal] = []
        accepted: dict[str, str] = {}
        listed: dict[int, str] = {}
        for index, item in enumerate(body.devices):
            checked = _check_claim(
                index, item, tenant_id=tenant_id, manufacturer_cas=manufacturer_cas, now=context.now
            )
            if isinstance(checked, ClaimRefusal):
                refusals.append(checked)
                continue
            device_id, issuer = checked
            if device_id in accepted:
                refusals.append(
                    ClaimRefusal(index, "duplicate", "this device is listed twice", device_id)
                )
                continue
            accepted[device_id] = issuer
            listed[index] = device_id
        taken = set(
            context.session.scalars(select(Device.device_id).where(Device.device_id.in_(accepted)))
        )
        refusals.extend(
            ClaimRefusal(
                index,
                "already_claimed",
                "the device is already claimed; claiming is permanent",
                device_id,
            )
            for index, device_id in listed.items()
            if device_id in taken
        )
        if refusals:
            refusals.sort(key=lambda refusal: refusal.index)
            first = refusals[0]
            raise InvalidRequestError(
                f"{len(refusals)} of {len(body.devices)} devices cannot be claimed, so none "
                f"was; the first, #{first.index}: {first.message}",
                code=first.code if len(refusals) == 1 else "claim_refused",
                errors=[refusal.as_dict() for refusal in refusals],
            )
        devices = [
            Device(
                device_id=device_id,
                tenant_id=tenant_id,
                product_id=None if group is None else group.product_id,
                device_group_id=None if group is None else group.id,
                enabled=True,
                manufacturer_ca_thumbprint=issuer,
                claimed_at=context.now,
                updated_at=context.now,
            )
            for device_id, issuer in accepted.items()
        ]
        context.session.add_all(devices)
        context.session.flush()
        change.target_id = devices[0].device_id if len(devices) == 1 else None
        change.details = {
            "count": len(devices),
            "device_ids": [device.device_id for device in devices],
            "device_group_id": None if group is None else str(group.id),
        }
    return [device_out(device) for device in devices]


@router.get("")
def list_devices(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
    device_group_id: Annotated[uuid.UUID | None, Query(description="only this group's")] = None,
    product_id: Annotated[uuid.UUID | None, Query(description="only this product's")] = None,
    enabled: Annotated[bool | None, Query(description="only enabled, or only disabled")] = None,
) -> schemas.Page[schemas.Device]:
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    query = select(Device).where(Device.tenant_id == tenant_id)
    if device_group_id is not None:
        query = query.where(Device.device_group_id == device_group_id)
    if product_id is not None:
        query = query.where(Device.product_id == product_id)
    if enabled is not None:
        query = query.where(Device.enabled.is_(enabled))
    if after is not None:
        query = query.where(Device.id > after)
    rows = context.session.scalars(query.order_by(Device.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda device: device.id, out=device_out)


def _get_device(context: Context, tenant_id: uuid.UUID, device_id: str) -> Device:
    device = context.session.scalar(select(Device).where(Device.device_id == device_id))
    if device is None or device.tenant_id != tenant_id:
        raise NotFoundError(
            f"there is no device {device_id[:16]}… in this tenant", code="device_not_found"
        )
    return device


@router.get("/{device_id}")
def show_device(tenant_id: TenantId, device_id: DevicePathId, context: Context) -> schemas.Device:
    """A device, with its last attestation's time and result, and its last update report."""
    context.authorize(tenant_id, Role.READER)
    device = device_out(_get_device(context, tenant_id, device_id))
    return device.model_copy(
        update={"update_status": update_status_out(context.session, device_id)}
    )


@router.patch("/{device_id}")
def update_device(
    tenant_id: TenantId,
    device_id: DevicePathId,
    body: schemas.DeviceUpdate,
    context: Context,
    request: Request,
) -> schemas.Device:
    """Move a device to another device group, or disable or enable it (Contributor)."""
    with context.change(
        "device.update",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="device",
        target_id=device_id,
    ) as change:
        device = _get_device(context, tenant_id, device_id)
        details: dict[str, Any] = {}
        if body.device_group_id is not None:
            group = get_device_group(context.session, tenant_id, body.device_group_id)
            details["device_group_id"] = {
                "from": None if device.device_group_id is None else str(device.device_group_id),
                "to": str(group.id),
            }
            device.device_group_id = group.id
            device.product_id = group.product_id
        if body.enabled is not None and body.enabled != device.enabled:
            details["enabled"] = body.enabled
            device.enabled = body.enabled
        device.updated_at = context.now
        change.details = details
    request.app.state.tuf.forget_device(device_id)
    return device_out(device)
