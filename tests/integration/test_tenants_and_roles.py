"""Tenants, roles and what each role may do, against the real database engines."""

from __future__ import annotations

import uuid

from helpers import assert_problem, create_tenant, member, token_for

from conftest import Api


def test_operator_creates_tenant_with_first_administrator(api: Api) -> None:
    tenant = create_tenant(api, admin="alice@example.com")
    alice = api.as_(token_for(api, "alice@example.com", tenant["id"]))
    me = api.client.get("/v1/me", headers=alice).json()
    assert me["name"] == "alice@example.com"
    assert me["roles"] == [
        {"tenant_id": tenant["id"], "tenant_name": tenant["name"], "role": "Administrator"}
    ]
    listed = api.client.get("/v1/tenants", headers=alice).json()["items"]
    assert [(t["id"], t["role"]) for t in listed] == [(tenant["id"], "Administrator")]


def test_only_the_operator_creates_tenants(api: Api) -> None:
    tenant = create_tenant(api)
    admin = member(api, tenant["id"], "Administrator")
    response = api.client.post("/v1/tenants", json={"name": "Mine"}, headers=admin)
    assert_problem(response, 403, "operator_required")
    names = [t["name"] for t in api.client.get("/v1/tenants", headers=api.operator).json()["items"]]
    assert "Mine" not in names


def test_duplicate_tenant_name_is_refused_in_any_case(api: Api) -> None:
    tenant = create_tenant(api)
    response = api.client.post(
        "/v1/tenants", json={"name": tenant["name"].upper()}, headers=api.operator
    )
    assert_problem(response, 409, "name_conflict")


def test_rename_tenant_needs_administrator(api: Api) -> None:
    tenant = create_tenant(api)
    contributor = member(api, tenant["id"], "Contributor")
    admin = member(api, tenant["id"], "Administrator")
    url = f"/v1/tenants/{tenant['id']}"
    assert_problem(
        api.client.patch(url, json={"name": "New"}, headers=contributor), 403, "forbidden"
    )
    assert api.client.get(url, headers=admin).json()["name"] == tenant["name"]
    response = api.client.patch(url, json={"name": "Renamed Co"}, headers=admin)
    assert response.status_code == 200, response.text
    assert api.client.get(url, headers=contributor).json()["name"] == "Renamed Co"


def test_tenants_are_never_deleted(api: Api) -> None:
    tenant = create_tenant(api)
    response = api.client.delete(f"/v1/tenants/{tenant['id']}", headers=api.operator)
    assert_problem(response, 405, "method_not_allowed")
    assert api.client.get(f"/v1/tenants/{tenant['id']}", headers=api.operator).status_code == 200


def test_foreign_tenant_looks_like_a_missing_one(api: Api) -> None:
    mine = create_tenant(api)
    theirs = create_tenant(api)
    admin = member(api, mine["id"], "Administrator")
    foreign = assert_problem(
        api.client.get(f"/v1/tenants/{theirs['id']}", headers=admin), 404, "tenant_not_found"
    )
    missing = assert_problem(
        api.client.get(f"/v1/tenants/{uuid.uuid4()}", headers=admin), 404, "tenant_not_found"
    )
    assert foreign["title"] == missing["title"]


def test_role_add_change_list_remove(api: Api) -> None:
    tenant = create_tenant(api, admin="alice@example.com")
    alice = api.as_(token_for(api, "alice@example.com", tenant["id"]))
    roles = f"/v1/tenants/{tenant['id']}/roles"
    response = api.client.put(f"{roles}/bob@example.com", json={"role": "Reader"}, headers=alice)
    assert response.status_code == 200, response.text
    response = api.client.put(
        f"{roles}/bob@example.com", json={"role": "Contributor"}, headers=alice
    )
    assert response.json()["role"] == "Contributor"
    listed = {
        r["user_name"]: r["role"] for r in api.client.get(roles, headers=alice).json()["items"]
    }
    assert listed == {"alice@example.com": "Administrator", "bob@example.com": "Contributor"}
    assert api.client.delete(f"{roles}/bob@example.com", headers=alice).status_code == 200
    listed = [r["user_name"] for r in api.client.get(roles, headers=alice).json()["items"]]
    assert listed == ["alice@example.com"]
    assert_problem(
        api.client.delete(f"{roles}/bob@example.com", headers=alice), 404, "role_not_found"
    )


def test_last_administrator_cannot_be_removed_or_demoted(api: Api) -> None:
    tenant = create_tenant(api, admin="alice@example.com")
    alice = api.as_(token_for(api, "alice@example.com", tenant["id"]))
    roles = f"/v1/tenants/{tenant['id']}/roles"
    assert_problem(
        api.client.delete(f"{roles}/alice@example.com", headers=alice), 409, "last_administrator"
    )
    assert_problem(
        api.client.put(f"{roles}/alice@example.com", json={"role": "Reader"}, headers=alice),
        409,
        "last_administrator",
    )
    assert api.client.get(roles, headers=alice).json()["items"][0]["role"] == "Administrator"


def test_reader_cannot_manage_roles(api: Api) -> None:
    tenant = create_tenant(api)
    reader = member(api, tenant["id"], "Reader")
    response = api.client.put(
        f"/v1/tenants/{tenant['id']}/roles/eve@example.com",
        json={"role": "Administrator"},
        headers=reader,
    )
    assert_problem(response, 403, "forbidden")
    users = [
        r["user_name"]
        for r in api.client.get(f"/v1/tenants/{tenant['id']}/roles", headers=reader).json()["items"]
    ]
    assert "eve@example.com" not in users


def test_bad_user_names_and_roles_are_refused(api: Api) -> None:
    tenant = create_tenant(api)
    roles = f"/v1/tenants/{tenant['id']}/roles"
    assert_problem(
        api.client.put(f"{roles}/bob", json={"role": "Owner"}, headers=api.operator),
        422,
        "validation_failed",
    )
    assert_problem(
        api.client.put(f"{roles}/ bob", json={"role": "Reader"}, headers=api.operator),
        422,
        "validation_failed",
    )
    assert_problem(
        api.client.put(f"{roles}/{'x' * 255}", json={"role": "Reader"}, headers=api.operator),
        422,
        "validation_failed",
    )
