"""TPM evidence: the emulated backend's envelope (an EAT in a COSE_Sign1, ES256, signed by
the device identity key) carrying a TPM 2.0 quote.

On a TPM device the identity key is the attestation key (AK), so the device ID is still
the X‖Y of the key that signs the envelope. The AK is a restricted key: the TPM signs the
envelope only through a hash ticket (TPM2_HashSequence… then TPM2_Sign), which it gives
for data that does not start with TPM_GENERATED_VALUE, so an envelope can never pass as a
quote nor a quote as an envelope. The envelope's signature covers what the quote cannot:
the OS version, the event log, and the TLS key to certify (`cnf`); the quote inside proves
what the TPM itself saw: the PCR values, the service's nonce, the clock and reset counters.

The envelope's kind is its EAT profile, named in the media type's `eat_profile`
parameter (RFC 9782) of both the COSE `typ` header and the HTTP Content-Type, so the
service picks the verifier before it parses anything.

Claims (same keys as `formats.evidence` where they mean the same thing):

=========  =====================  ==============================================
key        name                   value
=========  =====================  ==============================================
6          iat                    issued-at, uint seconds (device clock)
8          cnf                    optional {1: COSE_Key}: a P-256 key to certify
10         eat_nonce              bstr 8-64, the service's challenge
256        ueid                   bstr 0x01 ‖ SHA-256(device ID bytes)
265        eat_profile            tstr, `TPM_EVIDENCE_PROFILE`
-65537     device-id              bstr 64, X‖Y of the attestation key
-65538     measurements           the event log of `MEASUREMENT_PCR`: [[name, digest]]
-65540     os-version             tstr
-65560     tpm-quote              bstr, TPMS_ATTEST as the TPM marshalled it
-65561     tpm-signature          bstr, TPMT_SIGNATURE over tpm-quote
-65562     tpm-pcrs               {uint PCR index: bstr 32}, the quoted PCR values
=========  =====================  ==============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cwt import COSEKey
from cwt.exceptions import CWTError

from opensphere.formats.device_id import (
    DeviceId,
    device_id_from_bytes,
    device_id_to_bytes,
    public_key_from_device_id,
)
from opensphere.formats.errors import FormatError
from opensphere.formats.evidence import Measurement, ueid_for_device
from opensphere.formats.signatures import (
    Signer,
    decode_sign1_unverified,
    encode_sign1,
    loads_canonical_cbor,
    verify_sign1,
)
from opensphere.formats.tpm import DIGEST_SIZE

TPM_EVIDENCE_PROFILE = "https://opensphere.dev/eat/tpm-evidence/1"
TPM_EVIDENCE_CONTENT_TYPE = f'application/eat+cwt; eat_profile="{TPM_EVIDENCE_PROFILE}"'
MAX_TPM_EVIDENCE_SIZE = 16 * 1024
_NONCE_SIZES = range(8, 65)
_COSE_KEY_IN_CNF = 1
_MAX_PCR = 23
T = TypeVar("T")


class TpmClaim(IntEnum):
    """The claim keys of the table in the module docstring."""

    IAT = 6
    CNF = 8
    NONCE = 10
    UEID = 256
    PROFILE = 265
    DEVICE_ID = -65537
    MEASUREMENTS = -65538
    OS_VERSION = -65540
    TPM_QUOTE = -65560
    TPM_SIGNATURE = -65561
    TPM_PCRS = -65562


_KNOWN_CLAIMS = frozenset(int(claim) for claim in TpmClaim)


@dataclass(frozen=True, slots=True)
class TpmEvidenceClaims:
    """What a TPM device sends; the quote fields are checked by `service.tpm_appraisal`."""

    device_id: DeviceId
    nonce: bytes
    event_log: tuple[Measurement, ...]
    os_version: str
    issued_at: int
    quote: bytes
    quote_signature: bytes
    pcrs: Mapping[int, bytes] = field(default_factory=dict)
    confirmation_key: ec.EllipticCurvePublicKey | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_log", tuple(self.event_log))
        object.__setattr__(self, "pcrs", dict(self.pcrs))
        if not isinstance(self.nonce, bytes) or len(self.nonce) not in _NONCE_SIZES:
            raise FormatError("the nonce must be 8-64 bytes")
        if not all(isinstance(item, Measurement) for item in self.event_log):
            raise FormatError("the event log must hold Measurement values")
        if not isinstance(self.os_version, str) or not 1 <= len(self.os_version) <= 64:
            raise FormatError("the OS version must be text of 1-64 characters")
        for index, value in self.pcrs.items():
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= _MAX_PCR:
                raise FormatError(f"PCR index {index!r} is not 0-{_MAX_PCR}")
            if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
                raise FormatError(f"PCR {index} must be a {DIGEST_SIZE}-byte SHA-256 value")
        if not isinstance(self.quote, bytes) or not isinstance(self.quote_signature, bytes):
            raise FormatError("the quote and its signature are byte strings")


def encode_tpm_evidence(claims: TpmEvidenceClaims, sign: Signer) -> bytes:
    """Sign the envelope through the TPM's attestation key (`TpmRootOfTrust.sign`)."""
    payload: dict[int, Any] = {
        TpmClaim.PROFILE: TPM_EVIDENCE_PROFILE,
        TpmClaim.UEID: ueid_for_device(claims.device_id),
        TpmClaim.DEVICE_ID: device_id_to_bytes(claims.device_id),
        TpmClaim.NONCE: claims.nonce,
        TpmClaim.IAT: claims.issued_at,
        TpmClaim.MEASUREMENTS: [[m.stage, m.digest] for m in claims.event_log],
        TpmClaim.OS_VERSION: claims.os_version,
        TpmClaim.TPM_QUOTE: claims.quote,
        TpmClaim.TPM_SIGNATURE: claims.quote_signature,
        TpmClaim.TPM_PCRS: dict(claims.pcrs),
    }
    if claims.confirmation_key is not None:
        pem = claims.confirmation_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        payload[TpmClaim.CNF] = {_COSE_KEY_IN_CNF: COSEKey.from_pem(pem, alg="ES256").to_dict()}
    body = cbor2.dumps({int(key): value for key, value in payload.items()}, canonical=True)
    return encode_sign1(body, sign, content_type=TPM_EVIDENCE_CONTENT_TYPE)


def verify_tpm_envelope(unverified_evidence: bytes) -> TpmEvidenceClaims:
    """The claims of an envelope signed by the key its device ID names.

    This proves the envelope came from the holder of the attestation key; the quote
    inside still has to be checked (`service.tpm_appraisal.verify_tpm_evidence`).
    """
    payload = decode_sign1_unverified(
        unverified_evidence, content_type=TPM_EVIDENCE_CONTENT_TYPE, max_size=MAX_TPM_EVIDENCE_SIZE
    )
    claims = _claims(payload)
    verify_sign1(
        unverified_evidence,
        public_key_from_device_id(claims.device_id),
        content_type=TPM_EVIDENCE_CONTENT_TYPE,
        max_size=MAX_TPM_EVIDENCE_SIZE,
    )
    return claims


def _claims(payload: bytes) -> TpmEvidenceClaims:
    raw = loads_canonical_cbor(payload, what="the TPM evidence claims")
    if not isinstance(raw, dict):
        raise FormatError("the TPM evidence claims must be a CBOR map")
    if raw.get(TpmClaim.PROFILE) != TPM_EVIDENCE_PROFILE:
        raise FormatError(f"the evidence profile is not {TPM_EVIDENCE_PROFILE!r}")
    unknown = [key for key in raw if key not in _KNOWN_CLAIMS]
    if unknown:
        raise FormatError(f"the TPM evidence has claims its profile does not define: {unknown!r}")
    device_id = device_id_from_bytes(_take(raw, TpmClaim.DEVICE_ID, bytes))
    if _take(raw, TpmClaim.UEID, bytes) != ueid_for_device(device_id):
        raise FormatError("the ueid claim does not match the device-id claim")
    log = []
    for item in _take(raw, TpmClaim.MEASUREMENTS, list):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise FormatError("each event is a [name text, digest bytes] pair")
        log.append(Measurement(stage=item[0], digest=item[1]))
    return TpmEvidenceClaims(
        device_id=device_id,
        nonce=_take(raw, TpmClaim.NONCE, bytes),
        event_log=tuple(log),
        os_version=_take(raw, TpmClaim.OS_VERSION, str),
        issued_at=_take(raw, TpmClaim.IAT, int),
        quote=_take(raw, TpmClaim.TPM_QUOTE, bytes),
        quote_signature=_take(raw, TpmClaim.TPM_SIGNATURE, bytes),
        pcrs=_take(raw, TpmClaim.TPM_PCRS, dict),
        confirmation_key=_confirmation_key(raw.get(TpmClaim.CNF)),
    )


def _take(raw: dict[Any, Any], claim: TpmClaim, kind: type[T]) -> T:
    value = raw.get(claim)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FormatError(
            f"the {claim.name.lower()} claim ({int(claim)}) is missing or not {kind.__name__}"
        )
    return value


def _confirmation_key(raw: object) -> ec.EllipticCurvePublicKey | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {_COSE_KEY_IN_CNF}:
        raise FormatError("the cnf claim must be {1: COSE_Key} (RFC 8747)")
    try:
        key = COSEKey.new(raw[_COSE_KEY_IN_CNF]).key
    except (ValueError, TypeError, KeyError, CWTError) as exc:
        raise FormatError(f"the cnf claim holds an invalid COSE_Key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise FormatError("the cnf claim must hold a P-256 public key")
    return key
