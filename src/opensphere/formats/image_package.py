"""Signed image packages: one file format for OS components, applications and board configuration.

Modelled on Azure Sphere's ``.imagepackage`` (reference §3.5): a body, then a metadata block of
TLV sections with the original's tags and magic, then a trailing ECDSA P-256/SHA-256 signature
over every byte before it. Unlike the original, a small header leads the file so that a package
of an unknown format version is refused by name instead of being misread. Stripping that
12-byte header leaves the original's layout.

All integers are little-endian::

    offset      size  field
    0           4     magic b"OSIP"
    4           2     format version (1)
    6           2     reserved, zero
    8           4     body length B
    12          B     body (for applications: a tar made by ``safe_tar.pack_directory``)
    12+B        4     metadata magic 0x4D345834 ("4XM4", as in the original)
    16+B        4     section count N (at most MAX_SECTIONS)
    20+B        ...   N sections: tag (2 ASCII bytes), u16 payload size, payload
    ...         4     metadata length M: from the metadata magic to the end of the last section
    ...         64    signature, raw r‖s, over every byte before it

Sections (tags read as ASCII; the reference writes them as u16, e.g. ``ID`` = 0x4449):

    ID  identity   u16 image type, u16 reserved (0), GUID component ID, GUID image ID
                   (GUIDs in Microsoft's mixed-endian byte order, as in the original)
    SG  signer     32-byte SHA-256 thumbprint of the signer's SubjectPublicKeyInfo DER,
                   u32 signature type (1 = ECDSA P-256/SHA-256); the original has a 20-byte
                   SHA-1 certificate thumbprint here
    DB  debug      u64 build time (Unix seconds), 32-byte name (UTF-8, NUL-padded)
    RV  revocation u32 security version (anti-rollback; compared with the device's fuses)
    VR  version    ASCII version label (ours: the original has no version section)
    TP  temporary  empty; present only on images uploaded for manufacturing
    ND  ABI        u32 list of required ABI versions (the original's ABIDepends)

A tag whose first byte is a lowercase ASCII letter is ancillary: a reader that does not know it
skips it (it stays covered by the signature). Any other unknown tag is critical and refused,
which includes the original's tags this format does not use (CM compression, NP, RO, LG...).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Protocol
from uuid import UUID

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)

from opensphere.formats.errors import FormatError, SignatureError
from opensphere.formats.signatures import verify_es256

MAGIC: Final = b"OSIP"
FORMAT_VERSION: Final = 1
METADATA_MAGIC: Final = 0x4D345834
SIGNATURE_SIZE: Final = 64
THUMBPRINT_SIZE: Final = 32
SIGNATURE_TYPE_ECDSA_P256: Final = 1
MAX_PACKAGE_SIZE: Final = 64 * 1024 * 1024
MAX_SECTIONS: Final = 32
NAME_MAX_BYTES: Final = 31
VERSION_MAX_LENGTH: Final = 64
MAX_ABI_DEPENDS: Final = 16
_U32_MAX: Final = 0xFFFF_FFFF
_U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF

_HEADER = struct.Struct("<4sHHI")
_METADATA_HEADER = struct.Struct("<II")
_SECTION_HEADER = struct.Struct("<2sH")
_IDENTITY = struct.Struct("<HH16s16s")
_SIGNER = struct.Struct(f"<{THUMBPRINT_SIZE}sI")
_DEBUG = struct.Struct(f"<Q{NAME_MAX_BYTES + 1}s")
_U32 = struct.Struct("<I")

_TAG_IDENTITY: Final = b"ID"
_TAG_SIGNER: Final = b"SG"
_TAG_DEBUG: Final = b"DB"
_TAG_REVOCATION: Final = b"RV"
_TAG_VERSION: Final = b"VR"
_TAG_TEMPORARY: Final = b"TP"
_TAG_ABI_DEPENDS: Final = b"ND"
_REQUIRED_TAGS: Final = (_TAG_IDENTITY, _TAG_SIGNER, _TAG_DEBUG, _TAG_REVOCATION, _TAG_VERSION)
_KNOWN_TAGS: Final = frozenset({*_REQUIRED_TAGS, _TAG_TEMPORARY, _TAG_ABI_DEPENDS})

# Version strings are shown to people and put in file names, so keep them to a safe alphabet.
_VERSION_PATTERN: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_~-]*")


class ImageType(IntEnum):
    """Image types with the original's names and numbers (reference §2.4), so tools agree."""

    OneBl = 1
    PlutonRuntime = 2
    WifiFirmware = 3
    SecurityMonitor = 4
    NormalWorldLoader = 5
    NormalWorldDtb = 6
    NormalWorldKernel = 7
    RootFs = 8
    Services = 9
    Applications = 10
    FwConfig = 13
    BootManifest = 16
    Nwfs = 17
    TrustedKeystore = 19
    Policy = 20
    CustomerBoardConfig = 21
    UpdateCertStore = 22
    BaseSystemUpdateManifest = 23
    FirmwareUpdateManifest = 24
    CustomerUpdateManifest = 25
    RecoveryManifest = 26
    ManifestSet = 27
    Other = 28


class ImagePackageError(FormatError):
    """An image package is malformed, oversized, unsigned or not acceptable."""


class PackageSignatureError(ImagePackageError, SignatureError):
    """The package signature does not verify with the key its signer thumbprint names."""

    def __init__(self, thumbprint: bytes) -> None:
        self.thumbprint = thumbprint
        super().__init__(f"signature does not verify with signer key {thumbprint.hex()}")


class UntrustedSignerError(ImagePackageError):
    """The package names a signer that is not in the trusted key store."""

    def __init__(self, thumbprint: bytes, reason: str = "is not a trusted signer") -> None:
        self.thumbprint = thumbprint
        super().__init__(f"signer key {thumbprint.hex()} {reason}")


class TestSignedPackageError(UntrustedSignerError):
    """The package is signed with the public SDK test key, which this device does not accept."""

    __test__ = False  # tells pytest this is not a test class despite its name

    def __init__(self, thumbprint: bytes) -> None:
        super().__init__(
            thumbprint,
            "is the public test signing key; test-signed images need the appDevelopment capability",
        )


@dataclass(frozen=True, slots=True)
class ImageIdentity:
    """Which component an image belongs to, and which build of it this is."""

    image_type: ImageType
    component_id: UUID
    image_id: UUID

    def __post_init__(self) -> None:
        if self.component_id.int == 0 or self.image_id.int == 0:
            raise ImagePackageError("component and image IDs must not be the nil UUID")


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    """Everything a signer vouches for besides the body and its own identity.

    ``version`` is a free-form label for people (e.g. "24.06" or "1.4.2+build7"); ordering and
    anti-rollback use only ``security_version``, so two builds never need to compare labels.
    """

    identity: ImageIdentity
    name: str
    version: str
    security_version: int
    build_time: int
    temporary: bool = False
    abi_depends: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        size = len(self.name.encode("utf-8", errors="replace"))
        if not self.name or size > NAME_MAX_BYTES or not self.name.isprintable():
            raise ImagePackageError(
                f"name {self.name!r} must be 1 to {NAME_MAX_BYTES} bytes of printable UTF-8"
            )
        if len(self.version) > VERSION_MAX_LENGTH or not _VERSION_PATTERN.fullmatch(self.version):
            raise ImagePackageError(
                f"version {self.version!r} must be 1 to {VERSION_MAX_LENGTH} characters of "
                "letters, digits and . + _ ~ -, starting with a letter or digit"
            )
        if not 0 <= self.security_version <= _U32_MAX:
            raise ImagePackageError(f"security version {self.security_version} is not a u32")
        if not 0 <= self.build_time <= _U64_MAX:
            raise ImagePackageError(f"build time {self.build_time} is not a u64")
        if len(self.abi_depends) > MAX_ABI_DEPENDS or not all(
            0 <= abi <= _U32_MAX for abi in self.abi_depends
        ):
            raise ImagePackageError(f"ABI dependencies must be at most {MAX_ABI_DEPENDS} u32s")


@dataclass(frozen=True, slots=True)
class UnverifiedImagePackage:
    """A package whose structure is sound but whose signature nobody has checked yet."""

    metadata: ImageMetadata
    body: bytes = field(repr=False)
    signer_thumbprint: bytes
    signature: bytes
    signed_data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ImagePackage:
    """A package whose signature verified with a trusted (or allowed test) signer key."""

    metadata: ImageMetadata
    body: bytes = field(repr=False)
    signer_thumbprint: bytes
    signature: bytes

    @property
    def is_test_signed(self) -> bool:
        return self.signer_thumbprint == TEST_SIGNING_KEY_THUMBPRINT


class PackageSigner(Protocol):
    """Signs packages; a key in this process, an HSM or a root of trust can all implement it."""

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, message: bytes) -> bytes:
        """Return a raw r‖s (64-byte) ECDSA P-256 signature over SHA-256 of ``message``."""
        ...


@dataclass(frozen=True, slots=True)
class KeySigner:
    """Signs with a P-256 private key held in this process (development, software signing)."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.private_key.curve, ec.SECP256R1):
            raise ValueError("image packages are signed with P-256 keys only")

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def sign(self, message: bytes) -> bytes:
        # RFC 6979 nonces: a weak random number generator cannot leak the signing key.
        der = self.private_key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def key_thumbprint(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo DER: names a signer key independently of any cert."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


# The SDK-style test key: its private half is published in samples/keys/test-signing-key.pem,
# so anybody can sign with it. Devices accept it only with the appDevelopment capability.
_TEST_SIGNING_PUBLIC_KEY_PEM: Final = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtzFpBRVbuLvkhNqQiyqk7E12lVsD
H6XoMpZWsHdETOICxUQm3dYWDwMx+QGrdegJeTdtS922xcwooPHjWmEAFw==
-----END PUBLIC KEY-----
"""


def _load_test_public_key() -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(_TEST_SIGNING_PUBLIC_KEY_PEM)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


TEST_SIGNING_PUBLIC_KEY: Final = _load_test_public_key()
TEST_SIGNING_KEY_THUMBPRINT: Final = key_thumbprint(TEST_SIGNING_PUBLIC_KEY)


def build_unsigned(metadata: ImageMetadata, body: bytes, *, signer_thumbprint: bytes) -> bytes:
    """Lay out everything the signature will cover, so any signer can sign it later."""
    if len(signer_thumbprint) != THUMBPRINT_SIZE:
        raise ImagePackageError(f"signer thumbprint must be {THUMBPRINT_SIZE} bytes")
    if len(body) > _U32_MAX:
        raise ImagePackageError(f"body of {len(body)} bytes does not fit a u32 length")
    sections = _encode_sections(metadata, signer_thumbprint)
    block = _METADATA_HEADER.pack(METADATA_MAGIC, len(sections)) + b"".join(
        _SECTION_HEADER.pack(tag, len(payload)) + payload for tag, payload in sections
    )
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(body))
    return header + body + block + _U32.pack(len(block))


def sign_package(unsigned: bytes, signer: PackageSigner) -> bytes:
    """Append the signature; the signer must be the one the package names."""
    _, _, named_signer = _parse(unsigned, max_size=MAX_PACKAGE_SIZE, signed=False)
    public_key = signer.public_key()
    if key_thumbprint(public_key) != named_signer:
        raise RuntimeError("the signer's key is not the signer named in the unsigned package")
    signature = signer.sign(unsigned)
    # Check what an HSM or remote signer returned before the package leaves this process.
    verify_es256(public_key, unsigned, signature)
    return unsigned + signature


def resign_package(
    data: bytes, signer: PackageSigner, *, max_size: int = MAX_PACKAGE_SIZE
) -> bytes:
    """Replace the signer and signature, keeping identity, metadata and body.

    The old signature is not checked here: production signing is authorised by whoever uploads
    the package, so the caller decides what to verify first. Ancillary sections are dropped,
    since the new signer vouches only for what this reader understands.
    """
    package = parse_package(data, max_size=max_size)
    thumbprint = key_thumbprint(signer.public_key())
    return sign_package(
        build_unsigned(package.metadata, package.body, signer_thumbprint=thumbprint), signer
    )


def parse_package(data: bytes, *, max_size: int = MAX_PACKAGE_SIZE) -> UnverifiedImagePackage:
    """Check the structure of a signed package without trusting it; nothing is unpacked."""
    metadata, body, thumbprint = _parse(data, max_size=max_size, signed=True)
    signed_length = len(data) - SIGNATURE_SIZE
    return UnverifiedImagePackage(
        metadata=metadata,
        body=body,
        signer_thumbprint=thumbprint,
        signature=data[signed_length:],
        signed_data=data[:signed_length],
    )


def verify_package(
    data: bytes,
    trusted_keys: Mapping[bytes, ec.EllipticCurvePublicKey],
    *,
    allow_test_signed: bool,
    max_size: int = MAX_PACKAGE_SIZE,
) -> ImagePackage:
    """Return the package only if a trusted key, named by its thumbprint, signed it.

    The test key is refused without ``allow_test_signed`` even when it is in ``trusted_keys``:
    its private half is public, so only a development device may run what it signs.
    """
    unverified = parse_package(data, max_size=max_size)
    thumbprint = unverified.signer_thumbprint
    if thumbprint == TEST_SIGNING_KEY_THUMBPRINT:
        if not allow_test_signed:
            raise TestSignedPackageError(thumbprint)
        public_key = TEST_SIGNING_PUBLIC_KEY
    else:
        trusted = trusted_keys.get(thumbprint)
        if trusted is None:
            raise UntrustedSignerError(thumbprint)
        if key_thumbprint(trusted) != thumbprint:
            raise RuntimeError(f"trusted key store maps {thumbprint.hex()} to a different key")
        public_key = trusted
    try:
        verify_es256(public_key, unverified.signed_data, unverified.signature)
    except SignatureError as exc:
        raise PackageSignatureError(thumbprint) from exc
    return ImagePackage(
        metadata=unverified.metadata,
        body=unverified.body,
        signer_thumbprint=thumbprint,
        signature=unverified.signature,
    )


def describe_package(
    package: ImagePackage | UnverifiedImagePackage,
) -> dict[str, str | int | bool | list[int]]:
    """Every field as JSON-ready values, for ``image-package show`` and logs."""
    metadata = package.metadata
    identity = metadata.identity
    return {
        "image_type": identity.image_type.name,
        "image_type_number": int(identity.image_type),
        "component_id": str(identity.component_id),
        "image_id": str(identity.image_id),
        "name": metadata.name,
        "version": metadata.version,
        "security_version": metadata.security_version,
        "build_time": metadata.build_time,
        "temporary": metadata.temporary,
        "abi_depends": list(metadata.abi_depends),
        "body_size": len(package.body),
        "body_sha256": hashlib.sha256(package.body).hexdigest(),
        "signer_thumbprint": package.signer_thumbprint.hex(),
        "test_signed": package.signer_thumbprint == TEST_SIGNING_KEY_THUMBPRINT,
        "signature": package.signature.hex(),
    }


def _encode_sections(
    metadata: ImageMetadata, signer_thumbprint: bytes
) -> list[tuple[bytes, bytes]]:
    identity = metadata.identity
    sections = [
        (
            _TAG_IDENTITY,
            _IDENTITY.pack(
                identity.image_type, 0, identity.component_id.bytes_le, identity.image_id.bytes_le
            ),
        ),
        (_TAG_SIGNER, _SIGNER.pack(signer_thumbprint, SIGNATURE_TYPE_ECDSA_P256)),
        (_TAG_DEBUG, _DEBUG.pack(metadata.build_time, metadata.name.encode("utf-8"))),
        (_TAG_REVOCATION, _U32.pack(metadata.security_version)),
        (_TAG_VERSION, metadata.version.encode("ascii")),
    ]
    if metadata.temporary:
        sections.append((_TAG_TEMPORARY, b""))
    if metadata.abi_depends:
        sections.append(
            (_TAG_ABI_DEPENDS, struct.pack(f"<{len(metadata.abi_depends)}I", *metadata.abi_depends))
        )
    return sections


class _Reader:
    """A cursor that refuses to read past the end and says what it was reading."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.offset

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise ImagePackageError(
                f"{what} ({size} bytes at offset {self.offset}) runs past the end of the data "
                f"({self.remaining} bytes left): truncated, or a length field points outside"
            )
        chunk = self._data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u32(self, what: str) -> int:
        value: int = _U32.unpack(self.take(_U32.size, what))[0]
        return value


def _tag_text(tag: bytes) -> str:
    return f"'{tag.decode('ascii', errors='replace')}' (0x{int.from_bytes(tag, 'little'):04X})"


def _parse(data: bytes, *, max_size: int, signed: bool) -> tuple[ImageMetadata, bytes, bytes]:
    """Walk the layout front to back, so every refusal names the field where it went wrong."""
    if len(data) > max_size:
        raise ImagePackageError(f"package is {len(data)} bytes, over the {max_size}-byte limit")
    reader = _Reader(data)
    magic, version, reserved, body_length = _HEADER.unpack(reader.take(_HEADER.size, "header"))
    if magic != MAGIC:
        raise ImagePackageError(f"not an OpenSphere image package (magic {magic.hex()})")
    if version != FORMAT_VERSION:
        raise ImagePackageError(
            f"unsupported image package format version {version} (this reader: {FORMAT_VERSION})"
        )
    if reserved != 0:
        raise ImagePackageError("reserved header field is not zero")
    body = reader.take(body_length, "body")
    metadata_start = reader.offset
    metadata_magic, count = _METADATA_HEADER.unpack(
        reader.take(_METADATA_HEADER.size, "metadata header")
    )
    if metadata_magic != METADATA_MAGIC:
        raise ImagePackageError(f"bad metadata magic 0x{metadata_magic:08X}")
    if count > MAX_SECTIONS:
        raise ImagePackageError(f"{count} metadata sections, more than the limit of {MAX_SECTIONS}")
    sections: dict[bytes, bytes] = {}
    for index in range(count):
        tag, size = _SECTION_HEADER.unpack(reader.take(_SECTION_HEADER.size, f"section {index}"))
        payload = reader.take(size, f"section {_tag_text(tag)} payload")
        if tag in sections:
            raise ImagePackageError(f"duplicated section {_tag_text(tag)}")
        sections[tag] = payload
    metadata_length = reader.offset - metadata_start
    declared = reader.u32("metadata length")
    if declared != metadata_length:
        raise ImagePackageError(
            f"metadata length field says {declared} bytes, but the sections take {metadata_length}"
        )
    if signed:
        if reader.remaining == 0:
            raise ImagePackageError("package is unsigned: no signature follows the metadata")
        signature = reader.take(SIGNATURE_SIZE, "signature")
        if signature == bytes(SIGNATURE_SIZE):
            raise ImagePackageError("package is unsigned: the signature is all zeros")
    if reader.remaining:
        raise ImagePackageError(f"{reader.remaining} trailing bytes after the end of the package")
    metadata, thumbprint = _decode_sections(sections)
    return metadata, body, thumbprint


def _decode_sections(sections: dict[bytes, bytes]) -> tuple[ImageMetadata, bytes]:
    for tag in sections:
        if tag not in _KNOWN_TAGS and not (0x61 <= tag[0] <= 0x7A):
            raise ImagePackageError(f"unknown critical section {_tag_text(tag)}")
    for tag in _REQUIRED_TAGS:
        if tag not in sections:
            raise ImagePackageError(f"missing required section {_tag_text(tag)}")

    image_type, reserved, component, image = _exact(sections, _TAG_IDENTITY, _IDENTITY)
    try:
        known_type = ImageType(image_type)
    except ValueError as exc:
        raise ImagePackageError(f"unknown image type {image_type}") from exc
    if reserved != 0:
        raise ImagePackageError("reserved identity field is not zero")

    thumbprint, signature_type = _exact(sections, _TAG_SIGNER, _SIGNER)
    if signature_type != SIGNATURE_TYPE_ECDSA_P256:
        raise ImagePackageError(f"unsupported signature type {signature_type}")

    build_time, raw_name = _exact(sections, _TAG_DEBUG, _DEBUG)
    (security_version,) = _exact(sections, _TAG_REVOCATION, _U32)
    if sections.get(_TAG_TEMPORARY):
        raise ImagePackageError("temporary section must be empty")
    raw_abi = sections.get(_TAG_ABI_DEPENDS)
    if raw_abi is not None and (not raw_abi or len(raw_abi) % 4):
        raise ImagePackageError("ABI section must hold one or more u32 values")

    try:
        metadata = ImageMetadata(
            identity=ImageIdentity(
                image_type=known_type,
                component_id=UUID(bytes_le=component),
                image_id=UUID(bytes_le=image),
            ),
            name=_decode_name(raw_name),
            version=sections[_TAG_VERSION].decode("ascii"),
            security_version=security_version,
            build_time=build_time,
            temporary=_TAG_TEMPORARY in sections,
            abi_depends=tuple(struct.unpack(f"<{len(raw_abi) // 4}I", raw_abi)) if raw_abi else (),
        )
    except UnicodeDecodeError as exc:
        raise ImagePackageError("version is not ASCII") from exc
    return metadata, thumbprint


def _exact(sections: dict[bytes, bytes], tag: bytes, layout: struct.Struct) -> tuple[Any, ...]:
    payload = sections[tag]
    if len(payload) != layout.size:
        raise ImagePackageError(
            f"section {_tag_text(tag)} is {len(payload)} bytes, expected {layout.size}"
        )
    return layout.unpack(payload)


def _decode_name(raw: bytes) -> str:
    name, _, padding = raw.partition(b"\0")
    if len(name) == len(raw) or padding.strip(b"\0"):
        raise ImagePackageError("name field is not NUL-terminated and zero-padded")
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImagePackageError("name is not UTF-8") from exc
