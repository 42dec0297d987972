"""Secure boot: every stage verified and measured; refusals fall back and become error events."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from opensphere.device.boot import boot_device, confirm_boot
from opensphere.device.emulator import Fleet
from opensphere.device.errors import NoBootableSlotError
from opensphere.device.events import EventType
from opensphere.device.flash import BootControl
from opensphere.device.install import sideload, stage_os_release
from opensphere.device.packaging import package_image
from opensphere.device.policy import BOOT_STAGES, fuse_name
from opensphere.device.reporting.queue import EventQueue
from opensphere.formats.capability import DeviceCapability
from opensphere.formats.error_events import EventCategory
from opensphere.formats.evidence import replay_register
from opensphere.formats.image_package import ImageType
from support.device_os import (
    NOW,
    NOW_S,
    Device,
    app_package,
    body_offset,
    flip_byte,
    make_app_folder,
    new_device,
    sdk_test_signer,
    section_offset,
)

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

STAGE_NAMES = [stage.name for stage in BOOT_STAGES]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet.create(tmp_path_factory.mktemp("fleet"), now=NOW)


@pytest.fixture
def device(tmp_path: Path, fleet: Fleet) -> Device:
    return new_device(tmp_path / "device", fleet)


@pytest.fixture
def dev_device(tmp_path: Path, fleet: Fleet) -> Device:
    return new_device(tmp_path / "device", fleet, development=True)


def _stage_digests(device: Device, slot: str) -> list[bytes]:
    return [
        hashlib.sha256(device.slot_file(slot, name).read_bytes()).digest() for name in STAGE_NAMES
    ]


def _fuse(device: Device, stage_index: int) -> int:
    return device.rot().counter(fuse_name(BOOT_STAGES[stage_index].component_id))


def test_fresh_device_boots_slot_a_measuring_every_stage_in_order(device: Device) -> None:
    result, rot = device.boot()
    assert (result.slot, result.trial, result.os_version) == ("a", False, "1.0.0")
    log = rot.event_log()
    assert [m.stage for m in log] == ["trusted-keystore", *STAGE_NAMES]
    assert [m.digest for m in log[1:]] == _stage_digests(device, "a")
    assert log[0].digest == hashlib.sha256(device.flash.keystore_file.read_bytes()).digest()
    assert rot.register() == replay_register(log)
    assert result.events == ()
    assert all(_fuse(device, i) == 1 for i in range(len(BOOT_STAGES)))


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_tampered_body_of_each_stage_is_refused_and_the_other_slot_boots(
    device: Device, stage: str
) -> None:
    flip_byte(device.slot_file("a", stage), body_offset() + 100)
    result, rot = device.boot()
    assert result.slot == "b"
    [event] = result.events
    assert (event.type, event.component, event.slot) == (EventType.BOOT_IMAGE_REFUSED, stage, "a")
    assert "signature does not verify" in event.reason
    # The log describes only the chain that booted: slot a's stages were reset away.
    assert [m.digest for m in rot.event_log()[1:]] == _stage_digests(device, "b")
    [queued] = EventQueue(device.flash.events_queue).pending()
    assert queued.category is EventCategory.VERIFICATION_FAILURE
    assert queued.detail == f"BootImageRefused: {stage}: {event.reason} (slot a)"
    # Slot b is now the one to boot first, so an update cannot overwrite the only good slot.
    assert device.flash.read_control() == BootControl(active="b")


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_tampered_metadata_of_each_stage_is_refused(device: Device, stage: str) -> None:
    path = device.slot_file("a", stage)
    # Security version 1 -> 0: still a well-formed package, only the signature notices.
    flip_byte(path, section_offset(path.read_bytes(), b"RV"), mask=0x01)
    result, _ = device.boot()
    assert result.slot == "b"
    [event] = result.events
    assert event.component == stage
    assert "signature does not verify" in event.reason


def test_tampered_app_is_refused_and_the_rest_of_the_device_boots(
    dev_device: Device, tmp_path: Path
) -> None:
    package = app_package(make_app_folder(tmp_path / "app"), sdk_test_signer())
    sideload(dev_device.flash, dev_device.rot(), package, now=NOW_S)
    [app_file] = dev_device.flash.installed_image_files()
    flip_byte(app_file, body_offset() + 600)
    result, rot = dev_device.boot()
    assert result.slot == "a"
    assert result.apps == ()
    [event] = result.events
    assert (event.type, event.component) == (EventType.APP_REFUSED, "app")
    assert not any(m.stage.startswith("app:") for m in rot.event_log())
    assert not (result.run_dir / "apps" / app_file.stem).exists()


def test_stage_signed_by_an_untrusted_key_is_refused(
    device: Device, tmp_path: Path, fleet: Fleet
) -> None:
    rogue = Fleet.create(tmp_path / "rogue", now=NOW)
    [rogue_bootloader, *_] = rogue.build_os_release(
        version="9.0.0", security_version=9, build_time=NOW_S
    )
    device.slot_file("a", "bootloader").write_bytes(rogue_bootloader)
    result, _ = device.boot()
    assert result.slot == "b"
    assert "is not a trusted signer" in result.events[0].reason


def test_stage_signed_by_the_app_key_is_refused(device: Device, fleet: Fleet) -> None:
    """Key usages: the production app key can never sign a boot stage."""
    stage = BOOT_STAGES[1]
    forged = package_image(
        image_type=stage.image_type,
        component_id=stage.component_id,
        name="forged monitor",
        body=b"x",
        signer=fleet.app_signer,
        version="1.0.0",
        security_version=1,
        build_time=NOW_S,
    )
    device.slot_file("a", stage.name).write_bytes(forged)
    result, _ = device.boot()
    assert result.slot == "b"
    assert result.events[0].component == stage.name
    assert "is not a trusted signer" in result.events[0].reason


def test_test_signed_stage_is_refused_even_in_development_mode(dev_device: Device) -> None:
    stage = BOOT_STAGES[2]
    test_signed = package_image(
        image_type=stage.image_type,
        component_id=stage.component_id,
        name="my kernel",
        body=b"x",
        signer=sdk_test_signer(),
        version="1.0.0",
        security_version=1,
        build_time=NOW_S,
    )
    dev_device.slot_file("a", stage.name).write_bytes(test_signed)
    result, _ = dev_device.boot()
    assert result.development_mode
    assert result.slot == "b"
    assert "public test signing key" in result.events[0].reason


def test_stage_in_the_wrong_place_is_refused(device: Device) -> None:
    """A validly signed security monitor put where the bootloader belongs does not boot."""
    monitor = device.slot_file("a", "security-monitor").read_bytes()
    device.slot_file("a", "bootloader").write_bytes(monitor)
    result, _ = device.boot()
    assert result.slot == "b"
    assert f"is not {ImageType.OneBl.name}" in result.events[0].reason


def test_downgrade_below_the_fuse_is_refused(device: Device, fleet: Fleet) -> None:
    newer = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    rot = device.rot()
    slot = stage_os_release(device.flash, rot, newer)
    first = boot_device(device.flash, rot, now=NOW_S)
    confirm_boot(device.flash, rot, first)
    assert (slot, _fuse(device, 0)) == ("b", 2)
    # Slot b breaks; slot a still holds 1.0.0 (security version 1 < fuse 2): nothing boots.
    flip_byte(device.slot_file("b", "os"), body_offset() + 10)
    with pytest.raises(NoBootableSlotError):
        device.boot()
    details = [e.detail for e in EventQueue(device.flash.events_queue).pending()]
    assert any(
        d.startswith("BootImageRefused: bootloader:")
        and "below the device's fuse (2)" in d
        and d.endswith("(slot a)")
        for d in details
    ), details
    assert any(
        d.startswith("BootImageRefused: os: signature does not verify") and d.endswith("(slot b)")
        for d in details
    ), details


def test_missing_slot_falls_back(device: Device) -> None:
    for stage in STAGE_NAMES:
        device.slot_file("a", stage).unlink()
    result, _ = device.boot()
    assert result.slot == "b"
    assert result.events[0].reason == "no image in slot a"


def test_damaged_boot_control_still_boots_and_is_reported(device: Device) -> None:
    device.flash.control_file.write_bytes(b"{not json")
    result, _ = device.boot()
    assert result.slot == "a"
    assert result.events[0].type is EventType.BOOT_CONTROL_DAMAGED
    assert device.flash.read_control() == BootControl()


def test_changed_key_store_changes_the_boot_register(device: Device) -> None:
    _, first = device.boot()
    keystore = device.flash.keystore_file
    keystore.write_bytes(keystore.read_bytes() + b" ")
    _, second = device.boot()
    assert first.register() != second.register()


def test_update_boots_on_trial_then_confirm_makes_it_active_and_raises_fuses(
    device: Device, fleet: Fleet
) -> None:
    _, rot = device.boot()
    assert _fuse(device, 0) == 1
    newer = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    assert stage_os_release(device.flash, rot, newer) == "b"
    result = boot_device(device.flash, rot, now=NOW_S)
    assert (result.slot, result.trial, result.os_version) == ("b", True, "2.0.0")
    assert _fuse(device, 0) == 1  # not before confirmation
    confirm_boot(device.flash, rot, result)
    assert _fuse(device, 0) == 2
    again, _ = device.boot()
    assert (again.slot, again.trial) == ("b", False)


def test_unconfirmed_update_rolls_back_at_the_next_boot(device: Device, fleet: Fleet) -> None:
    newer = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    stage_os_release(device.flash, device.rot(), newer)
    trial, _ = device.boot()
    assert trial.trial
    rolled_back, _ = device.boot()
    assert (rolled_back.slot, rolled_back.os_version) == ("a", "1.0.0")
    assert [e.type for e in rolled_back.events] == [EventType.UPDATE_ROLLED_BACK]
    assert _fuse(device, 0) == 1
    with pytest.raises(RuntimeError):
        confirm_boot(device.flash, device.rot(), rolled_back)


def test_update_that_fails_verification_is_reported_and_the_old_release_boots(
    device: Device, fleet: Fleet
) -> None:
    newer = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    stage_os_release(device.flash, device.rot(), newer)
    flip_byte(device.slot_file("b", "security-monitor"), body_offset() + 5)
    result, _ = device.boot()
    assert (result.slot, result.trial) == ("a", False)
    assert [(e.type, e.component) for e in result.events] == [
        (EventType.UPDATE_FAILED, "security-monitor")
    ]
    assert device.flash.read_control() == BootControl(active="a")


def test_dev_mode_app_boots_unpacked_with_its_storage(dev_device: Device, tmp_path: Path) -> None:
    folder = make_app_folder(tmp_path / "app", storage_kb=8)
    sideload(dev_device.flash, dev_device.rot(), app_package(folder, sdk_test_signer()), now=NOW_S)
    result, rot = dev_device.boot()
    assert result.development_mode
    [app] = result.apps
    assert app.manifest.name == "Blink"
    assert (app.app_dir / "bin" / "app").read_text() == "#!/bin/sh\necho blink\n"
    assert app.storage_dir is not None
    assert app.storage_dir.is_dir()
    assert app.storage_quota_bytes == 8 * 1024
    assert app.image.test_signed
    stages = [m.stage for m in rot.event_log()]
    assert stages[-2:] == ["capability", f"app:{app.manifest.component_id}"]
    assert rot.counter(fuse_name(app.manifest.component_id)) == 1


def test_test_signed_app_is_refused_at_boot_without_the_capability(
    dev_device: Device, tmp_path: Path
) -> None:
    package = app_package(make_app_folder(tmp_path / "app"), sdk_test_signer())
    sideload(dev_device.flash, dev_device.rot(), package, now=NOW_S)
    dev_device.flash.capability_file.unlink()
    result, _ = dev_device.boot()
    assert result.apps == ()
    [event] = result.events
    assert event.type is EventType.APP_REFUSED
    assert "appDevelopment" in event.reason


def test_capability_for_another_device_grants_nothing_at_boot(
    dev_device: Device, tmp_path: Path, fleet: Fleet
) -> None:
    other = new_device(tmp_path / "other", fleet)
    foreign = fleet.issue_capability(
        other.rot().device_id, [DeviceCapability.APP_DEVELOPMENT], now=NOW_S
    )
    package = app_package(make_app_folder(tmp_path / "app"), sdk_test_signer())
    sideload(dev_device.flash, dev_device.rot(), package, now=NOW_S)
    dev_device.flash.capability_file.write_bytes(foreign)  # copied onto the wrong device
    result, _ = dev_device.boot()
    assert not result.development_mode
    assert result.apps == ()
    assert [e.type for e in result.events] == [EventType.CAPABILITY_REFUSED, EventType.APP_REFUSED]
    assert "not this device" in result.events[0].reason


def test_expired_capability_turns_development_mode_off(fleet: Fleet, device: Device) -> None:
    device_id = device.rot().device_id
    expiring = fleet.issue_capability(
        device_id, [DeviceCapability.APP_DEVELOPMENT], now=NOW_S, expires_at=NOW_S + 3600
    )
    device.flash.write_capability_file(expiring)
    assert device.boot(now=NOW_S + 60)[0].development_mode
    later, _ = device.boot(now=NOW_S + 3600)
    assert not later.development_mode
    assert "expired" in later.events[0].reason


def test_run_folder_is_emptied_at_every_boot(device: Device) -> None:
    result, _ = device.boot()
    leftover = result.run_dir / "stale"
    leftover.write_text("from the last boot")
    device.boot()
    assert not leftover.exists()
