"""The device's update agent against the real service over HTTP on loopback.

Each test runs a real device (secure boot of its own flash, attestation, python-tuf's client)
through `DeviceHost`, with the service's TUF repository, deployments and OS feeds behind it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from device_helpers import new_fleet
from test_os_feeds import add_images, publish, trust_os_vendor
from update_helpers import Tenancy, deploy, on_loopback, tenancy, upload

from conftest import Api, FixedClock
from opensphere.client import ApiError, Client
from opensphere.device.agent import CREDENTIAL_FILE
from opensphere.device.emulator import Fleet, release_reference_values
from opensphere.device.errors import ImageRefusedError
from opensphere.device.flash import AppTrial, DeviceFlash
from opensphere.device.host import DeviceHost, HostSettings
from opensphere.device.install import install_app_trial
from opensphere.device.packaging import package_application
from opensphere.device.policy import BOOT_STAGES, fuse_name
from opensphere.device.update_agent import UpdateOutcome
from opensphere.rot import EmulatedRootOfTrust
from opensphere.updates.rollout import Rollout, in_rollout
from support.device_os import app_package, make_app_folder, sdk_test_signer

pytestmark = [
    pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning"),
    pytest.mark.parametrize("engine_name", ["sqlite"]),
]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
COMPONENT = uuid.UUID("0d9d3e8a-5a43-4b0e-8f0e-6c1f4bb9d2a1")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet") / "fleet")


@pytest.fixture
def world(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> Tenancy:
    return tenancy(api, clock, tmp_path, fleet)


@pytest.fixture
def base_url(api: Api) -> Iterator[str]:
    with on_loopback(api.client.app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url) as client:
        yield client


def new_host(
    world: Tenancy, client: Client, *, run_apps: bool = False, **options: Any
) -> DeviceHost:
    device = world.device()
    return DeviceHost(
        device.folder,
        rot=device.rot,
        client=client,
        settings=HostSettings(run_apps=run_apps, **options),
    )


def host_with_app_installed(world: Tenancy, client: Client, tmp_path: Path) -> DeviceHost:
    """A powered-on device whose first check installed its group's app 1.0.0."""
    deployed(world, [uploaded_image(world, app_version(tmp_path / "app", "1.0.0"))])
    host = new_host(world, client)
    host.power_on()
    assert host.check_for_updates().outcome is UpdateOutcome.INSTALLED
    return host


def app_version(folder: Path, version: str, security_version: int = 1) -> bytes:
    if not folder.exists():
        make_app_folder(folder, name="Blink", component_id=COMPONENT)
    return app_package(
        folder, sdk_test_signer(), version=version, security_version=security_version
    )


def uploaded_image(world: Tenancy, data: bytes) -> str:
    response = upload(world.api, world.tenant_id, data)
    assert response.status_code == 201, response.text
    return str(response.json()["image_id"])


def deployed(world: Tenancy, image_ids: list[str], **options: Any) -> str:
    response = deploy(world.api, world.tenant_id, world.group(), image_ids, **options)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def update_status(world: Tenancy, device_id: str) -> dict[str, Any]:
    response = world.api.client.get(
        f"/v1/tenants/{world.tenant_id}/devices/{device_id}", headers=world.api.operator
    )
    assert response.status_code == 200, response.text
    status = response.json()["update_status"]
    assert status is not None
    return dict(status)


def queued_details(host: DeviceHost) -> list[str]:
    queue = json.loads((host.folder / "events" / "queue.json").read_text())
    return [record["event"]["detail"] for record in queue["records"]]


def installed_app_versions(host: DeviceHost) -> list[str]:
    return [app.image.metadata.version for app in host.boot_result.apps]


def test_a_device_installs_its_groups_deployment_and_reports_it(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    image_id = uploaded_image(world, app_version(tmp_path / "app", "1.0.0", security_version=3))
    deployment_id = deployed(world, [image_id])
    host = new_host(world, client)
    host.power_on()

    result = host.check_for_updates()

    assert result.outcome is UpdateOutcome.INSTALLED, result
    assert installed_app_versions(host) == ["1.0.0"]
    # The app came from the service: production-signed with the tenant key, now trusted for
    # apps only, and confirmed, so its fuse rose to the image's security version.
    assert host.rot.counter(fuse_name(COMPONENT)) == 3
    assert DeviceFlash(host.folder).read_app_trial() is None
    status = update_status(world, host.rot.device_id)
    assert status["state"] == "installed"
    assert status["deployment_id"] == deployment_id
    assert image_id in status["installed_images"]
    assert any("AppUpdated" in detail for detail in queued_details(host))


def test_a_check_with_nothing_new_downloads_nothing_and_reports_once(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    host = host_with_app_installed(world, client, tmp_path)
    sequence = update_status(world, host.rot.device_id)["sequence"]

    again = host.check_for_updates()

    assert again.outcome is UpdateOutcome.UP_TO_DATE
    assert update_status(world, host.rot.device_id)["sequence"] == sequence + 1  # "checked"
    assert host.check_for_updates().outcome is UpdateOutcome.UP_TO_DATE
    assert update_status(world, host.rot.device_id)["sequence"] == sequence + 1  # not again


def test_a_refused_credential_is_replaced_by_attesting_again(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    """As when the service's keys were replaced: its next check attests again, then works."""
    host = host_with_app_installed(world, client, tmp_path)
    stored = host.attestation.client_key_path.with_name(CREDENTIAL_FILE)
    stored.write_text("osd2.e30.AAAA")  # not this service's, though not yet due for renewal

    assert host.check_for_updates().outcome is UpdateOutcome.UP_TO_DATE
    assert stored.read_text().startswith("osd2.")
    assert stored.read_text() != "osd2.e30.AAAA"
    assert host.upload_reports().stored >= 1  # the install's events, with the new credential


def test_a_disabled_devices_check_is_refused_after_one_more_attestation(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    host = host_with_app_installed(world, client, tmp_path)
    world.api.client.patch(
        f"/v1/tenants/{world.tenant_id}/devices/{host.rot.device_id}",
        json={"enabled": False},
        headers=world.api.operator,
    )
    with pytest.raises(ApiError) as refused:
        host.check_for_updates()
    assert (refused.value.status, refused.value.code) == (403, "attestation_refused")


def test_a_new_deployment_replaces_the_app_and_drops_components_it_no_longer_has(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    first = uploaded_image(world, app_version(tmp_path / "app", "1.0.0"))
    other_folder = make_app_folder(tmp_path / "other", name="Other", component_id=uuid.uuid4())
    other = uploaded_image(world, app_package(other_folder, sdk_test_signer()))
    deployed(world, [first, other])
    host = new_host(world, client)
    host.power_on()
    assert host.check_for_updates().outcome is UpdateOutcome.INSTALLED
    assert sorted(installed_app_versions(host)) == ["1.0.0", "1.0.0"]

    deployed(world, [uploaded_image(world, app_version(tmp_path / "app", "2.0.0"))])
    result = host.check_for_updates()

    assert result.outcome is UpdateOutcome.INSTALLED
    assert installed_app_versions(host) == ["2.0.0"]
    assert len(DeviceFlash(host.folder).installed_image_files()) == 1


def test_an_os_release_from_the_feed_boots_on_trial_then_raises_the_fuses(
    world: Tenancy, client: Client, fleet: Fleet
) -> None:
    host = new_host(world, client)
    host.power_on()
    images = fleet.build_os_release(version="2.0.0", security_version=2, build_time=1_790_000_000)
    publish_os_release(world, fleet, images, "2.0.0")

    result = host.check_for_updates()

    assert result.outcome is UpdateOutcome.INSTALLED, result
    assert host.boot_result.os_version == "2.0.0"
    flash = DeviceFlash(host.folder)
    assert flash.read_control().unconfirmed is None
    assert [host.rot.counter(fuse_name(s.component_id)) for s in BOOT_STAGES] == [2, 2, 2]
    # The new release's measurements are the ones the operator registered: it attests.
    grant = host.attestation.attest()
    assert grant.certificate
    assert update_status(world, host.rot.device_id)["os_version"] == "2.0.0"


def publish_os_release(world: Tenancy, fleet: Fleet, images: list[bytes], version: str) -> str:
    api = world.api
    trust_os_vendor(api, fleet)
    body = release_reference_values(fleet.keystore(), images).model_copy(
        update={"version": version}
    )
    response = api.client.post(
        "/v1/os-releases", json=body.model_dump(mode="json"), headers=api.operator
    )
    assert response.status_code == 201, response.text
    release_id = str(response.json()["id"])
    add_images(api, release_id, images)
    assert publish(api, release_id, "Retail").status_code == 200
    return release_id


def test_a_staged_rollout_reaches_only_its_share_until_it_is_raised(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    image_id = uploaded_image(world, app_version(tmp_path / "app", "1.0.0"))
    deployment_id = deployed(world, [image_id], rollout_percentage=1)
    hosts = [new_host(world, client) for _ in range(4)]
    outcomes = []
    for host in hosts:
        host.power_on()
        outcomes.append(host.check_for_updates().outcome)
    rollout = Rollout(uuid.UUID(deployment_id), 1, paused=False)
    expected = [
        UpdateOutcome.INSTALLED if in_rollout(rollout, h.rot.device_id) else UpdateOutcome.WAITING
        for h in hosts
    ]
    assert outcomes == expected
    raised = world.api.client.patch(
        f"/v1/tenants/{world.tenant_id}/device-groups/{world.group()}/deployments/{deployment_id}",
        json={"rollout_percentage": 100},
        headers=world.api.operator,
    )
    assert raised.status_code == 200, raised.text
    for host in hosts:
        host.check_for_updates()
        assert installed_app_versions(host) == ["1.0.0"]


def test_a_new_app_that_crashes_at_start_is_rolled_back_and_reported(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    good = package_sample("thermostat", "1.0.0")
    faulty = package_sample("thermostat-faulty", "2.0.0")
    deployed(world, [uploaded_image(world, good)])
    host = new_host(world, client, run_apps=True, health_window=3.0)
    try:
        host.power_on()
        assert host.check_for_updates().outcome is UpdateOutcome.INSTALLED
        faulty_id = uploaded_image(world, faulty)
        deployed(world, [faulty_id])

        result = host.check_for_updates()

        assert result.outcome is UpdateOutcome.ROLLED_BACK, result
        assert "crashed" in (result.reason or "")
        assert installed_app_versions(host) == ["1.0.0"]
        status = update_status(world, host.rot.device_id)
        assert status["state"] == "failed"
        assert "crashed" in status["reason"]
        assert any("UpdateFailed" in detail for detail in queued_details(host))
        # The failed image is not tried again while the deployment stays the same.
        assert host.check_for_updates().outcome is UpdateOutcome.UP_TO_DATE
        assert installed_app_versions(host) == ["1.0.0"]
    finally:
        host.shutdown()


def package_sample(name: str, version: str) -> bytes:
    return package_application(
        SAMPLES / name,
        signer=sdk_test_signer(),
        version=version,
        security_version=1,
        build_time=1_790_000_000,
    )


def test_the_device_folder_alone_is_enough_to_pick_up_after_a_restart(
    world: Tenancy, client: Client, tmp_path: Path
) -> None:
    deployed(world, [uploaded_image(world, app_version(tmp_path / "app", "1.0.0"))])
    host = new_host(world, client)
    host.power_on()
    host.check_for_updates()
    copy = tmp_path / "copy"
    shutil.copytree(host.folder, copy, symlinks=True)
    again = DeviceHost(
        copy, rot=EmulatedRootOfTrust.open(copy), client=client, settings=HostSettings(False)
    )
    again.power_on()
    assert installed_app_versions(again) == ["1.0.0"]
    assert again.check_for_updates().outcome is UpdateOutcome.UP_TO_DATE


class CutFirstImageDownload:
    """ASGI wrapper: the first image download breaks off after `cut_after` bytes, as when
    the service or the network goes away mid-transfer; it records what devices ask for."""

    def __init__(self, app: Any, cut_after: int) -> None:
        self.app = app
        self.cut_after = cut_after
        self.cut = False
        self.ranges: list[str | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or "/targets/" not in path or "app-" not in path:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        self.ranges.append(headers[b"range"].decode() if b"range" in headers else None)
        if self.cut:
            await self.app(scope, receive, send)
            return
        self.cut = True
        sent = 0

        async def cutting_send(message: Any) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if sent + len(body) >= self.cut_after:
                    part = body[: self.cut_after - sent]
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                    raise ConnectionAbortedError("the connection broke off")
                sent += len(body)
            await send(message)

        await self.app(scope, receive, cutting_send)


def test_a_download_cut_off_mid_transfer_resumes_where_it_stopped(
    world: Tenancy, api: Api, tmp_path: Path
) -> None:
    folder = make_app_folder(tmp_path / "big", name="Big", component_id=COMPONENT)
    (folder / "firmware.bin").write_bytes(os.urandom(3_000_000))
    image = app_package(folder, sdk_test_signer())
    deployed(world, [uploaded_image(world, image)])
    flaky = CutFirstImageDownload(api.client.app, cut_after=1_000_000)
    with on_loopback(flaky) as url, Client(url) as client:
        host = new_host(world, client)
        host.power_on()

        first = host.check_for_updates()

        assert first.outcome is UpdateOutcome.INTERRUPTED, first
        assert installed_app_versions(host) == []
        partial = list((host.updates.target_dir / ".partial-downloads").glob("*.part"))
        assert len(partial) == 1
        kept = partial[0].stat().st_size
        assert 0 < kept <= 1_000_000

        second = host.check_for_updates()

    assert second.outcome is UpdateOutcome.INSTALLED, second
    assert second.resumed_bytes == kept
    assert flaky.ranges == [None, f"bytes={kept}-"]
    assert installed_app_versions(host) == ["1.0.0"]
    assert update_status(world, host.rot.device_id)["state"] == "installed"


def test_an_os_release_below_the_fuse_is_refused_and_reported(
    world: Tenancy, client: Client, fleet: Fleet
) -> None:
    host = new_host(world, client)
    host.power_on()
    newer = fleet.build_os_release(version="2.0.0", security_version=2, build_time=1_790_000_000)
    publish_os_release(world, fleet, newer, "2.0.0")
    assert host.check_for_updates().outcome is UpdateOutcome.INSTALLED
    older = fleet.build_os_release(version="1.5.0", security_version=1, build_time=1_790_000_100)
    publish_os_release(world, fleet, older, "1.5.0")

    result = host.check_for_updates()

    assert result.outcome is UpdateOutcome.FAILED, result
    assert "security version" in (result.reason or "")
    assert host.boot_result.os_version == "2.0.0"
    assert DeviceFlash(host.folder).read_control().trial is None
    status = update_status(world, host.rot.device_id)
    assert status["state"] == "failed"
    assert status["os_version"] == "2.0.0"
    assert host.check_for_updates().outcome is UpdateOutcome.UP_TO_DATE  # not retried


def test_an_app_production_signed_for_another_tenant_is_refused_by_the_device(
    world: Tenancy, api: Api, client: Client, clock: FixedClock, tmp_path: Path, fleet: Fleet
) -> None:
    host = host_with_app_installed(world, client, tmp_path)
    other = tenancy(api, clock, tmp_path / "other", fleet)
    foreign_id = uploaded_image(other, app_version(tmp_path / "app", "9.0.0"))
    foreign = api.client.get(
        f"/v1/tenants/{other.tenant_id}/images/{foreign_id}/content", headers=api.operator
    )
    assert foreign.status_code == 200, foreign.text

    with pytest.raises(ImageRefusedError) as refused:
        install_app_trial(DeviceFlash(host.folder), host.rot, [foreign.content], now=0)
    assert "is not a trusted signer" in refused.value.reason
    assert DeviceFlash(host.folder).read_app_trial() is None
    host.reboot()
    assert installed_app_versions(host) == ["1.0.0"]


DEFERRING_APP = """
import time
from applibs import events

while True:
    for event in events.poll():
        if event["event"] == "UpdateReadyForInstall" and event["status"] == "Pending":
            print("update deferred until", events.defer_update(60), flush=True)
    time.sleep(0.05)
"""


def deferring_app(folder: Path, version: str) -> bytes:
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(DEFERRING_APP)
    manifest = {
        "SchemaVersion": 1,
        "Name": "Busy",
        "ComponentId": str(COMPONENT),
        "EntryPoint": "/main.py",
        "CmdArgs": [],
        "ApplicationType": "Default",
        "Capabilities": {"SystemEventNotifications": True, "SoftwareUpdateDeferral": True},
    }
    (folder / "app_manifest.json").write_text(json.dumps(manifest))
    return app_package(folder, sdk_test_signer(), version=version)


def test_an_app_may_defer_an_update_but_not_beyond_24_hours(
    world: Tenancy, client: Client, clock: FixedClock, tmp_path: Path
) -> None:
    device_clock = FixedClock(clock.now())
    deployed(world, [uploaded_image(world, deferring_app(tmp_path / "busy", "1.0.0"))])
    device = world.device()
    settings = HostSettings(run_apps=True, health_window=1.0, deferral_grace=1.0)
    host = DeviceHost(
        device.folder, rot=device.rot, client=client, settings=settings, now=device_clock.now
    )
    try:
        host.power_on()
        assert host.check_for_updates().outcome is UpdateOutcome.INSTALLED
        deployed(world, [uploaded_image(world, deferring_app(tmp_path / "busy", "2.0.0"))])

        deferred = host.check_for_updates()

        assert deferred.outcome is UpdateOutcome.DEFERRED, deferred
        assert deferred.deferred_until == device_clock.now() + dt.timedelta(minutes=60)
        assert installed_app_versions(host) == ["1.0.0"]
        assert update_status(world, host.rot.device_id)["state"] == "staged"
        device_clock.advance(dt.timedelta(hours=2))
        assert host.check_for_updates().outcome is UpdateOutcome.DEFERRED  # deferred again
        device_clock.advance(dt.timedelta(hours=23))

        installed = host.check_for_updates()

        assert installed.outcome is UpdateOutcome.INSTALLED, installed
        assert installed_app_versions(host) == ["2.0.0"]
    finally:
        host.shutdown()


def test_power_cut_before_a_first_apps_image_landed_leaves_a_device_that_powers_on(
    world: Tenancy, client: Client
) -> None:
    """Found by the fleet simulator: the trial record is written, the new app's image is not."""
    host = new_host(world, client)
    flash = DeviceFlash(host.folder)
    flash.write_app_trial(AppTrial(had_previous={COMPONENT: False}))

    boot = host.power_on()

    assert boot.apps == ()
    assert flash.read_app_trial() is None
    assert not flash.app_image_file(COMPONENT).exists()
    assert host.rot.counter(fuse_name(COMPONENT)) == 0
