"""Every route of the OpenAPI document, with every role, a foreign tenant and bad tokens.

The expectations are this test's own table, not read from the service: a route
added to the service without a row here fails the test.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from device_helpers import (
    EmulatedDevice,
    claim,
    claim_item,
    make_device,
    new_ca_certificate,
    new_fleet,
    pem,
    register_manufacturer,
    register_release,
)
from helpers import create_product, create_tenant, token_for
from securesystemslib.signer import CryptoSigner, SSlibKey
from update_helpers import app_package, deploy, uploaded

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet
from opensphere.formats.error_events import EventCategory, WireEvent, encode_batch
from opensphere.service.capabilities import CAPABILITY_KEY_ID
from opensphere.updates.repository import draft_root_rotation
from support.swtpm import TpmClaims

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
    ("POST", "/v1/tpm-manufacturer-cas"): OPERATOR,
    ("GET", "/v1/tpm-manufacturer-cas"): OPERATOR,
    ("DELETE", "/v1/tpm-manufacturer-cas/{tpm_manufacturer_ca_id}"): OPERATOR,
    ("POST", "/v1/tenants/{tenant_id}/tpm-devices/activations"): "Contributor",
    ("POST", "/v1/tenants/{tenant_id}/tpm-devices/claim"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/devices"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/devices/counts"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/devices/{device_id}"): "Reader",
    ("PATCH", "/v1/tenants/{tenant_id}/devices/{device_id}"): "Contributor",
    ("POST", "/v1/tenants/{tenant_id}/devices/{device_id}/capability"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/certificate"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/chain"): "Reader",
    ("POST", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/proof"): "Contributor",
    ("POST", "/v1/tenants/{tenant_id}/ca-certificates/{ca_certificate_id}/revoke"): (
        "Administrator"
    ),
    # images, deployments, OS feeds, TUF repositories
    ("POST", "/v1/tenants/{tenant_id}/images"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/images"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/images/{image_id}"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/images/{image_id}/content"): "Reader",
    (
        "POST",
        "/v1/tenants/{tenant_id}/device-groups/{device_group_id}/deployments",
    ): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/device-groups/{device_group_id}/deployments"): "Reader",
    (
        "GET",
        "/v1/tenants/{tenant_id}/device-groups/{device_group_id}/deployments/{deployment_id}",
    ): "Reader",
    (
        "PATCH",
        "/v1/tenants/{tenant_id}/device-groups/{device_group_id}/deployments/{deployment_id}",
    ): "Contributor",
    ("GET", "/v1/os-image-signers"): SELF,
    ("PUT", "/v1/os-image-signers"): OPERATOR,
    ("POST", "/v1/os-releases/{os_release_id}/images"): OPERATOR,
    ("POST", "/v1/os-releases/{os_release_id}/publish"): OPERATOR,
    ("GET", "/v1/tenants/{tenant_id}/tuf/root"): "Reader",
    ("POST", "/v1/tenants/{tenant_id}/tuf/root"): "Administrator",
    ("GET", "/v1/tenants/{tenant_id}/tuf/state"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/tuf/blobs/{sha256}"): "Reader",
    # failure reporting
    ("GET", "/v1/tenants/{tenant_id}/error-reports"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/problems"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/problems/{problem_id}"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/crash-dumps"): "Reader",
    ("GET", "/v1/tenants/{tenant_id}/crash-dumps/{crash_dump_id}"): "Contributor",
    ("GET", "/v1/tenants/{tenant_id}/error-report-settings"): "Reader",
    ("PUT", "/v1/tenants/{tenant_id}/error-report-settings"): "Administrator",
}
# Device endpoints take no user token: a device proves itself by signing (attestation) or by
# its device credential; test_attestation.py covers their refusals.
DEVICE_ROUTES = {
    ("POST", "/v1/device/attestation/challenge"),
    ("POST", "/v1/device/attestation/evidence"),
    ("GET", "/v1/device/me"),
    ("GET", "/v1/device/trust"),
    ("POST", "/v1/device/update-status"),
    ("GET", "/v1/device/tuf/{tenant_id}/metadata/{name}"),
    ("GET", "/v1/device/tuf/{tenant_id}/targets/{target_path}"),
    ("GET", "/v1/device/reporting-config"),
    ("POST", "/v1/device/error-reports"),
    ("POST", "/v1/device/crash-dumps"),
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
    tpm_manufacturer_ca_id: str = ""
    tpm: dict[str, str] | None = None
    image_id: str = ""
    sha256: str = ""
    deployment_id: str = ""
    os_signer_pem: str = ""
    problem_id: str = ""
    crash_dump_id: str = ""


@dataclass
class World:
    api: Api
    tenant_id: str
    headers: dict[str, dict[str, str]]
    manufacturer: Fleet
    folder: Path
    clock: FixedClock
    root_signers: list[CryptoSigner] = field(default_factory=list)
    tpm_claims: TpmClaims | None = None

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
        if "{tpm_manufacturer_ca_id}" in path:
            target.tpm_manufacturer_ca_id = self.api.client.post(
                "/v1/tpm-manufacturer-cas",
                json={"name": uuid.uuid4().hex[:12], "certificate": pem(new_ca_certificate(now))},
                headers=self.api.operator,
            ).json()["id"]
        if "/tpm-devices/" in path:
            target.tpm = self._tpm(path)
        if "{manufacturer_ca_id}" in path:
            registered = register_manufacturer(self.api, new_ca_certificate(now))
            target.manufacturer_ca_id = registered["id"]
        if "{os_release_id}" in path:
            release = register_release(
                self.api, self.manufacturer, version=f"r{uuid.uuid4().hex[:8]}"
            )
            target.os_release_id = release["id"]
        if "{image_id}" in path or "{sha256}" in path:
            image = uploaded(self.api, self.tenant_id)
            target.image_id, target.sha256 = image["image_id"], image["sha256"]
        if "{deployment_id}" in path:
            target.deployment_id = deploy(
                self.api, self.tenant_id, target.device_group_id, []
            ).json()["id"]
        if "{problem_id}" in path or "{crash_dump_id}" in path:
            target.problem_id, target.crash_dump_id = self._reported_crash(target)
        if path.endswith("/publish"):
            response = self.api.client.post(
                f"/v1/os-releases/{target.os_release_id}/images",
                content=self.os_image(),
                headers={**self.api.operator, "Content-Type": "application/octet-stream"},
            )
            assert response.status_code == 201, response.text
        target.os_signer_pem = self.os_signer_pem
        return target

    def _tpm(self, path: str) -> dict[str, str]:
        """A real swtpm (started on first need) answers for the TPM claiming routes."""
        if self.tpm_claims is None:
            self.tpm_claims = TpmClaims(self.folder / "tpm")
            self.api.client.post(
                "/v1/tpm-manufacturer-cas",
                json={
                    "name": "swtpm-localca",
                    "certificate": self.tpm_claims.tpm.ca_certificate.read_text(),
                },
                headers=self.api.operator,
            )
        if path.endswith("/activations"):
            return self.tpm_claims.activation_body()

        def activate(body: dict[str, str]) -> dict[str, Any]:
            response = self.api.client.post(
                f"/v1/tenants/{self.tenant_id}/tpm-devices/activations",
                json=body,
                headers=self.api.operator,
            )
            assert response.status_code == 201, response.text
            return dict(response.json())

        return self.tpm_claims.claim_body(activate)

    def _reported_crash(self, target: Target) -> tuple[str, str]:
        """A device in the target's group reports a crash and uploads its dump."""
        now = self.clock.now()
        device = self._device()
        self.api.client.patch(
            f"/v1/tenants/{self.tenant_id}/device-groups/{target.device_group_id}",
            json={"allow_crash_dumps": True},
            headers=self.api.operator,
        )
        claim(
            self.api,
            self.tenant_id,
            [claim_item(device, self.tenant_id, now)],
            device_group_id=target.device_group_id,
        )
        credential = self.api.client.app.state.credentials.issue(
            device_id=device.device_id,
            tenant_id=uuid.UUID(self.tenant_id),
            expires_at=now + dt.timedelta(hours=1),
        )
        headers = {"Authorization": f"Device {credential}"}
        event = WireEvent(
            id=uuid.uuid4(),
            category=EventCategory.APP_CRASH,
            signal_status=11,
            count=1,
            first_seen=int(now.timestamp()),
            last_seen=int(now.timestamp()),
        )
        stored = self.api.client.post(
            "/v1/device/error-reports",
            content=encode_batch(device.device_id, [event], sent_at=int(now.timestamp())),
            headers=headers,
        )
        assert stored.status_code == 200, stored.text
        dump = self.api.client.post("/v1/device/crash-dumps", content=b"dump", headers=headers)
        assert dump.status_code == 201, dump.text
        problems = self.api.client.get(
            f"/v1/tenants/{self.tenant_id}/problems", headers=self.api.operator
        ).json()["items"]
        return problems[0]["id"], dump.json()["id"]

    @property
    def os_signer_pem(self) -> str:
        return (
            self.manufacturer.os_signer.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def os_image(self) -> bytes:
        """A fresh OS component image signed by the fleet's OS key (a registered signer)."""
        return self.manufacturer.build_os_release(version="9.0", security_version=1, build_time=1)[
            0
        ]

    def rotation(self, method: str, path: str) -> tuple[dict[str, Any], CryptoSigner] | None:
        """For root rotation: root N+1 under a new offline key, signed by the previous one."""
        if (method, path) != ("POST", "/v1/tenants/{tenant_id}/tuf/root"):
            return None
        current = self.api.client.get(
            f"/v1/tenants/{self.tenant_id}/tuf/root", headers=self.api.operator
        ).json()
        key = ec.generate_private_key(ec.SECP256R1())
        new = CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))
        draft = draft_root_rotation(
            current["root"].encode(), new_keys=[new.public_key], threshold=1, now=self.clock.now()
        )
        for signer in (new, *self.root_signers):
            draft.sign(signer, append=True)
        return {"root": draft.to_bytes().decode()}, new

    def content(self, method: str, path: str) -> bytes | None:
        """The binary body of an upload route, fresh for each call."""
        if (method, path) == ("POST", "/v1/tenants/{tenant_id}/images"):
            return app_package()
        if (method, path) == ("POST", "/v1/os-releases/{os_release_id}/images"):
            return self.os_image()
        return None

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
            "certificate": pem(new_ca_certificate(dt.datetime.now(dt.UTC))),
        },
        ("POST", "/v1/os-releases"): lambda: {
            "version": name,
            "measurements": [{"stage": "os", "digest": "00" * 32}],
        },
        ("PUT", "/v1/minimum-security-versions"): lambda: {"minimums": {"os": 1}},
        ("PUT", "/v1/tenants/{tenant_id}/error-report-settings"): lambda: {
            "event_retention_days": 14,
            "dump_retention_days": 29,
        },
        ("PUT", "/v1/os-image-signers"): lambda: {
            "keys": [{"name": "OS vendor", "public_key": target.os_signer_pem}]
        },
        ("POST", "/v1/os-releases/{os_release_id}/publish"): lambda: {"feed": "RetailEval"},
        (
            "POST",
            "/v1/tenants/{tenant_id}/device-groups/{device_group_id}/deployments",
        ): lambda: {"image_ids": []},
        (
            "PATCH",
            "/v1/tenants/{tenant_id}/device-groups/{device_group_id}/deployments/{deployment_id}",
        ): lambda: {"paused": True},
        ("POST", "/v1/tenants/{tenant_id}/devices/claim"): lambda: {"devices": [target.claim]},
        ("POST", "/v1/tpm-manufacturer-cas"): lambda: {
            "name": name,
            "certificate": pem(new_ca_certificate(dt.datetime.now(dt.UTC))),
        },
        ("POST", "/v1/tenants/{tenant_id}/tpm-devices/activations"): lambda: target.tpm,
        ("POST", "/v1/tenants/{tenant_id}/tpm-devices/claim"): lambda: target.tpm,
        ("PATCH", "/v1/tenants/{tenant_id}/devices/{device_id}"): lambda: {"enabled": False},
        ("POST", "/v1/tenants/{tenant_id}/devices/{device_id}/capability"): lambda: {
            "capabilities": ["appDevelopment"]
        },
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
def world(api: Api, clock: FixedClock, tmp_path: Path) -> Iterator[World]:
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
    manufacturer = new_fleet(tmp_path / "fleet")
    register_manufacturer(api, manufacturer.ca_cert)
    api.client.app.state.keys.import_key(  # type: ignore[attr-defined]
        CAPABILITY_KEY_ID, manufacturer.capability_signer.private_key
    )
    world_signers = {
        "keys": [
            {
                "name": "OS vendor",
                "public_key": manufacturer.os_signer.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode(),
            }
        ]
    }
    assert (
        api.client.put("/v1/os-image-signers", json=world_signers, headers=api.operator).status_code
        == 200
    )
    world = World(
        api=api,
        tenant_id=tenant["id"],
        headers=headers,
        manufacturer=manufacturer,
        folder=tmp_path,
        clock=clock,
    )
    yield world
    if world.tpm_claims is not None:
        world.tpm_claims.close()


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
            content = world.content(method, path)
            rotation = world.rotation(method, path)
            if rotation is not None:
                response = api.client.request(
                    method, url, json=rotation[0], headers=world.headers[caller]
                )
                if response.status_code == 200:
                    world.root_signers = [rotation[1]]
            elif content is None:
                response = api.client.request(
                    method, url, json=_body(method, path, target), headers=world.headers[caller]
                )
            else:
                binary = {**world.headers[caller], "Content-Type": "application/octet-stream"}
                response = api.client.request(method, url, content=content, headers=binary)
            expected = _expected(caller, required, hidden=(method, path) in HIDDEN_WHEN_DENIED)
            if response.status_code not in expected:
                failures.append(
                    f"{method} {path} as {caller}: {response.status_code} "
                    f"(expected {sorted(expected)}) {response.text[:200]}"
                )
            elif response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json"
    assert not failures, "\n".join(failures)
