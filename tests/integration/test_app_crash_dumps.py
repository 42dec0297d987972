"""Crash dumps from the real runtime: written only when the group collects them, then uploaded.

The faulty sample app segfaults; its dump must tie back to the AppCrash event in the queue
so that the service can show the two together.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from app_runtime_helpers import Apps, pending_events, running_runtime, wait_for
from device_helpers import AppTransport
from reporting_helpers import reporting_devices

from conftest import Api, FixedClock
from opensphere.client import Client
from opensphere.device.reporting.dumps import pending_dumps, set_dumps_allowed
from opensphere.device.reporting.uploader import upload_dumps
from opensphere.device.runtime import AppLaunch, RestartPolicy

FAULTY = Path(__file__).resolve().parents[2] / "samples" / "thermostat-faulty"
# One crash per test: the restart would come long after the test has finished.
NO_RESTART = RestartPolicy(initial=600.0, factor=1.0, maximum=600.0, reset_after=30.0)


def faulty_app(apps: Apps) -> AppLaunch:
    folder = apps.root / FAULTY.name
    shutil.copytree(FAULTY, folder)
    return apps.launch(folder)


def crash_once(device: Path, launch: AppLaunch) -> dict[str, Any]:
    """Runs the app until its AppCrash is in the queue; returns that event."""
    with running_runtime(device, restart=NO_RESTART) as runtime:
        runtime.launch_app(launch)
        return wait_for(
            lambda: next(iter(pending_events(device)), None), timeout=20, what="an AppCrash event"
        )


def test_crash_leaves_a_dump_naming_its_event_and_the_dump_is_uploaded(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    [reporting] = reporting_devices(api, tmp_path / "devices", clock.now(), crash_dumps=True)
    device = tmp_path / "devices" / "device-0"
    set_dumps_allowed(device, True)  # what the agent keeps after reading the group's setting
    launch = faulty_app(Apps(tmp_path / "apps", device))

    event = crash_once(device, launch)

    assert event["category"] == "AppCrash"
    [path] = pending_dumps(device)
    dump = json.loads(path.read_text())
    assert dump["event_id"] == event["id"]
    assert dump["component_id"] == str(launch.component_id)
    assert dump["image_id"] == str(launch.image_id)
    assert dump["app_name"] == "Thermostat (faulty)"
    assert dump["signal"] == 11
    assert dump["exit_code"] is None
    assert "Segmentation fault" in dump["log_tail"]

    with Client("http://testserver", transport=AppTransport(api.client)) as client:
        assert upload_dumps(device, client=client, credential=reporting.credential) == 1
    assert pending_dumps(device) == []
    listed = api.client.get(
        f"/v1/tenants/{reporting.tenant_id}/crash-dumps", headers=api.operator
    ).json()["items"]
    assert [(d["event_id"], d["component_id"], d["image_id"]) for d in listed] == [
        (event["id"], str(launch.component_id), str(launch.image_id))
    ]


def test_crash_leaves_no_dump_when_the_group_does_not_collect_them(tmp_path: Path) -> None:
    device = tmp_path / "device"
    launch = faulty_app(Apps(tmp_path / "apps", device))

    event = crash_once(device, launch)

    assert event["category"] == "AppCrash"
    assert event["signal_status"] == 11
    assert pending_dumps(device) == []
