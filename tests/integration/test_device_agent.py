"""The device agent: a real secure boot of a fleet device, then attestation to the service.

The evidence is what `boot_device` measured, so these tests also show that the fleet's
reference values, the fuses reported per boot stage and the service's appraisal fit together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from device_helpers import (
    AppTransport,
    EmulatedDevice,
    claim,
    claim_item,
    make_device,
    new_fleet,
    register_manufacturer,
    register_release,
)
from helpers import create_tenant

from conftest import Api, FixedClock
from opensphere.client import ApiError, Client
from opensphere.device.agent import DeviceAgent
from opensphere.device.emulator import (
    INITIAL_OS_VERSION,
    Fleet,
    create_emulated_device,
    release_reference_values,
)
from opensphere.device.errors import DeviceStateError
from opensphere.device.flash import BootControl, DeviceFlash
from opensphere.device.install import stage_os_release
from opensphere.device.policy import BOOT_STAGES, fuse_name
from opensphere.factory import manufacture_device
from opensphere.rot import EmulatedRootOfTrust

pytestmark = [
    pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning"),
    pytest.mark.parametrize("engine_name", ["sqlite"]),
]


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def tenant_id(api: Api, vendor: Fleet) -> str:
    register_manufacturer(api, vendor.ca_cert)
    register_release(api, vendor)
    return str(create_tenant(api)["id"])


@pytest.fixture
def client(api: Api) -> Iterator[Client]:
    with Client("http://testserver", transport=AppTransport(api.client)) as client:
        yield client


def _claim(api: Api, tenant_id: str, device: EmulatedDevice, clock: FixedClock) -> None:
    response = claim(api, tenant_id, [claim_item(device, tenant_id, clock.now())])
    assert response.status_code == 201, response.text


def _row(api: Api, tenant_id: str, device_id: str) -> dict[str, object]:
    response = api.client.get(f"/v1/tenants/{tenant_id}/devices/{device_id}", headers=api.operator)
    return dict(response.json())


def _set_minimums(api: Api, minimums: dict[str, int]) -> None:
    response = api.client.put(
        "/v1/minimum-security-versions", json={"minimums": minimums}, headers=api.operator
    )
    assert response.status_code == 200, response.text


def test_a_fleet_device_boots_attests_and_keeps_its_certificate(
    api: Api, clock: FixedClock, tenant_id: str, vendor: Fleet, client: Client, tmp_path: Path
) -> None:
    device = make_device(tmp_path / "device", vendor, clock.now())
    _claim(api, tenant_id, device, clock)
    agent = DeviceAgent(device.folder, rot=device.rot, client=client)
    result = agent.boot(now=clock.now())
    assert (result.slot, result.trial, result.os_version) == ("a", False, INITIAL_OS_VERSION)

    grant = agent.attest()

    row = _row(api, tenant_id, device.device_id)
    assert (row["last_attestation_result"], row["os_version"]) == ("Passed", INITIAL_OS_VERSION)
    certificate = x509.load_pem_x509_certificate(agent.certificate_path.read_bytes())
    client_key = serialization.load_pem_private_key(
        agent.client_key_path.read_bytes(), password=None
    )
    assert certificate.public_key() == client_key.public_key()
    assert agent.renew_if_due(now=clock.now()) is None
    assert agent.renew_if_due(now=grant.certificate_expires_at) is not None


def test_minimums_apply_to_the_fuses_of_the_boot_stages(
    api: Api, clock: FixedClock, tenant_id: str, vendor: Fleet, client: Client, tmp_path: Path
) -> None:
    """The device reports each boot stage's fuse under the stage name the operator uses."""
    device = make_device(tmp_path / "device", vendor, clock.now())
    _claim(api, tenant_id, device, clock)
    agent = DeviceAgent(device.folder, rot=device.rot, client=client)
    _set_minimums(api, {"security-monitor": 2})
    with pytest.raises(ApiError) as refused:
        agent.attest()
    assert refused.value.code == "attestation_refused"
    assert _row(api, tenant_id, device.device_id)["last_attestation_code"] == (
        "security_version_too_low"
    )
    _set_minimums(api, {stage.name: 1 for stage in BOOT_STAGES})
    agent.attest()
    assert _row(api, tenant_id, device.device_id)["last_attestation_result"] == "Passed"


def test_a_release_booted_on_trial_is_confirmed_and_attests_as_the_new_os(
    api: Api, clock: FixedClock, tenant_id: str, vendor: Fleet, client: Client, tmp_path: Path
) -> None:
    device = make_device(tmp_path / "device", vendor, clock.now())
    _claim(api, tenant_id, device, clock)
    update = vendor.build_os_release(
        version="1.1.0", security_version=2, build_time=int(clock.now().timestamp())
    )
    reference = release_reference_values(vendor.keystore(), update)
    response = api.client.post(
        "/v1/os-releases", json=reference.model_dump(mode="json"), headers=api.operator
    )
    assert response.status_code == 201, response.text
    _set_minimums(api, {"os": 2})
    flash = DeviceFlash(device.folder)
    assert stage_os_release(flash, device.rot, update) == "b"
    agent = DeviceAgent(device.folder, rot=device.rot, client=client)

    result = agent.boot(now=clock.now())

    assert (result.slot, result.trial, result.os_version) == ("b", True, "1.1.0")
    assert flash.read_control() == BootControl(active="b")
    assert all(device.rot.counter(fuse_name(stage.component_id)) == 2 for stage in BOOT_STAGES)
    agent.attest()
    row = _row(api, tenant_id, device.device_id)
    assert (row["last_attestation_result"], row["os_version"]) == ("Passed", "1.1.0")


def test_a_development_device_attests_with_its_capability_measured(
    api: Api, clock: FixedClock, tenant_id: str, vendor: Fleet, client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "device"
    create_emulated_device(folder, vendor, now=clock.now(), development=True)
    device = EmulatedDevice(folder, EmulatedRootOfTrust.open(folder), vendor)
    _claim(api, tenant_id, device, clock)
    agent = DeviceAgent(folder, rot=device.rot, client=client)
    assert agent.boot(now=clock.now()).development_mode
    assert device.rot.event_log()[-1].stage == "capability"
    agent.attest()
    assert _row(api, tenant_id, device.device_id)["last_attestation_result"] == "Passed"


def test_a_device_without_flash_cannot_boot(
    clock: FixedClock, vendor: Fleet, client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "identity-only"
    manufacture_device(folder, vendor.ca_key, vendor.ca_cert, now=clock.now())
    agent = DeviceAgent(folder, rot=EmulatedRootOfTrust.open(folder), client=client)
    with pytest.raises(DeviceStateError, match="sphere device manufacture"):
        agent.boot(now=clock.now())
