"""Deployments: replacing, validation, update policy, staged rollout, pause/resume, auto-halt,
and per-device status with counts per state."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from device_helpers import new_fleet
from helpers import assert_problem, member
from update_helpers import (
    Tenancy,
    deploy,
    group_role,
    report,
    tenancy,
    uploaded,
)

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet
from opensphere.updates.rollout import Rollout, in_rollout

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet") / "fleet")


@pytest.fixture
def world(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> Tenancy:
    return tenancy(api, clock, tmp_path, fleet)


def test_a_deployment_replaces_the_previous_one(world: Tenancy) -> None:
    api, tenant, group = world.api, world.tenant_id, world.group()
    first_image = uploaded(api, tenant)
    first = deploy(api, tenant, group, [first_image["image_id"]])
    assert first.status_code == 201, first.text
    assert first.json()["state"] == "Active"
    second_image = uploaded(api, tenant)
    second = deploy(api, tenant, group, [second_image["image_id"]], rollout_percentage=30)
    assert second.status_code == 201, second.text
    listed = api.client.get(
        f"/v1/tenants/{tenant}/device-groups/{group}/deployments", headers=api.operator
    ).json()["items"]
    assert [(d["id"], d["state"]) for d in listed] == [
        (first.json()["id"], "Superseded"),
        (second.json()["id"], "Active"),
    ]
    targets = group_role(api, tenant, group)
    assert list(targets) == [f"app-{second_image['image_id']}.imagepackage"]
    rollout = targets[f"app-{second_image['image_id']}.imagepackage"]["rollout"]
    assert rollout == {"deployment_id": second.json()["id"], "percentage": 30, "paused": False}
    shown = api.client.get(
        f"/v1/tenants/{tenant}/device-groups/{group}", headers=api.operator
    ).json()
    assert shown["deployment"]["id"] == second.json()["id"]
    superseded = api.client.patch(
        f"/v1/tenants/{tenant}/device-groups/{group}/deployments/{first.json()['id']}",
        json={"paused": True},
        headers=api.operator,
    )
    assert_problem(superseded, 409, "deployment_superseded")


def test_a_deployment_naming_another_tenants_image_is_refused(
    world: Tenancy, api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet
) -> None:
    other = tenancy(api, clock, tmp_path / "other", fleet)
    theirs = uploaded(api, other.tenant_id)
    response = deploy(api, world.tenant_id, world.group(), [theirs["image_id"]])
    assert_problem(response, 400, "image_not_found")
    assert_problem(
        deploy(api, world.tenant_id, world.group(), [str(uuid.uuid4())]), 400, "image_not_found"
    )
    assert group_role(api, world.tenant_id, world.group()) == {}


def test_one_image_per_component(world: Tenancy) -> None:
    api, tenant = world.api, world.tenant_id
    a, b = uploaded(api, tenant), uploaded(api, tenant)
    assert_problem(
        deploy(api, tenant, world.group(), [a["image_id"], b["image_id"]]),
        400,
        "duplicate_component",
    )
    assert_problem(
        deploy(api, tenant, world.group(), [a["image_id"], a["image_id"]]), 400, "duplicate_image"
    )


def test_update_policy_filters_what_a_group_is_offered(world: Tenancy) -> None:
    api, tenant = world.api, world.tenant_id
    image = uploaded(api, tenant)
    development = world.group("Development")  # No3rdPartyAppUpdates
    assert deploy(api, tenant, development, [image["image_id"]]).status_code == 201
    assert group_role(api, tenant, development) == {}
    production = world.group("Production")
    assert deploy(api, tenant, production, [image["image_id"]]).status_code == 201
    assert list(group_role(api, tenant, production)) == [f"app-{image['image_id']}.imagepackage"]
    changed = api.client.patch(
        f"/v1/tenants/{tenant}/device-groups/{production}",
        json={"update_policy": "NoUpdates"},
        headers=api.operator,
    )
    assert changed.status_code == 200, changed.text
    assert group_role(api, tenant, production) == {}
    api.client.patch(
        f"/v1/tenants/{tenant}/device-groups/{production}",
        json={"update_policy": "UpdateAll"},
        headers=api.operator,
    )
    assert list(group_role(api, tenant, production)) == [f"app-{image['image_id']}.imagepackage"]


def test_pause_resume_and_percentage_are_published(world: Tenancy) -> None:
    api, tenant, group = world.api, world.tenant_id, world.group()
    image = uploaded(api, tenant)
    deployment = deploy(api, tenant, group, [image["image_id"]], rollout_percentage=10).json()
    url = f"/v1/tenants/{tenant}/device-groups/{group}/deployments/{deployment['id']}"
    name = f"app-{image['image_id']}.imagepackage"

    paused = api.client.patch(url, json={"paused": True}, headers=api.operator)
    assert paused.json()["state"] == "Paused"
    assert group_role(api, tenant, group)[name]["rollout"]["paused"] is True

    widened = api.client.patch(
        url, json={"paused": False, "rollout_percentage": 60}, headers=api.operator
    )
    assert widened.json()["state"] == "Active"
    assert group_role(api, tenant, group)[name]["rollout"] == {
        "deployment_id": deployment["id"],
        "percentage": 60,
        "paused": False,
    }
    reader = member(api, tenant, "Reader")
    assert_problem(api.client.patch(url, json={"paused": True}, headers=reader), 403, "forbidden")


def test_rollout_membership_is_deterministic_and_grows_with_the_percentage() -> None:
    deployment = uuid.uuid4()
    devices = [uuid.uuid4().hex * 4 for _ in range(2000)]
    members = {
        p: {d for d in devices if in_rollout(Rollout(deployment, p, paused=False), d)}
        for p in (10, 50, 100)
    }
    assert members[10] <= members[50] <= members[100] == set(devices)
    assert 100 < len(members[10]) < 300
    assert 850 < len(members[50]) < 1150
    other = {d for d in devices if in_rollout(Rollout(uuid.uuid4(), 10, paused=False), d)}
    assert other != members[10]


def test_device_status_is_shown_and_counted(world: Tenancy) -> None:
    api, tenant, group = world.api, world.tenant_id, world.group()
    image = uploaded(api, tenant)
    deployment = deploy(api, tenant, group, [image["image_id"]]).json()
    devices = [world.device() for _ in range(3)]
    creds = [world.credential(device) for device in devices]
    states = ["installed", "downloading", "installed"]
    for headers, state in zip(creds, states, strict=True):
        answer = report(api, headers, 1, state, deployment_id=deployment["id"])
        assert answer.status_code == 200, answer.text
    # A late, older report does not overwrite a newer one; the same report again is harmless.
    stale = report(api, creds[1], 0, "checked", deployment_id=deployment["id"])
    assert stale.json()["state"] == "downloading"
    report(
        api,
        creds[0],
        2,
        "installed",
        deployment_id=deployment["id"],
        installed_images=[image["image_id"]],
        os_version="1.0.0",
    )
    shown = api.client.get(
        f"/v1/tenants/{tenant}/devices/{devices[0].device_id}", headers=api.operator
    ).json()
    assert shown["update_status"]["state"] == "installed"
    assert shown["update_status"]["installed_images"] == [image["image_id"]]
    assert shown["update_status"]["sequence"] == 2
    counts = api.client.get(
        f"/v1/tenants/{tenant}/device-groups/{group}/deployments/{deployment['id']}",
        headers=api.operator,
    ).json()["status_counts"]
    assert counts == {"installed": 2, "downloading": 1}
    group_view = api.client.get(f"/v1/tenants/{tenant}/device-groups/{group}", headers=api.operator)
    assert group_view.json()["deployment"]["status_counts"] == counts


def test_a_report_about_another_tenants_deployment_is_refused(
    world: Tenancy, api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet
) -> None:
    other = tenancy(api, clock, tmp_path / "other", fleet)
    theirs = deploy(
        api, other.tenant_id, other.group(), [uploaded(api, other.tenant_id)["image_id"]]
    )
    headers = world.credential(world.device())
    answer = report(api, headers, 1, "failed", deployment_id=theirs.json()["id"], reason="x")
    assert_problem(answer, 400, "unknown_deployment")
    assert report(api, {}, 1, "checked").status_code == 403


def test_a_deployment_halts_when_too_many_devices_fail(world: Tenancy) -> None:
    api, tenant, group = world.api, world.tenant_id, world.group()
    image = uploaded(api, tenant)
    deployment = deploy(
        api, tenant, group, [image["image_id"]], failure_threshold=50, min_reports=3
    ).json()
    creds = [world.credential(world.device()) for _ in range(4)]
    report(api, creds[0], 1, "installed", deployment_id=deployment["id"])
    report(api, creds[1], 1, "failed", deployment_id=deployment["id"], reason="bad image")
    url = f"/v1/tenants/{tenant}/device-groups/{group}/deployments/{deployment['id']}"
    # 1 of 2 outcomes failed, but fewer than min_reports are in.
    assert api.client.get(url, headers=api.operator).json()["state"] == "Active"
    report(api, creds[2], 1, "failed", deployment_id=deployment["id"], reason="bad image")
    halted = api.client.get(url, headers=api.operator).json()
    assert halted["state"] == "Halted"
    assert "2 of 3 devices failed" in halted["halt_reason"]
    name = f"app-{image['image_id']}.imagepackage"
    assert group_role(api, tenant, group)[name]["rollout"]["paused"] is True
    events = api.client.get(
        f"/v1/tenants/{tenant}/audit", params={"action": "deployment.halt"}, headers=api.operator
    ).json()["items"]
    assert [e["actor_name"] for e in events] == ["service"]
    resumed = api.client.patch(url, json={"paused": False}, headers=api.operator).json()
    assert (resumed["state"], resumed["halt_reason"]) == ("Active", None)
