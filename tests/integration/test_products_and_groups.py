"""Products, their default device groups, device groups, paging and bad input."""

from __future__ import annotations

import uuid

import pytest
from helpers import assert_problem, create_product, create_tenant, member

from conftest import Api

DEFAULTS = {
    "Development": ("Retail", "No3rdPartyAppUpdates"),
    "Field Test": ("Retail", "UpdateAll"),
    "Production": ("Retail", "UpdateAll"),
    "Production OS Evaluation": ("RetailEval", "UpdateAll"),
    "Field Test OS Evaluation": ("RetailEval", "UpdateAll"),
}


def _groups(api: Api, tenant_id: str, product_id: str) -> dict[str, dict[str, object]]:
    items = api.client.get(
        f"/v1/tenants/{tenant_id}/device-groups",
        params={"product_id": product_id},
        headers=api.operator,
    ).json()["items"]
    return {g["name"]: g for g in items}


def test_product_comes_with_the_five_default_groups(api: Api) -> None:
    tenant = create_tenant(api)
    contributor = member(api, tenant["id"], "Contributor")
    product = create_product(api, tenant["id"], contributor, description="Smart thermostat")
    uuid.UUID(product["id"])
    groups = _groups(api, tenant["id"], product["id"])
    assert {n: (g["os_feed"], g["update_policy"]) for n, g in groups.items()} == DEFAULTS
    assert not any(g["allow_crash_dumps"] for g in groups.values())


def test_product_without_default_groups_and_create_defaults_later(api: Api) -> None:
    tenant = create_tenant(api)
    product = create_product(api, tenant["id"], api.operator, create_default_groups=False)
    assert _groups(api, tenant["id"], product["id"]) == {}
    url = f"/v1/tenants/{tenant['id']}/products/{product['id']}/default-device-groups"
    first = api.client.post(url, headers=api.operator)
    assert first.status_code == 201
    assert len(first.json()) == 5
    again = api.client.post(url, headers=api.operator)
    assert again.json() == []
    assert set(_groups(api, tenant["id"], product["id"])) == set(DEFAULTS)


def test_product_names_unique_in_tenant_not_across(api: Api) -> None:
    first = create_tenant(api)
    second = create_tenant(api)
    create_product(api, first["id"], api.operator, name="Thermostat")
    create_product(api, second["id"], api.operator, name="Thermostat")
    duplicate = api.client.post(
        f"/v1/tenants/{first['id']}/products", json={"name": "THERMOSTAT"}, headers=api.operator
    )
    assert_problem(duplicate, 409, "name_conflict")
    names = [
        p["name"]
        for p in api.client.get(f"/v1/tenants/{first['id']}/products", headers=api.operator).json()[
            "items"
        ]
    ]
    assert names == ["Thermostat"]


@pytest.mark.parametrize(
    "name",
    ["", " Padded", "Padded ", "x" * 51, "semi;colon", "new\nline", "tab\there", "ünïcode", 42],
)
def test_bad_product_names_are_refused(api: Api, name: object) -> None:
    tenant = create_tenant(api)
    response = api.client.post(
        f"/v1/tenants/{tenant['id']}/products", json={"name": name}, headers=api.operator
    )
    assert_problem(response, 422, "validation_failed")
    assert (
        api.client.get(f"/v1/tenants/{tenant['id']}/products", headers=api.operator).json()["items"]
        == []
    )


def test_fifty_character_name_is_accepted(api: Api) -> None:
    tenant = create_tenant(api)
    product = create_product(api, tenant["id"], api.operator, name="P" * 50)
    assert product["name"] == "P" * 50


def test_unknown_fields_and_bad_json_are_refused(api: Api) -> None:
    tenant = create_tenant(api)
    url = f"/v1/tenants/{tenant['id']}/products"
    assert_problem(
        api.client.post(url, json={"name": "A", "colour": "red"}, headers=api.operator),
        422,
        "validation_failed",
    )
    broken = api.client.post(
        url, content=b"{not json", headers={**api.operator, "content-type": "application/json"}
    )
    assert_problem(broken, 422, "validation_failed")


def test_malformed_ids_are_refused(api: Api) -> None:
    tenant = create_tenant(api)
    for path in (
        "/v1/tenants/not-a-guid",
        f"/v1/tenants/{tenant['id']}/products/123",
        f"/v1/tenants/{tenant['id']}/device-groups/%00",
    ):
        assert_problem(api.client.get(path, headers=api.operator), 422, "validation_failed")


def test_contributor_creates_and_updates_but_cannot_delete(api: Api) -> None:
    tenant = create_tenant(api)
    contributor = member(api, tenant["id"], "Contributor")
    product = create_product(api, tenant["id"], contributor)
    base = f"/v1/tenants/{tenant['id']}"
    group = api.client.post(
        f"{base}/device-groups",
        json={
            "product_id": product["id"],
            "name": "Pilot",
            "os_feed": "RetailEval",
            "update_policy": "NoUpdates",
            "allow_crash_dumps": True,
            "description": "first site",
        },
        headers=contributor,
    )
    assert group.status_code == 201, group.text
    updated = api.client.patch(
        f"{base}/device-groups/{group.json()['id']}",
        json={"update_policy": "UpdateAll"},
        headers=contributor,
    )
    assert updated.json()["update_policy"] == "UpdateAll"
    assert updated.json()["os_feed"] == "RetailEval"
    assert_problem(
        api.client.delete(f"{base}/device-groups/{group.json()['id']}", headers=contributor),
        403,
        "forbidden",
    )
    assert_problem(
        api.client.delete(f"{base}/products/{product['id']}", headers=contributor), 403, "forbidden"
    )
    assert "Pilot" in _groups(api, tenant["id"], product["id"])


def test_reader_reads_but_cannot_write(api: Api) -> None:
    tenant = create_tenant(api)
    reader = member(api, tenant["id"], "Reader")
    product = create_product(api, tenant["id"], api.operator)
    base = f"/v1/tenants/{tenant['id']}"
    assert api.client.get(f"{base}/products/{product['id']}", headers=reader).status_code == 200
    assert_problem(
        api.client.post(f"{base}/products", json={"name": "Nope"}, headers=reader), 403, "forbidden"
    )
    assert_problem(
        api.client.patch(
            f"{base}/products/{product['id']}", json={"description": "x"}, headers=reader
        ),
        403,
        "forbidden",
    )
    shown = api.client.get(f"{base}/products/{product['id']}", headers=reader).json()
    assert shown["description"] == product["description"]


def test_administrator_deletes_product_with_its_groups(api: Api) -> None:
    tenant = create_tenant(api)
    admin = member(api, tenant["id"], "Administrator")
    product = create_product(api, tenant["id"], admin)
    base = f"/v1/tenants/{tenant['id']}"
    assert api.client.delete(f"{base}/products/{product['id']}", headers=admin).status_code == 200
    assert_problem(
        api.client.get(f"{base}/products/{product['id']}", headers=admin), 404, "product_not_found"
    )
    assert _groups(api, tenant["id"], product["id"]) == {}


def test_group_of_another_tenants_product_is_refused(api: Api) -> None:
    mine = create_tenant(api)
    theirs = create_tenant(api)
    their_product = create_product(api, theirs["id"], api.operator)
    response = api.client.post(
        f"/v1/tenants/{mine['id']}/device-groups",
        json={"product_id": their_product["id"], "name": "Sneaky"},
        headers=api.operator,
    )
    assert_problem(response, 404, "product_not_found")
    assert "Sneaky" not in _groups(api, theirs["id"], their_product["id"])


def test_group_names_unique_per_product(api: Api) -> None:
    tenant = create_tenant(api)
    first = create_product(api, tenant["id"], api.operator)
    second = create_product(api, tenant["id"], api.operator)
    base = f"/v1/tenants/{tenant['id']}/device-groups"
    clash = api.client.post(
        base, json={"product_id": first["id"], "name": "field test"}, headers=api.operator
    )
    assert_problem(clash, 409, "name_conflict")
    other = api.client.post(
        base, json={"product_id": second["id"], "name": "Lab"}, headers=api.operator
    )
    assert other.status_code == 201
    rename = api.client.patch(
        f"{base}/{other.json()['id']}", json={"name": "Production"}, headers=api.operator
    )
    assert_problem(rename, 409, "name_conflict")


def test_lists_page_with_continuation_tokens(api: Api) -> None:
    tenant = create_tenant(api)
    created = [
        create_product(api, tenant["id"], api.operator, create_default_groups=False)["id"]
        for _ in range(7)
    ]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": 3, **({"continuation_token": token} if token else {})}
        page = api.client.get(
            f"/v1/tenants/{tenant['id']}/products", params=params, headers=api.operator
        ).json()
        pages += 1
        seen += [p["id"] for p in page["items"]]
        token = page["continuation_token"]
        if token is None:
            break
    assert pages == 3
    assert seen == created


def test_bad_paging_parameters_are_refused(api: Api) -> None:
    tenant = create_tenant(api)
    url = f"/v1/tenants/{tenant['id']}/products"
    assert_problem(
        api.client.get(url, params={"continuation_token": "garbage!"}, headers=api.operator),
        400,
        "invalid_continuation_token",
    )
    for limit in (0, 1001, "many"):
        assert_problem(
            api.client.get(url, params={"limit": limit}, headers=api.operator),
            422,
            "validation_failed",
        )
