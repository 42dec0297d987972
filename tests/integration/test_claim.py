"""Claiming: proof of possession, genuineness, permanence, bulk, and the device registry."""

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
    pem,
    register_manufacturer,
)
from helpers import assert_problem, create_product, create_tenant, member

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def manufacturer(api: Api, fleet: Fleet) -> Fleet:
    register_manufacturer(api, fleet.ca_cert)
    return fleet


def _devices(tmp_path: Path, maker: Fleet, clock: FixedClock, count: int) -> list[EmulatedDevice]:
    return [make_device(tmp_path / f"d{i}", maker, clock.now()) for i in range(count)]


def _device_count(api: Api, tenant_id: str) -> int:
    response = api.client.get(f"/v1/tenants/{tenant_id}/devices", headers=api.operator)
    return len(response.json()["items"])


def test_claim_one_device_with_proof(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    contributor = member(api, tenant["id"], "Contributor")
    (device,) = _devices(tmp_path, manufacturer, clock, 1)
    response = claim(
        api, tenant["id"], [claim_item(device, tenant["id"], clock.now())], contributor
    )
    assert response.status_code == 201, response.text
    (claimed,) = response.json()
    assert claimed["device_id"] == device.device_id
    assert claimed["enabled"] is True
    assert claimed["last_attestation_result"] is None
    shown = api.client.get(
        f"/v1/tenants/{tenant['id']}/devices/{device.device_id}", headers=contributor
    )
    assert shown.json() == claimed
    audit = api.client.get(
        f"/v1/tenants/{tenant['id']}/audit", params={"action": "device.claim"}, headers=api.operator
    ).json()["items"]
    assert audit[0]["details"]["device_ids"] == [device.device_id]


def test_bulk_claim_many_devices_in_one_call_into_a_group(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    product = create_product(api, tenant["id"], api.operator)
    groups = api.client.get(
        f"/v1/tenants/{tenant['id']}/device-groups",
        params={"product_id": product["id"], "name": "Field Test"},
        headers=api.operator,
    ).json()["items"]
    devices = _devices(tmp_path, manufacturer, clock, 5)
    items = [claim_item(d, tenant["id"], clock.now()) for d in devices]
    response = claim(api, tenant["id"], items, device_group_id=groups[0]["id"])
    assert response.status_code == 201, response.text
    assert {d["device_id"] for d in response.json()} == {d.device_id for d in devices}
    assert all(d["device_group_id"] == groups[0]["id"] for d in response.json())
    assert all(d["product_id"] == product["id"] for d in response.json())
    first = api.client.get(
        f"/v1/tenants/{tenant['id']}/devices", params={"limit": 2}, headers=api.operator
    ).json()
    assert len(first["items"]) == 2
    seen = [d["device_id"] for d in first["items"]]
    token = first["continuation_token"]
    while token:
        page = api.client.get(
            f"/v1/tenants/{tenant['id']}/devices",
            params={"limit": 2, "continuation_token": token},
            headers=api.operator,
        ).json()
        seen += [d["device_id"] for d in page["items"]]
        token = page["continuation_token"]
    assert sorted(seen) == sorted(d.device_id for d in devices)
    in_group = api.client.get(
        f"/v1/tenants/{tenant['id']}/devices",
        params={"device_group_id": groups[0]["id"]},
        headers=api.operator,
    ).json()["items"]
    assert len(in_group) == 5
    deleted = api.client.delete(
        f"/v1/tenants/{tenant['id']}/device-groups/{groups[0]['id']}", headers=api.operator
    )
    assert_problem(deleted, 409, "has_devices")


def test_claim_by_id_without_proof_is_refused(api: Api) -> None:
    tenant = create_tenant(api)
    response = api.client.post(
        f"/v1/tenants/{tenant['id']}/devices/claim",
        json={"devices": [{"device_id": "ab" * 64}]},
        headers=api.operator,
    )
    assert_problem(response, 422, "validation_failed")
    assert _device_count(api, tenant["id"]) == 0


def test_double_claim_is_refused_and_claiming_is_permanent(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    (device,) = _devices(tmp_path, manufacturer, clock, 1)
    assert (
        claim(api, tenant["id"], [claim_item(device, tenant["id"], clock.now())]).status_code == 201
    )
    again = claim(api, tenant["id"], [claim_item(device, tenant["id"], clock.now())])
    problem = assert_problem(again, 400, "already_claimed")
    assert problem["errors"][0]["device_id"] == device.device_id
    assert _device_count(api, tenant["id"]) == 1


def test_device_of_another_tenant_cannot_be_claimed_or_seen(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    owner = create_tenant(api)
    other = create_tenant(api)
    (device,) = _devices(tmp_path, manufacturer, clock, 1)
    assert (
        claim(api, owner["id"], [claim_item(device, owner["id"], clock.now())]).status_code == 201
    )
    stolen = claim(api, other["id"], [claim_item(device, other["id"], clock.now())])
    assert_problem(stolen, 400, "already_claimed")
    admin = member(api, other["id"], "Administrator")
    url = f"/v1/tenants/{other['id']}/devices/{device.device_id}"
    assert_problem(api.client.get(url, headers=admin), 404, "device_not_found")
    assert_problem(
        api.client.patch(url, json={"enabled": False}, headers=admin), 404, "device_not_found"
    )
    own_url = f"/v1/tenants/{owner['id']}/devices/{device.device_id}"
    assert_problem(api.client.get(own_url, headers=admin), 404, "tenant_not_found")


def test_claim_statement_for_another_tenant_is_refused(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    other = create_tenant(api)
    (device,) = _devices(tmp_path, manufacturer, clock, 1)
    response = claim(api, tenant["id"], [claim_item(device, other["id"], clock.now())])
    assert_problem(response, 400, "claim_for_another_tenant")
    assert _device_count(api, tenant["id"]) == 0


def test_non_genuine_device_with_self_made_idevid_is_refused(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    rogue = new_fleet(tmp_path / "rogue-fleet")
    (device,) = _devices(tmp_path, rogue, clock, 1)
    response = claim(api, tenant["id"], [claim_item(device, tenant["id"], clock.now())])
    assert_problem(response, 400, "not_genuine")
    assert _device_count(api, tenant["id"]) == 0


def test_idevid_of_another_device_is_refused(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    first, second = _devices(tmp_path, manufacturer, clock, 2)
    item = claim_item(first, tenant["id"], clock.now())
    item["idevid"] = second.idevid_pem
    assert_problem(claim(api, tenant["id"], [item]), 400, "not_genuine")


def test_stale_or_forged_claim_statements_are_refused(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    first, second = _devices(tmp_path, manufacturer, clock, 2)
    stale = claim_item(first, tenant["id"], clock.now() - dt.timedelta(hours=1))
    forged = claim_item(first, tenant["id"], clock.now())
    forged_by_other = claim_item(second, tenant["id"], clock.now())
    forged["claim_statement"] = (
        forged["claim_statement"][:-8] + forged_by_other["claim_statement"][-8:]
    )
    response = claim(api, tenant["id"], [stale, forged])
    problem = assert_problem(response, 400, "claim_refused")
    assert [(e["index"], e["code"]) for e in problem["errors"]] == [
        (0, "stale_claim_statement"),
        (1, "claim_signature_invalid"),
    ]


def test_bulk_claim_is_all_or_nothing(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    devices = _devices(tmp_path, manufacturer, clock, 3)
    rogue = make_device(tmp_path / "rogue", new_fleet(tmp_path / "rogue-fleet"), clock.now())
    items = [claim_item(d, tenant["id"], clock.now()) for d in [*devices, rogue]]
    items.append(items[0])
    problem = assert_problem(claim(api, tenant["id"], items), 400, "claim_refused")
    assert [(e["index"], e["code"]) for e in problem["errors"]] == [
        (3, "not_genuine"),
        (4, "duplicate"),
    ]
    assert _device_count(api, tenant["id"]) == 0


def test_reader_cannot_claim(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    reader = member(api, tenant["id"], "Reader")
    (device,) = _devices(tmp_path, manufacturer, clock, 1)
    response = claim(api, tenant["id"], [claim_item(device, tenant["id"], clock.now())], reader)
    assert_problem(response, 403, "forbidden")


def test_update_device_group_and_disable(
    api: Api, clock: FixedClock, manufacturer: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    product = create_product(api, tenant["id"], api.operator)
    group = api.client.get(
        f"/v1/tenants/{tenant['id']}/device-groups",
        params={"product_id": product["id"], "name": "Production"},
        headers=api.operator,
    ).json()["items"][0]
    (device,) = _devices(tmp_path, manufacturer, clock, 1)
    claim(api, tenant["id"], [claim_item(device, tenant["id"], clock.now())])
    url = f"/v1/tenants/{tenant['id']}/devices/{device.device_id}"
    contributor = member(api, tenant["id"], "Contributor")
    moved = api.client.patch(url, json={"device_group_id": group["id"]}, headers=contributor)
    assert moved.status_code == 200, moved.text
    assert moved.json()["device_group_id"] == group["id"]
    disabled = api.client.patch(url, json={"enabled": False}, headers=contributor).json()
    assert disabled["enabled"] is False
    listed = api.client.get(
        f"/v1/tenants/{tenant['id']}/devices", params={"enabled": False}, headers=contributor
    ).json()["items"]
    assert [d["device_id"] for d in listed] == [device.device_id]
    missing = api.client.patch(
        url, json={"device_group_id": "00000000-0000-0000-0000-000000000000"}, headers=contributor
    )
    assert_problem(missing, 404, "device_group_not_found")


def test_manufacturer_ca_registration_is_checked_and_operator_only(
    api: Api, clock: FixedClock, fleet: Fleet, tmp_path: Path
) -> None:
    tenant = create_tenant(api)
    admin = member(api, tenant["id"], "Administrator")
    body = {"name": "Contoso", "certificate": pem(fleet.ca_cert)}
    assert_problem(
        api.client.post("/v1/manufacturer-cas", json=body, headers=admin), 403, "operator_required"
    )
    device = make_device(tmp_path / "d", fleet, clock.now())
    leaf = {"name": "Leaf", "certificate": device.idevid_pem}
    assert_problem(
        api.client.post("/v1/manufacturer-cas", json=leaf, headers=api.operator),
        400,
        "invalid_certificate",
    )
    garbage = {"name": "Garbage", "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n"}
    assert_problem(
        api.client.post("/v1/manufacturer-cas", json=garbage, headers=api.operator),
        400,
        "invalid_certificate",
    )
    created = api.client.post("/v1/manufacturer-cas", json=body, headers=api.operator)
    assert created.status_code == 201, created.text
    again = api.client.post("/v1/manufacturer-cas", json=body, headers=api.operator)
    assert_problem(again, 409, "name_conflict")
    ca_id = created.json()["id"]
    assert (
        api.client.delete(f"/v1/manufacturer-cas/{ca_id}", headers=api.operator).status_code == 200
    )
    response = claim(api, tenant["id"], [claim_item(device, tenant["id"], clock.now())])
    assert_problem(response, 400, "not_genuine")
