"""Device ID: derived from the identity key, strictly parsed, and turned back into the key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from opensphere.formats.device_id import (
    device_id_from_bytes,
    device_id_from_public_key,
    device_id_to_bytes,
    parse_device_id,
    public_key_from_device_id,
)
from opensphere.formats.errors import FormatError


def new_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_device_id_is_lowercase_hex_of_x_and_y() -> None:
    key = new_key()
    numbers = key.public_numbers()
    expected = numbers.x.to_bytes(32, "big").hex() + numbers.y.to_bytes(32, "big").hex()
    assert device_id_from_public_key(key) == expected
    assert len(expected) == 128


def test_device_id_round_trips_to_the_same_public_key() -> None:
    key = new_key()
    rebuilt = public_key_from_device_id(device_id_from_public_key(key))
    assert rebuilt.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == key.public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )


def test_binary_form_is_the_64_raw_bytes() -> None:
    device_id = device_id_from_public_key(new_key())
    raw = device_id_to_bytes(device_id)
    assert len(raw) == 64
    assert device_id_from_bytes(raw) == device_id


def test_binary_form_of_wrong_length_is_refused() -> None:
    with pytest.raises(FormatError, match="64 bytes"):
        device_id_from_bytes(bytes(63))


def test_parse_accepts_a_valid_id_unchanged() -> None:
    device_id = device_id_from_public_key(new_key())
    assert parse_device_id(device_id) == device_id


def test_uppercase_is_refused_with_a_hint() -> None:
    device_id = device_id_from_public_key(new_key())
    upper = "A" + device_id[1:]
    with pytest.raises(FormatError, match="use lowercase"):
        parse_device_id(upper)


@pytest.mark.parametrize("length", [0, 127, 129, 256])
def test_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(FormatError, match="exactly 128"):
        parse_device_id("a" * length)


def test_non_hex_character_is_refused_with_its_position() -> None:
    with pytest.raises(FormatError, match="character 5 is 'g'"):
        parse_device_id("a" * 5 + "g" + "a" * 122)


def test_non_string_is_refused() -> None:
    with pytest.raises(FormatError, match="string"):
        parse_device_id(b"a" * 128)


def test_point_not_on_the_curve_is_refused() -> None:
    with pytest.raises(FormatError, match="not on the curve"):
        public_key_from_device_id("00" * 64)


def test_key_on_another_curve_has_no_device_id() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(FormatError, match="P-256"):
        device_id_from_public_key(key)
