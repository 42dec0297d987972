"""Claim statement: the device's own consent to be claimed into one tenant.

Azure Sphere claims a device by ID alone, so anyone who reads an ID off a label or a log
can claim someone else's device. Here the device signs "claim me into tenant T" with its
identity key, and the verifier takes the key from the device ID inside the statement:
a statement is only valid if the device itself made it.

Payload: a CBOR map in deterministic encoding, wrapped in a COSE_Sign1 (ES256) whose
protected `typ` is `CLAIM_CONTENT_TYPE`.

===  ==========  ===============================================
key  name        value
===  ==========  ===============================================
1    version     uint, `CLAIM_STATEMENT_VERSION`
2    device-id   tstr, 128 lowercase hex characters
3    tenant-id   tstr, UUID in canonical lowercase form
4    issued-at   uint seconds
5    nonce       optional bstr 8-64, a service challenge
===  ==========  ===============================================
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

import cbor2

from opensphere.formats.device_id import DeviceId, parse_device_id, public_key_from_device_id
from opensphere.formats.errors import FormatError
from opensphere.formats.signatures import (
    Signer,
    decode_sign1_unverified,
    encode_sign1,
    loads_canonical_cbor,
    verify_sign1,
)

CLAIM_STATEMENT_VERSION = 1
CLAIM_CONTENT_TYPE = "application/vnd.opensphere.claim+cose"
MAX_CLAIM_STATEMENT_SIZE = 1024
_NONCE_SIZES = range(8, 65)
T = TypeVar("T")


class ClaimField(IntEnum):
    """The map keys of the table in the module docstring."""

    VERSION = 1
    DEVICE_ID = 2
    TENANT_ID = 3
    ISSUED_AT = 4
    NONCE = 5


class StaleClaimStatementError(FormatError):
    """The claim statement was made too long ago, or claims to come from the future."""


@dataclass(frozen=True, slots=True)
class ClaimStatement:
    """A device's request to be claimed into `tenant_id`."""

    device_id: DeviceId
    tenant_id: uuid.UUID
    issued_at: int
    nonce: bytes | None = None

    def __post_init__(self) -> None:
        parse_device_id(self.device_id)
        if not isinstance(self.tenant_id, uuid.UUID):
            raise FormatError("the tenant ID must be a UUID")
        if not isinstance(self.issued_at, int) or isinstance(self.issued_at, bool):
            raise FormatError("issued-at must be an integer number of seconds")
        if self.issued_at < 0:
            raise FormatError("issued-at must not be negative")
        if self.nonce is not None and (
            not isinstance(self.nonce, bytes) or len(self.nonce) not in _NONCE_SIZES
        ):
            raise FormatError(
                f"the nonce must be {_NONCE_SIZES.start}-{_NONCE_SIZES.stop - 1} bytes"
            )


def encode_claim_statement(statement: ClaimStatement, sign: Signer) -> bytes:
    """Sign a claim statement with the identity key through the root of trust's `sign`."""
    body: dict[int, Any] = {
        ClaimField.VERSION.value: CLAIM_STATEMENT_VERSION,
        ClaimField.DEVICE_ID.value: statement.device_id,
        ClaimField.TENANT_ID.value: str(statement.tenant_id),
        ClaimField.ISSUED_AT.value: statement.issued_at,
    }
    if statement.nonce is not None:
        body[ClaimField.NONCE.value] = statement.nonce
    payload = cbor2.dumps(body, canonical=True)
    return encode_sign1(payload, sign, content_type=CLAIM_CONTENT_TYPE)


def decode_claim_statement_unverified(data: bytes) -> ClaimStatement:
    """Parse a claim statement WITHOUT checking its signature (for logs and errors)."""
    payload = decode_sign1_unverified(
        data, content_type=CLAIM_CONTENT_TYPE, max_size=MAX_CLAIM_STATEMENT_SIZE
    )
    raw = loads_canonical_cbor(payload, what="the claim statement")
    if not isinstance(raw, dict):
        raise FormatError("the claim statement must be a CBOR map")
    version = raw.get(ClaimField.VERSION)
    if version != CLAIM_STATEMENT_VERSION:
        raise FormatError(
            f"unknown claim statement version {version!r}; this verifier understands "
            f"version {CLAIM_STATEMENT_VERSION}"
        )
    unknown = [key for key in raw if key not in {int(f) for f in ClaimField}]
    if unknown:
        raise FormatError(f"the claim statement has unknown fields {unknown!r}")
    return ClaimStatement(
        device_id=parse_device_id(_take(raw, ClaimField.DEVICE_ID, str)),
        tenant_id=_tenant_id(_take(raw, ClaimField.TENANT_ID, str)),
        issued_at=_take(raw, ClaimField.ISSUED_AT, int),
        nonce=_take(raw, ClaimField.NONCE, bytes) if ClaimField.NONCE in raw else None,
    )


def verify_claim_statement(
    data: bytes, *, now: int, max_age: int, max_clock_skew: int = 60
) -> ClaimStatement:
    """Verify that the device named inside the statement signed it, recently.

    The caller still checks the tenant is the one being claimed into, the nonce if it
    issued one, and that the device is genuine (its IDevID).
    """
    statement = decode_claim_statement_unverified(data)
    verify_sign1(
        data,
        public_key_from_device_id(statement.device_id),
        content_type=CLAIM_CONTENT_TYPE,
        max_size=MAX_CLAIM_STATEMENT_SIZE,
    )
    if statement.issued_at > now + max_clock_skew:
        raise StaleClaimStatementError(
            f"the claim statement was made {statement.issued_at - now} s in the future; "
            "check the device clock"
        )
    if now - statement.issued_at > max_age:
        raise StaleClaimStatementError(
            f"the claim statement is {now - statement.issued_at} s old; the limit is "
            f"{max_age} s: make a new one"
        )
    return statement


def _take(raw: dict[Any, Any], key: ClaimField, kind: type[T]) -> T:
    if key not in raw:
        raise FormatError(f"the claim statement lacks {key.name.lower()} ({int(key)})")
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(
            f"{key.name.lower()} ({int(key)}) must be {kind.__name__}, not {type(value).__name__}"
        )
    return value


def _tenant_id(text: str) -> uuid.UUID:
    try:
        tenant_id = uuid.UUID(text)
    except ValueError as exc:
        raise FormatError(f"the tenant ID {text!r} is not a UUID") from exc
    if str(tenant_id) != text:
        raise FormatError(f"the tenant ID must be a lowercase hyphenated UUID, not {text!r}")
    return tenant_id
