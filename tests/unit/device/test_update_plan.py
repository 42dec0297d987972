"""The update agent's pure core: offered images and the device's state in, a plan out."""

from __future__ import annotations

import uuid

import pytest

from opensphere.device.update_plan import (
    DeviceImages,
    OfferedImage,
    OfferError,
    plan_update,
)
from opensphere.updates.rollout import Rollout, in_rollout

DEVICE = "ab" * 64
OS_COMPONENTS = [uuid.uuid4() for _ in range(3)]
APP = uuid.uuid4()
OTHER_APP = uuid.uuid4()


def os_images() -> list[OfferedImage]:
    return [
        OfferedImage(f"os-{i}", uuid.uuid4(), component, 1, None)
        for i, component in enumerate(OS_COMPONENTS)
    ]


def app(component: uuid.UUID, rollout: Rollout) -> OfferedImage:
    return OfferedImage(f"app-{component}", uuid.uuid4(), component, 1, rollout)


def running(os: list[OfferedImage], apps: dict[uuid.UUID, uuid.UUID] | None = None) -> DeviceImages:
    return DeviceImages({i.component_id: i.image_id for i in os}, apps or {})


FULL = Rollout(uuid.uuid4(), 100, paused=False)


def test_nothing_offered_beyond_what_runs_is_an_empty_plan() -> None:
    os = os_images()
    plan = plan_update(os, running(os), device_id=DEVICE)
    assert plan.empty
    assert plan.deployment_id is None


def test_a_new_os_release_is_installed_whole() -> None:
    plan = plan_update(os_images(), running(os_images()), device_id=DEVICE)
    assert len(plan.os_release) == 3
    assert plan.install_apps == ()


def test_a_deployment_installs_missing_apps_and_removes_dropped_components() -> None:
    os = os_images()
    offered = app(APP, FULL)
    device = running(os, {APP: uuid.uuid4(), OTHER_APP: uuid.uuid4()})
    plan = plan_update([*os, offered], device, device_id=DEVICE)
    assert plan.install_apps == (offered,)
    assert plan.remove_apps == (OTHER_APP,)
    assert plan.deployment_id == FULL.deployment_id


def test_a_device_outside_the_rollout_or_a_paused_one_waits() -> None:
    os = os_images()
    rollout = Rollout(uuid.uuid4(), 1, paused=False)
    outside = next(f"{i:0128x}" for i in range(1000) if not in_rollout(rollout, f"{i:0128x}"))
    plan = plan_update([*os, app(APP, rollout)], running(os), device_id=outside)
    assert plan.empty
    assert plan.waiting_for_rollout
    paused = Rollout(uuid.uuid4(), 100, paused=True)
    plan = plan_update([*os, app(APP, paused)], running(os), device_id=DEVICE)
    assert plan.empty
    assert plan.waiting_for_rollout


def test_a_paused_deployment_the_device_already_runs_is_kept() -> None:
    os = os_images()
    offered = app(APP, Rollout(uuid.uuid4(), 100, paused=True))
    plan = plan_update([*os, offered], running(os, {APP: offered.image_id}), device_id=DEVICE)
    assert plan.empty
    assert not plan.waiting_for_rollout


def test_images_that_failed_here_are_not_tried_again() -> None:
    os = os_images()
    offered = app(APP, FULL)
    device = DeviceImages({}, {}, failed_images=frozenset({offered.image_id}))
    plan = plan_update([*os, offered], device, device_id=DEVICE)
    assert plan.install_apps == ()
    assert offered.image_id in plan.skipped_failed
    assert len(plan.os_release) == 3
    failed_os = DeviceImages({}, {}, failed_images=frozenset({os[0].image_id}))
    assert plan_update(os, failed_os, device_id=DEVICE).empty


def test_development_devices_take_no_cloud_apps_but_take_the_os() -> None:
    os = os_images()
    device = DeviceImages({}, {}, development_mode=True)
    plan = plan_update([*os, app(APP, FULL)], device, device_id=DEVICE)
    assert plan.install_apps == ()
    assert len(plan.os_release) == 3


@pytest.mark.parametrize(
    "custom",
    [
        {},
        {"image_id": "x", "component_id": str(APP), "security_version": 1},
        {"image_id": str(APP), "component_id": str(APP), "security_version": "one"},
        {"image_id": str(APP), "component_id": str(APP), "security_version": 1, "rollout": {}},
    ],
)
def test_a_target_description_it_cannot_read_is_refused(custom: dict[str, object]) -> None:
    with pytest.raises(OfferError, match="no usable image description"):
        OfferedImage.from_custom("groups/x/app.imagepackage", custom)
