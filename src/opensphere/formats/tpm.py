"""TPM 2.0 structures the device and the service share: the attestation key, quotes, PCRs.

Pure: bytes in, checked values out, no TPM needed. Every structure is unmarshalled with
tpm2-pytss's own types (libtss2-mu underneath), never by hand; an unmarshal must consume
the whole buffer, so a truncated structure, a size field pointing past the end, and
trailing bytes are all refused. Signatures and digests are checked with `cryptography`.

The protocol's choices, fixed so a device cannot pick weaker ones:

- The attestation key (AK) is the device identity key: ECC P-256, ECDSA with SHA-256,
  name algorithm SHA-256, and `restricted | sign | fixedTPM | fixedParent |
  sensitiveDataOrigin` so that only the TPM can have made it and it signs only
  TPM-generated structures (quotes) or digests the TPM hashed itself.
- Measurements go into PCR `MEASUREMENT_PCR` of the SHA-256 bank; a quote covers exactly
  `QUOTE_SELECTION` (the service's policy). PCR 15 is not resettable by software (unlike
  16 and 23), so its value can only be undone by a reboot, which the reset counter shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPM2_GENERATED, TPM2_ST, TPMA_OBJECT
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
    TPMS_ATTEST,
    TPMS_ECC_POINT,
    TPMT_PUBLIC,
    TPMT_SIGNATURE,
)

from opensphere.formats.device_id import DeviceId, device_id_from_public_key
from opensphere.formats.errors import FormatError, SignatureError

MEASUREMENT_PCR = 15
BOOT_EVENT = "boot"
"""The first event after every TPM reset: SHA-256 of the host's boot ID."""
PCR_BANK = "sha256"
QUOTE_SELECTION: tuple[tuple[str, tuple[int, ...]], ...] = ((PCR_BANK, (MEASUREMENT_PCR,)),)
"""The policy: the banks and PCRs a quote must cover, nothing more and nothing less."""
DIGEST_SIZE = 32
MAX_STRUCTURE_SIZE = 2048
AK_ATTRIBUTES = (
    TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)
_REQUIRED_AK_ATTRIBUTES = AK_ATTRIBUTES & ~TPMA_OBJECT.USERWITHAUTH
_P256_COORDINATE = 32
T = TypeVar("T")


class TpmStructureError(FormatError):
    """A TPM structure is malformed, of an unexpected kind, or not what the protocol allows."""


class QuoteSignatureError(SignatureError):
    """The quote (or its signature) was not made by the attestation key it is checked with."""


@dataclass(frozen=True, slots=True)
class AttestationKey:
    """A checked attestation key: its TPM public area, TPM name and P-256 key."""

    public_area: bytes
    name: bytes
    public_key: ec.EllipticCurvePublicKey

    @property
    def device_id(self) -> DeviceId:
        """As for every backend: the identity public key's X‖Y."""
        return device_id_from_public_key(self.public_key)


@dataclass(frozen=True, slots=True)
class ClockInfo:
    """The TPM's clock and counters as a quote reports them (TPMS_CLOCK_INFO)."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True, slots=True)
class QuoteInfo:
    """What a TPMS_ATTEST of type quote says; signed, so trusted only after the signature."""

    qualifying_data: bytes
    selection: tuple[tuple[str, tuple[int, ...]], ...]
    pcr_digest: bytes
    clock: ClockInfo
    firmware_version: int


def attestation_key_template(salt: bytes) -> TPM2B_PUBLIC:
    """The public template a device creates its attestation key from.

    `salt` (32 bytes, not secret) goes in the template's `unique` field: the TPM derives
    the same key from the same template, so one salt is one identity, and two hosts
    folders on one TPM (or a re-install) get unlinkable identities.
    """
    if len(salt) != _P256_COORDINATE:
        raise ValueError(f"the attestation key salt is {_P256_COORDINATE} bytes")
    template = TPM2B_PUBLIC.parse(
        "ecc256:ecdsa-sha256:null", objectAttributes=AK_ATTRIBUTES, nameAlg=TPM2_ALG.SHA256
    )
    template.publicArea.unique.ecc.x = salt
    template.publicArea.unique.ecc.y = bytes(_P256_COORDINATE)
    return template


def unmarshal_exactly(kind: type[T], data: bytes, what: str) -> T:
    """Unmarshal `data` as one `kind` with libtss2-mu; the whole buffer, and nothing more."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_STRUCTURE_SIZE:
        raise TpmStructureError(f"{what} must be 1-{MAX_STRUCTURE_SIZE} bytes")
    try:
        value, consumed = kind.unmarshal(data)  # type: ignore[attr-defined]
    except (TSS2_Exception, ValueError, TypeError) as exc:
        raise TpmStructureError(f"{what} is not a valid {kind.__name__}: {exc}") from exc
    if consumed != len(data):
        raise TpmStructureError(
            f"{what} has {len(data) - consumed} bytes after its {kind.__name__}"
        )
    return value  # type: ignore[no-any-return]


def parse_attestation_key(public_area: bytes) -> AttestationKey:
    """Check a TPM2B_PUBLIC is an attestation key the protocol accepts; name it."""
    public: TPM2B_PUBLIC = unmarshal_exactly(TPM2B_PUBLIC, public_area, "the attestation key")
    area: TPMT_PUBLIC = public.publicArea
    if area.type != TPM2_ALG.ECC or area.nameAlg != TPM2_ALG.SHA256:
        raise TpmStructureError("the attestation key must be ECC with name algorithm SHA-256")
    if (area.objectAttributes & _REQUIRED_AK_ATTRIBUTES) != _REQUIRED_AK_ATTRIBUTES or (
        area.objectAttributes & TPMA_OBJECT.DECRYPT
    ):
        raise TpmStructureError(
            "the attestation key must be restricted, sign-only, fixedTPM, fixedParent and "
            "made inside the TPM (sensitiveDataOrigin)"
        )
    detail = area.parameters.eccDetail
    if (
        detail.curveID != TPM2_ECC.NIST_P256
        or detail.scheme.scheme != TPM2_ALG.ECDSA
        or detail.scheme.details.ecdsa.hashAlg != TPM2_ALG.SHA256
    ):
        raise TpmStructureError("the attestation key must be P-256 with ECDSA-SHA256")
    return AttestationKey(
        public_area=public_area,
        name=bytes(public.get_name()),
        public_key=_ecc_point(area.unique.ecc),
    )


def parse_endorsement_key(public_area: bytes, certificate: x509.Certificate) -> TPM2B_PUBLIC:
    """The EK's public area, checked to be a restricted decryption key and the certified key.

    MakeCredential encrypts to this public area, so it must be the key the manufacturer's
    certificate certifies: otherwise a software key could answer the challenge.
    """
    public: TPM2B_PUBLIC = unmarshal_exactly(TPM2B_PUBLIC, public_area, "the endorsement key")
    area: TPMT_PUBLIC = public.publicArea
    required = (
        TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.DECRYPT
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
    )
    if (area.objectAttributes & required) != required or (
        area.objectAttributes & TPMA_OBJECT.SIGN_ENCRYPT
    ):
        raise TpmStructureError("the endorsement key must be a restricted, fixedTPM decryption key")
    certified = certificate.public_key()
    if area.type == TPM2_ALG.RSA and isinstance(certified, rsa.RSAPublicKey):
        exponent = area.parameters.rsaDetail.exponent or 65537
        matches = certified.public_numbers() == rsa.RSAPublicNumbers(
            exponent, int.from_bytes(bytes(area.unique.rsa), "big")
        )
    elif area.type == TPM2_ALG.ECC and isinstance(certified, ec.EllipticCurvePublicKey):
        numbers = certified.public_numbers()
        matches = (numbers.x, numbers.y) == (
            int.from_bytes(bytes(area.unique.ecc.x), "big"),
            int.from_bytes(bytes(area.unique.ecc.y), "big"),
        )
    else:
        matches = False
    if not matches:
        raise TpmStructureError("the endorsement key is not the key its certificate certifies")
    return public


def parse_quote(attest: bytes) -> QuoteInfo:
    """Unmarshal a TPMS_ATTEST and check it is a TPM-generated quote."""
    info: TPMS_ATTEST = unmarshal_exactly(TPMS_ATTEST, attest, "the quote")
    if info.magic != TPM2_GENERATED.VALUE:
        raise TpmStructureError("the quote does not start with TPM_GENERATED_VALUE")
    if info.type != TPM2_ST.ATTEST_QUOTE:
        raise TpmStructureError(f"the attestation is a {info.type}, not a quote")
    quote = info.attested.quote
    selection = []
    for index in range(quote.pcrSelect.count):
        item = quote.pcrSelect.pcrSelections[index]
        bitmap = bytes(item.pcrSelect)[: item.sizeofSelect]
        pcrs = tuple(
            byte * 8 + bit
            for byte, bits in enumerate(bitmap)
            for bit in range(8)
            if bits >> bit & 1
        )
        selection.append((str(TPM2_ALG(item.hash)).lower(), pcrs))
    clock = info.clockInfo
    return QuoteInfo(
        qualifying_data=bytes(info.extraData),
        selection=tuple(selection),
        pcr_digest=bytes(quote.pcrDigest),
        clock=ClockInfo(
            clock=int(clock.clock),
            reset_count=int(clock.resetCount),
            restart_count=int(clock.restartCount),
            safe=bool(clock.safe),
        ),
        firmware_version=int(info.firmwareVersion),
    )


def verify_quote_signature(
    attest: bytes, signature: bytes, public_key: ec.EllipticCurvePublicKey
) -> None:
    """Raise `QuoteSignatureError` unless the TPMT_SIGNATURE over `attest` is by the AK."""
    parsed: TPMT_SIGNATURE = unmarshal_exactly(TPMT_SIGNATURE, signature, "the quote signature")
    ecdsa = parsed.signature.ecdsa
    if parsed.sigAlg != TPM2_ALG.ECDSA or ecdsa.hash != TPM2_ALG.SHA256:
        raise TpmStructureError("the quote signature must be ECDSA with SHA-256")
    r = int.from_bytes(bytes(ecdsa.signatureR), "big")
    s = int.from_bytes(bytes(ecdsa.signatureS), "big")
    try:
        public_key.verify(encode_dss_signature(r, s), attest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise QuoteSignatureError(
            "the quote signature does not verify with the device's attestation key"
        ) from exc


def pcr_digest(values: Sequence[bytes]) -> bytes:
    """The quote's pcrDigest: SHA-256 over the selected PCR values in selection order."""
    return hashlib.sha256(b"".join(values)).digest()


def selected_values(
    selection: Sequence[tuple[str, Sequence[int]]], pcrs: Mapping[int, bytes]
) -> list[bytes]:
    """The reported PCR values a selection covers, in the TPM's order (bank, then index)."""
    out = []
    for _bank, indices in selection:
        for index in indices:
            value = pcrs.get(index)
            if value is None:
                raise TpmStructureError(f"the quote covers PCR {index} but its value is missing")
            out.append(value)
    return out


def extend_pcr(value: bytes, digest: bytes) -> bytes:
    """A SHA-256 PCR extend: new = SHA-256(old ‖ digest)."""
    return hashlib.sha256(value + digest).digest()


def replay_pcr(digests: Sequence[bytes]) -> bytes:
    """The value a freshly reset SHA-256 PCR holds after these extends."""
    value = bytes(DIGEST_SIZE)
    for digest in digests:
        value = extend_pcr(value, digest)
    return value


def _ecc_point(point: TPMS_ECC_POINT) -> ec.EllipticCurvePublicKey:
    x, y = bytes(point.x), bytes(point.y)
    if len(x) != _P256_COORDINATE or len(y) != _P256_COORDINATE:
        raise TpmStructureError("the attestation key's point must have 32-byte coordinates")
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError as exc:
        raise TpmStructureError("the attestation key's point is not on P-256") from exc
