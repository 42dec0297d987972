"""Secure boot: bootloader → security monitor → OS → apps, each verified and measured first.

``boot_device`` is one power-on. For each OS slot it tries (the trial slot first if an update
was just installed, else the active slot, then the other one), the root of trust is reset,
the trusted key store is measured, and then every stage is verified (signature by an OS key,
expected type and component, security version ≥ fuse) and measured before the next one is
looked at. A refused stage abandons the slot, records an error event and resets into the other
slot, so the measurement log always describes exactly the chain that booted.

Apps are not tied to a slot. Each installed image is verified (production app key, or the
test key with the appDevelopment capability), unpacked into the volatile ``run/`` folder and
measured; a refused app is left out and recorded, the rest of the device still boots. Apps
are not started here: the ``BootResult`` lists them for the app runtime.

Anti-rollback fuses are raised only for what is committed: the confirmed OS slot and the apps
that verified and are not on trial. A slot booted on trial raises its fuses when
``confirm_boot`` accepts it, apps on trial when ``install.confirm_app_trial`` does, so until
then the previous release and the previous apps stay bootable. Like a trial slot, apps on trial
get one boot: a second boot without a confirmation puts the previous apps back.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from uuid import UUID

from opensphere.device.capabilities import verify_capability_for_device
from opensphere.device.errors import DeviceStateError, ImageRefusedError, NoBootableSlotError
from opensphere.device.events import ErrorEvent, EventType, record_event
from opensphere.device.flash import (
    AppTrial,
    BootControl,
    DeviceFlash,
    make_durable_dir,
    other_slot,
)
from opensphere.device.install import roll_back_app_trial
from opensphere.device.keystore import TrustedKeyStore
from opensphere.device.policy import (
    BOOT_STAGES,
    fuse_name,
    unpack_app,
    verify_app_area_image,
    verify_boot_stage,
)
from opensphere.formats.app_manifest import AppManifest
from opensphere.formats.capability import CapabilityGrant, DeviceCapability
from opensphere.formats.errors import FormatError
from opensphere.formats.image_package import ImageMetadata, ImagePackage, ImageType
from opensphere.rot.interface import RootOfTrust

KEYSTORE_STAGE: Final = "trusted-keystore"
CAPABILITY_STAGE: Final = "capability"


@dataclass(frozen=True, slots=True)
class BootedImage:
    """An image that verified and was measured under ``stage`` with ``digest``."""

    stage: str
    metadata: ImageMetadata
    digest: bytes = field(repr=False)
    test_signed: bool


@dataclass(frozen=True, slots=True)
class BootApp:
    """A verified app, unpacked and ready for the app runtime to start."""

    manifest: AppManifest
    app_dir: Path
    storage_dir: Path | None
    storage_quota_bytes: int
    image: BootedImage


@dataclass(frozen=True, slots=True)
class BootResult:
    slot: str
    trial: bool
    os_images: tuple[BootedImage, ...]
    apps: tuple[BootApp, ...]
    board_configs: tuple[BootedImage, ...]
    capabilities: CapabilityGrant | None
    events: tuple[ErrorEvent, ...]
    run_dir: Path
    app_trial: frozenset[UUID] = frozenset()
    host_os_version: str | None = None

    @property
    def os_version(self) -> str:
        """The booted OS stage's version; a Linux host (no OS slots) reports its own."""
        if not self.os_images:
            return self.host_os_version or ""
        return self.os_images[-1].metadata.version

    @property
    def development_mode(self) -> bool:
        return self.capabilities is not None and self.capabilities.grants(
            DeviceCapability.APP_DEVELOPMENT
        )


class _Events:
    """Records each event durably as it happens and keeps the list for the result."""

    def __init__(self, flash: DeviceFlash, now: int) -> None:
        self._flash = flash
        self.now = now
        self.recorded: list[ErrorEvent] = []

    def add(self, event: ErrorEvent) -> None:
        record_event(self._flash, event)
        self.recorded.append(event)

    def refused(self, kind: EventType, error: ImageRefusedError, slot: str | None = None) -> None:
        self.add(ErrorEvent.refused(kind, error, time=self.now, slot=slot))


def boot_device(flash: DeviceFlash, rot: RootOfTrust, *, now: int) -> BootResult:
    """Power the device on; raise ``NoBootableSlotError`` if no OS slot verifies."""
    keystore_bytes = flash.read_keystore_bytes()
    keystore = TrustedKeyStore.decode(keystore_bytes)
    events = _Events(flash, now)
    control = _start(flash, events)
    app_trial = _start_app_trial(flash, events)
    trial = control.trial
    order = (trial, control.active) if trial else (control.active, other_slot(control.active))

    for slot in order:
        rot.reset_boot_measurements()
        rot.extend(KEYSTORE_STAGE, hashlib.sha256(keystore_bytes).digest())
        try:
            os_images = _boot_slot(flash, slot, keystore, rot)
        except ImageRefusedError as exc:
            kind = EventType.UPDATE_FAILED if slot == trial else EventType.BOOT_IMAGE_REFUSED
            events.refused(kind, exc, slot)
            continue
        break
    else:
        raise NoBootableSlotError("no OS slot verified: the device needs recovery")

    on_trial = slot == trial
    if not on_trial:
        committed = BootControl(active=slot)
        if flash.read_control() != committed:
            flash.write_control(committed)  # a failed trial, or a fallback that is now the rest
        _commit_security_versions(rot, os_images)

    grant = _load_capabilities(flash, keystore, rot, events)
    app_keys = keystore.with_app_keys(flash.read_tenant_keys())
    apps, board_configs = _boot_app_area(flash, app_keys, rot, grant, events)
    _commit_security_versions(
        rot,
        [
            image
            for image in [app.image for app in apps] + board_configs
            if image.metadata.identity.component_id not in app_trial
        ],
    )
    return BootResult(
        slot=slot,
        trial=on_trial,
        os_images=tuple(os_images),
        apps=tuple(apps),
        board_configs=tuple(board_configs),
        capabilities=grant,
        events=tuple(events.recorded),
        run_dir=flash.run_dir,
        app_trial=app_trial,
    )


def boot_app_area(flash: DeviceFlash, rot: RootOfTrust, *, now: int, os_version: str) -> BootResult:
    """Start the app area alone, for a host whose OS its own firmware boots (a Linux machine
    with a TPM): the same verification, trials, measurements and fuses as `boot_device`."""
    keystore = TrustedKeyStore.decode(flash.read_keystore_bytes())
    events = _Events(flash, now)
    app_trial = _start_app_trial(flash, events)
    app_keys = keystore.with_app_keys(flash.read_tenant_keys())
    apps, board_configs = _boot_app_area(flash, app_keys, rot, None, events)
    _commit_security_versions(
        rot,
        [
            image
            for image in [app.image for app in apps] + board_configs
            if image.metadata.identity.component_id not in app_trial
        ],
    )
    return BootResult(
        slot="host",
        trial=False,
        os_images=(),
        apps=tuple(apps),
        board_configs=tuple(board_configs),
        capabilities=None,
        events=tuple(events.recorded),
        run_dir=flash.run_dir,
        app_trial=app_trial,
        host_os_version=os_version,
    )


def confirm_boot(flash: DeviceFlash, rot: RootOfTrust, result: BootResult) -> None:
    """Accept the OS booted on trial: it becomes the active slot and its fuses are raised.

    The control record is written first, so a power cut in between leaves the new release
    active with old fuses, which the next boot raises.
    """
    if not result.trial or flash.read_control().unconfirmed != result.slot:
        raise RuntimeError("this boot is not an unconfirmed trial of a new OS release")
    flash.write_control(BootControl(active=result.slot))
    _commit_security_versions(rot, result.os_images)


def _start(flash: DeviceFlash, events: _Events) -> BootControl:
    """Read the boot control record and spend the one try of a trial slot before using it."""
    try:
        control = flash.read_control()
    except DeviceStateError as exc:
        events.add(ErrorEvent(EventType.BOOT_CONTROL_DAMAGED, "boot-control", str(exc), events.now))
        control = BootControl()
        flash.write_control(control)
    if control.unconfirmed is not None:
        events.add(
            ErrorEvent(
                EventType.UPDATE_ROLLED_BACK,
                "os",
                "the new OS release was not confirmed before the next boot",
                events.now,
                slot=control.unconfirmed,
            )
        )
        control = BootControl(active=control.active)
        flash.write_control(control)
    if control.trial is not None:
        flash.write_control(BootControl(active=control.active, unconfirmed=control.trial))
    return control


def _start_app_trial(flash: DeviceFlash, events: _Events) -> frozenset[UUID]:
    """Spend the one boot of apps on trial, or roll them back if it was spent already."""
    try:
        trial = flash.read_app_trial()
    except DeviceStateError as exc:
        events.add(ErrorEvent(EventType.BOOT_CONTROL_DAMAGED, "app-trial", str(exc), events.now))
        flash.write_app_trial(None)
        return frozenset()
    if trial is None:
        return frozenset()
    if trial.booted:
        for component_id in roll_back_app_trial(flash):
            events.add(
                ErrorEvent(
                    EventType.UPDATE_ROLLED_BACK,
                    "app",
                    "the updated app was not confirmed before the next boot",
                    events.now,
                    component_id=str(component_id),
                )
            )
        return frozenset()
    flash.write_app_trial(AppTrial(trial.had_previous, booted=True))
    return frozenset(trial.had_previous)


def _boot_slot(
    flash: DeviceFlash, slot: str, keystore: TrustedKeyStore, rot: RootOfTrust
) -> list[BootedImage]:
    booted = []
    for stage in BOOT_STAGES:
        try:
            data = flash.read_slot(slot, stage.file_name)
        except FileNotFoundError as exc:
            raise ImageRefusedError(
                f"no image in slot {slot}", component=stage.name, component_id=stage.component_id
            ) from exc
        package = verify_boot_stage(data, stage, keystore=keystore, fuses=rot)
        booted.append(_measure(rot, stage.name, data, package))
    return booted


def _load_capabilities(
    flash: DeviceFlash, keystore: TrustedKeyStore, rot: RootOfTrust, events: _Events
) -> CapabilityGrant | None:
    data = flash.read_capability_file()
    if data is None:
        return None
    try:
        grant = verify_capability_for_device(
            data, keystore=keystore, device_id=rot.device_id, now=events.now
        )
    except FormatError as exc:
        events.add(ErrorEvent(EventType.CAPABILITY_REFUSED, CAPABILITY_STAGE, str(exc), events.now))
        return None
    rot.extend(CAPABILITY_STAGE, hashlib.sha256(data).digest())
    return grant


def _boot_app_area(
    flash: DeviceFlash,
    keystore: TrustedKeyStore,
    rot: RootOfTrust,
    grant: CapabilityGrant | None,
    events: _Events,
) -> tuple[list[BootApp], list[BootedImage]]:
    run_apps = flash.fresh_run_dir() / "apps"
    run_apps.mkdir()
    allow_test_signed = grant is not None and grant.grants(DeviceCapability.APP_DEVELOPMENT)
    apps: list[BootApp] = []
    board_configs: list[BootedImage] = []
    for path in flash.installed_image_files():
        data = path.read_bytes()
        dest: Path | None = None
        try:
            package = verify_app_area_image(
                data, keystore=keystore, fuses=rot, allow_test_signed=allow_test_signed
            )
            identity = package.metadata.identity
            if path != flash.app_image_file(identity.component_id):
                raise ImageRefusedError(
                    f"stored as {path.name}, which is not its component ID",
                    component="app",
                    component_id=identity.component_id,
                    image_id=identity.image_id,
                )
            if identity.image_type is ImageType.CustomerBoardConfig:
                board_configs.append(
                    _measure(rot, f"board-config:{identity.component_id}", data, package)
                )
                continue
            dest = run_apps / str(identity.component_id)
            manifest = unpack_app(package, dest)
        except ImageRefusedError as exc:
            if dest is not None:
                shutil.rmtree(dest, ignore_errors=True)
            events.refused(EventType.APP_REFUSED, exc)
            continue
        image = _measure(rot, f"app:{identity.component_id}", data, package)
        apps.append(_boot_app(flash, manifest, dest, image))
    return apps, board_configs


def _boot_app(
    flash: DeviceFlash, manifest: AppManifest, app_dir: Path, image: BootedImage
) -> BootApp:
    storage = manifest.capabilities.mutable_storage
    storage_dir = None
    if storage is not None:
        storage_dir = flash.storage_dir(manifest.component_id)
        make_durable_dir(storage_dir)
    return BootApp(
        manifest=manifest,
        app_dir=app_dir,
        storage_dir=storage_dir,
        storage_quota_bytes=storage.size_kb * 1024 if storage is not None else 0,
        image=image,
    )


def _measure(rot: RootOfTrust, stage: str, data: bytes, package: ImagePackage) -> BootedImage:
    digest = hashlib.sha256(data).digest()
    rot.extend(stage, digest)
    return BootedImage(
        stage=stage, metadata=package.metadata, digest=digest, test_signed=package.is_test_signed
    )


def _commit_security_versions(rot: RootOfTrust, images: Iterable[BootedImage]) -> None:
    """Raise each component's fuse to the booted image's security version (no-op if equal)."""
    for image in images:
        rot.bump_counter(
            fuse_name(image.metadata.identity.component_id), image.metadata.security_version
        )
