"""Installing images: an OS release into the inactive slot, apps into the app area, sideloading.

Everything is verified before the first byte is written, with the same policy as secure
boot, so an image the device would refuse at boot never reaches flash. Writes follow the
order that keeps the device bootable after a power cut at any point:

OS release: (1) if the inactive slot is marked for trial, unmark it, (2) replace the slot
whole (flash.write_slot), (3) mark it for one trial boot in the boot control record. The
active slot is never touched, and the control record never points at a slot being written.
No fuse changes here: fuses rise only when the new release is confirmed after booting.

App: one atomic file replacement; a power cut leaves the old app or the new one.

Apps from the cloud are installed on trial (``install_app_trial``), like an OS release: (1) the
image each one replaces is copied to ``apps/previous/``, (2) the trial record
(``boot/app-trial.json``) is written — the commit point —, (3) the new images replace the old.
The next boot runs them on trial and does not raise their fuses; ``confirm_app_trial`` ends
the trial (record first, then fuses), ``roll_back_app_trial`` puts the kept images back (record
last, so an interrupted roll-back is finished by the next boot).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from opensphere.device.capabilities import check_servicing_allowed, current_capabilities
from opensphere.device.errors import ImageRefusedError, UpdatePendingError
from opensphere.device.flash import (
    SLOTS,
    AppTrial,
    BootControl,
    DeviceFlash,
    make_durable_dir,
    other_slot,
    write_atomically,
)
from opensphere.device.keystore import TrustedKeyStore
from opensphere.device.policy import (
    BOOT_STAGES,
    fuse_name,
    unpack_app,
    verify_app_area_image,
    verify_boot_stage,
)
from opensphere.formats.capability import CapabilityGrant, DeviceCapability
from opensphere.formats.errors import FormatError
from opensphere.formats.image_package import (
    TEST_SIGNING_KEY_THUMBPRINT,
    ImageMetadata,
    ImageType,
    parse_package,
)
from opensphere.rot.interface import RootOfTrust


def stage_os_release(flash: DeviceFlash, rot: RootOfTrust, images: Sequence[bytes]) -> str:
    """Verify a complete OS release and install it for one trial boot; return the slot."""
    control = flash.read_control()
    if control.unconfirmed is not None:
        raise UpdatePendingError(
            f"slot {control.unconfirmed} runs an unconfirmed OS release: confirm it or reboot"
        )
    keystore = TrustedKeyStore.decode(flash.read_keystore_bytes())
    files = _match_stages(images)
    for stage in BOOT_STAGES:
        verify_boot_stage(files[stage.file_name], stage, keystore=keystore, fuses=rot)
    target = other_slot(control.active)
    if control.trial is not None:
        flash.write_control(BootControl(active=control.active))
    flash.write_slot(target, files)
    flash.write_control(BootControl(active=control.active, trial=target))
    return target


def install_app(flash: DeviceFlash, rot: RootOfTrust, data: bytes, *, now: int) -> ImageMetadata:
    """Install an app or board configuration, replacing the same component's previous image.

    Test-signed images are accepted only while the appDevelopment capability is valid.
    """
    keystore = flash.app_keystore()
    grant = current_capabilities(flash, keystore=keystore, device_id=rot.device_id, now=now)
    return _install_app_area(flash, rot, data, keystore, grant)


def install_app_trial(
    flash: DeviceFlash, rot: RootOfTrust, images: Sequence[bytes], *, now: int
) -> list[ImageMetadata]:
    """Verify every image, then install them all on trial for the next boot."""
    if flash.read_app_trial() is not None:
        raise UpdatePendingError("apps from an earlier update are on trial: confirm or reboot")
    keystore = flash.app_keystore()
    grant = current_capabilities(flash, keystore=keystore, device_id=rot.device_id, now=now)
    allow_dev = grant is not None and grant.grants(DeviceCapability.APP_DEVELOPMENT)
    packages = [
        verify_app_area_image(data, keystore=keystore, fuses=rot, allow_test_signed=allow_dev)
        for data in images
    ]
    components = [package.metadata.identity.component_id for package in packages]
    if len(set(components)) != len(components):
        raise ImageRefusedError("two images of one component in one update", component="app")
    had_previous = {}
    for component_id in components:
        current = flash.app_image_file(component_id)
        had_previous[component_id] = current.exists()
        if had_previous[component_id]:
            make_durable_dir(flash.previous_app_file(component_id).parent)
            write_atomically(flash.previous_app_file(component_id), current.read_bytes())
    flash.write_app_trial(AppTrial(had_previous=had_previous))
    for component_id, data in zip(components, images, strict=True):
        flash.write_app_image(component_id, data)
    return [package.metadata for package in packages]


def confirm_app_trial(flash: DeviceFlash, rot: RootOfTrust) -> list[UUID]:
    """The apps on trial are good: end the trial, then raise their fuses."""
    trial = flash.read_app_trial()
    if trial is None:
        return []
    flash.write_app_trial(None)
    for component_id in trial.had_previous:
        image = flash.app_image_file(component_id)
        if image.exists():  # a power cut may end a new app's install before its image lands
            metadata = parse_package(image.read_bytes()).metadata
            rot.bump_counter(fuse_name(component_id), metadata.security_version)
        flash.remove_file(flash.previous_app_file(component_id))
    return list(trial.had_previous)


def roll_back_app_trial(flash: DeviceFlash) -> list[UUID]:
    """Put back what the apps on trial replaced (remove apps that were new); idempotent."""
    trial = flash.read_app_trial()
    if trial is None:
        return []
    for component_id, had_previous in trial.had_previous.items():
        previous = flash.previous_app_file(component_id)
        if had_previous and previous.exists():
            flash.write_app_image(component_id, previous.read_bytes())
        elif not had_previous:
            flash.remove_file(flash.app_image_file(component_id))
    flash.write_app_trial(None)
    for component_id in trial.had_previous:
        flash.remove_file(flash.previous_app_file(component_id))
    return list(trial.had_previous)


def remove_app(flash: DeviceFlash, component_id: UUID) -> None:
    """Uninstall an app the deployment no longer has; its mutable storage stays."""
    flash.remove_file(flash.app_image_file(component_id))


def sideload(flash: DeviceFlash, rot: RootOfTrust, data: bytes, *, now: int) -> ImageMetadata:
    """``device sideload deploy``: servicing rules first, then a normal app install."""
    keystore = flash.app_keystore()
    grant = current_capabilities(flash, keystore=keystore, device_id=rot.device_id, now=now)
    try:
        signer = parse_package(data).signer_thumbprint
    except FormatError as exc:
        raise ImageRefusedError(str(exc), component="app") from exc
    check_servicing_allowed(
        grant, rot.manufacturing_state, test_signed=signer == TEST_SIGNING_KEY_THUMBPRINT
    )
    return _install_app_area(flash, rot, data, keystore, grant)


@dataclass(frozen=True, slots=True)
class InstalledImage:
    """One image on flash as read back, for ``image list-installed``; NOT verified."""

    location: str
    file_name: str
    size: int
    metadata: ImageMetadata | None
    test_signed: bool
    problem: str | None = None


def list_installed(flash: DeviceFlash, rot: RootOfTrust, *, now: int) -> list[InstalledImage]:
    """What each slot and the app area hold; damaged files are listed with their problem.

    Like any servicing, this needs a capability once the device is DeviceComplete.
    """
    keystore = TrustedKeyStore.decode(flash.read_keystore_bytes())
    grant = current_capabilities(flash, keystore=keystore, device_id=rot.device_id, now=now)
    check_servicing_allowed(grant, rot.manufacturing_state, test_signed=False)
    control = flash.read_control()
    listing = []
    for slot in SLOTS:
        label = f"slot {slot}" + _slot_role(control, slot)
        for stage in BOOT_STAGES:
            path = flash.slot_dir(slot) / stage.file_name
            if path.is_file():
                listing.append(_describe(label, path.name, path.read_bytes()))
    for path in flash.installed_image_files():
        listing.append(_describe("apps", path.name, path.read_bytes()))
    return listing


def _install_app_area(
    flash: DeviceFlash,
    rot: RootOfTrust,
    data: bytes,
    keystore: TrustedKeyStore,
    grant: CapabilityGrant | None,
) -> ImageMetadata:
    allow_test_signed = grant is not None and grant.grants(DeviceCapability.APP_DEVELOPMENT)
    package = verify_app_area_image(
        data, keystore=keystore, fuses=rot, allow_test_signed=allow_test_signed
    )
    identity = package.metadata.identity
    if identity.image_type is ImageType.Applications:
        scratch = flash.fresh_scratch_dir()
        try:
            unpack_app(package, scratch / "app")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    flash.write_app_image(identity.component_id, data)
    return package.metadata


def _match_stages(images: Sequence[bytes]) -> dict[str, bytes]:
    """Sort a release's images into stage files by image type; each stage exactly once."""
    by_type = {stage.image_type: stage for stage in BOOT_STAGES}
    files: dict[str, bytes] = {}
    for data in images:
        try:
            image_type = parse_package(data).metadata.identity.image_type
        except FormatError as exc:
            raise ImageRefusedError(str(exc), component="os-release") from exc
        stage = by_type.get(image_type)
        if stage is None:
            raise ImageRefusedError(
                f"an OS release has no place for a {image_type.name} image", component="os-release"
            )
        if stage.file_name in files:
            raise ImageRefusedError("given twice", component=stage.name)
        files[stage.file_name] = data
    for stage in BOOT_STAGES:
        if stage.file_name not in files:
            raise ImageRefusedError(
                "missing from the OS release", component=stage.name, component_id=stage.component_id
            )
    return files


def _slot_role(control: BootControl, slot: str) -> str:
    if slot == control.active:
        return " (active)"
    if slot == control.trial:
        return " (to try at next boot)"
    if slot == control.unconfirmed:
        return " (booted, unconfirmed)"
    return ""


def _describe(location: str, file_name: str, data: bytes) -> InstalledImage:
    try:
        package = parse_package(data)
    except FormatError as exc:
        return InstalledImage(location, file_name, len(data), None, False, problem=str(exc))
    return InstalledImage(
        location,
        file_name,
        len(data),
        package.metadata,
        package.signer_thumbprint == TEST_SIGNING_KEY_THUMBPRINT,
    )
