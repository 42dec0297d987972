"""Device capability files: the service's signed grant of extra powers to one device.

Azure Sphere's capability file (reference §2.6) is bound to one device ID and lists
capabilities by number; appDevelopment (0xB) lets a device run test-signed apps and be
sideloaded, fieldServicing (0xD) lets a technician service a finalised device. We keep the
binding, the numbers and "zero or more capabilities for a single device", but carry them in a
COSE_Sign1 (ES256) instead of the original's 136-byte record plus image metadata, so that the
project's one signature path verifies it.

Payload: a CBOR map in deterministic encoding; the protected ``typ`` is
``CAPABILITY_CONTENT_TYPE`` so no other signed format can pass for a capability file.

===  ============  ==========================================================
key  name          value
===  ============  ==========================================================
1    version       uint, ``CAPABILITY_FORMAT_VERSION``
2    device-id     bstr 64, the device ID X‖Y (as in the original's record)
3    capabilities  [uint, ...] strictly ascending, each a ``DeviceCapability``
4    issued-at     uint seconds
5    expires-at    optional uint seconds; absent means no expiry
6    signer        bstr 32, SHA-256 thumbprint of the signer's SubjectPublicKeyInfo
===  ============  ==========================================================

The signer thumbprint is inside the signed payload (the COSE headers here carry only the
algorithm and ``typ``), so the verifier picks the key from its trusted set and a file can never
claim one signer while being checked against another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, TypeVar

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.formats.device_id import DeviceId, device_id_from_bytes, device_id_to_bytes
from opensphere.formats.errors import FormatError
from opensphere.formats.signatures import (
    Signer,
    decode_sign1_unverified,
    encode_sign1,
    loads_canonical_cbor,
    verify_sign1,
)

CAPABILITY_FORMAT_VERSION: Final = 1
CAPABILITY_CONTENT_TYPE: Final = "application/vnd.opensphere.capability+cose"
MAX_CAPABILITY_SIZE: Final = 2048
THUMBPRINT_SIZE: Final = 32
_T = TypeVar("_T")


class DeviceCapability(IntEnum):
    """The customer capabilities, with the original's numbers (reference §2.6)."""

    APP_DEVELOPMENT = 0xB
    FIELD_SERVICING = 0xD

    @property
    def display_name(self) -> str:
        """The name users know from the original's CLI."""
        return _DISPLAY_NAMES[self]


_DISPLAY_NAMES: Final = {
    DeviceCapability.APP_DEVELOPMENT: "appDevelopment",
    DeviceCapability.FIELD_SERVICING: "fieldServicing",
}


class _Field(IntEnum):
    VERSION = 1
    DEVICE_ID = 2
    CAPABILITIES = 3
    ISSUED_AT = 4
    EXPIRES_AT = 5
    SIGNER = 6


class CapabilityError(FormatError):
    """A capability file is malformed, untrusted or not for this device at this time."""


class CapabilityDeviceMismatchError(CapabilityError):
    """The file grants capabilities to another device; it never works on this one."""

    def __init__(self, *, expected: DeviceId, actual: DeviceId) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the capability file is for device {actual[:16]}…, not this device ({expected[:16]}…)"
        )


class UntrustedCapabilitySignerError(CapabilityError):
    """The file names a signer that this device does not trust to grant capabilities."""

    def __init__(self, thumbprint: bytes) -> None:
        self.thumbprint = thumbprint
        super().__init__(f"capability signer {thumbprint.hex()} is not trusted by this device")


class ExpiredCapabilityError(CapabilityError):
    """The grant has expired; ask the service for a new capability file."""

    def __init__(self, *, expires_at: int, now: int) -> None:
        self.expires_at = expires_at
        self.now = now
        super().__init__(f"the capability file expired {now - expires_at} s ago")


@dataclass(frozen=True, slots=True)
class CapabilityGrant:
    """What a capability file says: which capabilities, for which device, until when."""

    device_id: DeviceId
    capabilities: frozenset[DeviceCapability]
    issued_at: int
    signer_thumbprint: bytes
    expires_at: int | None = None

    def __post_init__(self) -> None:
        device_id_to_bytes(self.device_id)  # refuses anything but a well-formed device ID
        object.__setattr__(
            self, "capabilities", frozenset(DeviceCapability(c) for c in self.capabilities)
        )
        _check_time(self.issued_at, "issued-at")
        if self.expires_at is not None:
            _check_time(self.expires_at, "expires-at")
            if self.expires_at <= self.issued_at:
                raise CapabilityError("a capability file must expire after it is issued")
        if not isinstance(self.signer_thumbprint, bytes) or len(self.signer_thumbprint) != (
            THUMBPRINT_SIZE
        ):
            raise CapabilityError(f"the signer thumbprint must be {THUMBPRINT_SIZE} bytes")

    def grants(self, capability: DeviceCapability) -> bool:
        return capability in self.capabilities


def encode_capability_file(grant: CapabilityGrant, sign: Signer) -> bytes:
    """Sign a grant; ``sign`` must belong to the key ``grant.signer_thumbprint`` names."""
    body: dict[int, Any] = {
        _Field.VERSION: CAPABILITY_FORMAT_VERSION,
        _Field.DEVICE_ID: device_id_to_bytes(grant.device_id),
        _Field.CAPABILITIES: sorted(int(c) for c in grant.capabilities),
        _Field.ISSUED_AT: grant.issued_at,
        _Field.SIGNER: grant.signer_thumbprint,
    }
    if grant.expires_at is not None:
        body[_Field.EXPIRES_AT] = grant.expires_at
    payload = cbor2.dumps({int(key): value for key, value in body.items()}, canonical=True)
    return encode_sign1(payload, sign, content_type=CAPABILITY_CONTENT_TYPE)


def decode_capability_unverified(data: bytes) -> CapabilityGrant:
    """Parse a capability file WITHOUT checking its signature: for display and key lookup."""
    payload = decode_sign1_unverified(
        data, content_type=CAPABILITY_CONTENT_TYPE, max_size=MAX_CAPABILITY_SIZE
    )
    raw = loads_canonical_cbor(payload, what="the capability file")
    if not isinstance(raw, dict):
        raise CapabilityError("the capability file payload must be a CBOR map")
    version = raw.get(_Field.VERSION)
    if version != CAPABILITY_FORMAT_VERSION:
        raise CapabilityError(
            f"unknown capability file version {version!r}; this device understands "
            f"version {CAPABILITY_FORMAT_VERSION}"
        )
    unknown = sorted(str(key) for key in raw if key not in {int(f) for f in _Field})
    if unknown:
        raise CapabilityError(f"the capability file has unknown fields {unknown}")
    numbers = _take(raw, _Field.CAPABILITIES, list)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        raise CapabilityError("capabilities must be a list of integers")
    if numbers != sorted(set(numbers)):
        raise CapabilityError("capabilities must be listed once each, in ascending order")
    known = {int(c) for c in DeviceCapability}
    strange = [n for n in numbers if n not in known]
    if strange:
        # Unknown numbers are refused, not skipped: a grant is read the same way everywhere.
        raise CapabilityError(f"unknown capability numbers {[hex(n) for n in strange]}")
    try:
        device_id = device_id_from_bytes(_take(raw, _Field.DEVICE_ID, bytes))
    except FormatError as exc:
        raise CapabilityError(str(exc)) from exc
    return CapabilityGrant(
        device_id=device_id,
        capabilities=frozenset(DeviceCapability(n) for n in numbers),
        issued_at=_take(raw, _Field.ISSUED_AT, int),
        signer_thumbprint=_take(raw, _Field.SIGNER, bytes),
        expires_at=_take(raw, _Field.EXPIRES_AT, int) if _Field.EXPIRES_AT in raw else None,
    )


def verify_capability_file(
    data: bytes,
    trusted_keys: Mapping[bytes, ec.EllipticCurvePublicKey],
    *,
    device_id: DeviceId,
    now: int,
) -> CapabilityGrant:
    """Return the grant only if a trusted key signed it for ``device_id`` and it is current.

    ``issued_at`` in the future is accepted: a device's clock may be behind the service's,
    and a grant from the future gives nothing that one from the past would not.
    """
    grant = decode_capability_unverified(data)
    public_key = trusted_keys.get(grant.signer_thumbprint)
    if public_key is None:
        raise UntrustedCapabilitySignerError(grant.signer_thumbprint)
    verify_sign1(
        data, public_key, content_type=CAPABILITY_CONTENT_TYPE, max_size=MAX_CAPABILITY_SIZE
    )
    if grant.device_id != device_id:
        raise CapabilityDeviceMismatchError(expected=device_id, actual=grant.device_id)
    if grant.expires_at is not None and now >= grant.expires_at:
        raise ExpiredCapabilityError(expires_at=grant.expires_at, now=now)
    return grant


def _take(raw: dict[Any, Any], key: _Field, kind: type[_T]) -> _T:
    if key not in raw:
        raise CapabilityError(f"the capability file lacks {key.name.lower()} ({int(key)})")
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CapabilityError(
            f"{key.name.lower()} ({int(key)}) must be {kind.__name__}, not {type(value).__name__}"
        )
    return value


def _check_time(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CapabilityError(f"{what} must be a non-negative integer number of seconds")
