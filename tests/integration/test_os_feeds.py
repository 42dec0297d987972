"""OS feeds: the operator's OS images, publishing to RetailEval then Retail, groups following
their feed under their update policy, and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from device_helpers import new_fleet
from helpers import assert_problem, member
from update_helpers import Tenancy, deploy, group_role, tenancy

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet
from opensphere.formats.image_package import KeySigner, parse_package

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet") / "fleet")


@pytest.fixture
def world(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> Tenancy:
    return tenancy(api, clock, tmp_path, fleet)


def _pem(signer: KeySigner) -> str:
    return (
        signer.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def trust_os_vendor(api: Api, fleet: Fleet) -> None:
    response = api.client.put(
        "/v1/os-image-signers",
        json={"keys": [{"name": "OS vendor", "public_key": _pem(fleet.os_signer)}]},
        headers=api.operator,
    )
    assert response.status_code == 200, response.text


def add_images(api: Api, release_id: str, images: list[bytes]) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    for data in images:
        response = api.client.post(
            f"/v1/os-releases/{release_id}/images",
            content=data,
            headers={**api.operator, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.text
        answer = response.json()
    return answer


def new_release(api: Api, fleet: Fleet, version: str) -> dict[str, Any]:
    body = fleet.reference_values().model_copy(update={"version": version})
    response = api.client.post(
        "/v1/os-releases", json=body.model_dump(mode="json"), headers=api.operator
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def publish(api: Api, release_id: str, feed: str) -> Any:
    return api.client.post(
        f"/v1/os-releases/{release_id}/publish", json={"feed": feed}, headers=api.operator
    )


def os_names(images: list[bytes]) -> list[str]:
    return sorted(f"os-{parse_package(d).metadata.identity.image_id}.imagepackage" for d in images)


def test_groups_follow_their_feed(world: Tenancy, fleet: Fleet) -> None:
    api, tenant = world.api, world.tenant_id
    trust_os_vendor(api, fleet)
    groups = {
        name: world.group(name)
        for name in ("Field Test", "Production OS Evaluation", "Development")
    }
    for group in groups.values():
        assert deploy(api, tenant, group, []).status_code == 201  # publishes the group's role
    images = fleet.build_os_release(version="2.0.0", security_version=2, build_time=1_790_000_000)
    release = new_release(api, fleet, "2.0.0")
    stored = add_images(api, release["id"], images)
    assert len(stored["images"]) == 3

    evaluated = publish(api, release["id"], "RetailEval")
    assert evaluated.status_code == 200, evaluated.text
    assert evaluated.json()["retail_eval_at"] is not None
    assert evaluated.json()["retail_at"] is None
    assert sorted(group_role(api, tenant, groups["Production OS Evaluation"])) == os_names(images)
    assert group_role(api, tenant, groups["Field Test"]) == {}

    assert publish(api, release["id"], "Retail").status_code == 200
    assert sorted(group_role(api, tenant, groups["Field Test"])) == os_names(images)
    # No3rdPartyAppUpdates still takes the OS; NoUpdates takes nothing.
    assert sorted(group_role(api, tenant, groups["Development"])) == os_names(images)
    api.client.patch(
        f"/v1/tenants/{tenant}/device-groups/{groups['Development']}",
        json={"update_policy": "NoUpdates"},
        headers=api.operator,
    )
    assert group_role(api, tenant, groups["Development"]) == {}

    # A newer release on RetailEval moves only the evaluation groups.
    newer = fleet.build_os_release(version="2.1.0", security_version=2, build_time=1_790_000_100)
    second = new_release(api, fleet, "2.1.0")
    add_images(api, second["id"], newer)
    publish(api, second["id"], "RetailEval")
    assert sorted(group_role(api, tenant, groups["Production OS Evaluation"])) == os_names(newer)
    assert sorted(group_role(api, tenant, groups["Field Test"])) == os_names(images)
    listed = api.client.get("/v1/os-releases", headers=api.operator).json()["items"]
    assert {
        r["version"]: r["retail_at"] is not None
        for r in listed
        if r["version"] != world.fleet.reference_values().version
    } == {"2.0.0": True, "2.1.0": False}


def test_os_images_are_checked_and_fixed_once_published(world: Tenancy, fleet: Fleet) -> None:
    api = world.api
    trust_os_vendor(api, fleet)
    release = new_release(api, fleet, "3.0.0")
    url = f"/v1/os-releases/{release['id']}/images"
    binary = {"Content-Type": "application/octet-stream"}
    assert_problem(publish(api, release["id"], "Retail"), 409, "os_release_empty")
    stranger = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    forged = Fleet(
        folder=fleet.folder,
        ca_key=fleet.ca_key,
        ca_cert=fleet.ca_cert,
        os_signer=stranger,
        app_signer=fleet.app_signer,
        capability_signer=fleet.capability_signer,
    ).build_os_release(version="3.0.0", security_version=3, build_time=1)
    refused = api.client.post(url, content=forged[0], headers={**api.operator, **binary})
    assert_problem(refused, 400, "untrusted_signer")
    images = fleet.build_os_release(version="3.0.0", security_version=3, build_time=1)
    admin = member(api, world.tenant_id, "Administrator")
    assert_problem(
        api.client.post(url, content=images[0], headers={**admin, **binary}),
        403,
        "operator_required",
    )
    add_images(api, release["id"], images[:2])
    again = api.client.post(url, content=images[0], headers={**api.operator, **binary})
    assert_problem(again, 409, "image_exists")
    assert publish(api, release["id"], "RetailEval").status_code == 200
    late = api.client.post(url, content=images[2], headers={**api.operator, **binary})
    assert_problem(late, 409, "os_release_published")
    gone = api.client.delete(f"/v1/os-releases/{release['id']}", headers=api.operator)
    assert gone.status_code == 200, gone.text
