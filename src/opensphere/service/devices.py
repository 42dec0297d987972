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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from cryptography import x509
from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite

from opensphere.api import schemas
from opensphere.api.schemas import DEVICE_ID_PATTERN, Role
from opensphere.factory.manufacturer import IdevidVerifier, NotGenuineError
from opensphere.formats.claim import StaleClaimStatementError, verify_claim_statement
from opensphere.formats.errors import FormatError, SignatureError
from opensphere.service.context import RequestContext
from opensphere.service.deps import Bearer, Context, request_context
from opensphere.service.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
)
from opensphere.service.manufacturers import trusted_manufacturer_cas
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.products import get_device_group
from opensphere.service.storage.models import Device, DeviceGroup, DeviceTally
from opensphere.service.storage.types import new_id
from opensphere.service.tenants import Continuation, Limit, TenantId
from opensphere.service.updates.publishing import update_status_out

router = APIRouter(prefix="/v1/tenants/{tenant_id}/devices", tags=["devices"])

CLAIM_STATEMENT_MAX_AGE = 600
_DEVICES = cast(Table, Device.__table__)
# One INSERT for a whole batch; a device a concurrent claim inserted first is skipped, and
# RETURNING tells which were.
_INSERT_NEW_DEVICES = {
    "postgresql": postgresql.insert(_DEVICES)
    .on_conflict_do_nothing()
    .returning(_DEVICES.c.device_id),
    "sqlite": sqlite.insert(_DEVICES).on_conflict_do_nothing().returning(_DEVICES.c.device_id),
}
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
    verifier: IdevidVerifier,
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
        proven = verifier.verify(idevid)
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
    tenant_id: TenantId, body: schemas.DeviceClaimRequest, request: Request, credentials: Bearer
) -> list[schemas.Device]:
    """Claim devices into the tenant (Contributor): every one of them, or none.

    Each device proves it consents (its signed claim statement for this tenant) and that
    it is genuine (its IDevID). When any is refused, nothing is claimed and the answer
    lists every refusal with its index, so the rest can be sent again. A device claimed by
    a concurrent request between the check and the insert is a conflict (409), also for
    the whole batch.
    """
    storage = request.app.state.storage
    # Signatures and chains are checked before the write transaction: on SQLite a writer
    # holds the database's one write lock, and a full batch costs seconds of CPU.
    with storage.read_session() as session:
        context = request_context(request, session, credentials)
        try:
            context.authorize(tenant_id, Role.CONTRIBUTOR)
        except ServiceError:
            checked = None  # no verification for a refused caller; the change below audits it
        else:
            checked = _check_claims(
                body.devices,
                tenant_id=tenant_id,
                manufacturer_cas=trusted_manufacturer_cas(session),
                now=context.now,
            )
    with storage.write_session() as session:
        context = request_context(request, session, credentials)
        with context.change(
            "device.claim", tenant_id=tenant_id, required=Role.CONTRIBUTOR, target_type="device"
        ) as change:
            if checked is None:
                raise ConflictError(
                    "your role in this tenant changed while the claim was checked; send it again",
                    code="role_changed",
                )
            rows = _claim_checked(context, tenant_id, body, checked)
            change.target_id = rows[0]["device_id"] if len(rows) == 1 else None
            change.details = {
                "count": len(rows),
                "device_ids": [row["device_id"] for row in rows],
                "device_group_id": None
                if body.device_group_id is None
                else str(body.device_group_id),
            }
    return [
        schemas.Device.model_validate({k: v for k, v in row.items() if k != "id"}) for row in rows
    ]


def _check_claims(
    items: list[schemas.DeviceClaim],
    *,
    tenant_id: uuid.UUID,
    manufacturer_cas: dict[str, x509.Certificate],
    now: dt.datetime,
) -> list[tuple[str, str] | ClaimRefusal]:
    """Each claim checked (`_check_claim`), and the second listing of a device refused.

    One IDevID path validator serves the whole batch: building it costs more than using it.
    """
    checked: list[tuple[str, str] | ClaimRefusal] = []
    seen: set[str] = set()
    verifier = IdevidVerifier(list(manufacturer_cas.values()), now=now)
    for index, item in enumerate(items):
        result = _check_claim(
            index,
            item,
            tenant_id=tenant_id,
            manufacturer_cas=manufacturer_cas,
            verifier=verifier,
            now=now,
        )
        if isinstance(result, tuple):
            device_id = result[0]
            if device_id in seen:
                result = ClaimRefusal(index, "duplicate", "this device is listed twice", device_id)
            seen.add(device_id)
        checked.append(result)
    return checked


def _claim_checked(
    context: RequestContext,
    tenant_id: uuid.UUID,
    body: schemas.DeviceClaimRequest,
    checked: list[tuple[str, str] | ClaimRefusal],
) -> list[dict[str, Any]]:
    """Insert the checked claims in one statement, or raise every refusal; the rows inserted."""
    session = context.session
    group = (
        None
        if body.device_group_id is None
        else get_device_group(session, tenant_id, body.device_group_id)
    )
    refusals = [result for result in checked if isinstance(result, ClaimRefusal)]
    accepted = {index: result for index, result in enumerate(checked) if isinstance(result, tuple)}
    wanted = [device_id for device_id, _ in accepted.values()]
    taken = set(session.scalars(select(Device.device_id).where(Device.device_id.in_(wanted))))
    refusals.extend(
        ClaimRefusal(
            index,
            "already_claimed",
            "the device is already claimed; claiming is permanent",
            device_id,
        )
        for index, (device_id, _) in accepted.items()
        if device_id in taken
    )
    if refusals:
        refusals.sort(key=lambda refusal: refusal.index)
        first = refusals[0]
        raise InvalidRequestError(
            f"{len(refusals)} of {len(checked)} devices cannot be claimed, so none "
            f"was; the first, #{first.index}: {first.message}",
            code=first.code if len(refusals) == 1 else "claim_refused",
            errors=[refusal.as_dict() for refusal in refusals],
        )
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "device_id": device_id,
            "tenant_id": tenant_id,
            "product_id": None if group is None else group.product_id,
            "device_group_id": None if group is None else group.id,
            "enabled": True,
            "manufacturer_ca_thumbprint": issuer,
            "claimed_at": context.now,
            "updated_at": context.now,
            "last_attestation_at": None,
            "last_attestation_result": None,
            "last_attestation_code": None,
            "os_version": None,
            "certificate_expires_at": None,
        }
        for device_id, issuer in accepted.values()
    ]
    insert = _INSERT_NEW_DEVICES[session.get_bind().dialect.name]
    inserted = set(session.scalars(insert, rows))
    lost = [
        (index, row["device_id"])
        for index, row in zip(accepted, rows, strict=True)
        if row["device_id"] not in inserted
    ]
    if lost:
        raise ConflictError(
            f"{len(lost)} of {len(checked)} devices were claimed by a concurrent request "
            "meanwhile, so none was claimed here; the first is "
            f"#{lost[0][0]}",
            code="claimed_concurrently",
            errors=[
                ClaimRefusal(
                    index, "claimed_concurrently", "claimed meanwhile", device_id
                ).as_dict()
                for index, device_id in lost
            ],
        )
    return rows


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


NO_GROUP = uuid.UUID(int=0)
NONE = "none"


def tally_counts(rows: Iterable[tuple[uuid.UUID, str, str, int]]) -> schemas.DeviceCounts:
    """Fold tally rows (group, dimension, value, count) into the counts the API shows."""
    by: dict[str, dict[str, int]] = {"enabled": {}, "os_version": {}, "attestation": {}}
    groups: dict[str, int] = {}
    for group_id, dimension, value, count in rows:
        if count == 0 or dimension not in by:
            continue
        key = value or NONE
        by[dimension][key] = by[dimension].get(key, 0) + int(count)
        if dimension == "enabled":
            group = NONE if group_id == NO_GROUP else str(group_id)
            groups[group] = groups.get(group, 0) + int(count)
    return schemas.DeviceCounts(
        devices=sum(groups.values()),
        enabled=by["enabled"].get("1", 0),
        by_device_group=groups,
        by_os_version=by["os_version"],
        by_attestation_result=by["attestation"],
    )


@router.get("/counts")
def count_devices(
    tenant_id: TenantId,
    context: Context,
    device_group_id: Annotated[uuid.UUID | None, Query(description="only this group's")] = None,
    product_id: Annotated[uuid.UUID | None, Query(description="only this product's")] = None,
) -> schemas.DeviceCounts:
    """How many devices the tenant has, per device group, OS version and attestation result.

    Read from `device_tallies` (a few rows per group, kept by triggers), never by counting
    devices, so it stays fast at a million devices.
    """
    context.authorize(tenant_id, Role.READER)
    query = select(
        DeviceTally.device_group_id, DeviceTally.dimension, DeviceTally.value, DeviceTally.count
    ).where(DeviceTally.tenant_id == tenant_id)
    if device_group_id is not None:
        get_device_group(context.session, tenant_id, device_group_id)
        query = query.where(DeviceTally.device_group_id == device_group_id)
    if product_id is not None:
        groups = select(DeviceGroup.id).where(
            DeviceGroup.tenant_id == tenant_id, DeviceGroup.product_id == product_id
        )
        query = query.where(DeviceTally.device_group_id.in_(groups))
    return tally_counts(context.session.execute(query))


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
