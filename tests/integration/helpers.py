"""Small builders over the in-process API for the integration tests."""

from __future__ import annotations

from typing import Any

from conftest import Api, unique


def create_tenant(api: Api, admin: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": unique("Tenant")}
    if admin:
        body["administrator"] = admin
    response = api.client.post("/v1/tenants", json=body, headers=api.operator)
    assert response.status_code == 201, response.text
    return dict(response.json())


def token_for(api: Api, user: str, tenant_id: str, *, days: int = 30) -> str:
    """A token for `user` limited to the tenant, issued by the operator."""
    response = api.client.post(
        "/v1/tokens",
        json={"name": "test", "user": user, "tenant_id": tenant_id, "expires_in_days": days},
        headers=api.operator,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def member(api: Api, tenant_id: str, role: str) -> dict[str, str]:
    """Headers of a new user holding `role` in the tenant."""
    user = f"{role.lower()}-{unique('u').split()[1]}@example.com"
    response = api.client.put(
        f"/v1/tenants/{tenant_id}/roles/{user}", json={"role": role}, headers=api.operator
    )
    assert response.status_code == 200, response.text
    return api.as_(token_for(api, user, tenant_id))


def create_product(
    api: Api, tenant_id: str, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = api.client.post(
        f"/v1/tenants/{tenant_id}/products",
        json={"name": unique("Product"), **body},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code, problem
    assert problem["status"] == status
    assert problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]
    return dict(problem)
