"""Making image packages (the SDK side): apps from a folder, board configurations from a file.

Every build gets a fresh image ID, as in the original ("each time the SDK builds or rebuilds
an image package, a new unique image ID is used"); the component ID is the app's own
(from its manifest) so the new build replaces the old one on a device.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.device.policy import MANIFEST_FILE
from opensphere.formats.app_manifest import ManifestError, parse_manifest
from opensphere.formats.image_package import (
    TEST_SIGNING_KEY_THUMBPRINT,
    ImageIdentity,
    ImageMetadata,
    ImageType,
    KeySigner,
    PackageSigner,
    build_unsigned,
    key_thumbprint,
    sign_package,
)
from opensphere.formats.safe_tar import pack_directory

MAX_BOARD_CONFIG_SIZE: Final = 64 * 1024
BOARD_CONFIG_NAMESPACE: Final = uuid.UUID("1c6c9f5e-7a2b-4d8e-9f10-3b5a7c9d2e41")


class SigningKeyError(ValueError):
    """A signing key file is unreadable, not P-256, or readable by others."""


def load_signing_key(path: Path) -> KeySigner:
    """Load a P-256 PEM private key for signing; refuse one that others can read.

    The published test key (samples/keys/test-signing-key.pem) is public on purpose, so it is
    exempt from the permission check.
    """
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot load the signing key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"{path} is not an ECDSA P-256 private key")
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077 and key_thumbprint(key.public_key()) != TEST_SIGNING_KEY_THUMBPRINT:
        raise SigningKeyError(f"{path} has mode {mode:04o}; a signing key must be private")
    return KeySigner(key)


def package_image(
    *,
    image_type: ImageType,
    component_id: uuid.UUID,
    name: str,
    body: bytes,
    signer: PackageSigner,
    version: str,
    security_version: int,
    build_time: int,
) -> bytes:
    """Build and sign one image package with a fresh image ID."""
    metadata = ImageMetadata(
        identity=ImageIdentity(
            image_type=image_type, component_id=component_id, image_id=uuid.uuid4()
        ),
        name=name,
        version=version,
        security_version=security_version,
        build_time=build_time,
    )
    thumbprint = key_thumbprint(signer.public_key())
    return sign_package(build_unsigned(metadata, body, signer_thumbprint=thumbprint), signer)


def package_application(
    folder: Path,
    *,
    signer: PackageSigner,
    version: str,
    security_version: int,
    build_time: int,
) -> bytes:
    """Pack an app folder (with ``app_manifest.json`` and its entry point) and sign it."""
    folder = Path(folder)
    try:
        manifest = parse_manifest((folder / MANIFEST_FILE).read_bytes())
    except FileNotFoundError as exc:
        raise ManifestError([f"{folder} has no {MANIFEST_FILE}"]) from exc
    entry_point = folder.joinpath(*manifest.entry_point_path.parts)
    if not entry_point.is_file() or entry_point.is_symlink():
        raise ManifestError([f"EntryPoint: {manifest.entry_point} is not a file in {folder}"])
    return package_image(
        image_type=ImageType.Applications,
        component_id=manifest.component_id,
        name=manifest.name,
        body=pack_directory(folder),
        signer=signer,
        version=version,
        security_version=security_version,
        build_time=build_time,
    )


def package_board_config(
    file: Path,
    *,
    name: str,
    signer: PackageSigner,
    version: str,
    security_version: int,
    build_time: int,
    component_id: uuid.UUID | None = None,
) -> bytes:
    """Sign a board configuration file; its component ID defaults to one derived from ``name``.

    A name-derived ID means rebuilding the same configuration replaces it on the device.
    """
    body = Path(file).read_bytes()
    if len(body) > MAX_BOARD_CONFIG_SIZE:
        raise ValueError(f"a board configuration is at most {MAX_BOARD_CONFIG_SIZE} bytes")
    return package_image(
        image_type=ImageType.CustomerBoardConfig,
        component_id=component_id or uuid.uuid5(BOARD_CONFIG_NAMESPACE, name),
        name=name,
        body=body,
        signer=signer,
        version=version,
        security_version=security_version,
        build_time=build_time,
    )
