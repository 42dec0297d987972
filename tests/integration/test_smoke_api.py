from conftest import Api


def test_operator_creates_tenant_and_product(api: Api) -> None:
    r = api.client.post("/v1/tenants", json={"name": "Contoso", "administrator": "alice@example.com"}, headers=api.operator)
    assert r.status_code == 201, r.text
    tenant = r.json()
    r = api.client.post(f"/v1/tenants/{tenant['id']}/products", json={"name": "Thermostat"}, headers=api.operator)
    assert r.status_code == 201, r.text
    r = api.client.get(f"/v1/tenants/{tenant['id']}/device-groups", headers=api.operator)
    assert r.status_code == 200, r.text
    assert sorted(g["name"] for g in r.json()["items"]) == sorted(["Development", "Field Test", "Production", "Production OS Evaluation", "Field Test OS Evaluation"])
    r = api.client.get(f"/v1/tenants/{tenant['id']}/audit", headers=api.operator)
    assert [e["action"] for e in r.json()["items"]] == ["product.create", "tenant.create"]
