"""Device evidence: an EAT (RFC 9711) carried in a CWT, signed as a COSE_Sign1 with ES256.

The root of trust signs the claims below with the device identity key; the service
appraises them (nonce, measurements, OS version, states) before it issues a certificate.

Claims (CBOR map keys). Standard ones come from the IANA CWT registry; ours use the
private-use range below -65536 (RFC 8392 §4) so they can never collide with a future
registration:

=========  =====================  ==============================================
key        name                   value
=========  =====================  ==============================================
6          iat                    issued-at, uint seconds
8          cnf                    optional {1: COSE_Key}: a P-256 key to certify (RFC 8747)
10         eat_nonce              bstr, 8-64 bytes, the service's challenge
256        ueid                   bstr 0x01 ‖ SHA-256(device ID bytes) (33 bytes)
265        eat_profile            tstr, `EVIDENCE_PROFILE`; selects this table
-65537     device-id              bstr, the 64-byte device ID (X‖Y)
-65538     measurements           [[stage tstr, SHA-256 digest bstr], ...]
-65539     boot-register          bstr 32, SHA-256 chain over the measurements
-65540     os-version             tstr
-65541     security-state         tstr, a `SecurityState`
-65542     manufacturing-state    tstr, a `ManufacturingState`
-65543     security-versions      {component tstr: uint}
=========  =====================  ==============================================

The UEID is a hash because RFC 9711 caps a UEID at 33 bytes while a device ID is 64;
the full ID travels beside it and decoding checks the two agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Annotated, Any, TypeVar

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cwt import COSEKey
from cwt.exceptions import CWTError

from opensphere.formats.device_id import (
    DeviceId,
    device_id_from_bytes,
    device_id_from_public_key,
    device_id_to_bytes,
    parse_device_id,
)
from opensphere.formats.errors import FormatError
from opensphere.formats.signatures import (
    Signer,
    decode_sign1_unverified,
    encode_sign1,
    loads_canonical_cbor,
    verify_sign1,
)

EVIDENCE_PROFILE = "https://opensphere.dev/eat/evidence/1"
EVIDENCE_CONTENT_TYPE = "application/eat+cwt"
MAX_EVIDENCE_SIZE = 16 * 1024
DIGEST_SIZE = 32
INITIAL_REGISTER = bytes(DIGEST_SIZE)
_UEID_TYPE_RAND = b"\x01"
_NONCE_SIZES = range(8, 65)
_MAX_NAME_LENGTH = 64
_COSE_KEY_IN_CNF = 1

Digest = Annotated[bytes, "a 32-byte SHA-256 digest"]
T = TypeVar("T")


class Claim(IntEnum):
    """The claim keys of the table in the module docstring."""

    IAT = 6
    CNF = 8
    NONCE = 10
    UEID = 256
    PROFILE = 265
    DEVICE_ID = -65537
    MEASUREMENTS = -65538
    BOOT_REGISTER = -65539
    OS_VERSION = -65540
    SECURITY_STATE = -65541
    MANUFACTURING_STATE = -65542
    SECURITY_VERSIONS = -65543


class SecurityState(StrEnum):
    """Azure Sphere's device security states, as the device REST API reports them."""

    BLANK = "BLANK"
    TEST = "TEST"
    SECURE = "SECURE"
    EOL = "EOL"


class ManufacturingState(StrEnum):
    """One-way manufacturing states, in order; only a root of trust moves between them."""

    BLANK = "Blank"
    MODULE1_COMPLETE = "Module1Complete"
    DEVICE_COMPLETE = "DeviceComplete"


E = TypeVar("E", SecurityState, ManufacturingState)


class StaleEvidenceError(FormatError):
    """The evidence was issued too long ago, or claims to come from the future."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One boot stage's digest, as extended into the boot register."""

    stage: str
    digest: Digest

    def __post_init__(self) -> None:
        _check_name(self.stage, "a measurement stage")
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_SIZE:
            raise FormatError(f"measurement {self.stage!r}: the digest must be {DIGEST_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class EvidenceClaims:
    """What a device attests to; built by the device, returned by `verify_evidence`."""

    device_id: DeviceId
    nonce: bytes
    measurements: tuple[Measurement, ...]
    boot_register: Digest
    os_version: str
    security_state: SecurityState
    manufacturing_state: ManufacturingState
    security_versions: Mapping[str, int]
    issued_at: int
    confirmation_key: ec.EllipticCurvePublicKey | None = None

    def __post_init__(self) -> None:
        # Normalise first, so equal claims compare equal whatever iterable/str was passed.
        object.__setattr__(self, "measurements", tuple(self.measurements))
        object.__setattr__(self, "security_versions", dict(self.security_versions))
        object.__setattr__(self, "security_state", _enum(SecurityState, self.security_state))
        object.__setattr__(
            self, "manufacturing_state", _enum(ManufacturingState, self.manufacturing_state)
        )
        parse_device_id(self.device_id)
        if not isinstance(self.nonce, bytes) or len(self.nonce) not in _NONCE_SIZES:
            raise FormatError(
                f"the nonce must be {_NONCE_SIZES.start}-{_NONCE_SIZES.stop - 1} bytes"
            )
        if not all(isinstance(m, Measurement) for m in self.measurements):
            raise FormatError("measurements must be Measurement values")
        if not isinstance(self.boot_register, bytes) or len(self.boot_register) != DIGEST_SIZE:
            raise FormatError(f"the boot register must be {DIGEST_SIZE} bytes")
        _check_name(self.os_version, "the OS version")
        _check_int(self.issued_at, "issued-at")
        for component, version in self.security_versions.items():
            _check_name(component, "a security-version component")
            _check_int(version, f"the security version of {component!r}")
        if self.confirmation_key is not None and not (
            isinstance(self.confirmation_key, ec.EllipticCurvePublicKey)
            and isinstance(self.confirmation_key.curve, ec.SECP256R1)
        ):
            raise FormatError("the confirmation key (cnf) must be a P-256 public key")

    @property
    def ueid(self) -> bytes:
        """RFC 9711 UEID (type RAND, 33 bytes) standing for the 64-byte device ID."""
        return ueid_for_device(self.device_id)


def ueid_for_device(device_id: DeviceId) -> bytes:
    """The UEID this profile derives from a device ID."""
    return _UEID_TYPE_RAND + hashlib.sha256(device_id_to_bytes(device_id)).digest()


def extend_register(register: bytes, digest: bytes) -> bytes:
    """One measured-boot extend, like a TPM PCR: new = SHA-256(old ‖ digest)."""
    if len(register) != DIGEST_SIZE or len(digest) != DIGEST_SIZE:
        raise ValueError(f"the register and the digest are both {DIGEST_SIZE} bytes")
    return hashlib.sha256(register + digest).digest()


def replay_register(measurements: Iterable[Measurement]) -> bytes:
    """The register value a log of measurements must produce, starting from zeros."""
    register = INITIAL_REGISTER
    for measurement in measurements:
        register = extend_register(register, measurement.digest)
    return register


def encode_evidence(claims: EvidenceClaims, sign: Signer) -> bytes:
    """Sign the claims through the root of trust's `sign`; the key never comes here."""
    payload: dict[int, Any] = {
        Claim.PROFILE: EVIDENCE_PROFILE,
        Claim.UEID: claims.ueid,
        Claim.DEVICE_ID: device_id_to_bytes(claims.device_id),
        Claim.NONCE: claims.nonce,
        Claim.IAT: claims.issued_at,
        Claim.MEASUREMENTS: [[m.stage, m.digest] for m in claims.measurements],
        Claim.BOOT_REGISTER: claims.boot_register,
        Claim.OS_VERSION: claims.os_version,
        Claim.SECURITY_STATE: claims.security_state.value,
        Claim.MANUFACTURING_STATE: claims.manufacturing_state.value,
        Claim.SECURITY_VERSIONS: dict(claims.security_versions),
    }
    if claims.confirmation_key is not None:
        payload[Claim.CNF] = {_COSE_KEY_IN_CNF: _cose_key(claims.confirmation_key)}
    body = cbor2.dumps({int(key): value for key, value in payload.items()}, canonical=True)
    return encode_sign1(body, sign, content_type=EVIDENCE_CONTENT_TYPE)


def decode_unverified(data: bytes) -> EvidenceClaims:
    """Parse evidence WITHOUT checking its signature: for logs and for picking the key.

    Size, CBOR, COSE structure, algorithm, profile and every claim's type are checked.
    """
    payload = decode_sign1_unverified(
        data, content_type=EVIDENCE_CONTENT_TYPE, max_size=MAX_EVIDENCE_SIZE
    )
    return _claims_from_payload(payload)


def verify_evidence(
    data: bytes,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: int,
    max_age: int,
    max_clock_skew: int = 60,
) -> EvidenceClaims:
    """Verify evidence signed by `public_key` and fresh at `now`; return its claims.

    The caller still has to match `claims.nonce` against its own single-use challenge and
    appraise the measurements: this function proves who said it and when, not that it is good.
    """
    claims = decode_unverified(data)
    verify_sign1(data, public_key, content_type=EVIDENCE_CONTENT_TYPE, max_size=MAX_EVIDENCE_SIZE)
    signer_id = device_id_from_public_key(public_key)
    if claims.device_id != signer_id:
        raise FormatError(
            f"the evidence names device {claims.device_id[:16]}… but was verified with the "
            f"key of device {signer_id[:16]}…"
        )
    if claims.issued_at > now + max_clock_skew:
        raise StaleEvidenceError(
            f"the evidence was issued {claims.issued_at - now} s in the future; check the "
            "device clock"
        )
    if now - claims.issued_at > max_age:
        raise StaleEvidenceError(
            f"the evidence is {now - claims.issued_at} s old; the limit is {max_age} s"
        )
    if replay_register(claims.measurements) != claims.boot_register:
        raise FormatError("the measurement log does not replay to the boot register value")
    return claims


def _claims_from_payload(payload: bytes) -> EvidenceClaims:
    raw = loads_canonical_cbor(payload, what="the evidence claims")
    if not isinstance(raw, dict):
        raise FormatError("the evidence claims must be a CBOR map")
    profile = raw.get(Claim.PROFILE)
    if profile != EVIDENCE_PROFILE:
        raise FormatError(
            f"unknown evidence profile {profile!r}; this verifier understands "
            f"{EVIDENCE_PROFILE!r} (update the service or the device)"
        )
    known = {int(claim) for claim in Claim}
    unknown = [key for key in raw if key not in known]
    if unknown:
        raise FormatError(f"the evidence has claims this profile does not define: {unknown!r}")
    device_id = device_id_from_bytes(_take(raw, Claim.DEVICE_ID, bytes))
    if _take(raw, Claim.UEID, bytes) != ueid_for_device(device_id):
        raise FormatError("the ueid claim does not match the device-id claim")
    return EvidenceClaims(
        device_id=device_id,
        nonce=_take(raw, Claim.NONCE, bytes),
        measurements=tuple(_measurement(item) for item in _take(raw, Claim.MEASUREMENTS, list)),
        boot_register=_take(raw, Claim.BOOT_REGISTER, bytes),
        os_version=_take(raw, Claim.OS_VERSION, str),
        security_state=_enum(SecurityState, _take(raw, Claim.SECURITY_STATE, str)),
        manufacturing_state=_enum(ManufacturingState, _take(raw, Claim.MANUFACTURING_STATE, str)),
        security_versions=_security_versions(_take(raw, Claim.SECURITY_VERSIONS, dict)),
        issued_at=_take(raw, Claim.IAT, int),
        confirmation_key=_confirmation_key(raw.get(Claim.CNF)),
    )


def _take(raw: dict[Any, Any], claim: Claim, kind: type[T]) -> T:
    if claim not in raw:
        raise FormatError(f"the evidence lacks the {claim.name.lower()} claim ({int(claim)})")
    value = raw[claim]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(
            f"the {claim.name.lower()} claim ({int(claim)}) must be {kind.__name__}, "
            f"not {type(value).__name__}"
        )
    return value


def _measurement(item: object) -> Measurement:
    if not (
        isinstance(item, list)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], bytes)
    ):
        raise FormatError("each measurement must be a [stage text, digest bytes] pair")
    return Measurement(stage=item[0], digest=item[1])


def _security_versions(raw: dict[Any, Any]) -> dict[str, int]:
    for component, version in raw.items():
        if not isinstance(component, str) or not isinstance(version, int):
            raise FormatError("security versions must map component names to integers")
    return raw


def _confirmation_key(raw: object) -> ec.EllipticCurvePublicKey | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {_COSE_KEY_IN_CNF}:
        raise FormatError("the cnf claim must be {1: COSE_Key} (RFC 8747)")
    try:
        key = COSEKey.new(raw[_COSE_KEY_IN_CNF]).key
    except (ValueError, TypeError, KeyError, CWTError) as exc:
        raise FormatError(f"the cnf claim holds an invalid COSE_Key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise FormatError("the cnf claim must hold a public key (never a private one)")
    return key


def _cose_key(public_key: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    cose_key: dict[int, Any] = COSEKey.from_pem(pem, alg="ES256").to_dict()
    return cose_key


def _enum(kind: type[E], value: str) -> E:
    try:
        return kind(value)
    except ValueError as exc:
        allowed = ", ".join(member.value for member in kind)
        raise FormatError(f"{value!r} is not a {kind.__name__}; expected one of {allowed}") from exc


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_NAME_LENGTH:
        raise FormatError(f"{what} must be text of 1-{_MAX_NAME_LENGTH} characters")
    if not value.isprintable():
        raise FormatError(f"{what} must be printable text; got {value!r}")


def _check_int(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FormatError(f"{what} must be a non-negative integer")
