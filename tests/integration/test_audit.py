"""The audit log records every change, refused ones too, and pages newest first."""

from __future__ import annotations

from helpers import assert_problem, create_product, create_tenant, member

from conftest import Api


def test_changes_are_audited_with_actor_target_result_and_request_id(api: Api) -> None:
    tenant = create_tenant(api, admin="alice@example.com")
    contributor = member(api, tenant["id"], "Contributor")
    response = api.client.post(
        f"/v1/tenants/{tenant['id']}/products",
        json={"name": "Lamp"},
        headers={**contributor, "X-Request-ID": "req-lamp-1"},
    )
    product = response.json()
    events = api.client.get(f"/v1/tenants/{tenant['id']}/audit", headers=api.operator).json()
    newest = events["items"][0]
    assert newest["action"] == "product.create"
    assert newest["actor_name"].startswith("contributor-")
    assert newest["target_type"] == "product"
    assert newest["target_id"] == product["id"]
    assert newest["result"] == "success"
    assert newest["request_id"] == "req-lamp-1"
    assert newest["details"]["name"] == "Lamp"
    assert len(newest["details"]["device_groups"]) == 5
    actions = [e["action"] for e in events["items"]]
    assert actions[-1] == "tenant.create"
    assert "role.assign" in actions


def test_refused_change_is_audited_as_failure_and_changes_nothing(api: Api) -> None:
    tenant = create_tenant(api)
    reader = member(api, tenant["id"], "Reader")
    refused = api.client.post(
        f"/v1/tenants/{tenant['id']}/products", json={"name": "Forbidden"}, headers=reader
    )
    assert_problem(refused, 403, "forbidden")
    newest = api.client.get(f"/v1/tenants/{tenant['id']}/audit", headers=api.operator).json()[
        "items"
    ][0]
    assert (newest["action"], newest["result"], newest["error_code"]) == (
        "product.create",
        "failure",
        "forbidden",
    )
    assert newest["request_id"] == refused.headers["x-request-id"]
    assert (
        api.client.get(f"/v1/tenants/{tenant['id']}/products", headers=api.operator).json()["items"]
        == []
    )


def test_conflict_is_audited_as_failure(api: Api) -> None:
    tenant = create_tenant(api)
    create_product(api, tenant["id"], api.operator, name="Twin")
    api.client.post(
        f"/v1/tenants/{tenant['id']}/products", json={"name": "Twin"}, headers=api.operator
    )
    newest = api.client.get(f"/v1/tenants/{tenant['id']}/audit", headers=api.operator).json()[
        "items"
    ][0]
    assert (newest["result"], newest["error_code"]) == ("failure", "name_conflict")


def test_audit_pages_and_filters(api: Api) -> None:
    tenant = create_tenant(api)
    for _ in range(5):
        create_product(api, tenant["id"], api.operator, create_default_groups=False)
    url = f"/v1/tenants/{tenant['id']}/audit"
    first = api.client.get(
        url, params={"limit": 2, "action": "product.create"}, headers=api.operator
    ).json()
    second = api.client.get(
        url,
        params={
            "limit": 2,
            "action": "product.create",
            "continuation_token": first["continuation_token"],
        },
        headers=api.operator,
    ).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert len(set(ids)) == 4
    assert ids == sorted(ids, reverse=True)
    everything = api.client.get(url, headers=api.operator).json()["items"]
    assert [e["action"] for e in everything].count("product.create") == 5
    future = api.client.get(
        url, params={"since": "2999-01-01T00:00:00Z"}, headers=api.operator
    ).json()
    assert future["items"] == []


def test_audit_is_per_tenant(api: Api) -> None:
    mine = create_tenant(api)
    theirs = create_tenant(api)
    create_product(api, theirs["id"], api.operator, name="Secret")
    reader = member(api, mine["id"], "Reader")
    assert_problem(
        api.client.get(f"/v1/tenants/{theirs['id']}/audit", headers=reader), 404, "tenant_not_found"
    )
    mine_events = api.client.get(f"/v1/tenants/{mine['id']}/audit", headers=reader).json()
    assert all(e["tenant_id"] == mine["id"] for e in mine_events["items"])


def test_service_audit_is_for_the_operator(api: Api) -> None:
    tenant = create_tenant(api)
    admin = member(api, tenant["id"], "Administrator")
    assert_problem(api.client.get("/v1/audit", headers=admin), 403, "operator_required")
    events = api.client.get("/v1/audit", headers=api.operator).json()["items"]
    assert any(e["action"] == "operator.bootstrap" for e in events)
