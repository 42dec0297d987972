"""Device ID: 128 lowercase hex characters of the identity public key's X‖Y (P-256).

As on Azure Sphere, the ID *is* the public key, so anyone holding an ID can check a
signature from that device without a directory lookup, and an ID cannot be chosen
without generating the key behind it.
"""

from __future__ import annotations

import re
from typing import NewType

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from opensphere.formats.errors import FormatError

DeviceId = NewType("DeviceId", str)
"""A device ID that has been checked: only `parse_device_id` and
`device_id_from_public_key` produce one, so a `DeviceId` in a signature means "validated"."""

DEVICE_ID_LENGTH = 128
DEVICE_ID_BYTES = 64
_UNCOMPRESSED_POINT_PREFIX = b"\x04"
_LOWER_HEX = frozenset("0123456789abcdef")
_DEVICE_ID = re.compile(f"[0-9a-f]{{{DEVICE_ID_LENGTH}}}")


def device_id_from_public_key(public_key: ec.EllipticCurvePublicKey) -> DeviceId:
    """The device ID of an identity key; only P-256 keys have one."""
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise FormatError(
            f"device identity keys are ECDSA P-256; this key is on {public_key.curve.name}"
        )
    point = public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return DeviceId(point[len(_UNCOMPRESSED_POINT_PREFIX) :].hex())


def parse_device_id(text: object) -> DeviceId:
    """Accept exactly 128 lowercase hex characters; anything else is refused, not normalised.

    Refusing uppercase (rather than lowering it) keeps one spelling per device, so an ID
    can be compared as a string everywhere (database keys, certificate subjects, URLs).
    """
    if isinstance(text, str) and _DEVICE_ID.fullmatch(text):
        return DeviceId(text)  # the common case, in one C loop; the rest explains the refusal
    if not isinstance(text, str):
        raise FormatError(f"a device ID must be a string, not {type(text).__name__}")
    if len(text) != DEVICE_ID_LENGTH:
        raise FormatError(
            f"a device ID has exactly {DEVICE_ID_LENGTH} hex characters; got {len(text)}"
        )
    for position, char in enumerate(text):
        if char not in _LOWER_HEX:
            hint = " (use lowercase)" if char in "ABCDEF" else ""
            raise FormatError(
                f"a device ID is lowercase hex; character {position} is {char!r}{hint}"
            )
    return DeviceId(text)


def device_id_to_bytes(device_id: DeviceId) -> bytes:
    """The 64 raw bytes X‖Y, as carried in binary formats (evidence, capability files)."""
    return bytes.fromhex(parse_device_id(device_id))


def device_id_from_bytes(raw: bytes) -> DeviceId:
    """The inverse of `device_id_to_bytes`, for IDs read from binary formats."""
    if len(raw) != DEVICE_ID_BYTES:
        raise FormatError(f"a binary device ID is {DEVICE_ID_BYTES} bytes; got {len(raw)}")
    return DeviceId(raw.hex())


def public_key_from_device_id(device_id: str) -> ec.EllipticCurvePublicKey:
    """Rebuild the identity public key; an ID whose point is not on P-256 is refused."""
    raw = bytes.fromhex(parse_device_id(device_id))
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), _UNCOMPRESSED_POINT_PREFIX + raw
        )
    except ValueError as exc:
        raise FormatError(
            "this device ID is not a P-256 public key (the point is not on the curve)"
        ) from exc
