"""The device's capability store: only a trusted grant for this very device is ever stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from opensphere.device.capabilities import apply_capability, check_servicing_allowed
from opensphere.device.emulator import Fleet
from opensphere.device.errors import CapabilityRequiredError
from opensphere.device.keystore import TrustedKeyStore
from opensphere.formats.capability import (
    CapabilityDeviceMismatchError,
    DeviceCapability,
    UntrustedCapabilitySignerError,
    decode_capability_unverified,
)
from opensphere.formats.evidence import ManufacturingState
from support.device_os import NOW, NOW_S, Device, new_device

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet.create(tmp_path_factory.mktemp("fleet"), now=NOW)


@pytest.fixture
def device(tmp_path: Path, fleet: Fleet) -> Device:
    return new_device(tmp_path / "device", fleet)


def _apply(device: Device, data: bytes) -> None:
    keystore = TrustedKeyStore.decode(device.flash.read_keystore_bytes())
    apply_capability(
        device.flash, data, keystore=keystore, device_id=device.rot().device_id, now=NOW_S
    )


def test_capability_for_this_device_is_stored_and_turns_development_mode_on(
    device: Device, fleet: Fleet
) -> None:
    data = fleet.issue_capability(
        device.rot().device_id, [DeviceCapability.APP_DEVELOPMENT], now=NOW_S
    )
    _apply(device, data)
    assert device.flash.read_capability_file() == data
    assert device.boot()[0].development_mode


def test_capability_file_for_another_device_is_refused_and_not_stored(
    device: Device, fleet: Fleet, tmp_path: Path
) -> None:
    other = new_device(tmp_path / "other", fleet)
    data = fleet.issue_capability(
        other.rot().device_id, [DeviceCapability.APP_DEVELOPMENT], now=NOW_S
    )
    with pytest.raises(CapabilityDeviceMismatchError):
        _apply(device, data)
    assert device.flash.read_capability_file() is None


def test_capability_signed_by_the_os_key_is_refused(device: Device, fleet: Fleet) -> None:
    """Key usages again: only the capability key may grant capabilities."""
    impostor = Fleet(
        folder=fleet.folder,
        ca_key=fleet.ca_key,
        ca_cert=fleet.ca_cert,
        os_signer=fleet.os_signer,
        app_signer=fleet.app_signer,
        capability_signer=fleet.os_signer,
    )
    data = impostor.issue_capability(
        device.rot().device_id, [DeviceCapability.APP_DEVELOPMENT], now=NOW_S
    )
    with pytest.raises(UntrustedCapabilitySignerError):
        _apply(device, data)


def test_applying_a_new_file_replaces_the_old_one(device: Device, fleet: Fleet) -> None:
    device_id = device.rot().device_id
    _apply(device, fleet.issue_capability(device_id, [DeviceCapability.APP_DEVELOPMENT], now=NOW_S))
    _apply(device, fleet.issue_capability(device_id, [], now=NOW_S))
    stored = device.flash.read_capability_file()
    assert stored is not None
    assert decode_capability_unverified(stored).capabilities == frozenset()
    assert not device.boot()[0].development_mode


@pytest.mark.parametrize(
    ("capabilities", "state", "test_signed", "allowed"),
    [
        (set(), ManufacturingState.BLANK, False, True),
        (set(), ManufacturingState.BLANK, True, False),
        (set(), ManufacturingState.DEVICE_COMPLETE, False, False),
        ({DeviceCapability.FIELD_SERVICING}, ManufacturingState.DEVICE_COMPLETE, False, True),
        ({DeviceCapability.FIELD_SERVICING}, ManufacturingState.DEVICE_COMPLETE, True, False),
        ({DeviceCapability.APP_DEVELOPMENT}, ManufacturingState.DEVICE_COMPLETE, True, True),
    ],
)
def test_servicing_rules(
    device: Device,
    fleet: Fleet,
    capabilities: set[DeviceCapability],
    state: ManufacturingState,
    test_signed: bool,
    allowed: bool,
) -> None:
    grant = decode_capability_unverified(
        fleet.issue_capability(device.rot().device_id, capabilities, now=NOW_S)
    )
    if allowed:
        check_servicing_allowed(grant, state, test_signed=test_signed)
    else:
        with pytest.raises(CapabilityRequiredError):
            check_servicing_allowed(grant, state, test_signed=test_signed)
