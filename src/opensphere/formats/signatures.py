"""ES256 (ECDSA P-256 with SHA-256): the project's one signature verification path.

Every signed format (evidence, claim statements, image packages, X.509 helpers) verifies
through `verify_es256` or `verify_es256_der`, and the Wycheproof vectors run through these
same two functions, so a fix here protects every format at once.

The COSE_Sign1 envelope lives here too because it is the signature container the signed
CBOR formats share. cwt builds and parses the structure and its Sig_structure; we only
plug in two small COSE keys: one that signs through a caller's callable (the root of
trust keeps its private key) and one that verifies through `verify_es256`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cwt import COSE, COSEMessage, COSETypes
from cwt.cose_key_interface import COSEKeyInterface
from cwt.exceptions import CWTError

from opensphere.formats.errors import FormatError, SignatureError

Signer: TypeAlias = Callable[[bytes], bytes]
"""Signs `data` and returns a raw r‖s ES256 signature over SHA-256(data).

This is what a root of trust offers instead of its private key."""

ES256_SIGNATURE_SIZE = 64
COSE_ALG_ES256 = -7
_SCALAR_SIZE = 32
_COSE_KTY_EC2 = 2
_HEADER_ALG = 1
_HEADER_TYP = 16  # RFC 9596: media type of the payload; separates our signed formats.
_COSE_SIGN1_TAG = 18
_CBOR_ERRORS = (cbor2.CBORError, ValueError, TypeError, RecursionError, OverflowError)


def verify_es256(public_key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> None:
    """Verify a raw r‖s signature (the COSE ES256 encoding); raise `SignatureError` if bad."""
    if len(signature) != ES256_SIGNATURE_SIZE:
        raise SignatureError(
            f"an ES256 signature is {ES256_SIGNATURE_SIZE} bytes (r‖s); got {len(signature)}"
        )
    r = int.from_bytes(signature[:_SCALAR_SIZE], "big")
    s = int.from_bytes(signature[_SCALAR_SIZE:], "big")
    _verify(public_key, message, encode_dss_signature(r, s))


def verify_es256_der(
    public_key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes
) -> None:
    """Verify a DER-encoded ECDSA signature (X.509 style); raise `SignatureError` if bad.

    Only the one DER encoding of (r, s) is accepted: a BER variant of a valid signature
    would give one signature several byte strings, which breaks de-duplication by bytes.
    """
    try:
        r, s = decode_dss_signature(signature)
        canonical = encode_dss_signature(r, s)
    except ValueError as exc:
        raise SignatureError("the signature is not a DER-encoded ECDSA signature") from exc
    if canonical != signature:
        raise SignatureError("the signature is not in canonical DER encoding")
    _verify(public_key, message, signature)


def raw_signature_from_der(signature: bytes) -> bytes:
    """Convert cryptography's DER output to raw r‖s, for roots of trust built on it."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(_SCALAR_SIZE, "big") + s.to_bytes(_SCALAR_SIZE, "big")


def _verify(public_key: ec.EllipticCurvePublicKey, message: bytes, der: bytes) -> None:
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise SignatureError(f"ES256 needs a P-256 key; this key is on {public_key.curve.name}")
    try:
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError("the signature does not verify with the expected key") from exc


def loads_canonical_cbor(data: bytes, *, what: str) -> Any:
    """Decode CBOR that must be in deterministic encoding (RFC 8949 §4.2).

    Re-encoding and comparing refuses, in one check, trailing bytes, duplicate map keys,
    indefinite lengths and non-minimal integers: each is a way for two parsers to read the
    same signed bytes differently.
    """
    try:
        value = cbor2.loads(data)
        canonical = cbor2.dumps(value, canonical=True)
    except _CBOR_ERRORS as exc:
        raise FormatError(f"{what} is not valid CBOR ({exc})") from exc
    if canonical != data:
        raise FormatError(
            f"{what} is not in deterministic CBOR encoding (trailing bytes, duplicate map "
            "keys or non-minimal lengths)"
        )
    return value


def encode_sign1(payload: bytes, sign: Signer, *, content_type: str) -> bytes:
    """Wrap `payload` in a tagged COSE_Sign1 (ES256) whose signature comes from `sign`.

    `content_type` goes in the protected `typ` header so that one format's signed bytes
    can never be accepted as another's, although the same identity key signs both.
    """
    cose = COSE.new()
    encoded = cose.encode_and_sign(
        payload,
        key=_CallbackSigningKey(sign),
        protected={_HEADER_ALG: COSE_ALG_ES256, _HEADER_TYP: content_type},
    )
    if not isinstance(encoded, bytes):
        raise TypeError("cwt returned a CBOR object instead of bytes")
    return encoded


def decode_sign1_unverified(data: bytes, *, content_type: str, max_size: int) -> bytes:
    """Check a COSE_Sign1's structure and headers and return its payload, NOT its signature.

    Only ES256 is accepted: the algorithm is fixed by the format, so an attacker cannot pick
    a weaker one (or a MAC algorithm keyed with public data).
    """
    if len(data) > max_size:
        raise FormatError(f"{content_type} is {len(data)} bytes; the limit is {max_size}")
    tagged = loads_canonical_cbor(data, what=content_type)
    if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != _COSE_SIGN1_TAG:
        raise FormatError(f"{content_type} must be a tagged COSE_Sign1 (CBOR tag 18)")
    if not isinstance(tagged.value, list):
        raise FormatError(f"{content_type}: a COSE_Sign1 is a CBOR array")
    try:
        message = COSEMessage(COSETypes.SIGN1, tagged.value)
    except (ValueError, CWTError) as exc:
        raise FormatError(f"{content_type}: malformed COSE_Sign1 ({exc})") from exc
    protected = loads_canonical_cbor(tagged.value[0], what=f"{content_type} protected header")
    if not isinstance(protected, dict):
        raise FormatError(f"{content_type}: the protected header is not a CBOR map")
    _check_headers(protected, message.unprotected, content_type)
    payload = message.payload
    if not isinstance(payload, bytes):
        raise FormatError(f"{content_type}: the payload is missing (detached payloads refused)")
    return payload


def verify_sign1(
    data: bytes, public_key: ec.EllipticCurvePublicKey, *, content_type: str, max_size: int
) -> bytes:
    """Verify a COSE_Sign1 made by `encode_sign1` and return its payload."""
    decode_sign1_unverified(data, content_type=content_type, max_size=max_size)
    try:
        payload = COSE.new().decode(data, keys=_VerifyingKey(public_key))
    except SignatureError:
        raise
    except (ValueError, CWTError) as exc:
        raise FormatError(f"{content_type}: malformed COSE_Sign1 ({exc})") from exc
    if not isinstance(payload, bytes):
        raise FormatError(f"{content_type}: the payload is missing")
    return payload


def _check_headers(protected: dict[Any, Any], unprotected: Any, content_type: str) -> None:
    alg = protected.get(_HEADER_ALG)
    if alg != COSE_ALG_ES256:
        raise FormatError(
            f"{content_type}: COSE algorithm {alg!r} is not accepted; only ES256 ({COSE_ALG_ES256})"
        )
    typ = protected.get(_HEADER_TYP)
    if typ != content_type:
        raise FormatError(f"{content_type}: the typ header is {typ!r}, expected {content_type!r}")
    unexpected = set(protected) - {_HEADER_ALG, _HEADER_TYP}
    if unexpected:
        raise FormatError(
            f"{content_type}: unexpected protected header parameters {sorted(map(str, unexpected))}"
        )
    if unprotected != {}:
        raise FormatError(f"{content_type}: the unprotected header must be empty")


class _CallbackSigningKey(COSEKeyInterface):
    """A COSE key whose `sign` is the caller's callable, so cwt never sees a private key."""

    def __init__(self, sign: Signer) -> None:
        super().__init__({1: _COSE_KTY_EC2, 3: COSE_ALG_ES256})
        self._sign = sign

    def sign(self, msg: bytes) -> bytes:
        signature = self._sign(msg)
        if len(signature) != ES256_SIGNATURE_SIZE:
            raise RuntimeError(
                f"the signer returned {len(signature)} bytes; it must return a raw r‖s "
                f"ES256 signature of {ES256_SIGNATURE_SIZE} bytes"
            )
        return signature


class _VerifyingKey(COSEKeyInterface):
    """A COSE key whose `verify` is `verify_es256`, so COSE goes through the one path."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        super().__init__({1: _COSE_KTY_EC2, 3: COSE_ALG_ES256})
        self._public_key = public_key

    def verify(self, msg: bytes, sig: bytes) -> None:
        verify_es256(self._public_key, msg, sig)
