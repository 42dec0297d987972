"""From secure boot to a running app: the sample, signed, sideloaded, booted, then run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from app_runtime_helpers import running_runtime, wait_for

from opensphere.device.emulator import Fleet
from opensphere.device.install import sideload
from opensphere.device.runtime import AppLaunch, AppState
from support.device_os import NOW, NOW_S, app_package, new_device, sdk_test_signer

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "thermostat"


def test_booted_sample_app_runs_on_the_runtime(tmp_path: Path) -> None:
    fleet = Fleet.create(tmp_path / "fleet", now=NOW)
    device = new_device(tmp_path / "device", fleet, development=True)
    folder = shutil.copytree(SAMPLE, tmp_path / "thermostat")
    sideload(device.flash, device.rot(), app_package(folder, sdk_test_signer()), now=NOW_S)
    booted, _ = device.boot()
    [app] = booted.apps
    identity = app.image.metadata.identity
    launch = AppLaunch(
        manifest=app.manifest,
        app_folder=app.app_dir,
        component_id=identity.component_id,
        image_id=identity.image_id,
        storage_folder=app.storage_dir,
    )

    with running_runtime(device.folder) as runtime:
        runtime.launch_app(launch)
        assert app.storage_dir is not None
        stored = app.storage_dir / "mutable-storage.bin"
        history = wait_for(lambda: stored.exists() and json.loads(stored.read_bytes())["history"])
        assert history[0]["celsius"] == 23.2  # what the virtual board's sensor reads at first
        status = runtime.app_status(launch.component_id)
        assert (status.state, status.image_id) == (AppState.RUNNING, identity.image_id)
