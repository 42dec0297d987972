"""What the device accepts: the checks shared by secure boot and installation, without I/O.

An image is accepted only if all of these hold, in this order (cheapest refusal first is not
the point; the signature comes first so nothing unsigned is ever interpreted):

1. its signature verifies with a key the trusted key store allows for this kind of image
   (the test key only for apps, and only with the appDevelopment capability);
2. its image type (and, for boot stages, its component ID) is the one expected here;
3. its security version is at least the anti-rollback fuse of its component.

Application bodies are then unpacked by ``safe_tar`` and their manifest must name the same
component as the signed identity, so an app can never take over another app's storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from uuid import UUID

from opensphere.device.errors import DowngradeError, ImageRefusedError
from opensphere.device.keystore import KeyUsage, TrustedKeyStore
from opensphere.formats.app_manifest import AppManifest, parse_manifest
from opensphere.formats.errors import FormatError
from opensphere.formats.image_package import (
    ImagePackage,
    ImageType,
    parse_package,
    verify_package,
)
from opensphere.formats.safe_tar import unpack_tar

MANIFEST_FILE: Final = "app_manifest.json"
MAX_APP_CONTENT: Final = 64 * 1024 * 1024
MAX_APP_ENTRIES: Final = 4096
APP_AREA_TYPES: Final = frozenset({ImageType.Applications, ImageType.CustomerBoardConfig})


@dataclass(frozen=True, slots=True)
class BootStage:
    """One stage of the chain kept in each OS slot; component IDs are fixed, like the OS's."""

    name: str
    image_type: ImageType
    component_id: UUID

    @property
    def file_name(self) -> str:
        return f"{self.name}.imagepackage"


BOOT_STAGES: Final = (
    BootStage("bootloader", ImageType.OneBl, UUID("6a1f3f4e-3c1d-4f5b-9a51-0b8e2c7d1a01")),
    BootStage(
        "security-monitor", ImageType.SecurityMonitor, UUID("6a1f3f4e-3c1d-4f5b-9a51-0b8e2c7d1a04")
    ),
    BootStage("os", ImageType.NormalWorldKernel, UUID("6a1f3f4e-3c1d-4f5b-9a51-0b8e2c7d1a07")),
)


class Fuses(Protocol):
    """Read access to the anti-rollback counters; a root of trust provides it."""

    def counter(self, name: str) -> int: ...


def fuse_name(component_id: UUID) -> str:
    """The root-of-trust counter that holds a component's minimum security version."""
    return f"sv-{component_id}"


def verify_image(
    data: bytes,
    *,
    component: str,
    usage: KeyUsage,
    keystore: TrustedKeyStore,
    fuses: Fuses,
    allowed_types: frozenset[ImageType],
    allow_test_signed: bool = False,
    component_id: UUID | None = None,
) -> ImagePackage:
    """Return the verified package or raise ``ImageRefusedError`` naming ``component``."""
    try:
        package = verify_package(
            data, keystore.for_usage(usage), allow_test_signed=allow_test_signed
        )
    except FormatError as exc:
        raise _refusal(data, component, str(exc)) from exc
    identity = package.metadata.identity
    if identity.image_type not in allowed_types:
        expected = " or ".join(sorted(t.name for t in allowed_types))
        raise ImageRefusedError(
            f"image type {identity.image_type.name} is not {expected}",
            component=component,
            component_id=identity.component_id,
            image_id=identity.image_id,
        )
    if component_id is not None and identity.component_id != component_id:
        raise ImageRefusedError(
            f"component ID {identity.component_id} is not {component_id}",
            component=component,
            component_id=identity.component_id,
            image_id=identity.image_id,
        )
    fuse = fuses.counter(fuse_name(identity.component_id))
    if package.metadata.security_version < fuse:
        raise DowngradeError(
            component=component,
            component_id=identity.component_id,
            image_id=identity.image_id,
            security_version=package.metadata.security_version,
            fuse=fuse,
        )
    return package


def verify_boot_stage(
    data: bytes, stage: BootStage, *, keystore: TrustedKeyStore, fuses: Fuses
) -> ImagePackage:
    """Boot-chain images: OS keys only, never the test key, the stage's exact component."""
    return verify_image(
        data,
        component=stage.name,
        usage=KeyUsage.OS,
        keystore=keystore,
        fuses=fuses,
        allowed_types=frozenset({stage.image_type}),
        component_id=stage.component_id,
    )


def verify_app_area_image(
    data: bytes, *, keystore: TrustedKeyStore, fuses: Fuses, allow_test_signed: bool
) -> ImagePackage:
    """Apps and board configurations: production app keys, or the test key in development."""
    return verify_image(
        data,
        component="app",
        usage=KeyUsage.APP,
        keystore=keystore,
        fuses=fuses,
        allowed_types=APP_AREA_TYPES,
        allow_test_signed=allow_test_signed,
    )


def unpack_app(package: ImagePackage, dest: Path) -> AppManifest:
    """Unpack a verified app into ``dest`` and return its manifest, or refuse the app."""
    identity = package.metadata.identity
    try:
        unpack_tar(package.body, dest, max_total_size=MAX_APP_CONTENT, max_entries=MAX_APP_ENTRIES)
        manifest_path = dest / MANIFEST_FILE
        if not manifest_path.is_file() or manifest_path.is_symlink():
            raise ImageRefusedError(
                f"the app has no {MANIFEST_FILE}",
                component="app",
                component_id=identity.component_id,
                image_id=identity.image_id,
            )
        manifest = parse_manifest(manifest_path.read_bytes())
    except FormatError as exc:
        raise ImageRefusedError(
            str(exc),
            component="app",
            component_id=identity.component_id,
            image_id=identity.image_id,
        ) from exc
    problems = []
    if manifest.component_id != identity.component_id:
        problems.append(
            f"the manifest's ComponentId {manifest.component_id} is not the signed component "
            f"ID {identity.component_id}"
        )
    entry_point = dest.joinpath(*manifest.entry_point_path.parts)
    if not entry_point.is_file():
        problems.append(f"the entry point {manifest.entry_point} is not a file in the app")
    if problems:
        raise ImageRefusedError(
            "; ".join(problems),
            component="app",
            component_id=identity.component_id,
            image_id=identity.image_id,
        )
    return manifest


def _refusal(data: bytes, component: str, reason: str) -> ImageRefusedError:
    """Name the image in the refusal when its (unverified) identity can be read at all."""
    try:
        identity = parse_package(data).metadata.identity
    except FormatError:
        return ImageRefusedError(reason, component=component)
    return ImageRefusedError(
        reason, component=component, component_id=identity.component_id, image_id=identity.image_id
    )
