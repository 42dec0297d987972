"""Every route of the OpenAPI document, with every role, a foreign tenant and bad tokens.

The expectations are this test's own table, not read from the service: a route
added to the service without a row here fails the test.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from device_helpers import (
    EmulatedDevice,
    Manufacturer,
    claim,
    claim_item,
    make_device,
    new_manufacturer,
    register_manufacturer,
    register_release,
)
from helpers import create_product, create_tenant, token_for

from conftest import Api, FixedClock

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

OPERATOR = "operator"
SELF = "self"
LEVELS = {"Reader": 1, "Contributor": 2, "Administrator": 3}

# (method, path) -> who may: a tenant role (at least), the operator, or any signed-in user
REQUIRED: dict[tuple[str, str], str] = {
    ("GET", "/v1/me"): SELF,
    ("GET", "/v1/tokens"): SELF,
    ("POST", "/v1/tokens"): SELF,
    ("POST", "/v1/tokens/{token_id}/revoke"): "Administrator",
    ("GET", "/v1/audit"): OPERATOR,
    ("POST", "/v1/tenants"): OPERATOR,
    ("GET", "/v1/tenants"): SELF,
    ("GET", "/v1/tenants/{tenant_id}"): "Reader",
    ("PATCH", "/v1/tenants/{tenant_id}"): "Administrator",
    ("GET", "/v1/tenants/{tenant_id}/roles"): "Reader",
    ("PUT", "/v1/tenants/{tenant_id}/roles/{user_name}"): "Administrator",
    ("DELETE", "/v1/tenants/{tenant_id}/roles/{user_name}"): "Administrator",
    ("GET", "/v1/tenants/{tenant_id}/tokens"): "Administrator",
    ("GET", "/v1/tenants/{tenant_id}/audit"): "Reader",
    ("POST", "/v1/tenants/{tenant_id}/products"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/products"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/products/{product_id}"): "Reader",
    ("PATCH", "/v1/tenants/{tenant_id}/products/{product_id}"): "Contributor",
    ("DELETE", "/v1/tenants/{tenant_id}/products/{product_id}"): "Administrator",
    ("POST", "/v1/tenants/{tenant_id}/products/{product_id}/default-device-groups"): "Contributor",
    ("POST", "/v1/tenants/{tenant_id}/device-groups"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/device-groups"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/device-groups/{device_group_id}"): "Reader",
    ("PATCH", "/v1/tenants/{tenant_id}/device-groups/{device_group_id}"): "Contributor",
    ("DELETE", "/v1/tenants/{tenant_id}/device-groups/{device_group_id}"): "Administrator",
    ("POST", "/v1/manufacturer-cas"): OPERATOR,
    ("GET", "/v1/manufacturer-cas"): OPERATOR,
    ("GET", "/v1/manufacturer-cas/{manufacturer_ca_id}"): OPERATOR,
    ("DELETE", "/v1/manufacturer-cas/{manufacturer_ca_id}"): OPERATOR,
    ("POST", "/v1/os-releases"): OPERATOR,
    ("GET", "/v1/os-releases"): SELF,
    ("DELETE", "/v1/os-releases/{os_release_id}"): OPERATOR,
    ("GET", "/v1/minimum-security-versions"): SELF,
    ("PUT", "/v1/minimum-security-versions"): OPERATOR,
    ("POST", "/v1/tenants/{tenant_id}/devices/claim"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/devices"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/devices/{device_id}"): "Reader",
    ("PATCH", "/v1/tenants/{tenant_id}/devices/{device_id}"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/certificate"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/chain"): "Reader",
    ("POST", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/proof"): "Contributor",
    ("POST", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/revoke"): (
        "Administrator"
    ),
}
# Device endpoints take no user token: a device proves itself by signing (attestation) or by
# its device credential; test_attestation.py covers their refusals.
DEVICE_ROUTES = {
    ("POST", "/v1/device/attestation/challenge"),
    ("POST", "/v1/device/attestation/evidence"),
    ("GET", "/v1/device/me"),
}
PUBLIC = {("GET", "/healthz"), *DEVICE_ROUTES}
# other users' tokens are invisible rather than forbidden: denial looks like absence
HIDDEN_WHEN_DENIED = {("POST", "/v1/tokens/{token_id}/revoke")}

CALLERS = (
    "operator",
    "Administrator",
    "Contributor",
    "Reader",
    "foreign",
    "anonymous",
    "expired",
    "revoked",
)


@dataclass
class Target:
    tenant_id: str
    product_id: str
    device_group_id: str
    user_name: str
    token_id: str
    device_id: str = ""
    ca_certificate_id: str = ""
    manufacturer_ca_id: str = ""
    os_release_id: str = ""
    claim: dict[str, str] | None = None


@dataclass
class World:
    api: Api
    tenant_id: str
    headers: dict[str, dict[str, str]]
    manufacturer: Manufacturer
    folder: Path
    clock: FixedClock

    def _device(self) -> EmulatedDevice:
        return make_device(self.folder / uuid.uuid4().hex, self.manufacturer, self.clock.now())

    def target(self, path: str) -> Target:
        """Fresh objects for one call, plus whatever the path names."""
        target = self._base_target()
        now = self.clock.now()
        if path.endswith("/devices/claim"):
            target.claim = claim_item(self._device(), self.tenant_id, now)
        if "{device_id}" in path:
            device = self._device()
            claim(self.api, self.tenant_id, [claim_item(device, self.tenant_id, now)])
            target.device_id = device.device_id
        if "{ca_certificate_id}" in path:
            cas = self.api.client.get(
                f"/v1/tenants/{self.tenant_id}/ca-certificates", headers=self.api.operator
            ).json()["items"]
            target.ca_certificate_id = next(c["id"] for c in cas if c["status"] == "Active")
        if "{manufacturer_ca_id}" in path:
            target.manufacturer_ca_id = register_manufacturer(self.api, new_manufacturer(now))["id"]
        if "{os_release_id}" in path:
            target.os_release_id = register_release(self.api, f"r{uuid.uuid4().hex[:8]}")["id"]
        return target

    def _base_target(self) -> Target:
        """Fresh objects for one call, so a delete by one caller leaves the next one's intact."""
        product = create_product(
            self.api, self.tenant_id, self.api.operator, create_default_groups=False
        )
        group = self.api.client.post(
            f"/v1/tenants/{self.tenant_id}/device-groups",
            json={"product_id": product["id"], "name": "Group"},
            headers=self.api.operator,
        ).json()
        user = f"target-{uuid.uuid4().hex[:8]}@example.com"
        self.api.client.put(
            f"/v1/tenants/{self.tenant_id}/roles/{user}",
            json={"role": "Reader"},
            headers=self.api.operator,
        )
        token = self.api.client.post(
            "/v1/tokens",
            json={"name": "t", "user": user, "tenant_id": self.tenant_id},
            headers=self.api.operator,
        ).json()
        return Target(self.tenant_id, product["id"], group["id"], user, token["id"])


def _body(method: str, path: str, target: Target) -> dict[str, Any] | None:
    name = f"N{uuid.uuid4().hex[:10]}"
    bodies: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {
        ("POST", "/v1/tokens"): lambda: {"name": "mine"},
        ("POST", "/v1/tenants"): lambda: {"name": name},
        ("PATCH", "/v1/tenants/{tenant_id}"): lambda: {"name": name},
        ("PUT", "/v1/tenants/{tenant_id}/roles/{user_name}"): lambda: {"role": "Contributor"},
        ("POST", "/v1/tenants/{tenant_id}/products"): lambda: {"name": name},
        ("PATCH", "/v1/tenants/{tenant_id}/products/{product_id}"): lambda: {"description": "d"},
        ("POST", "/v1/tenants/{tenant_id}/device-groups"): lambda: {
            "product_id": target.product_id,
            "name": name,
        },
        ("PATCH", "/v1/tenants/{tenant_id}/device-groups/{device_group_id}"): lambda: {
            "allow_crash_dumps": True
        },
        ("POST", "/v1/manufacturer-cas"): lambda: {
            "name": name,
            "certificate": new_manufacturer(dt.datetime.now(dt.UTC)).pem,
        },
        ("POST", "/v1/os-releases"): lambda: {
            "version": name,
            "measurements": [{"stage": "os", "digest": "00" * 32}],
        },
        ("PUT", "/v1/minimum-security-versions"): lambda: {"minimums": {"os": 1}},
        ("POST", "/v1/tenants/{tenant_id}/devices/claim"): lambda: {"devices": [target.claim]},
        ("PATCH", "/v1/tenants/{tenant_id}/devices/{device_id}"): lambda: {"enabled": False},
        ("POST", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/proof"): lambda: {
            "verification_code": "CODE1"
        },
    }
    make = bodies.get((method, path))
    return None if make is None else make()


def _expected(caller: str, required: str, *, hidden: bool) -> set[int]:
    if caller in ("anonymous", "expired", "revoked"):
        return {401}
    if required == SELF:
        return {200, 201}
    if caller == "operator":
        return {200, 201}
    if required == OPERATOR:
        return {403}
    if caller == "foreign":
        return {404}
    if LEVELS[caller] >= LEVELS[required]:
        return {200, 201}
    return {404} if hidden else {403}


@pytest.fixture
def world(api: Api, clock: FixedClock, tmp_path: Path) -> World:
    tenant = create_tenant(api)
    foreign_tenant = create_tenant(api)
    headers: dict[str, dict[str, str]] = {"operator": api.operator, "anonymous": {}}
    for role in ("Administrator", "Contributor", "Reader"):
        user = f"{role.lower()}@example.com"
        api.client.put(
            f"/v1/tenants/{tenant['id']}/roles/{user}", json={"role": role}, headers=api.operator
        )
        headers[role] = api.as_(token_for(api, user, tenant["id"]))
    api.client.put(
        f"/v1/tenants/{foreign_tenant['id']}/roles/foreign@example.com",
        json={"role": "Administrator"},
        headers=api.operator,
    )
    headers["foreign"] = api.as_(token_for(api, "foreign@example.com", foreign_tenant["id"]))
    short = api.client.post(
        "/v1/tokens", json={"name": "short", "expires_in_days": 1}, headers=api.operator
    ).json()
    revoked = api.client.post("/v1/tokens", json={"name": "gone"}, headers=api.operator).json()
    api.client.post(f"/v1/tokens/{revoked['id']}/revoke", headers=api.operator)
    headers["revoked"] = api.as_(revoked["token"])
    clock.advance(dt.timedelta(days=1, minutes=1))
    headers["expired"] = api.as_(short["token"])
    manufacturer = new_manufacturer(clock.now() - dt.timedelta(days=1))
    register_manufacturer(api, manufacturer)
    return World(
        api=api,
        tenant_id=tenant["id"],
        headers=headers,
        manufacturer=manufacturer,
        folder=tmp_path,
        clock=clock,
    )


def test_every_route_is_in_the_table(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert routes - PUBLIC == set(REQUIRED), "update REQUIRED for new or removed routes"


def test_role_matrix(world: World) -> None:
    api = world.api
    failures = []
    for (method, path), required in REQUIRED.items():
        for caller in CALLERS:
            target = world.target(path)
            url = path.format(**vars(target))
            response = api.client.request(
                method, url, json=_body(method, path, target), headers=world.headers[caller]
            )
            expected = _expected(caller, required, hidden=(method, path) in HIDDEN_WHEN_DENIED)
            if response.status_code not in expected:
                failures.append(
                    f"{method} {path} as {caller}: {response.status_code} "
                    f"(expected {sorted(expected)}) {response.text[:200]}"
                )
            elif response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json"
    assert not failures, "\n".join(failures)
