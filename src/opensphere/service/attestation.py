"""Device attestation: `challenge` → `evidence` → appraisal → device certificate.

These two endpoints are the fleet's hot path (every device, daily and at boot), so they
read and answer bytes directly and talk to the database through Core statements run on the
DBAPI connection (`hot_statements`). A challenge reads and writes nothing: its nonce is
MAC-bound to the device ID and its issue time (`service.nonces`), so any service process
sharing the key store can check it; the evidence's one write (for a pass, a single UPDATE)
uses the nonce up on the device's row (nonces are used in issue order, each once) and records
the verdict. On SQLite it runs on the event loop when the write lock is free, in a worker
thread when another connection holds it (`HotTransactions`).

The device authenticates by what it signs, not by a user token. Whatever the reason for a
refusal, the device gets the same answer (403 `attestation_refused`); the reason is in the
service log under the request id. A refusal stores nothing, except that a nonce is used up
once evidence signed by its device presents it, and then the failed verdict is recorded on
the device.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.sql.elements import BindParameter

from opensphere.api import schemas
from opensphere.formats.device_id import parse_device_id, public_key_from_device_id
from opensphere.formats.errors import FormatError
from opensphere.formats.evidence import MAX_EVIDENCE_SIZE, EvidenceClaims
from opensphere.formats.tpm_evidence import TPM_EVIDENCE_CONTENT_TYPE
from opensphere.service.appraisal import (
    AppraisalError,
    ReferenceValues,
    appraise,
    verify_device_evidence,
)
from opensphere.service.bodies import read_body
from opensphere.service.ca.authority import CertificateAuthority, CurrentIssuer
from opensphere.service.ca.core import issue_device_certificate, to_pem
from opensphere.service.clock import Clock
from opensphere.service.device_auth import CREDENTIAL_LIFETIME, DeviceCredentials
from opensphere.service.errors import DeviceRefusedError, InvalidRequestError
from opensphere.service.hot_statements import HotStatement, HotTransaction, HotTransactions
from opensphere.service.nonces import NONCE_TTL, NonceError, Nonces
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import (
    Device,
    OsRelease,
    SecurityVersionMinimum,
)
from opensphere.service.tpm_appraisal import TpmEvidence, verify_tpm_evidence
from opensphere.service.tpm_attestation import advance_tpm_state

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter(prefix="/v1/device/attestation", tags=["device attestation"])

MAX_CHALLENGE_BODY = 1024
EVIDENCE_MEDIA_TYPE = "application/eat+cwt"
_DEVICES = cast(Table, Device.__table__)
_RELEASES = cast(Table, OsRelease.__table__)
_MINIMUMS = cast(Table, SecurityVersionMinimum.__table__)

# The hot path's statements are built once and compiled once per dialect (`HotStatement`):
# building one costs more than running it, and so does SQLAlchemy's execution machinery.
_TENANT_OF_DEVICE = HotStatement(
    select(_DEVICES.c.tenant_id).where(_DEVICES.c.device_id == bindparam("p_device_id"))
)
_FRESH_NONCE = or_(
    _DEVICES.c.last_nonce_issued_at.is_(None),
    _DEVICES.c.last_nonce_issued_at < bindparam("p_issued_at"),
)
_USE_NONCE = HotStatement(
    update(_DEVICES)
    .where(_DEVICES.c.device_id == bindparam("p_device_id"), _FRESH_NONCE)
    .values(last_nonce_issued_at=bindparam("p_issued_at"))
)
_VERDICT: dict[str, BindParameter[Any]] = {
    "last_attestation_at": bindparam("p_at"),
    "last_attestation_result": bindparam("p_result"),
    "last_attestation_code": bindparam("p_code"),
    "os_version": bindparam("p_os_version"),
}
_RECORD_PASS = HotStatement(
    update(_DEVICES)
    .where(_DEVICES.c.device_id == bindparam("p_device_id"), _DEVICES.c.enabled.is_(True))
    .values(**_VERDICT, certificate_expires_at=bindparam("p_certificate_expires_at"))
)
# The common case in one statement: a pass, on an enabled device, with a fresh nonce.
_RECORD_PASS_USING_NONCE = HotStatement(
    update(_DEVICES)
    .where(
        _DEVICES.c.device_id == bindparam("p_device_id"),
        _DEVICES.c.enabled.is_(True),
        _FRESH_NONCE,
    )
    .values(
        **_VERDICT,
        certificate_expires_at=bindparam("p_certificate_expires_at"),
        last_nonce_issued_at=bindparam("p_issued_at"),
    )
)
_RECORD_FAILURE = HotStatement(
    update(_DEVICES).where(_DEVICES.c.device_id == bindparam("p_device_id")).values(**_VERDICT)
)


class _Refusal(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _refuse(request_id: str, device_id: str | None, code: str, detail: str) -> NoReturn:
    log.warning(
        "attestation refused (request %s, device %s): %s: %s",
        request_id,
        "-" if device_id is None else device_id[:16] + "…",
        code,
        detail,
    )
    raise DeviceRefusedError(
        "attestation refused; the operator can find why in the service log under this request id",
        code="attestation_refused",
    )


def _json(model: schemas.Model) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


def _json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


class ReferenceCache:
    """OS reference values and minimum versions, read from the database at most every few seconds.

    They change when the operator publishes or withdraws a release, rarely; every
    attestation reads them. This process forgets them at once when it changes them;
    other processes see a change within `ttl`.
    """

    def __init__(self, ttl: dt.timedelta = dt.timedelta(seconds=5)) -> None:
        self.ttl = ttl
        self._loaded_at: dt.datetime | None = None
        self._releases: dict[str, ReferenceValues] = {}
        self._minimums: dict[str, int] = {}

    def invalidate(self) -> None:
        self._loaded_at = None

    def get(
        self, storage: Storage, version: str, now: dt.datetime
    ) -> tuple[ReferenceValues | None, dict[str, int]]:
        if self._loaded_at is None or not (self._loaded_at <= now < self._loaded_at + self.ttl):
            with storage.engine.connect() as connection:
                self._releases = {
                    row.version: ReferenceValues.from_stored(row.version, row.measurements)
                    for row in connection.execute(
                        select(_RELEASES.c.version, _RELEASES.c.measurements)
                    )
                }
                self._minimums = dict(
                    connection.execute(select(_MINIMUMS.c.component, _MINIMUMS.c.minimum)).all()
                )
            self._loaded_at = now
        return self._releases.get(version), self._minimums


class ClaimedDevices:
    """Which tenant a claimed device is in, read from the registry once per process.

    Claiming is permanent, so an entry never goes stale; whether the device is enabled is
    checked by every evidence's write transaction.
    """

    def __init__(self, limit: int = 1 << 16) -> None:
        self.limit = limit
        self._tenants: dict[str, Any] = {}

    async def tenant_of(self, hot: HotTransactions, device_id: str) -> Any:
        """The device's tenant, or None if it is not claimed."""
        tenant_id = self._tenants.get(device_id)
        if tenant_id is None:
            rows = (await hot.execute(_TENANT_OF_DEVICE, {"p_device_id": device_id})).rows
            if not rows:
                return None
            if len(self._tenants) >= self.limit:
                self._tenants.clear()
            tenant_id = self._tenants[device_id] = rows[0][0]
        return tenant_id


def _verdict(
    claims: EvidenceClaims,
    now: dt.datetime,
    *,
    code: str | None,
    certificate_expires_at: dt.datetime | None = None,
    nonce_issued_at: int | None = None,
) -> tuple[HotStatement, dict[str, Any]]:
    """The statement that stores a verdict: a pass is stored only on a device that is
    (still) enabled, and with `nonce_issued_at` only if that nonce is fresh, which it then
    uses up."""
    values: dict[str, Any] = {
        "p_device_id": claims.device_id,
        "p_at": now,
        "p_result": (
            schemas.AttestationResult.FAILED if code else schemas.AttestationResult.PASSED
        ).value,
        "p_code": code,
        "p_os_version": claims.os_version,
    }
    if code is not None:
        return _RECORD_FAILURE, values
    values["p_certificate_expires_at"] = certificate_expires_at
    if nonce_issued_at is None:
        return _RECORD_PASS, values
    values["p_issued_at"] = nonce_issued_at
    return _RECORD_PASS_USING_NONCE, values


def _record(
    transaction: HotTransaction, claims: EvidenceClaims, now: dt.datetime, **verdict: Any
) -> int:
    return transaction.execute(*_verdict(claims, now, **verdict)).rowcount


def _grant(
    credentials: DeviceCredentials,
    claims: EvidenceClaims,
    tenant_id: Any,
    issuer: CurrentIssuer,
    now: dt.datetime,
) -> schemas.AttestationGrant:
    public_key = claims.confirmation_key
    if public_key is None:
        public_key = public_key_from_device_id(claims.device_id)
    certificate = issue_device_certificate(
        claims.device_id, public_key, issuer=issuer.issuer, now=now
    )
    expires_at = certificate.not_valid_after_utc
    credential_expires_at = min(now + CREDENTIAL_LIFETIME, expires_at)
    return schemas.AttestationGrant(
        device_id=claims.device_id,
        certificate=to_pem(certificate),
        chain=list(issuer.chain),
        certificate_expires_at=expires_at,
        credential=credentials.issue(
            device_id=claims.device_id,
            tenant_id=tenant_id,
            expires_at=credential_expires_at,
        ),
        credential_expires_at=credential_expires_at,
    )


def _check_tpm(
    transaction: HotTransaction, claims: EvidenceClaims, now: dt.datetime, tpm: TpmEvidence
) -> None:
    """The TPM's bound key and counters, after the nonce: a failure is the device's verdict."""
    try:
        advance_tpm_state(transaction.core_connection(), tpm)
    except AppraisalError as exc:
        _record(transaction, claims, now, code=exc.code)
        raise _Refusal(exc.code, exc.detail) from exc


def _in_core_transaction(storage: Storage, work: Callable[[HotTransaction], T]) -> T:
    with storage.write_transaction() as connection:
        return work(HotTransaction.on_connection(connection))


def _appraisal_code(claims: EvidenceClaims, references: tuple[Any, dict[str, int]]) -> str | None:
    release, minimums = references
    try:
        appraise(claims, release=release, minimums=minimums)
    except AppraisalError as exc:
        log.info("appraisal of device %s…: %s: %s", claims.device_id[:16], exc.code, exc.detail)
        return exc.code
    return None


class AttestationService:
    """The attestation hot path, free of the web framework.

    The ASGI routes below and the HTTP server's device lane (`service.fast_lane`) both
    answer through it: each takes the request body (None when it passed its size limit) and
    the request id, answers JSON bytes, and raises a `ServiceError` to refuse.
    """

    def __init__(
        self,
        *,
        storage: Storage,
        hot: HotTransactions,
        authority: CertificateAuthority,
        clock: Clock,
        nonces: Nonces,
        credentials: DeviceCredentials,
        references: ReferenceCache,
    ) -> None:
        self.storage = storage
        self.hot = hot
        self.authority = authority
        self.clock = clock
        self.nonces = nonces
        self.credentials = credentials
        self.references = references
        self.claimed = ClaimedDevices()

    def challenge(self, body: bytes | None) -> bytes:
        """A single-use nonce for one device ID, valid for `NONCE_TTL`.

        It reads and writes nothing: the nonce is bound to the device ID (`service.nonces`),
        and whether the device is claimed, enabled and genuine is its evidence's question.
        So every well-formed device ID gets a nonce, and the answer tells an unauthenticated
        caller nothing about the registry.
        """
        try:
            if body is None:
                raise ValueError("the body is too large")
            device_id = parse_device_id(json.loads(body)["device_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequestError(
                'send {"device_id": "<128 lowercase hex characters>"}', code="invalid_request"
            ) from exc
        now = self.clock.now()
        nonce = self.nonces.issue(device_id, now, secrets.token_bytes(8))
        return _json(
            schemas.Challenge(
                nonce=base64.urlsafe_b64encode(nonce).rstrip(b"=").decode(),
                expires_at=now + NONCE_TTL,
            )
        )

    async def evidence(self, body: bytes | None, content_type: str, request_id: str) -> bytes:
        """Appraise signed evidence (EAT in COSE_Sign1); answer a 24-hour device certificate.

        The Content-Type's EAT profile picks the verifier: an emulated root of trust's
        evidence, or a TPM's (`formats.tpm_evidence`: the same envelope carrying a quote).
        The certificate and credential are signed before the one write transaction, which
        uses up the nonce and records the verdict.
        """
        if body is None:
            _refuse(
                request_id, None, "oversized_evidence", f"evidence over {MAX_EVIDENCE_SIZE} bytes"
            )
        now = self.clock.now()
        tpm: TpmEvidence | None = None
        try:
            if content_type == TPM_EVIDENCE_CONTENT_TYPE:
                tpm = verify_tpm_evidence(body)
                claims = tpm.as_evidence_claims()
            else:
                claims = verify_device_evidence(body, now=int(now.timestamp()))
        except FormatError as exc:
            _refuse(request_id, None, "invalid_evidence", str(exc))
        except AppraisalError as exc:
            _refuse(request_id, None, exc.code, exc.detail)
        try:
            issued_at = self.nonces.check(claims.nonce, claims.device_id, now)
        except NonceError as exc:
            _refuse(request_id, claims.device_id, exc.code, exc.detail)
        tenant_id = await self.claimed.tenant_of(self.hot, claims.device_id)
        if tenant_id is None:
            _refuse(request_id, claims.device_id, "unclaimed_device", "the device is not claimed")
        release, minimums = self.references.get(self.storage, claims.os_version, now)
        # A TPM host reports no fuses: its OS is pinned by the PCR reference values alone.
        verdict = _appraisal_code(claims, (release, minimums if tpm is None else {}))
        grant = None
        if verdict is None:
            issuer = self.authority.cached_issuer(tenant_id, now=now)
            if issuer is None:
                issuer = await self.hot.in_thread(
                    self.authority.current_issuer, tenant_id, now=now, request_id=request_id
                )
            grant = _grant(self.credentials, claims, tenant_id, issuer, now)

        if grant is not None and tpm is None:  # the common case, in one statement
            passed = _verdict(
                claims,
                now,
                code=None,
                certificate_expires_at=grant.certificate_expires_at,
                nonce_issued_at=issued_at,
            )
            if (await self.hot.execute(*passed)).rowcount:
                return _json(grant)

        def decide(transaction: HotTransaction) -> _Refusal | None:
            """Everything else, in one transaction that tells why a pass was not stored."""
            values = {"p_device_id": claims.device_id, "p_issued_at": issued_at}
            if not transaction.execute(_USE_NONCE, values).rowcount:
                return _Refusal(
                    "unknown_nonce", "the nonce is used, or older than one the device used"
                )
            try:
                if tpm is not None:
                    _check_tpm(transaction, claims, now, tpm)
            except _Refusal as exc:
                return exc
            if verdict is not None:
                _record(transaction, claims, now, code=verdict)
                return _Refusal(verdict, "the evidence does not match the registered references")
            assert grant is not None  # signed above when there is no verdict
            expires_at = grant.certificate_expires_at
            if not _record(transaction, claims, now, code=None, certificate_expires_at=expires_at):
                _record(transaction, claims, now, code="device_disabled")
                return _Refusal("device_disabled", "the device is disabled")
            return None

        if tpm is None:
            refusal = await self.hot.run(decide)
        else:  # TPM state is stored by code written against a Core connection
            refusal = await self.hot.in_thread(_in_core_transaction, self.storage, decide)
        if refusal is not None:
            _refuse(request_id, claims.device_id, refusal.code, refusal.detail)
        assert grant is not None  # no verdict, no refusal
        return _json(grant)


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
    service: AttestationService = request.app.state.attestation
    body = await read_body(request, MAX_CHALLENGE_BODY)
    return _json_response(service.challenge(body))


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
    service: AttestationService = request.app.state.attestation
    body = await read_body(request, MAX_EVIDENCE_SIZE)
    content_type = request.headers.get("content-type", "")
    return _json_response(await service.evidence(body, content_type, request.state.request_id))
