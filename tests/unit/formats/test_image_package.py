"""Image package format: round trips, the documented layout, and every attack we refuse."""

from __future__ import annotations

import dataclasses
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from opensphere.formats.errors import FormatError, SignatureError
from opensphere.formats.image_package import (
    MAX_SECTIONS,
    TEST_SIGNING_KEY_THUMBPRINT,
    ImageIdentity,
    ImageMetadata,
    ImagePackage,
    ImagePackageError,
    ImageType,
    KeySigner,
    PackageSignatureError,
    TestSignedPackageError,
    UntrustedSignerError,
    build_unsigned,
    describe_package,
    key_thumbprint,
    parse_package,
    resign_package,
    sign_package,
    verify_package,
)

TEST_KEY_PATH = Path(__file__).resolve().parents[3] / "samples" / "keys" / "test-signing-key.pem"
COMPONENT_ID = uuid.UUID("7b1d3c52-8f0e-4a6b-9c2d-3e4f5a6b7c8d")
IMAGE_ID = uuid.UUID("0c9e8d7f-6a5b-4c3d-8e1f-2a3b4c5d6e7f")
BODY = b"application body: a tar of the app's files"


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def other_signer() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def test_signer() -> KeySigner:
    key = serialization.load_pem_private_key(TEST_KEY_PATH.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return KeySigner(key)


def _trusted(*signers: KeySigner) -> dict[bytes, ec.EllipticCurvePublicKey]:
    return {key_thumbprint(s.public_key()): s.public_key() for s in signers}


def _metadata(image_type: ImageType = ImageType.Applications, **changes: Any) -> ImageMetadata:
    metadata = ImageMetadata(
        identity=ImageIdentity(image_type=image_type, component_id=COMPONENT_ID, image_id=IMAGE_ID),
        name="Blink",
        version="1.0.0",
        security_version=3,
        build_time=1_700_000_000,
    )
    return dataclasses.replace(metadata, **changes)


def _package(signer: KeySigner, metadata: ImageMetadata | None = None, body: bytes = BODY) -> bytes:
    thumbprint = key_thumbprint(signer.public_key())
    unsigned = build_unsigned(metadata or _metadata(), body, signer_thumbprint=thumbprint)
    return sign_package(unsigned, signer)


def _sections(thumbprint: bytes) -> list[tuple[bytes, bytes]]:
    """The sections of ``_metadata()``, encoded from the documented layout, not by the module."""
    return [
        (b"ID", struct.pack("<HH16s16s", 10, 0, COMPONENT_ID.bytes_le, IMAGE_ID.bytes_le)),
        (b"SG", thumbprint + struct.pack("<I", 1)),
        (b"DB", struct.pack("<Q32s", 1_700_000_000, b"Blink")),
        (b"RV", struct.pack("<I", 3)),
        (b"VR", b"1.0.0"),
    ]


def _assemble(
    sections: list[tuple[bytes, bytes]],
    signer: KeySigner,
    *,
    format_version: int = 1,
    body_length: int | None = None,
    section_count: int | None = None,
    metadata_length: int | None = None,
) -> bytes:
    """Lay out a package by hand, with a valid signature, so only the structure can be wrong."""
    block = struct.pack(
        "<II", 0x4D345834, len(sections) if section_count is None else section_count
    )
    block += b"".join(tag + struct.pack("<H", len(payload)) + payload for tag, payload in sections)
    header = struct.pack(
        "<4sHHI", b"OSIP", format_version, 0, len(BODY) if body_length is None else body_length
    )
    unsigned = (
        header
        + BODY
        + block
        + struct.pack("<I", len(block) if metadata_length is None else metadata_length)
    )
    return unsigned + signer.sign(unsigned)


# --- round trips and layout -------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_type",
    [
        ImageType.Applications,
        ImageType.CustomerBoardConfig,
        ImageType.NormalWorldKernel,
        ImageType.SecurityMonitor,
        ImageType.OneBl,
        ImageType.RootFs,
    ],
)
def test_round_trip_for_each_kind_of_image(signer: KeySigner, image_type: ImageType) -> None:
    metadata = _metadata(image_type, temporary=True, abi_depends=(1, 5, 3))
    package = verify_package(_package(signer, metadata), _trusted(signer), allow_test_signed=False)
    assert package.metadata == metadata
    assert package.body == BODY
    assert package.signer_thumbprint == key_thumbprint(signer.public_key())
    assert len(package.signature) == 64
    assert not package.is_test_signed


def test_empty_body_round_trips(signer: KeySigner) -> None:
    package = verify_package(_package(signer, body=b""), _trusted(signer), allow_test_signed=False)
    assert package.body == b""


def test_image_type_numbers_are_the_originals() -> None:
    numbers = {member.name: member.value for member in ImageType}
    assert numbers["OneBl"] == 1
    assert numbers["SecurityMonitor"] == 4
    assert numbers["NormalWorldKernel"] == 7
    assert numbers["RootFs"] == 8
    assert numbers["Applications"] == 10
    assert numbers["TrustedKeystore"] == 19
    assert numbers["CustomerBoardConfig"] == 21
    assert numbers["Other"] == 28


def test_layout_matches_an_independent_encoding(signer: KeySigner) -> None:
    thumbprint = key_thumbprint(signer.public_key())
    by_hand = _assemble(_sections(thumbprint), signer)
    built = _package(signer)
    assert by_hand[:-64] == built[:-64]
    assert built[:4] == b"OSIP"
    assert struct.unpack_from("<HHI", built, 4) == (1, 0, len(BODY))
    assert struct.unpack_from("<I", built, 12 + len(BODY)) == (0x4D345834,)


def test_describe_shows_every_field(signer: KeySigner) -> None:
    metadata = _metadata(temporary=True, abi_depends=(7,))
    package = verify_package(_package(signer, metadata), _trusted(signer), allow_test_signed=False)
    shown = describe_package(package)
    covered = {
        "image_type": "image_type",
        "component_id": "component_id",
        "image_id": "image_id",
        "name": "name",
        "version": "version",
        "security_version": "security_version",
        "build_time": "build_time",
        "temporary": "temporary",
        "abi_depends": "abi_depends",
        "body": "body_sha256",
        "signer_thumbprint": "signer_thumbprint",
        "signature": "signature",
    }
    fields = {
        f.name
        for cls in (ImageIdentity, ImageMetadata, ImagePackage)
        for f in dataclasses.fields(cls)
        if f.name not in ("identity", "metadata")
    }
    assert fields == set(covered)
    assert all(key in shown for key in covered.values())
    assert shown["image_type"] == "Applications"
    assert shown["image_type_number"] == 10
    assert shown["component_id"] == str(COMPONENT_ID)
    assert shown["abi_depends"] == [7]
    assert shown["body_size"] == len(BODY)
    assert shown["test_signed"] is False
    assert describe_package(parse_package(_package(signer, metadata))).keys() == shown.keys()


# --- signatures and trust ---------------------------------------------------------------------


def test_tampered_body_is_refused(signer: KeySigner) -> None:
    data = bytearray(_package(signer))
    data[12] ^= 0x01
    with pytest.raises(PackageSignatureError):
        verify_package(bytes(data), _trusted(signer), allow_test_signed=False)


@pytest.mark.parametrize(
    "changes",
    [
        {"identity": ImageIdentity(ImageType.CustomerBoardConfig, COMPONENT_ID, IMAGE_ID)},
        {"identity": ImageIdentity(ImageType.Applications, uuid.uuid4(), IMAGE_ID)},
        {"identity": ImageIdentity(ImageType.Applications, COMPONENT_ID, uuid.uuid4())},
        {"name": "Blinq"},
        {"version": "1.0.1"},
        {"security_version": 2},
        {"build_time": 1_700_000_001},
        {"temporary": True},
        {"abi_depends": (1,)},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_tampered_metadata_is_refused(signer: KeySigner, changes: dict[str, Any]) -> None:
    original = _package(signer)
    tampered = build_unsigned(
        _metadata(**changes), BODY, signer_thumbprint=key_thumbprint(signer.public_key())
    )
    with pytest.raises(PackageSignatureError):
        verify_package(tampered + original[-64:], _trusted(signer), allow_test_signed=False)


def test_swapped_signer_thumbprint_is_refused(signer: KeySigner, other_signer: KeySigner) -> None:
    original = _package(signer)
    swapped = build_unsigned(
        _metadata(), BODY, signer_thumbprint=key_thumbprint(other_signer.public_key())
    )
    with pytest.raises(PackageSignatureError):
        verify_package(
            swapped + original[-64:], _trusted(signer, other_signer), allow_test_signed=False
        )


def test_tampered_signature_is_refused(signer: KeySigner) -> None:
    data = bytearray(_package(signer))
    data[-1] ^= 0x80
    with pytest.raises(PackageSignatureError) as caught:
        verify_package(bytes(data), _trusted(signer), allow_test_signed=False)
    assert isinstance(caught.value, SignatureError)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(signer: KeySigner, position: int, bit: int) -> None:
    data = bytearray(_package(signer))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(ImagePackageError):
        verify_package(bytes(data), _trusted(signer), allow_test_signed=False)


def test_signer_not_in_trusted_keys_is_refused(signer: KeySigner, other_signer: KeySigner) -> None:
    with pytest.raises(UntrustedSignerError) as caught:
        verify_package(_package(signer), _trusted(other_signer), allow_test_signed=False)
    assert caught.value.thumbprint == key_thumbprint(signer.public_key())


def test_shipped_test_key_is_the_one_devices_recognise(test_signer: KeySigner) -> None:
    assert key_thumbprint(test_signer.public_key()) == TEST_SIGNING_KEY_THUMBPRINT
    assert b"PUBLIC" in TEST_KEY_PATH.read_bytes()


def test_test_signed_package_is_refused_without_allow_test_signed(test_signer: KeySigner) -> None:
    data = _package(test_signer)
    with pytest.raises(TestSignedPackageError, match="appDevelopment"):
        verify_package(data, {}, allow_test_signed=False)
    # Listing the test key as trusted does not make a production device accept it.
    with pytest.raises(TestSignedPackageError):
        verify_package(data, _trusted(test_signer), allow_test_signed=False)


def test_test_signed_package_is_accepted_with_allow_test_signed(test_signer: KeySigner) -> None:
    package = verify_package(_package(test_signer), {}, allow_test_signed=True)
    assert package.is_test_signed
    assert describe_package(package)["test_signed"] is True


def test_tampered_test_signed_package_is_refused_even_when_allowed(test_signer: KeySigner) -> None:
    data = bytearray(_package(test_signer))
    data[13] ^= 0x01
    with pytest.raises(PackageSignatureError):
        verify_package(bytes(data), {}, allow_test_signed=True)


def test_trust_store_mapping_a_thumbprint_to_another_key_is_a_caller_error(
    signer: KeySigner, other_signer: KeySigner
) -> None:
    wrong = {key_thumbprint(signer.public_key()): other_signer.public_key()}
    with pytest.raises(RuntimeError, match="different key"):
        verify_package(_package(signer), wrong, allow_test_signed=False)


# --- re-signing and the signer seam -----------------------------------------------------------


def test_resign_keeps_identity_and_body(test_signer: KeySigner, signer: KeySigner) -> None:
    metadata = _metadata(temporary=True, abi_depends=(2,))
    original = _package(test_signer, metadata)
    resigned = resign_package(original, signer)
    package = verify_package(resigned, _trusted(signer), allow_test_signed=False)
    assert package.metadata == metadata
    assert package.body == BODY
    assert package.signer_thumbprint == key_thumbprint(signer.public_key())
    assert resigned[: 12 + len(BODY)] == original[: 12 + len(BODY)]


def test_resign_drops_ancillary_sections(signer: KeySigner, other_signer: KeySigner) -> None:
    sections = [*_sections(key_thumbprint(signer.public_key())), (b"zz", b"unknown extra")]
    resigned = resign_package(_assemble(sections, signer), other_signer)
    assert b"unknown extra" not in resigned


class _WrongKeySigner:
    """A signer that names one key and signs with another, like a misconfigured HSM slot."""

    def __init__(self, named: KeySigner, used: KeySigner) -> None:
        self._named = named
        self._used = used

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._named.public_key()

    def sign(self, message: bytes) -> bytes:
        return self._used.sign(message)


def test_sign_refuses_a_signature_that_does_not_verify(
    signer: KeySigner, other_signer: KeySigner
) -> None:
    unsigned = build_unsigned(
        _metadata(), BODY, signer_thumbprint=key_thumbprint(signer.public_key())
    )
    with pytest.raises(SignatureError):
        sign_package(unsigned, _WrongKeySigner(signer, other_signer))


def test_sign_refuses_a_signer_the_package_does_not_name(
    signer: KeySigner, other_signer: KeySigner
) -> None:
    unsigned = build_unsigned(
        _metadata(), BODY, signer_thumbprint=key_thumbprint(signer.public_key())
    )
    with pytest.raises(RuntimeError, match="not the signer named"):
        sign_package(unsigned, other_signer)


def test_signing_is_deterministic(signer: KeySigner) -> None:
    assert _package(signer) == _package(signer)


# --- structural attacks: refused before anything is trusted or unpacked -----------------------


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_truncated_package_is_refused_at_any_offset(signer: KeySigner, data: st.DataObject) -> None:
    package = _package(signer, _metadata(temporary=True, abi_depends=(1, 2)))
    cut = data.draw(st.integers(min_value=0, max_value=len(package) - 1))
    with pytest.raises(ImagePackageError):
        parse_package(package[:cut])


def test_oversized_package_is_refused(signer: KeySigner) -> None:
    data = _package(signer)
    with pytest.raises(ImagePackageError, match="over the"):
        parse_package(data, max_size=len(data) - 1)
    assert parse_package(data, max_size=len(data)).body == BODY


def test_duplicated_section_is_refused(signer: KeySigner) -> None:
    sections = _sections(key_thumbprint(signer.public_key()))
    duplicated = [*sections, (b"RV", struct.pack("<I", 0))]
    with pytest.raises(ImagePackageError, match="duplicated section 'RV'"):
        verify_package(_assemble(duplicated, signer), _trusted(signer), allow_test_signed=False)


def test_unknown_critical_section_is_refused(signer: KeySigner) -> None:
    sections = [*_sections(key_thumbprint(signer.public_key())), (b"CM", b"\x01")]
    with pytest.raises(ImagePackageError, match="unknown critical section 'CM'"):
        verify_package(_assemble(sections, signer), _trusted(signer), allow_test_signed=False)


def test_unknown_ancillary_section_is_skipped(signer: KeySigner) -> None:
    sections = [*_sections(key_thumbprint(signer.public_key())), (b"zz", b"note")]
    package = verify_package(_assemble(sections, signer), _trusted(signer), allow_test_signed=False)
    assert package.metadata == _metadata()


@pytest.mark.parametrize("tag", [b"ID", b"SG", b"DB", b"RV", b"VR"])
def test_missing_required_section_is_refused(signer: KeySigner, tag: bytes) -> None:
    sections = [s for s in _sections(key_thumbprint(signer.public_key())) if s[0] != tag]
    with pytest.raises(ImagePackageError, match=f"missing required section '{tag.decode()}'"):
        parse_package(_assemble(sections, signer))


def test_unsigned_package_is_refused(signer: KeySigner) -> None:
    unsigned = build_unsigned(
        _metadata(), BODY, signer_thumbprint=key_thumbprint(signer.public_key())
    )
    with pytest.raises(ImagePackageError, match="unsigned"):
        verify_package(unsigned, _trusted(signer), allow_test_signed=True)


def test_all_zero_signature_is_refused_as_unsigned(signer: KeySigner) -> None:
    with pytest.raises(ImagePackageError, match="unsigned"):
        parse_package(_package(signer)[:-64] + bytes(64))


def test_trailing_bytes_are_refused(signer: KeySigner) -> None:
    with pytest.raises(ImagePackageError, match="3 trailing bytes"):
        parse_package(_package(signer) + b"\x00\x00\x00")


def test_body_length_pointing_outside_is_refused(signer: KeySigner) -> None:
    sections = _sections(key_thumbprint(signer.public_key()))
    with pytest.raises(ImagePackageError, match=r"body .* runs past the end"):
        parse_package(_assemble(sections, signer, body_length=0xFFFF_FFFF))


def test_section_size_pointing_outside_is_refused(signer: KeySigner) -> None:
    data = bytearray(_package(signer))
    first_section = 12 + len(BODY) + 8
    struct.pack_into("<H", data, first_section + 2, 0xFFFF)
    with pytest.raises(ImagePackageError, match=r"payload .* runs past the end"):
        parse_package(bytes(data))


def test_section_count_overflow_is_refused(signer: KeySigner) -> None:
    sections = _sections(key_thumbprint(signer.public_key()))
    with pytest.raises(ImagePackageError, match=f"more than the limit of {MAX_SECTIONS}"):
        parse_package(_assemble(sections, signer, section_count=0xFFFF_FFFF))
    # One section too many: the trailer and signature are misread as a section, and refused.
    with pytest.raises(ImagePackageError):
        parse_package(_assemble(sections, signer, section_count=len(sections) + 1))


def test_metadata_length_mismatch_is_refused(signer: KeySigner) -> None:
    sections = _sections(key_thumbprint(signer.public_key()))
    with pytest.raises(ImagePackageError, match="metadata length field"):
        parse_package(_assemble(sections, signer, metadata_length=0xFFFF_FFFF))


def test_unknown_format_version_is_refused(signer: KeySigner) -> None:
    sections = _sections(key_thumbprint(signer.public_key()))
    with pytest.raises(ImagePackageError, match="unsupported image package format version 2"):
        parse_package(_assemble(sections, signer, format_version=2))


def test_wrong_magic_is_refused(signer: KeySigner) -> None:
    with pytest.raises(ImagePackageError, match="not an OpenSphere image package"):
        parse_package(b"4XM4" + _package(signer)[4:])


def test_unknown_image_type_is_refused(signer: KeySigner) -> None:
    sections = _sections(key_thumbprint(signer.public_key()))
    sections[0] = (b"ID", struct.pack("<HH16s16s", 11, 0, COMPONENT_ID.bytes_le, IMAGE_ID.bytes_le))
    with pytest.raises(ImagePackageError, match="unknown image type 11"):
        parse_package(_assemble(sections, signer))


@pytest.mark.parametrize(
    ("tag", "payload", "match"),
    [
        (b"ID", struct.pack("<HH16s16s", 10, 0, bytes(16), IMAGE_ID.bytes_le), "nil UUID"),
        (
            b"ID",
            struct.pack("<HH16s16s", 10, 1, COMPONENT_ID.bytes_le, IMAGE_ID.bytes_le),
            "reserved",
        ),
        (b"SG", bytes(32) + struct.pack("<I", 2), "signature type 2"),
        (b"DB", struct.pack("<Q32s", 0, b"Blink\x00junk"), "zero-padded"),
        (b"DB", struct.pack("<Q32s", 0, b"\xff\xfe"), "not UTF-8"),
        (b"DB", struct.pack("<Q32s", 0, b""), "name"),
        (b"RV", b"\x03\x00", "expected 4"),
        (b"VR", b"1.0 beta", "version"),
        (b"VR", "1.0é".encode(), "not ASCII"),
    ],
)
def test_malformed_section_payload_is_refused(
    signer: KeySigner, tag: bytes, payload: bytes, match: str
) -> None:
    sections = [
        (t, payload if t == tag else p) for t, p in _sections(key_thumbprint(signer.public_key()))
    ]
    with pytest.raises(ImagePackageError, match=match):
        parse_package(_assemble(sections, signer))


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "x" * 32},
        {"name": ""},
        {"name": "tab\there"},
        {"version": ""},
        {"version": "1.0/../x"},
        {"security_version": -1},
        {"security_version": 2**32},
        {"abi_depends": tuple(range(17))},
    ],
    ids=repr,
)
def test_invalid_metadata_cannot_be_built(changes: dict[str, Any]) -> None:
    with pytest.raises(ImagePackageError):
        _metadata(**changes)


def test_nil_component_id_cannot_be_built() -> None:
    with pytest.raises(ImagePackageError, match="nil UUID"):
        ImageIdentity(ImageType.Applications, uuid.UUID(int=0), IMAGE_ID)


def test_errors_are_format_errors() -> None:
    assert issubclass(ImagePackageError, FormatError)
    assert issubclass(PackageSignatureError, SignatureError)
    assert issubclass(TestSignedPackageError, UntrustedSignerError)
