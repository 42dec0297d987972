"""Capability files signed by the service, bound to one device, applied on the device."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from device_helpers import (
    EmulatedDevice,
    claim,
    claim_item,
    make_device,
    new_fleet,
    register_manufacturer,
)
from helpers import assert_problem, create_tenant, member

from conftest import Api, FixedClock
from opensphere.device.capabilities import apply_capability
from opensphere.device.emulator import Fleet
from opensphere.device.errors import CapabilityRequiredError, ImageRefusedError
from opensphere.device.flash import DeviceFlash
from opensphere.device.install import sideload
from opensphere.device.keystore import TrustedKeyStore
from opensphere.formats.capability import CapabilityError
from opensphere.service.capabilities import CAPABILITY_KEY_ID
from support.device_os import app_package, make_app_folder, sdk_test_signer


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return new_fleet(tmp_path / "fleet")


def _claimed(api: Api, fleet: Fleet, folder: Path, now: dt.datetime) -> tuple[str, EmulatedDevice]:
    tenant = create_tenant(api)
    register_manufacturer(api, fleet.ca_cert)
    device = make_device(folder, fleet, now)
    response = claim(api, tenant["id"], [claim_item(device, tenant["id"], now)])
    assert response.status_code == 201, response.text
    return tenant["id"], device


def _download(api: Api, tenant_id: str, device_id: str, headers: dict[str, str]) -> object:
    return api.client.post(
        f"/v1/tenants/{tenant_id}/devices/{device_id}/capability",
        json={"capabilities": ["appDevelopment"]},
        headers=headers,
    )


def _apply(device: EmulatedDevice, data: bytes, now: dt.datetime) -> None:
    flash = DeviceFlash(device.folder)
    apply_capability(
        flash,
        data,
        keystore=TrustedKeyStore.decode(flash.read_keystore_bytes()),
        device_id=device.device_id,
        now=int(now.timestamp()),
    )


def test_service_signed_capability_enables_sideloading(
    api: Api, fleet: Fleet, tmp_path: Path, clock: FixedClock
) -> None:
    api.client.app.state.keys.import_key(CAPABILITY_KEY_ID, fleet.capability_signer.private_key)
    tenant_id, device = _claimed(api, fleet, tmp_path / "device", clock.now())
    package = app_package(make_app_folder(tmp_path / "app"), sdk_test_signer())
    flash = DeviceFlash(device.folder)
    now = int(clock.now().timestamp())
    with pytest.raises((CapabilityRequiredError, ImageRefusedError)):
        sideload(flash, device.rot, package, now=now)
    contributor = member(api, tenant_id, "Contributor")
    response = _download(api, tenant_id, device.device_id, contributor)
    assert response.status_code == 200, response.text
    _apply(device, response.content, clock.now())
    installed = sideload(flash, device.rot, package, now=now)
    assert installed.name
    audit = api.client.get(f"/v1/tenants/{tenant_id}/audit", headers=api.operator).json()
    assert audit["items"][0]["action"] == "device.capability"


def test_capability_file_for_another_device_is_refused(
    api: Api, fleet: Fleet, tmp_path: Path, clock: FixedClock
) -> None:
    api.client.app.state.keys.import_key(CAPABILITY_KEY_ID, fleet.capability_signer.private_key)
    tenant_id, device = _claimed(api, fleet, tmp_path / "one", clock.now())
    other = make_device(tmp_path / "other", fleet, clock.now())
    data = _download(api, tenant_id, device.device_id, api.operator).content
    with pytest.raises(CapabilityError):
        _apply(other, data, clock.now())
    assert DeviceFlash(other.folder).read_capability_file() is None


def test_reader_and_foreign_tenants_get_no_capability(
    api: Api, fleet: Fleet, tmp_path: Path, clock: FixedClock
) -> None:
    api.client.app.state.keys.import_key(CAPABILITY_KEY_ID, fleet.capability_signer.private_key)
    tenant_id, device = _claimed(api, fleet, tmp_path / "device", clock.now())
    reader = member(api, tenant_id, "Reader")
    assert_problem(_download(api, tenant_id, device.device_id, reader), 403, "forbidden")
    other_tenant = create_tenant(api)
    assert_problem(
        _download(api, other_tenant["id"], device.device_id, api.operator), 404, "device_not_found"
    )
    unknown = api.client.post(
        f"/v1/tenants/{tenant_id}/devices/{device.device_id}/capability",
        json={"capabilities": ["rootShell"]},
        headers=api.operator,
    )
    assert_problem(unknown, 400, "unknown_capability")


def test_without_the_fleets_key_the_service_says_what_to_do(
    api: Api, fleet: Fleet, tmp_path: Path, clock: FixedClock
) -> None:
    tenant_id, device = _claimed(api, fleet, tmp_path / "device", clock.now())
    problem = assert_problem(
        _download(api, tenant_id, device.device_id, api.operator), 409, "capability_key_missing"
    )
    assert "import-capability-key" in problem["detail"]
