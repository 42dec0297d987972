"""Device attestation: `challenge` → `evidence` → appraisal → device certificate.

These two endpoints are the fleet's hot path (every device, daily and at boot), so they
read and answer bytes directly and talk to the database through Core statements in one
short transaction, in `async` handlers: the work between awaits is a few hundred
microseconds of crypto and indexed SQL, cheaper than a hop to the thread pool.

The device authenticates by what it signs, not by a user token. Whatever the reason for a
refusal, the device gets the same answer (403 `attestation_refused`); the reason is in the
service log under the request id. A refusal stores nothing, except that a nonce, once
presented, is used up; when the evidence is proven to come from the device (its
signature, over a valid nonce) the failed verdict is recorded on the device.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
from typing import Any, NoReturn, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Table, delete, insert, select, update

from opensphere.api import schemas
from opensphere.formats.device_id import parse_device_id, public_key_from_device_id
from opensphere.formats.errors import FormatError
from opensphere.formats.evidence import MAX_EVIDENCE_SIZE, EvidenceClaims
from opensphere.service.appraisal import (
    AppraisalError,
    ReferenceValues,
    appraise,
    verify_device_evidence,
)
from opensphere.service.ca.authority import CertificateAuthority, CurrentIssuer
from opensphere.service.ca.core import issue_device_certificate, to_pem
from opensphere.service.device_auth import CREDENTIAL_LIFETIME, issue_credential
from opensphere.service.errors import DeviceRefusedError, InvalidRequestError
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import (
    AttestationNonce,
    Device,
    OsRelease,
    SecurityVersionMinimum,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/device/attestation", tags=["device attestation"])

NONCE_SIZE = 32
NONCE_TTL = dt.timedelta(seconds=60)
MAX_CHALLENGE_BODY = 1024
EVIDENCE_MEDIA_TYPE = "application/eat+cwt"
_NONCES = cast(Table, AttestationNonce.__table__)
_DEVICES = cast(Table, Device.__table__)
_RELEASES = cast(Table, OsRelease.__table__)
_MINIMUMS = cast(Table, SecurityVersionMinimum.__table__)


class _Refusal(Exception):
    def __init__(self, code: str, detail: str, *, record: bool = False) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.record = record


def _refuse(request: Request, device_id: str | None, code: str, detail: str) -> NoReturn:
    log.warning(
        "attestation refused (request %s, device %s): %s: %s",
        request.state.request_id,
        "-" if device_id is None else device_id[:16] + "…",
        code,
        detail,
    )
    raise DeviceRefusedError(
        "attestation refused; the operator can find why in the service log under this request id",
        code="attestation_refused",
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (the rest is not read into memory)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json(model: schemas.Model) -> Response:
    return Response(model.__pydantic_serializer__.to_json(model), media_type="application/json")


@router.post(
    "/challenge",
    response_model=schemas.Challenge,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": schemas.ChallengeRequest.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    )
                }
            },
        }
    },
)
async def challenge(request: Request) -> Response:
    """A single-use nonce for one device, valid for 60 seconds (no user token: device endpoint)."""
    body = await _read_body(request, MAX_CHALLENGE_BODY)
    try:
        if body is None:
            raise ValueError("the body is too large")
        device_id = parse_device_id(json.loads(body)["device_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequestError(
            'send {"device_id": "<128 lowercase hex characters>"}', code="invalid_request"
        ) from exc
    now: dt.datetime = request.app.state.clock.now()
    storage: Storage = request.app.state.storage
    nonce = secrets.token_bytes(NONCE_SIZE)
    expires_at = now + NONCE_TTL
    with storage.write_transaction() as connection:
        enabled = connection.execute(
            select(_DEVICES.c.enabled).where(_DEVICES.c.device_id == device_id)
        ).scalar()
        if enabled:
            connection.execute(delete(_NONCES).where(_NONCES.c.expires_at < now))
            connection.execute(
                insert(_NONCES).values(nonce=nonce, device_id=device_id, expires_at=expires_at)
            )
    if not enabled:
        reason = "the device is not claimed" if enabled is None else "the device is disabled"
        code = "unclaimed_device" if enabled is None else "device_disabled"
        _refuse(request, device_id, code, reason)
    return _json(
        schemas.Challenge(
            nonce=base64.urlsafe_b64encode(nonce).rstrip(b"=").decode(), expires_at=expires_at
        )
    )


def _consume_nonce(connection: Connection, claims: EvidenceClaims, now: dt.datetime) -> None:
    row = connection.execute(
        delete(_NONCES)
        .where(_NONCES.c.nonce == claims.nonce)
        .returning(_NONCES.c.device_id, _NONCES.c.expires_at)
    ).first()
    if row is None:
        raise _Refusal("unknown_nonce", "the nonce was never issued or is already used")
    if row.device_id != claims.device_id:
        raise _Refusal(
            "nonce_of_another_device", f"the nonce was issued to device {row.device_id[:16]}…"
        )
    if row.expires_at <= now:
        raise _Refusal("expired_nonce", f"the nonce expired at {row.expires_at.isoformat()}")


def _appraise(connection: Connection, claims: EvidenceClaims) -> Any:
    """The device's tenant if its evidence is good; `_Refusal` otherwise."""
    device = connection.execute(
        select(_DEVICES.c.tenant_id, _DEVICES.c.enabled).where(
            _DEVICES.c.device_id == claims.device_id
        )
    ).first()
    if device is None:
        raise _Refusal("unclaimed_device", "the device is not claimed")
    if not device.enabled:
        raise _Refusal("device_disabled", "the device is disabled", record=True)
    stored = connection.execute(
        select(_RELEASES.c.measurements).where(_RELEASES.c.version == claims.os_version)
    ).scalar()
    release = None if stored is None else ReferenceValues.from_stored(claims.os_version, stored)
    minimums = dict(connection.execute(select(_MINIMUMS.c.component, _MINIMUMS.c.minimum)).all())
    try:
        appraise(claims, release=release, minimums=minimums)
    except AppraisalError as exc:
        raise _Refusal(exc.code, exc.detail, record=True) from exc
    return device.tenant_id


def _record(
    connection: Connection,
    claims: EvidenceClaims,
    now: dt.datetime,
    *,
    code: str | None,
    certificate_expires_at: dt.datetime | None = None,
) -> int:
    values: dict[str, Any] = {
        "last_attestation_at": now,
        "last_attestation_result": (
            schemas.AttestationResult.FAILED if code else schemas.AttestationResult.PASSED
        ).value,
        "last_attestation_code": code,
        "os_version": claims.os_version,
    }
    query = update(_DEVICES).where(_DEVICES.c.device_id == claims.device_id)
    if code is None:
        values["certificate_expires_at"] = certificate_expires_at
        query = query.where(_DEVICES.c.enabled.is_(True))
    return connection.execute(query.values(**values)).rowcount


def _grant(
    request: Request, claims: EvidenceClaims, tenant_id: Any, issuer: CurrentIssuer
) -> tuple[schemas.AttestationGrant, dt.datetime]:
    now: dt.datetime = request.app.state.clock.now()
    public_key = claims.confirmation_key
    if public_key is None:
        public_key = public_key_from_device_id(claims.device_id)
    certificate = issue_device_certificate(
        claims.device_id, public_key, issuer=issuer.issuer, now=now
    )
    expires_at = certificate.not_valid_after_utc
    credential_expires_at = min(now + CREDENTIAL_LIFETIME, expires_at)
    grant = schemas.AttestationGrant(
        device_id=claims.device_id,
        certificate=to_pem(certificate),
        chain=list(issuer.chain),
        certificate_expires_at=expires_at,
        credential=issue_credential(
            request.app.state.credential_key,
            device_id=claims.device_id,
            tenant_id=tenant_id,
            expires_at=credential_expires_at,
        ),
        credential_expires_at=credential_expires_at,
    )
    return grant, expires_at


@router.post(
    "/evidence",
    response_model=schemas.AttestationGrant,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {EVIDENCE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def evidence(request: Request) -> Response:
    """Appraise signed evidence (EAT in COSE_Sign1) and answer a 24-hour device certificate."""
    body = await _read_body(request, MAX_EVIDENCE_SIZE)
    if body is None:
        _refuse(request, None, "oversized_evidence", f"evidence over {MAX_EVIDENCE_SIZE} bytes")
    now: dt.datetime = request.app.state.clock.now()
    try:
        claims = verify_device_evidence(body, now=int(now.timestamp()))
    except FormatError as exc:
        _refuse(request, None, "invalid_evidence", str(exc))
    storage: Storage = request.app.state.storage
    authority: CertificateAuthority = request.app.state.ca
    refusal: _Refusal | None = None
    grant: schemas.AttestationGrant | None = None
    tenant_id: Any = None
    with storage.write_transaction() as connection:
        try:
            _consume_nonce(connection, claims, now)
            tenant_id = _appraise(connection, claims)
        except _Refusal as exc:
            refusal = exc
            if exc.record:
                _record(connection, claims, now, code=exc.code)
        else:
            issuer = authority.cached_issuer(tenant_id, now=now)
            if issuer is not None:
                grant, expires_at = _grant(request, claims, tenant_id, issuer)
                _record(connection, claims, now, code=None, certificate_expires_at=expires_at)
    if refusal is not None:
        _refuse(request, claims.device_id, refusal.code, refusal.detail)
    if grant is None:
        issuer = authority.current_issuer(tenant_id, now=now, request_id=request.state.request_id)
        grant, expires_at = _grant(request, claims, tenant_id, issuer)
        with storage.write_transaction() as connection:
            recorded = _record(
                connection, claims, now, code=None, certificate_expires_at=expires_at
            )
        if not recorded:
            _refuse(request, claims.device_id, "device_disabled", "disabled meanwhile")
    log.debug(
        "device %s… attested; certificate until %s",
        claims.device_id[:16],
        grant.certificate_expires_at,
    )
    return _json(grant)
