"""Power cuts during an update check: the agent killed at every durable step of download,
staging, install, reboot and confirmation (attack list of the renewable-security issue).

As in test_power_cut.py (whose `_run_cut` it uses), a power-on and a check run in a forked
child that SIGKILLs itself before its N-th file-system step (fsync, rename, replace, unlink,
mkdir, rmdir), for N = 1, 2, … until the check completes. After each cut the parent checks
the flash as the cut left it — no fuse above what the committed images carry — then powers
the device on for real: it boots a verified image, and the next check brings it to the new
OS release and app.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from device_helpers import new_fleet
from test_power_cut import _run_cut
from test_update_agent import (
    COMPONENT,
    app_version,
    deployed,
    installed_app_versions,
    new_host,
    publish_os_release,
    uploaded_image,
)
from update_helpers import Tenancy, on_loopback, tenancy

from conftest import Api, FixedClock
from opensphere.client import Client
from opensphere.device.emulator import Fleet
from opensphere.device.flash import DeviceFlash
from opensphere.device.host import DeviceHost, HostSettings
from opensphere.device.policy import BOOT_STAGES, fuse_name
from opensphere.device.update_agent import UpdateOutcome
from opensphere.formats.image_package import parse_package
from opensphere.rot import EmulatedRootOfTrust

pytestmark = [
    pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning"),
    pytest.mark.parametrize("engine_name", ["sqlite"]),
]


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


def _power_on_and_check(folder: Path, base_url: str) -> None:
    with Client(base_url) as client:
        host = _host(folder, client)
        host.power_on()
        host.check_for_updates()


def _host(folder: Path, client: Client) -> DeviceHost:
    return DeviceHost(
        folder, rot=EmulatedRootOfTrust.open(folder), client=client, settings=HostSettings(False)
    )


def _assert_no_fuse_above_committed_images(folder: Path) -> None:
    """Fuses rise only for confirmed images: the active slot's and the apps not on trial."""
    flash = DeviceFlash(folder)
    rot = EmulatedRootOfTrust.open(folder)
    active = flash.read_control().active
    for stage in BOOT_STAGES:
        committed = parse_package(flash.read_slot(active, stage.file_name)).metadata
        assert rot.counter(fuse_name(stage.component_id)) <= committed.security_version
    trial = flash.read_app_trial()
    on_trial = trial is not None and COMPONENT in trial.had_previous
    image = flash.previous_app_file(COMPONENT) if on_trial else flash.app_image_file(COMPONENT)
    if image.exists():
        committed = parse_package(image.read_bytes()).metadata
        assert rot.counter(fuse_name(COMPONENT)) <= committed.security_version


def test_power_cut_at_every_step_of_an_update_leaves_a_bootable_device(
    world: Tenancy, base_url: str, fleet: Fleet, tmp_path: Path
) -> None:
    with Client(base_url) as client:
        deployed(world, [uploaded_image(world, app_version(tmp_path / "app", "1.0.0"))])
        template = new_host(world, client)
        template.power_on()
        assert template.check_for_updates().outcome is UpdateOutcome.INSTALLED
        deployed(world, [uploaded_image(world, app_version(tmp_path / "app", "2.0.0", 2))])
        images = fleet.build_os_release(
            version="2.0.0", security_version=2, build_time=1_790_000_000
        )
        publish_os_release(world, fleet, images, "2.0.0")

        cuts = 0
        work = tmp_path / "cut"
        while True:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(template.folder, work, symlinks=True)
            if not _run_cut(partial(_power_on_and_check, work, base_url), cuts + 1):
                break
            cuts += 1
            _assert_no_fuse_above_committed_images(work)
            host = _host(work, client)
            boot = host.power_on()
            assert boot.os_version in {"1.0.0", "2.0.0"}, f"cut at step {cuts}"
            _assert_no_fuse_above_committed_images(work)
            outcome = host.check_for_updates().outcome
            assert outcome in {UpdateOutcome.INSTALLED, UpdateOutcome.UP_TO_DATE}, cuts
            assert host.boot_result.os_version == "2.0.0", f"cut at step {cuts}"
            assert installed_app_versions(host) == ["2.0.0"], f"cut at step {cuts}"
            rot = host.rot
            assert [rot.counter(fuse_name(s.component_id)) for s in BOOT_STAGES] == [2, 2, 2]
            assert rot.counter(fuse_name(COMPONENT)) == 2
        assert cuts > 50  # the check really was cut at many points
