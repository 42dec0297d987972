"""Installation: refused before anything is written; sideloading follows the capability rules."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from opensphere.device.emulator import Fleet
from opensphere.device.errors import (
    CapabilityRequiredError,
    DowngradeError,
    ImageRefusedError,
    UpdatePendingError,
)
from opensphere.device.flash import BootControl
from opensphere.device.install import install_app, list_installed, sideload, stage_os_release
from opensphere.device.packaging import package_board_config, package_image
from opensphere.device.policy import fuse_name
from opensphere.formats.capability import DeviceCapability
from opensphere.formats.image_package import ImageType
from opensphere.formats.safe_tar import pack_directory
from support.device_os import (
    APP_COMPONENT_ID,
    NOW,
    NOW_S,
    Device,
    app_package,
    body_offset,
    make_app_folder,
    new_device,
    sdk_test_signer,
)

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet.create(tmp_path_factory.mktemp("fleet"), now=NOW)


@pytest.fixture
def device(tmp_path: Path, fleet: Fleet) -> Device:
    return new_device(tmp_path / "device", fleet)


@pytest.fixture
def dev_device(tmp_path: Path, fleet: Fleet) -> Device:
    return new_device(tmp_path / "device", fleet, development=True)


@pytest.fixture
def app_folder(tmp_path: Path) -> Path:
    return make_app_folder(tmp_path / "app")


def _grant(device: Device, fleet: Fleet, *capabilities: DeviceCapability) -> None:
    data = fleet.issue_capability(device.rot().device_id, capabilities, now=NOW_S)
    device.flash.write_capability_file(data)


def test_sideload_test_signed_app_with_app_development(
    dev_device: Device, app_folder: Path
) -> None:
    metadata = sideload(
        dev_device.flash, dev_device.rot(), app_package(app_folder, sdk_test_signer()), now=NOW_S
    )
    assert metadata.identity.component_id == APP_COMPONENT_ID
    assert dev_device.flash.app_image_file(APP_COMPONENT_ID).is_file()
    assert not (dev_device.folder / "tmp").exists()


def test_test_signed_app_without_the_capability_is_refused_at_install(
    device: Device, app_folder: Path
) -> None:
    package = app_package(app_folder, sdk_test_signer())
    with pytest.raises(CapabilityRequiredError, match="appDevelopment"):
        sideload(device.flash, device.rot(), package, now=NOW_S)
    with pytest.raises(ImageRefusedError, match="public test signing key"):
        install_app(device.flash, device.rot(), package, now=NOW_S)
    assert device.flash.installed_image_files() == []


def test_production_sideload_on_a_finalised_device_needs_a_capability(
    device: Device, fleet: Fleet, app_folder: Path
) -> None:
    package = app_package(app_folder, fleet.app_signer)
    with pytest.raises(CapabilityRequiredError, match="DeviceComplete"):
        sideload(device.flash, device.rot(), package, now=NOW_S)
    _grant(device, fleet, DeviceCapability.FIELD_SERVICING)
    sideload(device.flash, device.rot(), package, now=NOW_S)
    [app] = device.boot()[0].apps
    assert not app.image.test_signed


def test_field_servicing_does_not_allow_test_signed_apps(
    device: Device, fleet: Fleet, app_folder: Path
) -> None:
    _grant(device, fleet, DeviceCapability.FIELD_SERVICING)
    with pytest.raises(CapabilityRequiredError, match="appDevelopment"):
        sideload(device.flash, device.rot(), app_package(app_folder, sdk_test_signer()), now=NOW_S)


def test_production_app_installs_without_development_mode(
    device: Device, fleet: Fleet, app_folder: Path
) -> None:
    install_app(device.flash, device.rot(), app_package(app_folder, fleet.app_signer), now=NOW_S)
    [app] = device.boot()[0].apps
    assert app.manifest.component_id == APP_COMPONENT_ID


def test_tampered_app_is_refused_at_install(dev_device: Device, app_folder: Path) -> None:
    package = bytearray(app_package(app_folder, sdk_test_signer()))
    package[body_offset() + 700] ^= 0xFF
    with pytest.raises(ImageRefusedError, match="signature does not verify"):
        sideload(dev_device.flash, dev_device.rot(), bytes(package), now=NOW_S)
    assert dev_device.flash.installed_image_files() == []


def test_app_signed_by_an_unknown_key_is_refused(
    dev_device: Device, tmp_path: Path, app_folder: Path
) -> None:
    rogue = Fleet.create(tmp_path / "rogue", now=NOW)
    with pytest.raises(ImageRefusedError, match="is not a trusted signer"):
        sideload(
            dev_device.flash, dev_device.rot(), app_package(app_folder, rogue.app_signer), now=NOW_S
        )


def test_app_downgrade_below_its_fuse_is_refused(dev_device: Device, app_folder: Path) -> None:
    rot = dev_device.rot()
    sideload(
        dev_device.flash,
        rot,
        app_package(app_folder, sdk_test_signer(), security_version=3),
        now=NOW_S,
    )
    _, rot = dev_device.boot()
    assert rot.counter(fuse_name(APP_COMPONENT_ID)) == 3
    older = app_package(app_folder, sdk_test_signer(), version="0.9.0", security_version=2)
    with pytest.raises(DowngradeError, match="below the device's fuse"):
        sideload(dev_device.flash, rot, older, now=NOW_S)


def test_app_whose_manifest_names_another_component_is_refused(
    dev_device: Device, app_folder: Path
) -> None:
    """The signed identity and the manifest must agree, or an app could take another's storage."""
    package = package_image(
        image_type=ImageType.Applications,
        component_id=uuid.uuid4(),
        name="Impostor",
        body=pack_directory(app_folder),
        signer=sdk_test_signer(),
        version="1.0.0",
        security_version=1,
        build_time=NOW_S,
    )
    with pytest.raises(ImageRefusedError, match="is not the signed component ID"):
        sideload(dev_device.flash, dev_device.rot(), package, now=NOW_S)


def test_boot_stage_image_is_not_an_app(dev_device: Device, fleet: Fleet) -> None:
    [bootloader, *_] = fleet.os_release()
    with pytest.raises(ImageRefusedError):
        sideload(dev_device.flash, dev_device.rot(), bootloader, now=NOW_S)


def test_reinstall_replaces_the_same_component(dev_device: Device, app_folder: Path) -> None:
    rot = dev_device.rot()
    sideload(dev_device.flash, rot, app_package(app_folder, sdk_test_signer()), now=NOW_S)
    sideload(
        dev_device.flash,
        rot,
        app_package(app_folder, sdk_test_signer(), version="1.1.0"),
        now=NOW_S,
    )
    [app] = dev_device.boot()[0].apps
    assert app.image.metadata.version == "1.1.0"


def test_board_config_is_installed_verified_and_measured(
    dev_device: Device, tmp_path: Path
) -> None:
    config = tmp_path / "lan.json"
    config.write_text('{"ethernet": "enc28j60"}')
    package = package_board_config(
        config,
        name="lan-enc28j60",
        signer=sdk_test_signer(),
        version="1.0.0",
        security_version=1,
        build_time=NOW_S,
    )
    sideload(dev_device.flash, dev_device.rot(), package, now=NOW_S)
    result, rot = dev_device.boot()
    [board] = result.board_configs
    assert rot.event_log()[-1].stage == f"board-config:{board.metadata.identity.component_id}"


def test_os_release_downgrade_is_refused_at_install(device: Device, fleet: Fleet) -> None:
    _, rot = device.boot()  # the first boot commits the shipped release's fuses
    older = fleet.build_os_release(version="0.9.0", security_version=0, build_time=NOW_S)
    with pytest.raises(DowngradeError):
        stage_os_release(device.flash, rot, older)
    assert device.flash.read_control() == BootControl()


def test_os_release_from_an_untrusted_vendor_is_refused(device: Device, tmp_path: Path) -> None:
    rogue = Fleet.create(tmp_path / "rogue", now=NOW)
    release = rogue.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    with pytest.raises(ImageRefusedError, match="is not a trusted signer"):
        stage_os_release(device.flash, device.rot(), release)


def test_incomplete_os_release_is_refused(device: Device, fleet: Fleet) -> None:
    release = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    with pytest.raises(ImageRefusedError, match="missing from the OS release"):
        stage_os_release(device.flash, device.rot(), release[:2])
    with pytest.raises(ImageRefusedError, match="given twice"):
        stage_os_release(device.flash, device.rot(), [*release, release[0]])


def test_no_install_while_an_update_is_unconfirmed(device: Device, fleet: Fleet) -> None:
    release = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    stage_os_release(device.flash, device.rot(), release)
    _, rot = device.boot()
    with pytest.raises(UpdatePendingError):
        stage_os_release(device.flash, rot, release)


def test_restaging_replaces_a_pending_trial(device: Device, fleet: Fleet) -> None:
    rot = device.rot()
    first = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    second = fleet.build_os_release(version="2.1.0", security_version=2, build_time=NOW_S)
    stage_os_release(device.flash, rot, first)
    stage_os_release(device.flash, rot, second)
    assert device.boot()[0].os_version == "2.1.0"
    assert sorted(p.name for p in (device.folder / "slots").iterdir()) == ["a", "b"]


def test_list_installed_shows_slots_and_apps(dev_device: Device, app_folder: Path) -> None:
    rot = dev_device.rot()
    sideload(dev_device.flash, rot, app_package(app_folder, sdk_test_signer()), now=NOW_S)
    listing = list_installed(dev_device.flash, rot, now=NOW_S)
    assert [item.location for item in listing] == ["slot a (active)"] * 3 + ["slot b"] * 3 + [
        "apps"
    ]
    assert listing[-1].test_signed
    assert listing[-1].metadata is not None
    assert listing[-1].metadata.name == "Blink"


def test_list_installed_needs_a_capability_once_device_complete(device: Device) -> None:
    with pytest.raises(CapabilityRequiredError):
        list_installed(device.flash, device.rot(), now=NOW_S)
